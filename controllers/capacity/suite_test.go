package capacity

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"go.uber.org/zap/zapcore"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/rest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// TestMain sets up logging and, after a full run, checks that every grant
// the capacity markers alone declare was used by the capacity controller or
// checker acting as the CSV's ServiceAccount (the build controller's
// package checks the rest).
func TestMain(m *testing.M) {
	level := zapcore.ErrorLevel
	if os.Getenv("TEST_VERBOSE_LOGS") != "" {
		level = zapcore.DebugLevel
	}
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(level)))
	code := m.Run()
	if code == 0 && fullRun() {
		code = checkRBACUsage()
	}
	os.Exit(code)
}

func fullRun() bool {
	f := flag.Lookup("test.run")
	s := flag.Lookup("test.skip")
	return f != nil && f.Value.String() == "" && (s == nil || s.Value.String() == "") && !testing.Short()
}

func checkRBACUsage() int {
	csv, err := testenv.CSV()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rbac usage:", err)
		return 1
	}
	spec := csv.Spec.InstallStrategy.StrategySpec
	var all []rbacv1.PolicyRule
	for _, p := range append(spec.ClusterPermissions, spec.Permissions...) {
		all = append(all, p.Rules...)
	}
	mine, err := testenv.MarkerGrants(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "rbac usage:", err)
		return 1
	}
	builds, err := testenv.MarkerGrants("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "rbac usage:", err)
		return 1
	}
	granted := testenv.OwnGrants(all, mine, false, builds)
	usage := testenv.OperatorUsage()
	unused := usage.Unused(granted, testenv.GrantsNotSeenInEnvtest())
	fmt.Printf("SUMMARY: rbac (capacity): %d grants of the CSV are this package's; unused grants %d %v; refused %v\n",
		len(granted), len(unused), unused, usage.Refused())
	if len(unused) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the CSV grants verbs that no code path of the capacity controller used: %v (remove the +kubebuilder:rbac markers)\n", unused)
		return 1
	}
	return 0
}

// operatorConfig is the CSV's ServiceAccount with exactly the CSV's rules.
func operatorConfig(t testing.TB, env *testenv.Env) *rest.Config {
	t.Helper()
	id, err := env.OperatorIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id.Config()
}

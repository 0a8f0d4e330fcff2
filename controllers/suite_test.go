package controllers

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/controllers/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// The envtest stories share one API server with Tekton's CRDs; each story
// has its own namespace and its own manager restricted to it.
var (
	sharedEnv    *testenv.Env
	sharedOnce   sync.Once
	sharedErr    error
	testScheme   = runtime.NewScheme()
	adminClient  client.Client
	nsCounter    atomic.Int64
	defaultClass = "efs-csi"
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(testScheme))
	utilruntime.Must(v1alpha1.AddToScheme(testScheme))
	utilruntime.Must(tektonv1.AddToScheme(testScheme))
}

// TestMain is the package's only one (shared with the capacity tests): it
// sets up logging and stops the shared API server if a story started it.
func TestMain(m *testing.M) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	code := m.Run()
	if sharedEnv != nil {
		_ = sharedEnv.Stop()
	}
	if code == 0 && fullRun() {
		code = checkRBACUsage()
	}
	os.Exit(code)
}

// fullRun is true when every test of the package ran: only then can a
// granted verb that nothing used be called unused.
func fullRun() bool {
	f := flag.Lookup("test.run")
	s := flag.Lookup("test.skip")
	return f != nil && f.Value.String() == "" && (s == nil || s.Value.String() == "") && !testing.Short()
}

// checkRBACUsage compares what the operator's managers requested, as the
// CSV's ServiceAccount, with what the CSV grants, both ways: a request the
// API server refused for lack of a permission fails the stories that made
// it; here, a refused request is listed, and a granted verb that no code
// path used fails the package (remove it from the markers).
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
	// The capacity controller's own grants are checked by its package
	// (controllers/capacity); those both declare, and the unmarked ones
	// (leader election), here.
	mine, err := testenv.MarkerGrants(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "rbac usage:", err)
		return 1
	}
	capacityGrants, err := testenv.MarkerGrants("capacity")
	if err != nil {
		fmt.Fprintln(os.Stderr, "rbac usage:", err)
		return 1
	}
	granted := testenv.OwnGrants(all, mine, true, capacityGrants)
	usage := testenv.OperatorUsage()
	unused := usage.Unused(granted, testenv.GrantsNotSeenInEnvtest())
	refused := usage.Refused()
	fmt.Printf("SUMMARY: rbac: %d grants of the CSV are this package's; %d requests kinds made as its ServiceAccount; unused grants %d %v; refused %v\n",
		len(granted), usage.Kinds(), len(unused), unused, refused)
	if len(unused) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the CSV grants verbs that no code path of the operator used: %v (remove the +kubebuilder:rbac markers, or list them in testenv.GrantsUsedInClusterOnly with the reason)\n", unused)
		return 1
	}
	return 0
}

// shared starts the stories' API server on first use, so that running only
// other tests of the package does not start it.
func shared(t *testing.T) *testenv.Env {
	t.Helper()
	sharedOnce.Do(func() {
		env, err := testenv.StartE(testenv.Ours, testenv.Tekton)
		if err != nil {
			sharedErr = err
			return
		}
		sharedEnv = env
		adminClient, sharedErr = client.New(env.Config, client.Options{Scheme: testScheme})
		if sharedErr == nil {
			sharedErr = createClass(context.Background(), adminClient, defaultClass, storagev1.VolumeBindingWaitForFirstConsumer)
		}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedEnv
}

func zapLevel() zapcore.Level {
	if os.Getenv("TEST_VERBOSE_LOGS") != "" {
		return -2
	}
	return zapcore.ErrorLevel
}

func createClass(ctx context.Context, c client.Client, name string, mode storagev1.VolumeBindingMode) error {
	err := c.Create(ctx, &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: name},
		Provisioner:       "efs.csi.aws.com",
		VolumeBindingMode: ptr.To(mode),
	})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// writeCounter counts the API requests that are not reads.
type writeCounter struct {
	mu    sync.Mutex
	n     int
	calls []string
}

func (w *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.Method != http.MethodGet {
			w.mu.Lock()
			w.n++
			w.calls = append(w.calls, req.Method+" "+req.URL.Path)
			w.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

func (w *writeCounter) count() (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, append([]string(nil), w.calls...)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// fakeCapacity is the capacity.Checker double: its answer is set by the test.
type fakeCapacity struct {
	mu  sync.Mutex
	res capacity.Result
}

func readyCapacity() *fakeCapacity {
	return &fakeCapacity{res: capacity.Result{Ready: true, Reason: v1alpha1.ReasonNodesAvailable, Message: "every platform has a node"}}
}

func (f *fakeCapacity) Check(context.Context, *v1alpha1.MultiArchBuild) (capacity.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.res, nil
}

// operator is one running manager with the build controller.
type operator struct {
	r      *MultiArchBuildReconciler
	writes *writeCounter
	client client.Client
	stop   func()
}

// operatorOption changes how a story's operator starts.
type operatorOption func(cfg **rest.Config, r *MultiArchBuildReconciler)

// asIdentity runs the operator as another ServiceAccount than the CSV's.
func asIdentity(id *testenv.Identity) operatorOption {
	return func(cfg **rest.Config, _ *MultiArchBuildReconciler) { *cfg = id.Config() }
}

// withSettings changes the operator's settings (its flags).
func withSettings(fn func(*settings.Settings)) operatorOption {
	return func(_ **rest.Config, r *MultiArchBuildReconciler) { fn(&r.Settings) }
}

// startOperator starts a manager restricted to namespace ns against env,
// as the CSV's ServiceAccount unless an option says otherwise.
func startOperator(t *testing.T, env *testenv.Env, ns string, capc capacity.Checker, opts ...operatorOption) *operator {
	t.Helper()
	writes := &writeCounter{}
	cfg := operatorConfig(t, env)
	r := &MultiArchBuildReconciler{
		Settings:           settings.Default(),
		Capacity:           capc,
		Namespaces:         []string{ns},
		TektonPollInterval: 200 * time.Millisecond,
		skipNameValidation: true,
	}
	for _, o := range opts {
		o(&cfg, r)
	}
	cfg.QPS, cfg.Burst = -1, 0
	cfg.Wrap(writes.wrap)
	cacheOpts := CacheOptions()
	cacheOpts.DefaultNamespaces = map[string]cache.Config{ns: {}}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testScheme,
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return &operator{r: r, writes: writes, client: mgr.GetClient(), stop: stop}
}

// operatorConfig is the operator's identity: the CSV's ServiceAccount and
// rules, never the envtest admin.
func operatorConfig(t testing.TB, env *testenv.Env) *rest.Config {
	t.Helper()
	id, err := env.OperatorIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id.Config()
}

// newNamespace creates a namespace for one story, with the Pod Security
// level OpenShift's label syncer gives a namespace whose builder
// ServiceAccount may use the builder SCC.
func newNamespace(t *testing.T, c client.Client) string {
	t.Helper()
	name := fmt.Sprintf("story-%d-%s", nsCounter.Add(1), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: testenv.PodSecurityLabels(testenv.PodSecurityBaseline)}}); err != nil {
		t.Fatal(err)
	}
	return name
}

func newBuild(ns, name string) *v1alpha1.MultiArchBuild {
	return &v1alpha1.MultiArchBuild{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.MultiArchBuildSpec{
			Source: v1alpha1.SourceSpec{Git: v1alpha1.GitSource{URL: "https://github.com/nmasse-itix/tekton-pipeline-multiarch.git"}, ContextDir: "examples/htop/src"},
			Output: v1alpha1.OutputSpec{Image: "quay.io/nmasse_itix/htop-multiarch:v1"},
		},
	}
}

// eventually polls cond until it holds or the timeout passes; the last
// explanation goes into the failure.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var why string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, why = cond(); ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %s", what, why)
}

// consistently checks cond holds for the whole period.
func consistently(t *testing.T, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if ok, why := cond(); !ok {
			t.Fatalf("%s stopped holding: %s", what, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

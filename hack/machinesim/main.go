// Command machinesim is the local cluster's OpenShift Machine API on AWS
// (test tooling for hack/cluster, never product code): a MachineSet and
// Machine controller that behave like OpenShift's machine-api-operator with
// the AWS actuator, where launching an instance starts the kubelet of a node
// slot of the local cluster (hack/cluster/node.sh).
//
//	machinesim seed --stream stream.json            # CRDs and the objects of an OpenShift/AWS cluster (up.sh)
//	machinesim run --adopt amd64=mab-amd64 --boot arm64   # the controllers (up.sh starts it)
//
// See hack/cluster/README.md ("Machine API") for what it does and the
// machine-sim ConfigMap that makes it fail.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	configv1 "github.com/openshift/api/config/v1"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Namespace is OpenShift's Machine API namespace.
const Namespace = "openshift-machine-api"

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, machinev1beta1.Install, configv1.Install, apiextensionsv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

type kv map[string]string

func (m kv) String() string { return fmt.Sprint(map[string]string(m)) }
func (m kv) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want SLOT=NODE, got %q", v)
	}
	m[k] = val
	return nil
}

type list []string

func (l *list) String() string { return strings.Join(*l, ",") }
func (l *list) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func main() {
	ctrl.SetLogger(zap.New(zap.UseDevMode(false)))
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: machinesim seed|run [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "seed":
		err = seedMain(os.Args[2:])
	case "run":
		err = runMain(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "machinesim:", err)
		os.Exit(1)
	}
}

func runMain(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	adopt := kv{}
	var boot list
	fs.Var(adopt, "adopt", "SLOT=NODE: a static node a Machine of the slot's architecture adopts (repeatable)")
	fs.Var(&boot, "boot", "slots whose kubelet a Machine starts (comma-separated, repeatable)")
	nodeScript := fs.String("node-script", filepath.Join(repoRoot(), "hack/cluster/node.sh"), "starts/stops a slot's kubelet")
	_ = fs.Parse(args)

	cfg := ctrl.GetConfigOrDie()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme(),
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   cache.Options{DefaultNamespaces: map[string]cache.Config{Namespace: {}}},
	})
	if err != nil {
		return err
	}
	sim := &Sim{
		Client: mgr.GetClient(), API: mgr.GetAPIReader(), Namespace: Namespace,
		Adopt: adopt, Boot: boot, Booter: scriptBooter{script: *nodeScript},
		Recorder: mgr.GetEventRecorder("machineapi-controller"),
	}
	if err := sim.SetupWithManager(mgr); err != nil {
		return err
	}
	ctrl.Log.Info("machinesim running", "adopt", adopt.String(), "boot", boot.String())
	return mgr.Start(ctrl.SetupSignalHandler())
}

// repoRoot: the binary is built from the work tree (up.sh); else the cwd.
func repoRoot() string {
	if d := os.Getenv("MAB_ROOT"); d != "" {
		return d
	}
	wd, _ := os.Getwd()
	return wd
}

// scriptBooter runs hack/cluster/node.sh.
type scriptBooter struct{ script string }

func (b scriptBooter) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.script, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", fmt.Errorf("%s %s: %w: %s", filepath.Base(b.script), strings.Join(args, " "), err, ee.Stderr)
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

func (b scriptBooter) Start(ctx context.Context, slot, name, providerID string, labels map[string]string) error {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ls []string
	for _, k := range keys {
		ls = append(ls, k+"="+labels[k])
	}
	args := []string{"start", slot, "--name", name}
	if providerID != "" {
		args = append(args, "--provider-id", providerID)
	}
	if len(ls) > 0 {
		args = append(args, "--labels", strings.Join(ls, ","))
	}
	_, err := b.run(ctx, args...)
	return err
}

func (b scriptBooter) Stop(ctx context.Context, slot string) error {
	_, err := b.run(ctx, "stop", slot)
	return err
}

func (b scriptBooter) Running(ctx context.Context, slot string) (string, error) {
	return b.run(ctx, "name", slot)
}

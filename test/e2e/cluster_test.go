//go:build e2e

// Package e2e runs the operator against a real local cluster (hack/cluster):
// kube-apiserver, kube-controller-manager, kube-scheduler, Tekton's own
// controller, and two real nodes (containerd + kubelet) labelled
// kubernetes.io/arch=amd64 and arm64, a registry and a git server on this host.
//
//	go test -tags e2e ./test/e2e/ -v -timeout 40m
//
// The cluster is started when it is not up (and stopped again at the end);
// one that is already up is reused and left running. MAB_E2E_KEEP=1 leaves a
// cluster the test started running. The operator is built from the work tree
// and (re)started with the local images as its image flags.
package e2e

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	buildv1alpha1 "github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// env is what hack/cluster/up.sh wrote to ${STATE}/env.
type env struct {
	Kubeconfig   string
	Registry     string // host:port as pods and the host see it (plain HTTP)
	GitBase      string // git://host:port
	GitRoot      string // directory the git daemon serves
	StorageClass string
	BaseImage    string // multi-arch busybox in the registry
	NodeJSImage  string
	MavenImage   string // Debian's maven + JDK + packaged plugins, offline (--maven-image)
	JREImage     string // multi-arch JRE, FROM of the Maven sample's images
}

var (
	// runStart is when this run began: the audit check reads from there.
	runStart time.Time
	cfg      env
	kc       client.Client
	cs       kubernetes.Interface // for pod logs
	// repoRoot is the repository's root (test/e2e/../..).
	repoRoot string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	wd, _ := os.Getwd()
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	state := os.Getenv("MAB_STATE")
	if state == "" {
		state = "/var/tmp/mab-cluster"
	}
	// One e2e run at a time on the shared local cluster: each restarts the
	// operator at its start and stops it at its end, which would pull the
	// operator from under another run.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "mab-e2e.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		logf("lock: %v", err)
		return 1
	}
	defer lock.Close()
	if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		logf("another e2e run holds %s: waiting for it", lock.Name())
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			logf("lock: %v", err)
			return 1
		}
	}
	wasUp := exec.Command(filepath.Join(repoRoot, "hack/cluster/kubectl.sh"), "get", "--raw", "/readyz").Run() == nil
	logf("cluster already up: %v", wasUp)

	// The cluster's processes run in their own sessions: stop what this test
	// started on every way out, including Ctrl-C and shortly before go test's
	// -timeout would kill the binary without running deferred functions.
	var once sync.Once
	cleanup := func() {
		once.Do(func() {
			_ = script("hack/cluster/operator.sh", "stop")
			if !wasUp && os.Getenv("MAB_E2E_KEEP") == "" {
				if err := script("hack/cluster/down.sh"); err != nil {
					logf("hack/cluster/down.sh: %v", err)
				}
			}
		})
	}
	defer cleanup()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		logf("%s: stopping what the test started", s)
		cleanup()
		os.Exit(1)
	}()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, ok := f.Value.(flag.Getter).Get().(time.Duration); ok && d > 3*time.Minute {
			time.AfterFunc(d-90*time.Second, func() {
				logf("-timeout %s is near: stopping what the test started", d)
				cleanup()
				os.Exit(1)
			})
		}
	}

	start := time.Now()
	runStart = start
	if err := script("hack/cluster/up.sh"); err != nil {
		logf("hack/cluster/up.sh: %v", err)
		return 1
	}
	logf("cluster ready in %s", time.Since(start).Round(time.Second))
	if cfg, err = readEnv(filepath.Join(state, "env")); err != nil {
		logf("%v", err)
		return 1
	}
	if err := script("hack/cluster/operator.sh", "restart"); err != nil {
		logf("hack/cluster/operator.sh: %v", err)
		return 1
	}

	restCfg, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		logf("kubeconfig: %v", err)
		return 1
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, buildv1alpha1.AddToScheme, tektonv1.AddToScheme} {
		if err := add(scheme); err != nil {
			logf("scheme: %v", err)
			return 1
		}
	}
	if kc, err = client.New(restCfg, client.Options{Scheme: scheme}); err != nil {
		logf("client: %v", err)
		return 1
	}
	if cs, err = kubernetes.NewForConfig(restCfg); err != nil {
		logf("clientset: %v", err)
		return 1
	}
	// namespaces an earlier run kept (failed or interrupted): their builds
	// would otherwise resume and compete with this run's
	old := &corev1.NamespaceList{}
	if err := kc.List(context.Background(), old, client.MatchingLabels{e2eLabel: "true"}); err == nil {
		for i := range old.Items {
			if old.Items[i].DeletionTimestamp == nil {
				logf("deleting namespace %s of an earlier run", old.Items[i].Name)
				_ = kc.Delete(context.Background(), &old.Items[i])
			}
		}
	}
	code := m.Run()
	if err := checkOperatorAudit(filepath.Join(state, "logs", "audit.log"), runStart); err != nil {
		logf("%v", err)
		if code == 0 {
			code = 1
		}
	}
	if code != 0 {
		logf("operator log: %s/logs/operator.log; cluster logs: %s/logs", state, state)
	}
	return code
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...)
}

// script runs a repository script with its output on the test's stderr.
func script(path string, args ...string) error {
	cmd := exec.Command(filepath.Join(repoRoot, path), args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Dir = repoRoot
	return cmd.Run()
}

func readEnv(path string) (env, error) {
	f, err := os.Open(path)
	if err != nil {
		return env{}, fmt.Errorf("cluster env (written by hack/cluster/up.sh): %w", err)
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok {
			vals[k] = v
		}
	}
	e := env{
		Kubeconfig: vals["KUBECONFIG"], Registry: vals["MAB_REGISTRY"], GitBase: vals["MAB_GIT_BASE"],
		GitRoot: vals["MAB_GIT_ROOT"], StorageClass: vals["MAB_STORAGE_CLASS"],
		BaseImage: vals["MAB_BASE_IMAGE"], NodeJSImage: vals["MAB_NODEJS_IMAGE"],
		MavenImage: vals["MAB_MAVEN_IMAGE"], JREImage: vals["MAB_JRE_IMAGE"],
	}
	for k, v := range map[string]string{"KUBECONFIG": e.Kubeconfig, "MAB_REGISTRY": e.Registry, "MAB_GIT_BASE": e.GitBase,
		"MAB_GIT_ROOT": e.GitRoot, "MAB_BASE_IMAGE": e.BaseImage, "MAB_NODEJS_IMAGE": e.NodeJSImage} {
		if v == "" {
			return env{}, fmt.Errorf("%s: %s is not set", path, k)
		}
	}
	return e, sc.Err()
}

// gitRepo (re)creates the bare repository NAME.git served by the cluster's git
// daemon with files as its single commit on branch main, and returns its URL.
func gitRepo(t *testing.T, name string, files map[string]string) string {
	t.Helper()
	work := t.TempDir()
	for p, content := range files {
		full := filepath.Join(work, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bare := filepath.Join(cfg.GitRoot, name+".git")
	if err := os.RemoveAll(bare); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-C", work, "init", "-q", "-b", "main"},
		{"-C", work, "add", "."},
		{"-C", work, "-c", "user.name=e2e", "-c", "user.email=e2e@localhost", "commit", "-q", "-m", "e2e " + name},
		{"clone", "-q", "--bare", work, bare},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return cfg.GitBase + "/" + name + ".git"
}

// e2eLabel marks the namespaces the tests create.
const e2eLabel = "e2e.multiarch.io/test"

// namespace creates a namespace for one test, deleted when the test passes
// (kept for inspection when it fails, unless MAB_E2E_CLEANUP=always, until
// the next run starts).
func namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{}
	ns.GenerateName = prefix + "-"
	// Pod Security as OpenShift's label syncer sets it for a namespace whose
	// builder ServiceAccount may use the builder SCC (root, SETFCAP): baseline.
	ns.Labels = testenv.PodSecurityLabels(testenv.PodSecurityBaseline)
	ns.Labels[e2eLabel] = "true"
	if err := kc.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("MAB_E2E_CLEANUP") != "always" {
			t.Logf("keeping namespace %s for inspection", ns.Name)
			return
		}
		_ = kc.Delete(context.Background(), ns)
	})
	return ns.Name
}

// Command sidebyside runs the build-controller benchmark of hack/bench against
// this operator and against Shipwright Build v0.17.0's controller, alternating,
// on the same API server setup (envtest: kube-apiserver + etcd from bin/, the
// CRDs of the operator, Tekton and Shipwright installed in every run, no
// Tekton controller), the same load shape (N objects created at once by P
// concurrent clients), the same load generator (one controller-runtime
// client) and the same observer (a metadata-only watch of the runs):
//
//   - ours: N MultiArchBuilds -> N PipelineRuns;
//   - sw-default: Shipwright's controller with its default worker count
//     (BUILD_/BUILDRUN_MAX_CONCURRENT_RECONCILES unset: 1 each), N Builds and
//     N BuildRuns, each client creating a Build and then its BuildRun ->
//     N TaskRuns (-sw-shape=one: N BuildRuns of one Build);
//   - sw-N: the same with BUILD_MAX_CONCURRENT_RECONCILES and
//     BUILDRUN_MAX_CONCURRENT_RECONCILES set to N (-sw-workers).
//
// Every run starts a fresh API server. Each controller runs as its own
// process with the API server's admin credentials (as hack/bench runs the
// manager); its peak RSS is its VmHWM and its CPU its utime+stime. Writes
// are kube-apiserver's own apiserver_request_total, less the load
// generator's creates.
//
//	go run ./hack/bench/sidebyside -builds 500 -parallel 50 -rounds 3
//
// Shipwright's controller is built from the Go module proxy by
// hack/bench/build-shipwright.sh (cached, in its own module).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/hack/bench/procstat"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

const (
	swVersion = "v0.17.0"
	// The strategy of Shipwright's own sample Build
	// (samples/v1beta1/build/build_buildah_shipwright_managed_push_cr.yaml).
	swStrategy     = "buildah-shipwright-managed-push"
	swStrategyFile = "buildstrategy/buildah/buildstrategy_buildah_shipwright_managed_push_cr.yaml"
	// Label of a TaskRun naming its BuildRun (v1beta1.LabelBuildRun).
	swLabelBuildRun = "buildrun.shipwright.io/name"
	// Shipwright's metrics address is fixed (0.0.0.0:8383, cmd/shipwright-build-controller).
	swMetricsAddr = ":8383"
	gitURL        = "https://github.com/nmasse-itix/tekton-pipeline-multiarch.git"
)

var (
	buildGVR    = schema.GroupVersionResource{Group: "shipwright.io", Version: "v1beta1", Resource: "builds"}
	buildRunGVK = schema.GroupVersionKind{Group: "shipwright.io", Version: "v1beta1", Kind: "BuildRun"}
	buildGVK    = schema.GroupVersionKind{Group: "shipwright.io", Version: "v1beta1", Kind: "Build"}
	taskRunsGVR = tektonv1.SchemeGroupVersion.WithResource("taskruns")
	pipeRunsGVR = tektonv1.SchemeGroupVersion.WithResource("pipelineruns")
)

type variant struct {
	name    string
	ours    bool
	workers int // Shipwright: 0 = its default
}

type options struct {
	builds, parallel, rounds int
	swShape                  string
	out                      string
	ref, commit              string
}

func main() {
	var o options
	flag.IntVar(&o.builds, "builds", 500, "objects created at once per run")
	flag.IntVar(&o.parallel, "parallel", 50, "concurrent clients creating them")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each round runs every variant once, alternating")
	swWorkers := flag.Int("sw-workers", 10, "workers of the second Shipwright variant (BUILD_ and BUILDRUN_MAX_CONCURRENT_RECONCILES)")
	flag.StringVar(&o.swShape, "sw-shape", "builds", "Shipwright load: builds (a Build and a BuildRun per object) or one (BuildRuns of one Build)")
	only := flag.String("variants", "", "comma-separated subset of ours,sw-default,sw-<workers> (default: all)")
	flag.StringVar(&o.out, "out", "", "also write the summary (markdown) to this file")
	flag.StringVar(&o.ref, "ref", "HEAD", "git revision of the operator to build (\"\": the work tree as it is)")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	if o.swShape != "builds" && o.swShape != "one" {
		fmt.Fprintln(os.Stderr, "sidebyside: -sw-shape is builds or one")
		os.Exit(2)
	}
	variants := []variant{{name: "ours", ours: true}, {name: "sw-default"}, {name: fmt.Sprintf("sw-%d", *swWorkers), workers: *swWorkers}}
	if *only != "" {
		var keep []variant
		for _, v := range variants {
			for _, n := range strings.Split(*only, ",") {
				if v.name == n {
					keep = append(keep, v)
				}
			}
		}
		variants = keep
	}
	if err := run(o, variants); err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		os.Exit(1)
	}
}

// result is one run of one variant.
type result struct {
	variant                 string
	makespan, p50, p99, max time.Duration
	createdAll, statusLag   time.Duration
	writes                  map[string]float64 // controller writes by "VERB resource"
	generator               map[string]float64 // the load generator's creates
	writesPerObject         float64
	leases                  float64  // lease writes (not in writes)
	lost                    []string // objects failed without a run (name: reason)
	rssMiB, rssWarmMiB      float64
	cpu, cpuTotal           float64 // controller: during the load, since its start
	cpuAPIServer, cpuEtcd   float64
	load                    string
	logFile                 string
}

func run(o options, variants []variant) error {
	tmp, err := os.MkdirTemp("", "mab-sidebyside-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// The manager of a commit (git archive), not of a work tree that other
	// work may be changing between runs.
	manager := filepath.Join(tmp, "manager")
	src := testenv.RepoRoot()
	if o.ref != "" {
		rev, err := exec.Command("git", "-C", src, "rev-parse", "--short", o.ref).Output()
		if err != nil {
			return fmt.Errorf("git rev-parse %s: %w", o.ref, err)
		}
		o.commit = strings.TrimSpace(string(rev))
		src = filepath.Join(tmp, "src")
		if err := os.MkdirAll(src, 0o755); err != nil {
			return err
		}
		archive := exec.Command("sh", "-c", `git -C "$1" archive --format=tar "$2" | tar -x -C "$3"`, "sh", testenv.RepoRoot(), o.ref, src)
		archive.Stderr = os.Stderr
		if err := archive.Run(); err != nil {
			return fmt.Errorf("git archive %s: %w", o.ref, err)
		}
	} else {
		o.commit = "work tree"
	}
	build := exec.Command("go", "build", "-o", manager, ".")
	build.Dir, build.Stdout, build.Stderr = src, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build the manager: %w", err)
	}
	swDir, err := buildShipwright(variants)
	if err != nil {
		return err
	}
	swCRDs, err := readCRDs(filepath.Join(swDir, "deploy", "crds"))
	if err != nil {
		return err
	}
	strategy, err := readObjects(filepath.Join(swDir, swStrategyFile))
	if err != nil {
		return err
	}

	results := map[string][]result{}
	for r := 1; r <= o.rounds; r++ {
		for _, v := range variants {
			fmt.Fprintf(os.Stderr, "sidebyside: round %d/%d, %s\n", r, o.rounds, v.name)
			res, err := runOne(o, v, manager, swDir, swCRDs, strategy, tmp)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r, v.name, err)
			}
			printResult(res, o.builds)
			results[v.name] = append(results[v.name], res)
		}
	}
	summary := summarize(o, variants, results)
	fmt.Print(summary)
	if o.out != "" {
		return os.WriteFile(o.out, []byte(summary), 0o644)
	}
	return nil
}

// buildShipwright runs hack/bench/build-shipwright.sh (a no-op when cached;
// skipped when no variant runs Shipwright, its CRDs are still installed) and
// returns its output directory.
func buildShipwright(variants []variant) (string, error) {
	needed := false
	for _, v := range variants {
		needed = needed || !v.ours
	}
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "bench", "build-shipwright.sh"))
	cmd.Env = append(os.Environ(), "SHIPWRIGHT_VERSION="+swVersion)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if needed {
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("build Shipwright: %w", err)
		}
	}
	cache := os.Getenv("MAB_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "multiarch-build-operator")
	}
	return filepath.Join(cache, "shipwright-"+swVersion), nil
}

func runOne(o options, v variant, manager, swDir string, swCRDs []*apiextensionsv1.CustomResourceDefinition,
	strategy []*unstructured.Unstructured, tmp string) (result, error) {
	ctx := context.Background()
	res := result{variant: v.name}
	n := o.builds

	env, err := testenv.StartE(testenv.Ours, testenv.Tekton)
	if err != nil {
		return res, err
	}
	defer env.Stop()
	crds := make([]*apiextensionsv1.CustomResourceDefinition, 0, len(swCRDs))
	for _, crd := range swCRDs {
		crds = append(crds, crd.DeepCopy()) // installing sets their resourceVersion
	}
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{CRDs: crds}); err != nil {
		return res, fmt.Errorf("install Shipwright's CRDs: %w", err)
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, 0
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	_ = tektonv1.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return res, err
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	if err := setUp(ctx, c, strategy); err != nil {
		return res, err
	}

	// The controller, as its own process.
	kubeconfig := filepath.Join(tmp, "kubeconfig")
	if err := writeKubeconfig(env.Config, kubeconfig); err != nil {
		return res, err
	}
	var cmd *exec.Cmd
	if v.ours {
		cmd = exec.Command(manager, "--kubeconfig="+kubeconfig, "--health-probe-bind-address=0", "--metrics-bind-address=0")
		cmd.Env = os.Environ()
	} else {
		if l, err := net.Listen("tcp", swMetricsAddr); err != nil {
			return res, fmt.Errorf("Shipwright's metrics port %s is taken (fixed in its main.go): %w", swMetricsAddr, err)
		} else {
			l.Close()
		}
		cmd = exec.Command(filepath.Join(swDir, "shipwright-build-controller"))
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "TERMINATION_LOG_PATH="+filepath.Join(tmp, "termination-log"))
		if v.workers > 0 {
			w := strconv.Itoa(v.workers)
			cmd.Env = append(cmd.Env, "BUILD_MAX_CONCURRENT_RECONCILES="+w, "BUILDRUN_MAX_CONCURRENT_RECONCILES="+w)
		}
	}
	logFile, err := os.CreateTemp("", fmt.Sprintf("mab-sidebyside-%s-%d-*.log", v.name, time.Now().Unix()))
	if err != nil {
		return res, err
	}
	defer logFile.Close()
	res.logFile = logFile.Name()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }()
	pid := cmd.Process.Pid

	runsGVR, label := pipeRunsGVR, pipeline.LabelBuild
	if !v.ours {
		runsGVR, label = taskRunsGVR, swLabelBuildRun
	}
	meta := metadata.NewForConfigOrDie(cfg)

	// Warm up: one object in another namespace, so the controller is running
	// (for Shipwright: has won its leader election).
	if v.ours {
		err = c.Create(ctx, newBuild("warmup", "warmup"))
	} else {
		err = createShipwright(ctx, c, "warmup", "warmup", "warmup", true)
	}
	if err != nil {
		return res, err
	}
	if err := waitFor(180*time.Second, func() bool {
		l, err := meta.Resource(runsGVR).Namespace("warmup").List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 1
	}); err != nil {
		return res, fmt.Errorf("the warm-up object got no run (see %s): %w", logFile.Name(), err)
	}
	if !v.ours && o.swShape == "one" {
		if err := createShipwrightBuild(ctx, c, "bench", "app"); err != nil {
			return res, err
		}
		if err := waitFor(60*time.Second, func() bool {
			b := &unstructured.Unstructured{}
			b.SetGroupVersionKind(buildGVK)
			if c.Get(ctx, client.ObjectKey{Namespace: "bench", Name: "app"}, b) != nil {
				return false
			}
			s, _, _ := unstructured.NestedString(b.Object, "status", "registered")
			return s == "True"
		}); err != nil {
			return res, fmt.Errorf("the Build was not registered: %w", err)
		}
	}
	time.Sleep(2 * time.Second)
	before, err := writesByResource(ctx, cs)
	if err != nil {
		return res, err
	}
	res.rssWarmMiB = procstat.StatusMiB(pid, "VmHWM")
	cpuBefore := cpuTimes(pid)

	// Watch the runs appear (re-watching if the server ends the watch).
	seen := map[string]time.Time{}
	allSeen := make(chan struct{})
	var seenMu sync.Mutex
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchRuns := func() (watch.Interface, error) {
		return meta.Resource(runsGVR).Namespace("bench").Watch(watchCtx, metav1.ListOptions{})
	}
	w, err := watchRuns()
	if err != nil {
		return res, err
	}
	go func() {
		for {
			for ev := range w.ResultChan() {
				pr, ok := ev.Object.(*metav1.PartialObjectMetadata)
				if !ok || ev.Type != watch.Added {
					continue
				}
				seenMu.Lock()
				if _, ok := seen[pr.Labels[label]]; !ok {
					seen[pr.Labels[label]] = time.Now()
					if len(seen) == n {
						close(allSeen)
					}
				}
				seenMu.Unlock()
			}
			if watchCtx.Err() != nil {
				return
			}
			fmt.Fprintln(os.Stderr, "sidebyside: the watch ended; watching again")
			for {
				if w, err = watchRuns(); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()

	created := make([]time.Time, n)
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.parallel)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			name := fmt.Sprintf("b%04d", i)
			created[i] = time.Now()
			var err error
			switch {
			case v.ours:
				err = c.Create(ctx, newBuild("bench", name))
			case o.swShape == "one":
				err = createShipwright(ctx, c, "bench", "app", name, false)
			default:
				err = createShipwright(ctx, c, "bench", name, name, true)
			}
			if err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	res.createdAll = time.Since(start)
	close(errs)
	for err := range errs {
		return res, fmt.Errorf("create: %w", err)
	}
	// Until every object has its run, or has failed without one (Shipwright
	// fails a BuildRun whose Build its cache does not hold yet: BuildNotFound).
	timeout := time.After(5 * time.Minute)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-allSeen:
			break wait
		case <-tick.C:
			if v.ours {
				continue
			}
			failed := failedWithoutRun(ctx, c)
			seenMu.Lock()
			done := len(seen)+len(failed) >= n
			seenMu.Unlock()
			if done {
				res.lost = failed
				break wait
			}
		case <-timeout:
			seenMu.Lock()
			defer seenMu.Unlock()
			return res, fmt.Errorf("only %d of %d runs seen after 5 minutes; controller log %s", len(seen), n, logFile.Name())
		}
	}
	stopWatch()
	seenMu.Lock()
	for _, t := range seen {
		if d := t.Sub(start); d > res.makespan {
			res.makespan = d
		}
	}
	seenMu.Unlock()

	// Every object's status records its run (ours: status.latestRun;
	// Shipwright: status.executor, its last write before the TaskRun runs)
	// or its failure.
	statusDone := time.Now()
	if err := waitFor(5*time.Minute, func() bool { return allRecorded(ctx, c, v.ours, n) }); err != nil {
		return res, fmt.Errorf("statuses: %w (log %s)", err, logFile.Name())
	}
	res.statusLag = time.Since(statusDone)
	time.Sleep(3 * time.Second) // anything that follows would be a write with nothing to do
	after, err := writesByResource(ctx, cs)
	if err != nil {
		return res, err
	}
	cpuAfter := cpuTimes(pid)
	res.rssMiB = procstat.StatusMiB(pid, "VmHWM")
	res.cpu = cpuAfter["controller"] - cpuBefore["controller"]
	res.cpuTotal = cpuAfter["controller"]
	res.cpuAPIServer = cpuAfter["kube-apiserver"] - cpuBefore["kube-apiserver"]
	res.cpuEtcd = cpuAfter["etcd"] - cpuBefore["etcd"]
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.load = strings.TrimSpace(string(l))
	}

	res.writes, res.generator = map[string]float64{}, map[string]float64{}
	var sum float64
	for k, a := range after {
		if strings.HasPrefix(k, "seconds ") {
			continue
		}
		d := a - before[k]
		if d == 0 {
			continue
		}
		if isGenerator(k) {
			res.generator[k] = d
			continue
		}
		if strings.HasSuffix(k, " leases") {
			// kube-apiserver's own heartbeat and Shipwright's leader
			// election: per second, not per object.
			res.leases += d
			continue
		}
		res.writes[k] = d
		sum += d
	}
	res.writesPerObject = sum / float64(n)

	// Latencies of the objects that got a run.
	lat := make([]time.Duration, 0, n)
	seenMu.Lock()
	for i := 0; i < n; i++ {
		if t, ok := seen[fmt.Sprintf("b%04d", i)]; ok {
			lat = append(lat, t.Sub(created[i]))
		}
	}
	seenMu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	m := len(lat)
	res.p50, res.p99, res.max = lat[int(float64(m-1)*0.50)], lat[int(float64(m-1)*0.99)], lat[m-1]
	return res, nil
}

// failedWithoutRun lists the BuildRuns that failed (Succeeded=False) before
// getting a TaskRun, as "name: reason".
func failedWithoutRun(ctx context.Context, c client.Client) []string {
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(buildRunGVK.GroupVersion().WithKind("BuildRunList"))
	if c.List(ctx, l, client.InNamespace("bench")) != nil {
		return nil
	}
	var out []string
	for _, br := range l.Items {
		if name, _, _ := unstructured.NestedString(br.Object, "status", "executor", "name"); name != "" {
			continue
		}
		conds, _, _ := unstructured.NestedSlice(br.Object, "status", "conditions")
		for _, c := range conds {
			cm, _ := c.(map[string]any)
			if cm["type"] == "Succeeded" && cm["status"] == "False" {
				out = append(out, fmt.Sprintf("%s: %v", br.GetName(), cm["reason"]))
			}
		}
	}
	return out
}

// isGenerator tells the load generator's creates from the controllers' writes.
func isGenerator(key string) bool {
	switch key {
	case "POST multiarchbuilds", "POST builds", "POST buildruns":
		return true
	}
	return false
}

// setUp creates what both controllers find in a cluster: the namespaces
// with their default ServiceAccount (no controller-manager here creates it;
// Shipwright runs its TaskRuns as it), the StorageClass and one Ready node
// per architecture the operator asks for, and Shipwright's sample buildah
// ClusterBuildStrategy.
func setUp(ctx context.Context, c client.Client, strategy []*unstructured.Unstructured) error {
	for _, ns := range []string{"bench", "warmup"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
		if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}); err != nil {
			return err
		}
	}
	if err := c.Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "efs-csi"}, Provisioner: "efs.csi.aws.com",
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)}); err != nil {
		return err
	}
	for _, arch := range []string{"amd64", "arm64"} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-" + arch,
			Labels: map[string]string{"kubernetes.io/arch": arch, "kubernetes.io/os": "linux"}}}
		if err := c.Create(ctx, node); err != nil {
			return err
		}
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
		if err := c.Status().Update(ctx, node); err != nil {
			return err
		}
		// Admission adds node.kubernetes.io/not-ready; no node controller here lifts it.
		node.Spec.Taints = nil
		if err := c.Update(ctx, node); err != nil {
			return err
		}
	}
	for _, o := range strategy {
		if err := c.Create(ctx, o.DeepCopy()); err != nil {
			return fmt.Errorf("create %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

func newBuild(ns, name string) *v1alpha1.MultiArchBuild {
	return &v1alpha1.MultiArchBuild{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.MultiArchBuildSpec{
			Source: v1alpha1.SourceSpec{Git: v1alpha1.GitSource{URL: gitURL}},
			Output: v1alpha1.OutputSpec{Image: "quay.io/bench/" + name},
		},
	}
}

// createShipwrightBuild creates a Build like Shipwright's buildah sample, with
// the source and output of the operator's benchmark builds.
func createShipwrightBuild(ctx context.Context, c client.Client, ns, name string) error {
	b := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"source":      map[string]any{"type": "Git", "git": map[string]any{"url": gitURL}},
			"strategy":    map[string]any{"name": swStrategy, "kind": "ClusterBuildStrategy"},
			"paramValues": []any{map[string]any{"name": "dockerfile", "value": "Dockerfile"}},
			"output":      map[string]any{"image": "quay.io/bench/" + name},
		},
	}}
	b.SetGroupVersionKind(buildGVK)
	return c.Create(ctx, b)
}

// createShipwright creates what a user creates to run a build: the Build
// (when withBuild) and then a BuildRun of it.
func createShipwright(ctx context.Context, c client.Client, ns, build, run string, withBuild bool) error {
	if withBuild {
		if err := createShipwrightBuild(ctx, c, ns, build); err != nil {
			return err
		}
	}
	br := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": run, "namespace": ns},
		"spec":     map[string]any{"build": map[string]any{"name": build}},
	}}
	br.SetGroupVersionKind(buildRunGVK)
	return c.Create(ctx, br)
}

func allRecorded(ctx context.Context, c client.Client, ours bool, n int) bool {
	if ours {
		var l v1alpha1.MultiArchBuildList
		if c.List(ctx, &l, client.InNamespace("bench")) != nil {
			return false
		}
		for _, b := range l.Items {
			if b.Status.LatestRun == nil {
				return false
			}
		}
		return len(l.Items) == n
	}
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(buildRunGVK.GroupVersion().WithKind("BuildRunList"))
	if c.List(ctx, l, client.InNamespace("bench")) != nil {
		return false
	}
	return len(l.Items) == n && allSettled(l.Items)
}

// allSettled: every BuildRun has its run or has failed.
func allSettled(items []unstructured.Unstructured) bool {
	for _, br := range items {
		if name, _, _ := unstructured.NestedString(br.Object, "status", "executor", "name"); name != "" {
			continue
		}
		failed := false
		conds, _, _ := unstructured.NestedSlice(br.Object, "status", "conditions")
		for _, c := range conds {
			if cm, _ := c.(map[string]any); cm["type"] == "Succeeded" && cm["status"] == "False" {
				failed = true
			}
		}
		if !failed {
			return false
		}
	}
	return true
}

func waitFor(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %s", d)
}

// readCRDs reads every CRD of the YAML files in dir, without their
// conversion webhook (none runs here; only v1beta1 is used).
func readCRDs(dir string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no CRDs in %s (%v)", dir, err)
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		objs, err := readObjects(f)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if o.GetKind() != "CustomResourceDefinition" {
				continue
			}
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, crd); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			crd.Spec.Conversion = nil
			out = append(out, crd)
		}
	}
	return out, nil
}

func readObjects(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		o := &unstructured.Unstructured{}
		if err := dec.Decode(&o.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		if len(o.Object) > 0 {
			out = append(out, o)
		}
	}
	return out, nil
}

// writesByResource reads kube-apiserver's request counter for every verb
// that writes, keyed "VERB resource[/subresource]" (as hack/bench).
func writesByResource(ctx context.Context, cs *kubernetes.Clientset) (map[string]float64, error) {
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("scrape kube-apiserver metrics: %w", err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		line := sc.Text()
		metric := ""
		switch {
		case strings.HasPrefix(line, "apiserver_request_total{"):
			metric = "count"
		case strings.HasPrefix(line, "apiserver_request_duration_seconds_sum{"):
			metric = "seconds"
		default:
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(line[strings.Index(line, "{")+1:strings.LastIndex(line, "}")], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		switch labels["verb"] {
		case "POST", "PUT", "PATCH", "DELETE", "APPLY":
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(line[strings.LastIndex(line, "}")+1:]), 64)
		if err != nil {
			continue
		}
		key := labels["verb"] + " " + labels["resource"]
		if s := labels["subresource"]; s != "" {
			key += "/" + s
		}
		if metric == "seconds" {
			key = "seconds " + key
		}
		out[key] += v
	}
	return out, sc.Err()
}

// cpuTimes reads the CPU seconds of the controller and of this process's
// own kube-apiserver and etcd (its children: other work on the machine may
// run its own).
func cpuTimes(pid int) map[string]float64 {
	out := map[string]float64{"controller": procCPU(pid)}
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
		switch name := strings.TrimSpace(string(comm)); name {
		case "kube-apiserver", "etcd":
			if procstat.PPID(p) == self {
				out[name] += procCPU(p)
			}
		}
	}
	return out
}

func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*kc, path)
}

// procCPU is pid's CPU seconds, 0 when it cannot be read.
func procCPU(pid int) float64 {
	v, _ := procstat.CPU(pid)
	return v
}

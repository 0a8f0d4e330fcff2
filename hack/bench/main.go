// Command bench measures the MultiArchBuild controller on a local control
// plane (envtest: a real kube-apiserver and etcd, Tekton's CRDs, no Tekton
// controller): N MultiArchBuilds created at once, the time until every
// PipelineRun exists (p50, p99, total), the API writes per build before its
// run starts (from kube-apiserver's own apiserver_request_total), and the
// manager's peak RSS (VmHWM of the manager, run as its own process).
//
//	go run ./hack/bench -builds 500
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/hack/bench/procstat"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

func main() {
	builds := flag.Int("builds", 500, "MultiArchBuilds created at once (-capacity: the largest stage; stages are 0, builds/10 and builds)")
	parallel := flag.Int("parallel", 50, "concurrent creates")
	managerArgs := flag.String("manager-args", "", "extra arguments for the manager")
	managerEnv := flag.String("manager-env", "", "extra environment of the manager, e.g. GOGC=50")
	capacityMode := flag.Bool("capacity", false, "benchmark the capacity controller instead (capacity.go): scale-up latency, writes of reconciles with nothing to do, memory with 0, builds/10 and builds builds")
	namespaces := flag.Int("namespaces", 100, "-capacity: namespaces the builds are spread over")
	reps := flag.Int("reps", 1, "-capacity: repetitions, each on a fresh API server")
	flag.Parse()
	// The benchmark's own controller-runtime clients log nothing.
	ctrllog.SetLogger(logr.Discard())
	var err error
	if *capacityMode {
		err = runCapacity(capacityOptions{builds: *builds, namespaces: *namespaces, parallel: *parallel, reps: *reps,
			extra: strings.Fields(*managerArgs), extraEnv: strings.Fields(*managerEnv)})
	} else {
		err = run(*builds, *parallel, strings.Fields(*managerArgs), strings.Fields(*managerEnv))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(n, parallel int, extra, extraEnv []string) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "mab-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	manager, err := buildManager(tmp)
	if err != nil {
		return err
	}

	env, err := testenv.StartE(testenv.Ours, testenv.Tekton)
	if err != nil {
		return err
	}
	defer env.Stop()
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, 0
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	_ = tektonv1.AddToScheme(scheme)
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	cs := kubernetes.NewForConfigOrDie(cfg)

	for _, ns := range []string{"bench", "warmup"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	if err := c.Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "efs-csi"}, Provisioner: "efs.csi.aws.com",
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)}); err != nil {
		return err
	}

	// One Ready node per architecture, so that capacity is there.
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

	mgr, logFile, err := startManager(manager, tmp, env.Config, append([]string{"--metrics-bind-address=0"}, extra...), extraEnv)
	if err != nil {
		return err
	}
	defer stopManager(mgr)

	// Warm up: one build in another namespace, so the manager is running.
	if err := c.Create(ctx, newBuild("warmup", "warmup")); err != nil {
		return err
	}
	if err := waitFor(120*time.Second, func() bool {
		var l tektonv1.PipelineRunList
		return c.List(ctx, &l, client.InNamespace("warmup")) == nil && len(l.Items) == 1
	}); err != nil {
		b := &v1alpha1.MultiArchBuild{}
		_ = c.Get(ctx, client.ObjectKey{Namespace: "warmup", Name: "warmup"}, b)
		return fmt.Errorf("warm-up build got no run (see %s; status %+v): %w", logFile.Name(), b.Status, err)
	}
	time.Sleep(2 * time.Second)
	before, err := writesByResource(ctx, cs)
	if err != nil {
		return err
	}
	rssBefore := vmHWM(mgr.Process.Pid)
	cpuBefore := cpuTimes(mgr.Process.Pid)

	// Watch the runs appear (re-watching if the server ends the watch).
	seen := map[string]time.Time{}
	allSeen := make(chan struct{})
	var seenMu sync.Mutex
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	// Metadata only: the observer should not make the API server encode,
	// and itself decode, 500 full PipelineRuns on the same 2 cores.
	meta := metadata.NewForConfigOrDie(cfg)
	runsGVR := tektonv1.SchemeGroupVersion.WithResource("pipelineruns")
	watchRuns := func() (watch.Interface, error) {
		return meta.Resource(runsGVR).Namespace("bench").Watch(watchCtx, metav1.ListOptions{})
	}
	w, err := watchRuns()
	if err != nil {
		return err
	}
	go func() {
		for {
			for ev := range w.ResultChan() {
				pr, ok := ev.Object.(*metav1.PartialObjectMetadata)
				if !ok || ev.Type != watch.Added {
					continue
				}
				seenMu.Lock()
				if _, ok := seen[pr.Labels[pipeline.LabelBuild]]; !ok {
					seen[pr.Labels[pipeline.LabelBuild]] = time.Now()
					if len(seen) == n {
						close(allSeen)
					}
				}
				seenMu.Unlock()
			}
			if watchCtx.Err() != nil {
				return
			}
			fmt.Fprintln(os.Stderr, "bench: the PipelineRun watch ended; watching again")
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
	sem := make(chan struct{}, parallel)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			created[i] = time.Now()
			if err := c.Create(ctx, newBuild("bench", fmt.Sprintf("b%04d", i))); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	createdAll := time.Since(start)
	close(errs)
	for err := range errs {
		return fmt.Errorf("create: %w", err)
	}
	select {
	case <-allSeen:
	case <-time.After(5 * time.Minute):
		var runs tektonv1.PipelineRunList
		_ = c.List(ctx, &runs, client.InNamespace("bench"))
		var l v1alpha1.MultiArchBuildList
		_ = c.List(ctx, &l, client.InNamespace("bench"))
		phases := map[string]int{}
		for _, b := range l.Items {
			key := string(b.Status.Phase)
			for _, c := range b.Status.Conditions {
				if c.Status != metav1.ConditionTrue {
					key += " " + c.Type + "=" + c.Reason
				}
			}
			phases[key]++
		}
		seenMu.Lock()
		defer seenMu.Unlock()
		return fmt.Errorf("only %d of %d PipelineRuns seen after 5 minutes (%d exist); builds by status: %v; manager log %s",
			len(seen), n, len(runs.Items), phases, logFile.Name())
	}
	total := time.Since(start)
	stopWatch()

	// Every build's status records its run: the third write.
	statusDone := time.Now()
	if err := waitFor(5*time.Minute, func() bool {
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
	}); err != nil {
		return err
	}
	statusLag := time.Since(statusDone)
	time.Sleep(3 * time.Second) // anything that follows would be a write with nothing to do
	after, err := writesByResource(ctx, cs)
	if err != nil {
		return err
	}

	lat := make([]time.Duration, 0, n)
	seenMu.Lock()
	for i := 0; i < n; i++ {
		lat = append(lat, seen[fmt.Sprintf("b%04d", i)].Sub(created[i]))
	}
	seenMu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[int(float64(len(lat)-1)*p)] }

	fmt.Printf("builds: %d (created by %d concurrent clients in %s)\n", n, parallel, createdAll.Round(time.Millisecond))
	fmt.Printf("time until every PipelineRun exists: %s\n", total.Round(time.Millisecond))
	fmt.Printf("per build, create -> PipelineRun: p50 %s  p99 %s  max %s\n", pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	fmt.Printf("every status recorded its run %s after the last run appeared\n", statusLag.Round(time.Millisecond))
	fmt.Println("API writes by the manager during the load (kube-apiserver apiserver_request_total delta):")
	var sum float64
	keys := make([]string, 0, len(after))
	for k := range after {
		if !strings.HasPrefix(k, "seconds ") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		d := after[k] - before[k]
		if d == 0 {
			continue
		}
		if strings.HasSuffix(k, " multiarchbuilds") && strings.HasPrefix(k, "POST") {
			secs := after["seconds "+k] - before["seconds "+k]
			fmt.Printf("  (the benchmark's own %s: %.0f, mean latency %s)\n", k, d, time.Duration(secs/d*float64(time.Second)).Round(100*time.Microsecond))
			continue
		}
		sum += d
		secs := after["seconds "+k] - before["seconds "+k]
		fmt.Printf("  %-45s %6.0f  (%.2f per build)  mean latency %s\n", k, d, d/float64(n), time.Duration(secs/d*float64(time.Second)).Round(100*time.Microsecond))
	}
	fmt.Printf("  total: %.0f writes, %.2f per build\n", sum, sum/float64(n))
	fmt.Printf("manager peak RSS (VmHWM): %s (after warm-up: %s); now %s\n", vmHWM(mgr.Process.Pid), rssBefore, rssSplit(mgr.Process.Pid))
	fmt.Println("CPU seconds during the load (user+system):")
	cpuAfter := cpuTimes(mgr.Process.Pid)
	for _, k := range []string{"manager", "kube-apiserver", "etcd"} {
		fmt.Printf("  %-15s %.2f\n", k, cpuAfter[k]-cpuBefore[k])
	}
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("load average (2 cores, shared): %s", l)
	}
	return nil
}

// buildManager compiles the manager (main.go, the operator's real setup)
// into dir.
func buildManager(dir string) (string, error) {
	manager := filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", manager, ".")
	build.Dir, build.Stdout, build.Stderr = testenv.RepoRoot(), os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build the manager: %w", err)
	}
	return manager, nil
}

// startManager runs the manager as its own process (so that its memory is
// its own) against cfg's API server, logging to a file under TMPDIR.
func startManager(manager, dir string, cfg *rest.Config, args, extraEnv []string) (*exec.Cmd, *os.File, error) {
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(cfg, kubeconfig); err != nil {
		return nil, nil, err
	}
	args = append([]string{"--kubeconfig=" + kubeconfig, "--health-probe-bind-address=0"}, args...)
	mgr := exec.Command(manager, args...)
	logFile, err := os.CreateTemp("", fmt.Sprintf("mab-bench-manager-%d-*.log", time.Now().Unix()))
	if err != nil {
		return nil, nil, err
	}
	mgr.Stdout, mgr.Stderr = logFile, logFile
	mgr.Env = append(os.Environ(), extraEnv...)
	if err := mgr.Start(); err != nil {
		return nil, nil, err
	}
	return mgr, logFile, nil
}

func stopManager(mgr *exec.Cmd) { _ = mgr.Process.Kill(); _, _ = mgr.Process.Wait() }

func newBuild(ns, name string) *v1alpha1.MultiArchBuild {
	return &v1alpha1.MultiArchBuild{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.MultiArchBuildSpec{
			Source: v1alpha1.SourceSpec{Git: v1alpha1.GitSource{URL: "https://github.com/nmasse-itix/tekton-pipeline-multiarch.git"}},
			Output: v1alpha1.OutputSpec{Image: "quay.io/bench/" + name},
		},
	}
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

// writesByResource reads kube-apiserver's request counter for every verb
// that writes, keyed "VERB resource[/subresource]".
func writesByResource(ctx context.Context, cs *kubernetes.Clientset) (map[string]float64, error) {
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("scrape kube-apiserver metrics: %w", err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
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
		labels := parseLabels(line[strings.Index(line, "{")+1 : strings.LastIndex(line, "}")])
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

func parseLabels(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			m[k] = strings.Trim(v, `"`)
		}
	}
	return m
}

// rssSplit shows the resident anonymous memory (heap, stacks) apart from the
// resident file pages (the binary's text).
func rssSplit(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown"
	}
	var parts []string
	for _, l := range strings.Split(string(data), "\n") {
		for _, k := range []string{"RssAnon:", "RssFile:"} {
			if strings.HasPrefix(l, k) {
				kb, _ := strconv.Atoi(strings.Fields(l)[1])
				parts = append(parts, fmt.Sprintf("%s %.1f MiB", strings.TrimSuffix(k, ":"), float64(kb)/1024))
			}
		}
	}
	return strings.Join(parts, ", ")
}

func vmHWM(pid int) string {
	if v := procstat.StatusMiB(pid, "VmHWM"); v >= 0 {
		return fmt.Sprintf("%.1f MiB", v)
	}
	return "unknown"
}

// cpuTimes reads the CPU seconds of the manager and of the control plane
// processes (found by name under /proc).
func cpuTimes(managerPid int) map[string]float64 {
	out := map[string]float64{"manager": procCPU(managerPid)}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		switch name := strings.TrimSpace(string(comm)); name {
		case "kube-apiserver", "etcd":
			out[name] += procCPU(pid)
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

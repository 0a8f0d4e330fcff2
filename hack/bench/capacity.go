package main

// The -capacity mode measures the capacity controller (controllers/capacity)
// inside the real manager (main.go's setup, its own process, cluster admin as
// the build benchmark runs it) on a kube-apiserver that serves OpenShift's
// MachineSet, Machine, Infrastructure and ClusterVersion CRDs and holds what an
// OpenShift cluster on AWS eu-west-3 has before the operator acts
// (controllers/capacity/controller_test.go's fixture): Infrastructure/cluster,
// the coreos-bootimages ConfigMap, the installer's worker MachineSet, an amd64
// control plane node and an amd64 worker node. Tekton's CRDs and the efs-csi
// StorageClass are there too, so that builds pass their preflight and need
// capacity. Per repetition, on a fresh API server:
//
//   - scale-up decision: one Managed linux/amd64+linux/arm64 build is created;
//     the time from its create until the arm64 MachineSet exists and until it
//     has replicas >= 1 (seen by a watch);
//   - memory: the manager's VmHWM, VmRSS and Go heap (go_memstats_* from its
//     metrics endpoint, sampled every 0.5 s for the peak) with 0, builds/10
//     and builds MultiArchBuilds needing arm64, spread over -namespaces;
//   - writes of reconciles with nothing to do: with every build steady, first
//     with the MachineSet scaled but no arm64 node, then with a Ready arm64
//     node (every build has its run), the benchmark touches every build's
//     labels, sends node heartbeats, relabels nodes, updates the MachineSets'
//     status as the machine controller does, annotates the worker MachineSet,
//     the boot images and Infrastructure; the manager's writes are counted by
//     its own client (rest_client_requests_total, every client of the process)
//     and, per resource, by kube-apiserver (apiserver_request_total minus the
//     benchmark's own writes, which it counts on its side), together with the
//     capacity reconciles the window caused.
//
//	go run ./hack/bench -capacity -builds 1000 -namespaces 100 -reps 3

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	configv1 "github.com/openshift/api/config/v1"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/hack/bench/procstat"
	plan "github.com/multiarch-build/multiarch-build-operator/internal/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

const (
	capMachineNS = "openshift-machine-api"
	capInfraName = "build-multiarch-tw9w9"
	// capController is the capacity controller's name (Named in
	// controllers/capacity), the label of its controller-runtime metrics.
	capController   = "capacity"
	buildController = "multiarchbuild"
)

type capacityOptions struct {
	builds, namespaces, parallel, reps int
	extra, extraEnv                    []string
}

// memSample is the manager's memory with a number of builds, once steady.
type memSample struct {
	builds                                        int
	hwm, rss, heapInuse, heapAlloc, heapInusePeak float64 // MiB
}

// noopWindow is what a burst of changes that need no write caused.
type noopWindow struct {
	label                          string
	capReconciles, buildReconciles float64
	managerWrites                  map[string]float64 // HTTP method -> count, the manager's own client
	serverWrites                   map[string]float64 // "VERB resource" -> count, kube-apiserver minus the benchmark
	benchWrites                    float64
	apiserverLeases                float64 // kube-apiserver's own lease renewals
}

type capResult struct {
	created, scaled time.Duration
	mem             []memSample
	windows         []noopWindow
	log             string
	namespaces      int
}

func runCapacity(o capacityOptions) error {
	if o.builds < 10 || o.namespaces < 1 || o.reps < 1 {
		return fmt.Errorf("-capacity wants -builds >= 10, -namespaces >= 1, -reps >= 1")
	}
	tmp, err := os.MkdirTemp("", "mab-bench-capacity-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	manager, err := buildManager(tmp)
	if err != nil {
		return err
	}
	var results []capResult
	for rep := 1; rep <= o.reps; rep++ {
		fmt.Printf("== repetition %d of %d\n", rep, o.reps)
		r, err := capacityRep(o, manager, tmp)
		if err != nil {
			return fmt.Errorf("repetition %d: %w", rep, err)
		}
		r.print()
		results = append(results, r)
	}
	summarize(results)
	return nil
}

func capacityRep(o capacityOptions, manager, tmp string) (capResult, error) {
	ctx := context.Background()
	res := capResult{namespaces: o.namespaces}
	env, err := testenv.StartE(testenv.Ours, testenv.Tekton, testenv.OpenShiftMachine, testenv.OpenShiftConfig)
	if err != nil {
		return res, err
	}
	defer env.Stop()

	// The benchmark's client counts its own writes, to tell them from the
	// manager's in kube-apiserver's counter.
	own := &writeCounter{}
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, 0
	cfg.WrapTransport = own.wrap
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	_ = tektonv1.AddToScheme(scheme)
	_ = machinev1beta1.Install(scheme)
	_ = configv1.Install(scheme)
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return res, err
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	if err := capFixture(ctx, c); err != nil {
		return res, fmt.Errorf("fixture: %w", err)
	}

	port, err := freePort()
	if err != nil {
		return res, err
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	args := append([]string{fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port), "--metrics-secure=false"}, o.extra...)
	mgr, logFile, err := startManager(manager, tmp, env.Config, args, o.extraEnv)
	if err != nil {
		return res, err
	}
	defer stopManager(mgr)
	res.log = logFile.Name()
	pid := mgr.Process.Pid
	fail := func(err error) (capResult, error) { return res, fmt.Errorf("%w (manager log %s)", err, logFile.Name()) }

	// The informers' initial lists (the worker MachineSet, the boot images,
	// Infrastructure) enqueue every architecture: a capacity reconcile
	// means the caches are synced and the controller runs.
	if err := waitFor(2*time.Minute, func() bool {
		m, err := scrapeManager(metricsURL)
		return err == nil && m.reconciles[capController] >= 1
	}); err != nil {
		return fail(fmt.Errorf("no capacity reconcile after start: %w", err))
	}
	if _, err := waitQuiet(metricsURL, 3*time.Second, time.Minute); err != nil {
		return fail(err)
	}
	sampler := startHeapSampler(metricsURL)
	res.mem = append(res.mem, memNow(pid, metricsURL, 0, sampler.peak()))

	// (a) scale-up decision: one build, the arm64 MachineSet created, scaled.
	w, err := c.Watch(ctx, &machinev1beta1.MachineSetList{}, client.InNamespace(capMachineNS))
	if err != nil {
		return fail(err)
	}
	nsOf := func(i int) string { return fmt.Sprintf("cap-%03d", i%o.namespaces) }
	for i := 0; i < o.namespaces; i++ {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsOf(i)}}); err != nil {
			return fail(err)
		}
	}
	start := time.Now()
	if err := c.Create(ctx, capBuild(nsOf(0), "b0000")); err != nil {
		return fail(err)
	}
	deadline := time.After(time.Minute)
watching:
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fail(fmt.Errorf("the MachineSet watch ended"))
			}
			ms, isMS := ev.Object.(*machinev1beta1.MachineSet)
			if !isMS || ev.Type == watch.Deleted || !plan.IsManaged(ms) || ms.Labels[plan.LabelArch] != "arm64" {
				continue
			}
			if res.created == 0 {
				res.created = time.Since(start)
			}
			if ptr.Deref(ms.Spec.Replicas, 0) >= 1 {
				res.scaled = time.Since(start)
				break watching
			}
		case <-deadline:
			w.Stop()
			return fail(fmt.Errorf("no arm64 MachineSet at >= 1 replica a minute after the build's create (created after %s)", res.created))
		}
	}
	w.Stop()

	// (c) memory with builds/10 and builds builds.
	made := 1
	for _, stage := range []int{o.builds / 10, o.builds} {
		if err := createBuilds(ctx, c, made, stage, o.parallel, nsOf); err != nil {
			return fail(err)
		}
		made = stage
		if err := waitFor(5*time.Minute, func() bool { return allBuilds(ctx, c, stage, capacityObserved) }); err != nil {
			return fail(fmt.Errorf("%d builds: not every build reported CapacityReady: %w", stage, err))
		}
		if _, err := waitQuiet(metricsURL, 3*time.Second, 5*time.Minute); err != nil {
			return fail(fmt.Errorf("%d builds: %w", stage, err))
		}
		res.mem = append(res.mem, memNow(pid, metricsURL, stage, sampler.peak()))
	}
	sampler.stop()

	// (b) writes of reconciles that change nothing: no arm64 node yet.
	win, err := quietWindow(ctx, c, cs, own, metricsURL, fmt.Sprintf("%d builds, arm64 MachineSet at 1, no arm64 node", o.builds), o.parallel, 0)
	if err != nil {
		return fail(err)
	}
	res.windows = append(res.windows, win)

	// The machine came up: a Ready arm64 node; every build gets its run.
	if err := createNode(ctx, c, "ip-10-0-2-30", "arm64", false); err != nil {
		return fail(err)
	}
	if err := waitFor(10*time.Minute, func() bool { return allBuilds(ctx, c, o.builds, hasRun) }); err != nil {
		return fail(fmt.Errorf("with an arm64 node, not every build got its run: %w", err))
	}
	if _, err := waitQuiet(metricsURL, 3*time.Second, 5*time.Minute); err != nil {
		return fail(fmt.Errorf("with an arm64 node: %w", err))
	}
	win, err = quietWindow(ctx, c, cs, own, metricsURL, fmt.Sprintf("%d builds running, arm64 MachineSet at 1, arm64 node Ready", o.builds), o.parallel, 1)
	if err != nil {
		return fail(err)
	}
	res.windows = append(res.windows, win)
	return res, nil
}

// capFixture creates what an OpenShift 4.21 cluster on AWS eu-west-3 has
// before the operator acts, as controllers/capacity/controller_test.go does.
func capFixture(ctx context.Context, c client.Client) error {
	for _, ns := range []string{capMachineNS, plan.BootImagesNamespace} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	testdata := filepath.Join(testenv.RepoRoot(), "controllers", "testdata", "capacity")
	stream, err := os.ReadFile(filepath.Join(testdata, "stream.json"))
	if err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: plan.BootImagesNamespace, Name: plan.BootImagesConfigMap},
		Data:       map[string]string{plan.BootImagesKey: string(stream)},
	}); err != nil {
		return err
	}
	infra := &configv1.Infrastructure{ObjectMeta: metav1.ObjectMeta{Name: "cluster"},
		Spec: configv1.InfrastructureSpec{PlatformSpec: configv1.PlatformSpec{Type: configv1.AWSPlatformType}}}
	if err := c.Create(ctx, infra); err != nil {
		return err
	}
	infra.Status = configv1.InfrastructureStatus{
		InfrastructureName:     capInfraName,
		Platform:               configv1.AWSPlatformType,
		PlatformStatus:         &configv1.PlatformStatus{Type: configv1.AWSPlatformType, AWS: &configv1.AWSPlatformStatus{Region: "eu-west-3"}},
		APIServerURL:           "https://api.build-multiarch.example.com:6443",
		APIServerInternalURL:   "https://api-int.build-multiarch.example.com:6443",
		ControlPlaneTopology:   configv1.SingleReplicaTopologyMode,
		InfrastructureTopology: configv1.SingleReplicaTopologyMode,
	}
	if err := c.Status().Update(ctx, infra); err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(testdata, "worker-machineset.yaml"))
	if err != nil {
		return err
	}
	worker := &machinev1beta1.MachineSet{}
	if err := yaml.Unmarshal(raw, worker); err != nil {
		return err
	}
	if err := c.Create(ctx, worker); err != nil {
		return err
	}
	if err := c.Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "efs-csi"}, Provisioner: "efs.csi.aws.com",
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)}); err != nil {
		return err
	}
	if err := createNode(ctx, c, "ip-10-0-0-10", "amd64", true); err != nil {
		return err
	}
	return createNode(ctx, c, "ip-10-0-1-20", "amd64", false)
}

// createNode creates a Ready worker (or tainted control plane) node of arch.
func createNode(ctx context.Context, c client.Client, name, arch string, master bool) error {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		plan.LabelArchNode: arch, "kubernetes.io/os": "linux", plan.LabelNodeRoleWorker: ""}}}
	if master {
		n.Labels[plan.LabelNodeRoleMaster] = ""
		n.Spec.Taints = []corev1.Taint{{Key: "node-role.kubernetes.io/master", Effect: corev1.TaintEffectNoSchedule}}
	}
	if err := c.Create(ctx, n); err != nil {
		return err
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
	if err := c.Status().Update(ctx, n); err != nil {
		return err
	}
	// Admission tainted the node not-ready; no node lifecycle controller here lifts it.
	var taints []corev1.Taint
	for _, t := range n.Spec.Taints {
		if t.Key != corev1.TaintNodeNotReady {
			taints = append(taints, t)
		}
	}
	n.Spec.Taints = taints
	return c.Update(ctx, n)
}

// capBuild is a Managed linux/amd64 + linux/arm64 build.
func capBuild(ns, name string) *v1alpha1.MultiArchBuild {
	b := newBuild(ns, name)
	b.Spec.Platforms = []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}
	b.Spec.Capacity.Policy = v1alpha1.CapacityManaged
	return b
}

func createBuilds(ctx context.Context, c client.Client, from, to, parallel int, nsOf func(int) string) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	errs := make(chan error, to-from)
	for i := from; i < to; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := c.Create(ctx, capBuild(nsOf(i), fmt.Sprintf("b%04d", i))); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func capacityObserved(b *v1alpha1.MultiArchBuild) bool {
	return meta.FindStatusCondition(b.Status.Conditions, v1alpha1.ConditionCapacityReady) != nil
}

func hasRun(b *v1alpha1.MultiArchBuild) bool { return b.Status.LatestRun != nil }

// allBuilds: n builds exist and every one satisfies ok.
func allBuilds(ctx context.Context, c client.Client, n int, ok func(*v1alpha1.MultiArchBuild) bool) bool {
	var l v1alpha1.MultiArchBuildList
	if c.List(ctx, &l) != nil || len(l.Items) != n {
		return false
	}
	for i := range l.Items {
		if !ok(&l.Items[i]) {
			return false
		}
	}
	return true
}

// quietWindow makes changes that should need no write, waits until the
// manager is quiet again and returns what it did meanwhile. round tells the
// MachineSets' status: 0 machine provisioning, 1 its node Ready.
func quietWindow(ctx context.Context, c client.Client, cs *kubernetes.Clientset, own *writeCounter, metricsURL, label string, parallel int, ready int32) (noopWindow, error) {
	win := noopWindow{label: label}
	before, err := scrapeManager(metricsURL)
	if err != nil {
		return win, err
	}
	serverBefore, err := writesByResource(ctx, cs)
	if err != nil {
		return win, err
	}
	ownBefore := own.snapshot()
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)

	// Every build's labels.
	var l v1alpha1.MultiArchBuildList
	if err := c.List(ctx, &l); err != nil {
		return win, err
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	errs := make(chan error, len(l.Items))
	for i := range l.Items {
		wg.Add(1)
		sem <- struct{}{}
		go func(b *v1alpha1.MultiArchBuild) {
			defer wg.Done()
			defer func() { <-sem }()
			patch := []byte(fmt.Sprintf(`{"metadata":{"labels":{"bench.touch":%q}}}`, stamp))
			if err := c.Patch(ctx, b, client.RawPatch(types.MergePatchType, patch)); err != nil {
				errs <- err
			}
		}(&l.Items[i])
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return win, fmt.Errorf("touch builds: %w", err)
	}
	// Node heartbeats (5 rounds, as kubelets do every 10 s) and a label.
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return win, err
	}
	for round := 0; round < 5; round++ {
		for i := range nodes.Items {
			n := &nodes.Items[i]
			if err := c.Get(ctx, client.ObjectKeyFromObject(n), n); err != nil {
				return win, err
			}
			for j := range n.Status.Conditions {
				if n.Status.Conditions[j].Type == corev1.NodeReady {
					n.Status.Conditions[j].LastHeartbeatTime = metav1.Now()
				}
			}
			if err := c.Status().Update(ctx, n); err != nil {
				return win, fmt.Errorf("heartbeat: %w", err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i := range nodes.Items {
		patch := []byte(fmt.Sprintf(`{"metadata":{"labels":{"bench.touch":%q}}}`, stamp))
		if err := c.Patch(ctx, &nodes.Items[i], client.RawPatch(types.MergePatchType, patch)); err != nil {
			return win, err
		}
	}
	// The machine controller reports the MachineSets' status; the worker
	// MachineSet, the boot images and Infrastructure are annotated.
	var sets machinev1beta1.MachineSetList
	if err := c.List(ctx, &sets, client.InNamespace(capMachineNS)); err != nil {
		return win, err
	}
	for i := range sets.Items {
		ms := &sets.Items[i]
		if plan.IsManaged(ms) {
			r := ptr.Deref(ms.Spec.Replicas, 0)
			ms.Status.Replicas, ms.Status.FullyLabeledReplicas = r, r
			ms.Status.ReadyReplicas, ms.Status.AvailableReplicas = min(ready, r), min(ready, r)
			ms.Status.ObservedGeneration = ms.Generation
			if err := c.Status().Update(ctx, ms); err != nil {
				return win, fmt.Errorf("MachineSet status: %w", err)
			}
			continue
		}
		patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{"bench.touch":%q}}}`, stamp))
		if err := c.Patch(ctx, ms, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return win, err
		}
	}
	for _, obj := range []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: plan.BootImagesNamespace, Name: plan.BootImagesConfigMap}},
		&configv1.Infrastructure{ObjectMeta: metav1.ObjectMeta{Name: "cluster"}},
	} {
		patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{"bench.touch":%q}}}`, stamp))
		if err := c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return win, err
		}
	}

	after, err := waitQuiet(metricsURL, 3*time.Second, 5*time.Minute)
	if err != nil {
		return win, err
	}
	serverAfter, err := writesByResource(ctx, cs)
	if err != nil {
		return win, err
	}
	ownAfter := own.snapshot()
	win.capReconciles = after.reconciles[capController] - before.reconciles[capController]
	win.buildReconciles = after.reconciles[buildController] - before.reconciles[buildController]
	win.managerWrites = map[string]float64{}
	for m, v := range after.writes {
		if d := v - before.writes[m]; d != 0 {
			win.managerWrites[m] = d
		}
	}
	win.serverWrites = map[string]float64{}
	for k, v := range serverAfter {
		if strings.HasPrefix(k, "seconds ") {
			continue
		}
		bench := ownAfter[k] - ownBefore[k]
		win.benchWrites += bench
		d := v - serverBefore[k] - bench
		switch {
		case d == 0:
		case k == "PUT leases":
			// kube-apiserver renews its own identity lease every 10 s;
			// the manager runs without leader election.
			win.apiserverLeases += d
		default:
			win.serverWrites[k] = d
		}
	}
	return win, nil
}

// managerMetrics is what the benchmark reads from the manager's metrics.
type managerMetrics struct {
	reconciles           map[string]float64 // controller -> reconciles, any result
	writes               map[string]float64 // HTTP method -> requests, any code
	depth                map[string]float64 // work queue -> depth
	heapInuse, heapAlloc float64            // bytes
}

func scrapeManager(url string) (managerMetrics, error) {
	m := managerMetrics{reconciles: map[string]float64{}, writes: map[string]float64{}, depth: map[string]float64{}}
	resp, err := http.Get(url)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name, labels := line[:i], map[string]string{}
		if j := strings.IndexByte(name, '{'); j >= 0 {
			labels = parseLabels(name[j+1 : len(name)-1])
			name = name[:j]
		}
		switch name {
		case "controller_runtime_reconcile_total":
			m.reconciles[labels["controller"]] += v
		case "rest_client_requests_total":
			switch labels["method"] {
			case "POST", "PUT", "PATCH", "DELETE":
				m.writes[labels["method"]] += v
			}
		case "workqueue_depth":
			m.depth[labels["name"]] += v
		case "go_memstats_heap_inuse_bytes":
			m.heapInuse = v
		case "go_memstats_heap_alloc_bytes":
			m.heapAlloc = v
		}
	}
	return m, nil
}

// waitQuiet waits until the manager has not written for quiet, and the
// capacity controller's queue is empty and it has not reconciled for quiet.
// (The build controller may keep re-queueing builds that wait for nodes;
// its reconciles are reported, not waited out.)
func waitQuiet(url string, quiet, timeout time.Duration) (managerMetrics, error) {
	deadline := time.Now().Add(timeout)
	var last, first managerMetrics
	key := func(m managerMetrics) float64 { return m.reconciles[capController] + sumValues(m.writes) }
	lastChange := time.Now()
	for time.Now().Before(deadline) {
		m, err := scrapeManager(url)
		if err == nil {
			if first.reconciles == nil {
				first = m
			}
			if key(m) != key(last) || m.depth[capController] > 0 {
				last, lastChange = m, time.Now()
			} else if time.Since(lastChange) >= quiet {
				return m, nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return last, fmt.Errorf("the manager was still busy after %s: reconciles %v -> %v, writes %v -> %v, queue depth %v",
		timeout, first.reconciles, last.reconciles, first.writes, last.writes, last.depth)
}

// heapSampler records the highest go_memstats_heap_inuse_bytes seen.
type heapSampler struct {
	mu   sync.Mutex
	max  float64
	done chan struct{}
}

func startHeapSampler(url string) *heapSampler {
	s := &heapSampler{done: make(chan struct{})}
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := scrapeManager(url); err == nil {
				s.mu.Lock()
				s.max = max(s.max, m.heapInuse)
				s.mu.Unlock()
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *heapSampler) peak() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

func (s *heapSampler) stop() { close(s.done) }

func memNow(pid int, url string, builds int, heapPeak float64) memSample {
	m, _ := scrapeManager(url)
	return memSample{builds: builds, hwm: procstat.StatusMiB(pid, "VmHWM"), rss: procstat.StatusMiB(pid, "VmRSS"),
		heapInuse: m.heapInuse / (1 << 20), heapAlloc: m.heapAlloc / (1 << 20), heapInusePeak: max(heapPeak, m.heapInuse) / (1 << 20)}
}

// writeCounter counts the writes of the benchmark's own client, keyed as
// writesByResource keys kube-apiserver's counter.
type writeCounter struct {
	mu sync.Mutex
	n  map[string]float64
}

var benchRequestInfo = &request.RequestInfoFactory{APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")}

func (w *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		switch req.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			if info, err := benchRequestInfo.NewRequestInfo(req); err == nil && info.IsResourceRequest {
				key := req.Method + " " + info.Resource
				if info.Subresource != "" {
					key += "/" + info.Subresource
				}
				w.mu.Lock()
				if w.n == nil {
					w.n = map[string]float64{}
				}
				w.n[key]++
				w.mu.Unlock()
			}
		}
		return rt.RoundTrip(req)
	})
}

func (w *writeCounter) snapshot() map[string]float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]float64, len(w.n))
	for k, v := range w.n {
		out[k] = v
	}
	return out
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func sumValues(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (r capResult) print() {
	fmt.Printf("scale-up decision: arm64 MachineSet created %s, scaled to >= 1 replica %s after the build's create\n",
		r.created.Round(time.Millisecond), r.scaled.Round(time.Millisecond))
	fmt.Println("manager memory, steady (builds needing arm64): VmHWM / VmRSS / heap in use / heap alloc / heap in use peak (sampled 0.5 s)")
	for _, m := range r.mem {
		fmt.Printf("  %5d builds: %6.1f / %6.1f / %6.1f / %6.1f / %6.1f MiB\n", m.builds, m.hwm, m.rss, m.heapInuse, m.heapAlloc, m.heapInusePeak)
	}
	for _, w := range r.windows {
		fmt.Printf("changes with nothing to do (%s): the benchmark wrote %.0f times; capacity reconciles %.0f, build reconciles %.0f\n",
			w.label, w.benchWrites, w.capReconciles, w.buildReconciles)
		fmt.Printf("  the manager's writes (its client-go): %.0f %v\n", sumValues(w.managerWrites), w.managerWrites)
		fmt.Printf("  kube-apiserver's writes besides the benchmark's and its own lease renewals (%.0f): %.0f\n", w.apiserverLeases, sumValues(w.serverWrites))
		for _, k := range sortedKeys(w.serverWrites) {
			fmt.Printf("    %-40s %.0f\n", k, w.serverWrites[k])
		}
	}
	fmt.Printf("manager log: %s\n", r.log)
}

func summarize(results []capResult) {
	span := func(get func(capResult) float64, format string) string {
		var v []float64
		for _, r := range results {
			v = append(v, get(r))
		}
		sort.Float64s(v)
		out := fmt.Sprintf(format, v[len(v)/2])
		if len(v) > 1 {
			out += fmt.Sprintf(" ("+format+"-"+format+")", v[0], v[len(v)-1])
		}
		return out
	}
	fmt.Printf("== %d repetition(s): median (min-max)\n", len(results))
	fmt.Printf("%d builds in %d namespaces\n", results[0].mem[len(results[0].mem)-1].builds, results[0].namespaces)
	fmt.Printf("arm64 MachineSet created after the build's create: %s s\n", span(func(r capResult) float64 { return r.created.Seconds() }, "%.3f"))
	fmt.Printf("arm64 MachineSet scaled to >= 1 after the build's create: %s s\n", span(func(r capResult) float64 { return r.scaled.Seconds() }, "%.3f"))
	for i, m := range results[0].mem {
		fmt.Printf("%5d builds: VmHWM %s MiB, VmRSS %s MiB, heap in use %s MiB, heap in use peak %s MiB\n", m.builds,
			span(func(r capResult) float64 { return r.mem[i].hwm }, "%.1f"),
			span(func(r capResult) float64 { return r.mem[i].rss }, "%.1f"),
			span(func(r capResult) float64 { return r.mem[i].heapInuse }, "%.1f"),
			span(func(r capResult) float64 { return r.mem[i].heapInusePeak }, "%.1f"))
	}
	for i, w := range results[0].windows {
		fmt.Printf("%s: manager writes %s (kube-apiserver: %s), capacity reconciles %s, build reconciles %s, benchmark writes %s\n", w.label,
			span(func(r capResult) float64 { return sumValues(r.windows[i].managerWrites) }, "%.0f"),
			span(func(r capResult) float64 { return sumValues(r.windows[i].serverWrites) }, "%.0f"),
			span(func(r capResult) float64 { return r.windows[i].capReconciles }, "%.0f"),
			span(func(r capResult) float64 { return r.windows[i].buildReconciles }, "%.0f"),
			span(func(r capResult) float64 { return r.windows[i].benchWrites }, "%.0f"))
	}
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("load average (2 cores, shared): %s", l)
	}
}

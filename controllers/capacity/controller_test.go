package capacity

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	configv1 "github.com/openshift/api/config/v1"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/yaml"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	plan "github.com/multiarch-build/multiarch-build-operator/internal/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// The capacity stories run on their own API servers: one with OpenShift's
// real MachineSet, Machine, Infrastructure and ClusterVersion CRDs, one
// without (vanilla Kubernetes). Objects are shaped like a real OpenShift 4.21
// cluster on AWS in eu-west-3 (the seed's), fixtures in testdata/capacity.

const (
	capMachineNS = "openshift-machine-api"
	capBuildNS   = "builds"
	capInfraName = "build-multiarch-tw9w9"
	capArmAMI    = "ami-0eab6a7956a66deda"
)

var capScheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(capScheme))
	utilruntime.Must(v1alpha1.AddToScheme(capScheme))
	utilruntime.Must(machinev1beta1.Install(capScheme))
	utilruntime.Must(configv1.Install(capScheme))
}

type capFixture struct {
	t   *testing.T
	ctx context.Context
	c   client.Client
	r   *Reconciler
	clk *testingclock.FakeClock
	rec *events.FakeRecorder
}

func capReadFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "capacity", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *capFixture) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

// newCapFixture fills a fresh API server with what an OpenShift cluster on
// AWS has before the operator does anything: Infrastructure/cluster, the
// coreos-bootimages ConfigMap, the installer's worker MachineSet, an amd64
// control plane node (tainted) and an amd64 worker node.
func newCapFixture(t *testing.T, env *testenv.Env) *capFixture {
	c, err := client.New(env.Config, client.Options{Scheme: capScheme})
	if err != nil {
		t.Fatal(err)
	}
	f := &capFixture{t: t, ctx: context.Background(), c: c,
		clk: testingclock.NewFakeClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)),
		rec: events.NewFakeRecorder(100)}
	for _, ns := range []string{capMachineNS, plan.BootImagesNamespace, capBuildNS} {
		f.must(c.Create(f.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	f.must(c.Create(f.ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: plan.BootImagesNamespace, Name: plan.BootImagesConfigMap},
		Data:       map[string]string{plan.BootImagesKey: string(capReadFixture(t, "stream.json"))},
	}))
	f.setInfrastructure(configv1.AWSPlatformType, "eu-west-3")
	f.must(c.Create(f.ctx, capWorker(t)))
	f.node("ip-10-0-0-10", "amd64", func(n *corev1.Node) {
		n.Labels[plan.LabelNodeRoleMaster] = ""
		n.Spec.Taints = []corev1.Taint{{Key: "node-role.kubernetes.io/master", Effect: corev1.TaintEffectNoSchedule}}
	})
	f.node("ip-10-0-1-20", "amd64")
	s := settings.Default()
	// The reconciler acts as the operator's ServiceAccount with the CSV's
	// rules; the fixture itself (f.c) is the cluster admin.
	oc, err := client.New(operatorConfig(t, env), client.Options{Scheme: capScheme})
	if err != nil {
		t.Fatal(err)
	}
	f.r = &Reconciler{
		Cluster: &Cluster{
			Reader: oc, Machines: oc, MachineAPI: true, Settings: s, Clock: f.clk,
			Conflict: plan.DefaultConflictPolicy, RunName: pipeline.RunName, cvServed: true,
		},
		Client: oc, Recorder: f.rec,
	}
	return f
}

func capWorker(t *testing.T) *machinev1beta1.MachineSet {
	ms := &machinev1beta1.MachineSet{}
	if err := yaml.Unmarshal(capReadFixture(t, "worker-machineset.yaml"), ms); err != nil {
		t.Fatal(err)
	}
	return ms
}

func (f *capFixture) setInfrastructure(platform configv1.PlatformType, region string) {
	f.t.Helper()
	infra := &configv1.Infrastructure{}
	err := f.c.Get(f.ctx, types.NamespacedName{Name: "cluster"}, infra)
	if apierrors.IsNotFound(err) {
		infra = &configv1.Infrastructure{ObjectMeta: metav1.ObjectMeta{Name: "cluster"},
			Spec: configv1.InfrastructureSpec{PlatformSpec: configv1.PlatformSpec{Type: platform}}}
		f.must(f.c.Create(f.ctx, infra))
	} else {
		f.must(err)
	}
	infra.Status = configv1.InfrastructureStatus{
		InfrastructureName:     capInfraName,
		Platform:               platform,
		PlatformStatus:         &configv1.PlatformStatus{Type: platform},
		APIServerURL:           "https://api.build-multiarch.example.com:6443",
		APIServerInternalURL:   "https://api-int.build-multiarch.example.com:6443",
		EtcdDiscoveryDomain:    "",
		ControlPlaneTopology:   configv1.SingleReplicaTopologyMode,
		InfrastructureTopology: configv1.SingleReplicaTopologyMode,
	}
	if platform == configv1.AWSPlatformType {
		infra.Status.PlatformStatus.AWS = &configv1.AWSPlatformStatus{Region: region}
	}
	f.must(f.c.Status().Update(f.ctx, infra))
}

// node creates a Ready node of arch.
func (f *capFixture) node(name, arch string, mutate ...func(*corev1.Node)) {
	f.t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		plan.LabelArchNode: arch, "kubernetes.io/os": "linux", plan.LabelNodeRoleWorker: ""}}}
	for _, m := range mutate {
		m(n)
	}
	f.must(f.c.Create(f.ctx, n))
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
	f.must(f.c.Status().Update(f.ctx, n))
	// The API server's TaintNodesByCondition admission tainted the new node
	// not-ready; the node lifecycle controller (not running here) lifts it
	// once the node is Ready.
	var taints []corev1.Taint
	for _, t := range n.Spec.Taints {
		if t.Key != corev1.TaintNodeNotReady {
			taints = append(taints, t)
		}
	}
	n.Spec.Taints = taints
	f.must(f.c.Update(f.ctx, n))
}

// build creates a MultiArchBuild in the builds namespace.
func (f *capFixture) build(name string, platforms []v1alpha1.Platform, mutate ...func(*v1alpha1.MultiArchBuild)) *v1alpha1.MultiArchBuild {
	f.t.Helper()
	b := &v1alpha1.MultiArchBuild{ObjectMeta: metav1.ObjectMeta{Namespace: capBuildNS, Name: name}}
	b.Spec.Source.Git.URL = "https://github.com/nmasse-itix/tekton-pipeline-multiarch.git"
	b.Spec.Output.Image = "quay.io/nmasse_itix/htop-multiarch"
	b.Spec.Platforms = platforms
	for _, m := range mutate {
		m(b)
	}
	f.must(f.c.Create(f.ctx, b))
	return b
}

// finish records a completed current run in the build's status, as the
// build reconciler does.
func (f *capFixture) finish(b *v1alpha1.MultiArchBuild) {
	f.t.Helper()
	f.must(f.c.Get(f.ctx, client.ObjectKeyFromObject(b), b))
	b.Status.LatestRun = &v1alpha1.RunReference{Name: pipeline.RunName(b), Generation: b.Generation,
		StartTime: &metav1.Time{Time: f.clk.Now().Add(-time.Minute)}, CompletionTime: &metav1.Time{Time: f.clk.Now()}}
	b.Status.Phase = v1alpha1.PhaseSucceeded
	f.must(f.c.Status().Update(f.ctx, b))
}

func (f *capFixture) reconcile(arch string) reconcile.Result {
	f.t.Helper()
	res, err := f.r.Reconcile(f.ctx, reconcile.Request{NamespacedName: types.NamespacedName{Name: arch}})
	if err != nil {
		f.t.Fatalf("reconcile %s: %v", arch, err)
	}
	return res
}

func (f *capFixture) check(b *v1alpha1.MultiArchBuild) Result {
	f.t.Helper()
	res, err := f.r.Check(f.ctx, b)
	if err != nil {
		f.t.Fatalf("check: %v", err)
	}
	return res
}

// machineSets lists the MachineSets of the Machine API namespace serving arch.
func (f *capFixture) machineSets(arch string) (ours, foreign []machinev1beta1.MachineSet) {
	f.t.Helper()
	var list machinev1beta1.MachineSetList
	f.must(f.c.List(f.ctx, &list, client.InNamespace(capMachineNS)))
	for _, ms := range list.Items {
		if a, _ := plan.MachineSetArch(&ms); a != arch {
			continue
		}
		if plan.IsManaged(&ms) {
			ours = append(ours, ms)
		} else {
			foreign = append(foreign, ms)
		}
	}
	return ours, foreign
}

func (f *capFixture) onlyOurs(arch string) machinev1beta1.MachineSet {
	f.t.Helper()
	ours, _ := f.machineSets(arch)
	if len(ours) != 1 {
		f.t.Fatalf("want exactly one %s MachineSet of the operator, got %d", arch, len(ours))
	}
	return ours[0]
}

func (f *capFixture) setReplicas(name string, n int32) {
	f.t.Helper()
	ms := &machinev1beta1.MachineSet{}
	f.must(f.c.Get(f.ctx, types.NamespacedName{Namespace: capMachineNS, Name: name}, ms))
	ms.Spec.Replicas = ptr.To(n)
	f.must(f.c.Update(f.ctx, ms))
}

// reset removes what a story added: builds, nodes other than the two base
// ones, MachineSets other than the installer's worker; and restores
// Infrastructure and the settings.
func (f *capFixture) reset() {
	f.t.Helper()
	f.must(f.c.DeleteAllOf(f.ctx, &v1alpha1.MultiArchBuild{}, client.InNamespace(capBuildNS)))
	var nodes corev1.NodeList
	f.must(f.c.List(f.ctx, &nodes))
	for i := range nodes.Items {
		if n := &nodes.Items[i]; n.Name != "ip-10-0-0-10" && n.Name != "ip-10-0-1-20" {
			f.must(f.c.Delete(f.ctx, n))
		}
	}
	var sets machinev1beta1.MachineSetList
	f.must(f.c.List(f.ctx, &sets, client.InNamespace(capMachineNS)))
	for i := range sets.Items {
		if ms := &sets.Items[i]; ms.Name != capWorker(f.t).Name {
			f.must(f.c.Delete(f.ctx, ms))
		}
	}
	f.setReplicas(capWorker(f.t).Name, 1)
	f.setInfrastructure(configv1.AWSPlatformType, "eu-west-3")
	f.r.Settings = settings.Default()
	for len(f.rec.Events) > 0 {
		<-f.rec.Events
	}
}

func (f *capFixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

var (
	capArm  = []v1alpha1.Platform{v1alpha1.PlatformLinuxARM64}
	capBoth = []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}
)

func TestCapacityOnOpenShiftAWS(t *testing.T) {
	env := testenv.Start(t, testenv.Ours, testenv.OpenShiftMachine, testenv.OpenShiftConfig)
	f := newCapFixture(t, env)
	story := func(name string, fn func(t *testing.T, f *capFixture)) {
		t.Run(name, func(t *testing.T) {
			f.t = t
			defer f.reset()
			fn(t, f)
		})
	}

	story("arm64 MachineSet is created from the worker with the arm64 AMI, instance type, labels, annotations and zone", func(t *testing.T, f *capFixture) {
		b := f.build("htop", capBoth, func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Capacity.InstanceTypes = map[string]string{"arm64": "m6g.xlarge"}
		})
		res := f.check(b)
		name := capInfraName + "-arm64-build-eu-west-3a"
		if res.Ready || res.Reason != v1alpha1.ReasonProvisioningNodes || res.Terminal ||
			!strings.Contains(res.Waiting[v1alpha1.PlatformLinuxARM64], "creating MachineSet "+name) ||
			res.Waiting[v1alpha1.PlatformLinuxAMD64] != "" {
			t.Fatalf("before: %+v", res)
		}
		f.reconcile("amd64")
		if ours, _ := f.machineSets("amd64"); len(ours) != 0 {
			t.Fatalf("amd64 has a usable node; the operator created %d MachineSets", len(ours))
		}
		f.reconcile("arm64")
		ms := f.onlyOurs("arm64")
		cfg, err := plan.AWSProviderConfig(&ms)
		if err != nil {
			t.Fatal(err)
		}
		if ms.Name != name || ptr.Deref(cfg.AMI.ID, "") != capArmAMI || cfg.InstanceType != "m6g.xlarge" ||
			cfg.Placement.AvailabilityZone != "eu-west-3a" || cfg.Placement.Region != "eu-west-3" ||
			cfg.Subnet.Filters[0].Values[0] != capInfraName+"-private-eu-west-3a" {
			t.Errorf("MachineSet %s: ami %v type %s placement %+v subnet %+v", ms.Name, cfg.AMI, cfg.InstanceType, cfg.Placement, cfg.Subnet)
		}
		if ms.Labels[plan.LabelManagedBy] != "true" || ms.Labels[plan.LabelArch] != "arm64" || ms.Labels[plan.LabelCluster] != capInfraName {
			t.Errorf("labels %v", ms.Labels)
		}
		if ms.Annotations[plan.AnnotationAutoscalerLabels] != "kubernetes.io/arch=arm64" {
			t.Errorf("autoscaler labels annotation %q", ms.Annotations[plan.AnnotationAutoscalerLabels])
		}
		for _, k := range []string{plan.AnnotationVCPU, plan.AnnotationMemoryMb, plan.AnnotationGPU, plan.AnnotationMaxPods} {
			if _, ok := ms.Annotations[k]; ok {
				t.Errorf("stale annotation %s copied from the amd64 template", k)
			}
		}
		if ms.Spec.Selector.MatchLabels[plan.LabelMachineSet] != name || ms.Spec.Template.Labels[plan.LabelMachineSet] != name {
			t.Errorf("selector %v template labels %v", ms.Spec.Selector.MatchLabels, ms.Spec.Template.Labels)
		}
		if _, ok := ms.Spec.Template.Spec.Labels[plan.LabelNodeRoleWorker]; !ok {
			t.Errorf("node labels %v", ms.Spec.Template.Spec.Labels)
		}
		if len(ms.OwnerReferences) != 0 || ptr.Deref(ms.Spec.Replicas, -1) != 0 {
			t.Errorf("owners %v replicas %v: created with no owner, at 0", ms.OwnerReferences, ms.Spec.Replicas)
		}

		f.reconcile("arm64")
		ms = f.onlyOurs("arm64")
		if ptr.Deref(ms.Spec.Replicas, -1) != 1 {
			t.Fatalf("replicas %v, want Settings.MachineSetReplicas=1", ms.Spec.Replicas)
		}
		res = f.check(b)
		if res.Ready || res.Reason != v1alpha1.ReasonProvisioningNodes || !strings.Contains(res.Waiting[v1alpha1.PlatformLinuxARM64], name+" (m6g.xlarge, 0/1 ready)") {
			t.Fatalf("while scaling: %+v", res)
		}

		f.node("ip-10-0-2-30", "arm64")
		res = f.check(b)
		if !res.Ready || res.Reason != v1alpha1.ReasonNodesAvailable || len(res.Waiting) != 0 {
			t.Fatalf("with an arm64 node: %+v", res)
		}
		f.reconcile("arm64")
		if ms := f.onlyOurs("arm64"); ptr.Deref(ms.Spec.Replicas, -1) != 1 {
			t.Errorf("a needed MachineSet must stay up: replicas %v", ms.Spec.Replicas)
		}
		if ev := f.events(); len(ev) != 2 || !strings.Contains(ev[0], "Created") || !strings.Contains(ev[1], "ScaledUp") {
			t.Errorf("events %q", ev)
		}
	})

	story("three builds needing arm64 share one MachineSet", func(t *testing.T, f *capFixture) {
		var builds []*v1alpha1.MultiArchBuild
		for i := 0; i < 3; i++ {
			builds = append(builds, f.build(fmt.Sprintf("app-%d", i), capBoth))
		}
		for i := 0; i < 3; i++ {
			f.reconcile("arm64")
		}
		ms := f.onlyOurs("arm64")
		if ptr.Deref(ms.Spec.Replicas, -1) != 1 {
			t.Errorf("replicas %v", ms.Spec.Replicas)
		}
		cfg, _ := plan.AWSProviderConfig(&ms)
		if cfg.InstanceType != "m6g.2xlarge" {
			t.Errorf("instance type %s, want the operator default", cfg.InstanceType)
		}
		for _, b := range builds {
			if res := f.check(b); !strings.Contains(res.Waiting[v1alpha1.PlatformLinuxARM64], ms.Name) {
				t.Errorf("%s: %+v", b.Name, res)
			}
		}
		got := f.r.BuildsWaitingFor(f.ctx, "arm64")
		if len(got) != 3 {
			t.Errorf("BuildsWaitingFor(arm64) = %v", got)
		}
		f.finish(builds[0])
		if got := f.r.BuildsWaitingFor(f.ctx, "arm64"); len(got) != 2 {
			t.Errorf("a finished build does not wait: %v", got)
		}
	})

	story("an existing arm64 MachineSet of the operator is reused after a restart, not duplicated", func(t *testing.T, f *capFixture) {
		// First life: the MachineSet is made, then the build finishes and it idles to 0.
		b := f.build("first", capArm)
		f.reconcile("arm64")
		f.reconcile("arm64")
		f.finish(b)
		f.reconcile("arm64")
		f.clk.Step(31 * time.Minute)
		f.reconcile("arm64")
		if ms := f.onlyOurs("arm64"); ptr.Deref(ms.Spec.Replicas, -1) != 0 {
			t.Fatalf("idle replicas %v", ms.Spec.Replicas)
		}
		// A new operator process (fresh reconciler, same cluster) and a new build.
		f.r = &Reconciler{Cluster: f.r.Cluster, Client: f.c, Recorder: f.rec}
		f.build("second", capArm)
		f.reconcile("arm64")
		f.reconcile("arm64")
		if ms := f.onlyOurs("arm64"); ptr.Deref(ms.Spec.Replicas, -1) != 1 {
			t.Errorf("replicas %v", ms.Spec.Replicas)
		}
	})

	story("a hand-made arm64 MachineSet that is scaled up is reused, and not scaled by the operator", func(t *testing.T, f *capFixture) {
		seed := capWorker(t)
		seed.Name = capInfraName + "-aarch64-worker-eu-west-3b" // the seed's name
		seed.Spec.Selector.MatchLabels[plan.LabelMachineSet] = seed.Name
		seed.Spec.Template.Labels[plan.LabelMachineSet] = seed.Name
		seed.Annotations = nil // not yet annotated by the machine controller: arch from m6g
		seed.Spec.Replicas = ptr.To[int32](1)
		cfg, _ := plan.AWSProviderConfig(seed)
		cfg.InstanceType, cfg.AMI.ID = "m6g.2xlarge", ptr.To(capArmAMI)
		seed.Spec.Template.Spec.ProviderSpec.Value = capRaw(t, cfg)
		f.must(f.c.Create(f.ctx, seed))

		b := f.build("htop", capArm)
		f.reconcile("arm64")
		ours, foreign := f.machineSets("arm64")
		if len(ours) != 0 || len(foreign) != 1 {
			t.Fatalf("ours %d foreign %d: want the hand-made one reused", len(ours), len(foreign))
		}
		res := f.check(b)
		if res.Reason != v1alpha1.ReasonProvisioningNodes || !strings.Contains(res.Message, seed.Name) {
			t.Errorf("%+v", res)
		}
		// No build needs it any more: a MachineSet the operator did not create is never scaled down.
		f.finish(b)
		f.reconcile("arm64")
		f.clk.Step(time.Hour)
		f.reconcile("arm64")
		if _, foreign := f.machineSets("arm64"); ptr.Deref(foreign[0].Spec.Replicas, -1) != 1 || len(foreign[0].Annotations) != 0 {
			t.Errorf("the operator wrote a MachineSet it does not own: %v %v", foreign[0].Spec.Replicas, foreign[0].Annotations)
		}
	})

	story("policy Unmanaged writes nothing and reports NoNodes", func(t *testing.T, f *capFixture) {
		b := f.build("htop", capBoth, func(b *v1alpha1.MultiArchBuild) { b.Spec.Capacity.Policy = v1alpha1.CapacityUnmanaged })
		f.reconcile("arm64")
		f.reconcile("amd64")
		if ours, _ := f.machineSets("arm64"); len(ours) != 0 {
			t.Fatalf("Unmanaged created %d MachineSets", len(ours))
		}
		res := f.check(b)
		if res.Ready || res.Reason != v1alpha1.ReasonNoNodes || !res.Terminal ||
			!strings.Contains(res.Waiting[v1alpha1.PlatformLinuxARM64], "kubernetes.io/arch=arm64") {
			t.Errorf("%+v", res)
		}
	})

	story("idle MachineSet goes to zero after the idle timeout and not before", func(t *testing.T, f *capFixture) {
		b := f.build("htop", capArm)
		f.reconcile("arm64")
		f.reconcile("arm64")
		f.node("ip-10-0-2-30", "arm64")
		f.finish(b)
		res := f.reconcile("arm64")
		ms := f.onlyOurs("arm64")
		if ptr.Deref(ms.Spec.Replicas, -1) != 1 || ms.Annotations[plan.AnnotationLastNeeded] != f.clk.Now().Format(time.RFC3339) ||
			res.RequeueAfter != 30*time.Minute {
			t.Fatalf("right after: replicas %v annotations %v requeue %s", ms.Spec.Replicas, ms.Annotations, res.RequeueAfter)
		}
		f.clk.Step(29 * time.Minute)
		res = f.reconcile("arm64")
		if ms := f.onlyOurs("arm64"); ptr.Deref(ms.Spec.Replicas, -1) != 1 || res.RequeueAfter != time.Minute {
			t.Fatalf("after 29m: replicas %v requeue %s", ms.Spec.Replicas, res.RequeueAfter)
		}
		f.clk.Step(time.Minute)
		f.reconcile("arm64")
		ms = f.onlyOurs("arm64")
		if ptr.Deref(ms.Spec.Replicas, -1) != 0 {
			t.Fatalf("after 30m: replicas %v", ms.Spec.Replicas)
		}
		if _, ok := ms.Annotations[plan.AnnotationLastNeeded]; ok {
			t.Errorf("last-needed left behind")
		}
		worker := &machinev1beta1.MachineSet{}
		f.must(f.c.Get(f.ctx, client.ObjectKeyFromObject(capWorker(t)), worker))
		f.reconcile("amd64")
		if ptr.Deref(worker.Spec.Replicas, -1) != 1 {
			t.Errorf("the installer's worker MachineSet was scaled")
		}
	})

	story("demand during the idle time keeps the MachineSet up", func(t *testing.T, f *capFixture) {
		b := f.build("htop", capArm)
		f.reconcile("arm64")
		f.reconcile("arm64")
		f.node("ip-10-0-2-30", "arm64")
		f.finish(b)
		f.reconcile("arm64")
		f.clk.Step(20 * time.Minute)
		f.build("next", capArm)
		f.reconcile("arm64")
		f.clk.Step(20 * time.Minute)
		f.reconcile("arm64")
		ms := f.onlyOurs("arm64")
		if ptr.Deref(ms.Spec.Replicas, -1) != 1 || ms.Annotations[plan.AnnotationLastNeeded] != "" {
			t.Errorf("replicas %v annotations %v", ms.Spec.Replicas, ms.Annotations)
		}
	})

	story("a MachineSet deleted while a build waits is created again", func(t *testing.T, f *capFixture) {
		b := f.build("htop", capArm)
		f.reconcile("arm64")
		f.reconcile("arm64")
		ms := f.onlyOurs("arm64")
		f.must(f.c.Delete(f.ctx, &ms))
		if res := f.check(b); !strings.Contains(res.Waiting[v1alpha1.PlatformLinuxARM64], "creating MachineSet") {
			t.Errorf("after delete: %+v", res)
		}
		f.reconcile("arm64")
		f.reconcile("arm64")
		if ms := f.onlyOurs("arm64"); ptr.Deref(ms.Spec.Replicas, -1) != 1 {
			t.Errorf("recreated replicas %v", ms.Spec.Replicas)
		}
	})

	story("a region without an arm64 boot image gives BootImageNotFound", func(t *testing.T, f *capFixture) {
		f.setInfrastructure(configv1.AWSPlatformType, "us-east-2")
		b := f.build("htop", capBoth)
		f.reconcile("arm64")
		if ours, _ := f.machineSets("arm64"); len(ours) != 0 {
			t.Fatalf("created %d", len(ours))
		}
		res := f.check(b)
		if res.Ready || res.Reason != v1alpha1.ReasonBootImageNotFound || !res.Terminal ||
			!strings.Contains(res.Message, "no aarch64 AMI for AWS region us-east-2") {
			t.Errorf("%+v", res)
		}
	})

	story("a cluster that is not on AWS gives UnsupportedPlatform", func(t *testing.T, f *capFixture) {
		f.setInfrastructure(configv1.BareMetalPlatformType, "")
		b := f.build("htop", capBoth)
		f.reconcile("arm64")
		if ours, _ := f.machineSets("arm64"); len(ours) != 0 {
			t.Fatalf("created %d", len(ours))
		}
		res := f.check(b)
		if res.Ready || res.Reason != v1alpha1.ReasonUnsupportedPlatform || !res.Terminal || !strings.Contains(res.Message, "BareMetal") {
			t.Errorf("%+v", res)
		}
	})

	story("no worker MachineSet to copy gives NoTemplateMachineSet", func(t *testing.T, f *capFixture) {
		w := capWorker(t)
		f.must(f.c.Delete(f.ctx, w))
		defer func() { f.must(f.c.Create(f.ctx, capWorker(t))) }()
		b := f.build("htop", capArm)
		f.reconcile("arm64")
		if res := f.check(b); res.Reason != v1alpha1.ReasonNoTemplateMachineSet || !res.Terminal {
			t.Errorf("%+v", res)
		}
	})

	story("ppc64le and s390x get UnsupportedArchitecture on AWS, and are ready where a node exists", func(t *testing.T, f *capFixture) {
		b := f.build("power", []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxPPC64LE, v1alpha1.PlatformLinuxS390X})
		f.reconcile("ppc64le")
		f.reconcile("s390x")
		for _, a := range []string{"ppc64le", "s390x"} {
			if ours, _ := f.machineSets(a); len(ours) != 0 {
				t.Fatalf("created a %s MachineSet", a)
			}
		}
		res := f.check(b)
		if res.Ready || res.Reason != v1alpha1.ReasonUnsupportedArch || !res.Terminal || len(res.Waiting) != 2 ||
			!strings.Contains(res.Waiting[v1alpha1.PlatformLinuxPPC64LE], "AWS has no ppc64le instance types") {
			t.Errorf("%+v", res)
		}
		f.node("power-1", "ppc64le")
		f.node("z-1", "s390x")
		if res := f.check(b); !res.Ready {
			t.Errorf("with nodes: %+v", res)
		}
	})

	story("a MachineSet someone keeps scaling down is reported as MachineSetConflict, not fought", func(t *testing.T, f *capFixture) {
		b := f.build("htop", capArm)
		f.reconcile("arm64")
		f.reconcile("arm64")
		name := f.onlyOurs("arm64").Name
		for i := 1; i <= 2; i++ {
			f.clk.Step(time.Minute)
			f.setReplicas(name, 0) // the other writer
			f.reconcile("arm64")
			if ms := f.onlyOurs("arm64"); ptr.Deref(ms.Spec.Replicas, -1) != 1 || ms.Annotations[plan.AnnotationCorrections] != fmt.Sprint(i) {
				t.Fatalf("correction %d: replicas %v annotations %v", i, ms.Spec.Replicas, ms.Annotations)
			}
		}
		f.clk.Step(time.Minute)
		f.setReplicas(name, 0)
		f.events()
		res := f.reconcile("arm64")
		ms := f.onlyOurs("arm64")
		if ptr.Deref(ms.Spec.Replicas, -1) != 0 || ms.Annotations[plan.AnnotationConflictSince] == "" || res.RequeueAfter != 15*time.Minute {
			t.Fatalf("third time: replicas %v annotations %v requeue %s", ms.Spec.Replicas, ms.Annotations, res.RequeueAfter)
		}
		if ev := f.events(); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning MachineSetConflict") {
			t.Errorf("events %q", ev)
		}
		c := f.check(b)
		if c.Ready || c.Reason != v1alpha1.ReasonMachineSetConflict || !strings.Contains(c.Message, name) {
			t.Errorf("%+v", c)
		}
		// Standing back: no write while the backoff lasts.
		rv := ms.ResourceVersion
		f.clk.Step(5 * time.Minute)
		f.reconcile("arm64")
		if ms := f.onlyOurs("arm64"); ms.ResourceVersion != rv {
			t.Errorf("wrote during the backoff: %v", ms.Annotations)
		}
		// After it, one more try.
		f.clk.Step(10 * time.Minute)
		f.reconcile("arm64")
		if ms := f.onlyOurs("arm64"); ptr.Deref(ms.Spec.Replicas, -1) != 1 || ms.Annotations[plan.AnnotationConflictSince] != "" {
			t.Errorf("after backoff: replicas %v annotations %v", ms.Spec.Replicas, ms.Annotations)
		}
	})

	story("three zones: one MachineSet each, replicas spread from the first", func(t *testing.T, f *capFixture) {
		f.r.Settings.MachineSetZones = []string{"eu-west-3a", "eu-west-3b", "eu-west-3c"}
		f.build("htop", capArm)
		f.reconcile("arm64")
		f.reconcile("arm64")
		ours, _ := f.machineSets("arm64")
		var got []string
		for _, ms := range ours {
			cfg, _ := plan.AWSProviderConfig(&ms)
			got = append(got, fmt.Sprintf("%s=%d", cfg.Placement.AvailabilityZone, ptr.Deref(ms.Spec.Replicas, -1)))
		}
		if strings.Join(got, ",") != "eu-west-3a=1,eu-west-3b=0,eu-west-3c=0" {
			t.Errorf("got %v", got)
		}
	})

	story("in a manager, watches create and scale the MachineSet, and recreate it when deleted", func(t *testing.T, f *capFixture) {
		mgr, err := ctrl.NewManager(operatorConfig(t, env), capManagerOptions())
		f.must(err)
		cc, err := NewCluster(mgr, settings.Default())
		f.must(err)
		if !cc.MachineAPI || len(cc.BuildWatches()) != 6 {
			t.Fatalf("MachineAPI %v, %d build watches", cc.MachineAPI, len(cc.BuildWatches()))
		}
		f.must(Setup(mgr, cc))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- mgr.Start(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
		}()
		f.build("htop", capBoth)
		name := capInfraName + "-arm64-build-eu-west-3a"
		waitFor := func(what string, ok func() bool) {
			t.Helper()
			deadline := time.Now().Add(20 * time.Second)
			for !ok() {
				if time.Now().After(deadline) {
					t.Fatalf("timed out waiting for %s", what)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		scaled := func() bool {
			ms := &machinev1beta1.MachineSet{}
			err := f.c.Get(f.ctx, types.NamespacedName{Namespace: capMachineNS, Name: name}, ms)
			return err == nil && ptr.Deref(ms.Spec.Replicas, 0) == 1
		}
		waitFor("the arm64 MachineSet at 1 replica", scaled)
		f.must(f.c.Delete(f.ctx, &machinev1beta1.MachineSet{ObjectMeta: metav1.ObjectMeta{Namespace: capMachineNS, Name: name}}))
		waitFor("the arm64 MachineSet recreated at 1 replica", scaled)
		// The checker built for the manager reads its caches.
		b := &v1alpha1.MultiArchBuild{}
		f.must(f.c.Get(f.ctx, types.NamespacedName{Namespace: capBuildNS, Name: "htop"}, b))
		waitFor("Check to see the MachineSet", func() bool {
			res, err := cc.Check(ctx, b)
			return err == nil && strings.Contains(res.Waiting[v1alpha1.PlatformLinuxARM64], name+" (") && strings.Contains(res.Waiting[v1alpha1.PlatformLinuxARM64], ", 0/1 ready)")
		})
		if ours, _ := f.machineSets("arm64"); len(ours) != 1 {
			t.Errorf("%d MachineSets", len(ours))
		}
	})
}

// capManagerOptions: no listeners, and controller names may repeat across
// the managers of one test binary (metrics registration).
func capManagerOptions() ctrl.Options {
	return ctrl.Options{
		Scheme: capScheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	}
}

func capRaw(t *testing.T, cfg *machinev1beta1.AWSMachineProviderConfig) *runtime.RawExtension {
	t.Helper()
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &runtime.RawExtension{Raw: js}
}

func TestCapacityOnVanillaKubernetesOnlyReports(t *testing.T) {
	env := testenv.Start(t, testenv.Ours)
	c, err := client.New(env.Config, client.Options{Scheme: capScheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mgr, err := ctrl.NewManager(operatorConfig(t, env), capManagerOptions())
	if err != nil {
		t.Fatal(err)
	}
	cc, err := NewCluster(mgr, settings.Default())
	if err != nil {
		t.Fatal(err)
	}
	if cc.MachineAPI || len(cc.BuildWatches()) != 2 {
		t.Fatalf("MachineAPI %v, %d build watches: no MachineSet watch on vanilla Kubernetes", cc.MachineAPI, len(cc.BuildWatches()))
	}
	if err := Setup(mgr, cc); err != nil {
		t.Fatal(err)
	}
	// What the build reconciler does with BuildWatches, recorded.
	queued := make(chan reconcile.Request, 100)
	b := ctrl.NewControllerManagedBy(mgr).Named("capacity-watch-recorder")
	for _, src := range cc.BuildWatches() {
		b = b.WatchesRawSource(src)
	}
	if err := b.Complete(reconcile.Func(func(_ context.Context, req reconcile.Request) (reconcile.Result, error) {
		queued <- req
		return reconcile.Result{}, nil
	})); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}()

	f := &capFixture{t: t, ctx: ctx, c: c, clk: testingclock.NewFakeClock(time.Now())}
	f.must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: capBuildNS}}))
	f.node("kind-worker", "amd64")
	build := f.build("htop", capBoth)
	check := func() Result {
		t.Helper()
		var res Result
		deadline := time.Now().Add(10 * time.Second)
		for {
			res, err = cc.Check(ctx, build)
			if err == nil && (res.Ready || len(res.Waiting) < 2) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := check()
	if res.Ready || res.Reason != v1alpha1.ReasonNoNodes || !res.Terminal || len(res.Waiting) != 1 ||
		!strings.Contains(res.Waiting[v1alpha1.PlatformLinuxARM64], "kubernetes.io/arch=arm64") ||
		!strings.Contains(res.Message, "no OpenShift Machine API") {
		t.Errorf("without an arm64 node: %+v", res)
	}
	for len(queued) > 0 {
		<-queued
	}
	f.node("kind-worker2", "arm64")
	select {
	case req := <-queued:
		if req.Name != "htop" || req.Namespace != capBuildNS {
			t.Errorf("queued %v", req)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("a new usable arm64 node did not re-queue the build waiting for it")
	}
	deadline := time.Now().Add(10 * time.Second)
	for res = check(); !res.Ready && time.Now().Before(deadline); res = check() {
		time.Sleep(100 * time.Millisecond)
	}
	if !res.Ready || res.Reason != v1alpha1.ReasonNodesAvailable {
		t.Errorf("with an arm64 node: %+v", res)
	}
	// The capacity controller has nothing to write here.
	if r, err := (&Reconciler{Cluster: cc}).Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Name: "arm64"}}); err != nil || r.RequeueAfter != 0 {
		t.Errorf("reconcile: %v %v", r, err)
	}
}

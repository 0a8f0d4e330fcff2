package capacity

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// Fixtures are shared with the envtest stories of the capacity controller.
var fixtures = filepath.Join("..", "..", "controllers", "testdata", "capacity")

func streamFixture(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, "stream.json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func workerFixture(t *testing.T) machinev1beta1.MachineSet {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, "worker-machineset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ms machinev1beta1.MachineSet
	if err := yaml.Unmarshal(b, &ms); err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestInstanceTypeArch(t *testing.T) {
	for in, want := range map[string]string{
		"m6g.2xlarge": "arm64", "c6gn.large": "arm64", "r7gd.xlarge": "arm64", "t4g.micro": "arm64",
		"x2gd.medium": "arm64", "is4gen.large": "arm64", "im4gn.large": "arm64", "a1.large": "arm64",
		"hpc7g.4xlarge": "arm64", "g5g.xlarge": "arm64", "m8g.large": "arm64",
		"m5a.2xlarge": "amd64", "m6i.large": "amd64", "g4dn.xlarge": "amd64", "p5.48xlarge": "amd64",
		"m7i-flex.large": "amd64", "inf2.xlarge": "amd64", "c5.large": "amd64",
		"": "", "nodot": "", "9x.large": "",
	} {
		if got := InstanceTypeArch(in); got != want {
			t.Errorf("InstanceTypeArch(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMachineSetArchPrefersLabelThenAnnotationThenInstanceType(t *testing.T) {
	base := workerFixture(t) // m5a, annotation amd64
	tests := []struct {
		name       string
		mutate     func(*machinev1beta1.MachineSet)
		arch, from string
	}{
		{"autoscaler annotation", func(*machinev1beta1.MachineSet) {}, "amd64", "autoscaler-annotation"},
		{"our label wins", func(ms *machinev1beta1.MachineSet) { ms.Labels[LabelArch] = "arm64" }, "arm64", "label"},
		{"annotation among other labels", func(ms *machinev1beta1.MachineSet) {
			ms.Annotations[AnnotationAutoscalerLabels] = "foo=bar, kubernetes.io/arch=arm64"
		}, "arm64", "autoscaler-annotation"},
		{"instance type when not annotated yet", func(ms *machinev1beta1.MachineSet) {
			delete(ms.Annotations, AnnotationAutoscalerLabels)
			setInstanceType(t, ms, "c7gn.large")
		}, "arm64", "instance-type"},
		{"unknown", func(ms *machinev1beta1.MachineSet) {
			delete(ms.Annotations, AnnotationAutoscalerLabels)
			ms.Spec.Template.Spec.ProviderSpec.Value = nil
		}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := base.DeepCopy()
			tt.mutate(ms)
			arch, from := MachineSetArch(ms)
			if arch != tt.arch || from != tt.from {
				t.Errorf("got %q from %q, want %q from %q", arch, from, tt.arch, tt.from)
			}
		})
	}
}

func setInstanceType(t *testing.T, ms *machinev1beta1.MachineSet, it string) {
	cfg, err := AWSProviderConfig(ms)
	if err != nil {
		t.Fatal(err)
	}
	cfg.InstanceType = it
	raw, _ := json.Marshal(cfg)
	ms.Spec.Template.Spec.ProviderSpec.Value.Raw = raw
}

func node(name, arch string, ready bool, mutate ...func(*corev1.Node)) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelArchNode: arch}}}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
	for _, m := range mutate {
		m(&n)
	}
	return n
}

func TestNodeUsable(t *testing.T) {
	armTaint := corev1.Taint{Key: "arch", Value: "arm64", Effect: corev1.TaintEffectNoSchedule}
	tolerations := map[string][]corev1.Toleration{"arm64": {{Key: "arch", Operator: corev1.TolerationOpEqual, Value: "arm64", Effect: corev1.TaintEffectNoSchedule}}}
	tests := []struct {
		name string
		node corev1.Node
		want bool
		why  string
	}{
		{"ready", node("a", "arm64", true), true, ""},
		{"not ready", node("a", "arm64", false), false, "not Ready"},
		{"no arch label", node("a", "", true), false, "no kubernetes.io/arch label"},
		{"cordoned", node("a", "arm64", true, func(n *corev1.Node) { n.Spec.Unschedulable = true }), false, "unschedulable (cordoned)"},
		{"tolerated taint", node("a", "arm64", true, func(n *corev1.Node) { n.Spec.Taints = []corev1.Taint{armTaint} }), true, ""},
		{"taint tolerated for another arch only", node("a", "amd64", true, func(n *corev1.Node) { n.Spec.Taints = []corev1.Taint{armTaint} }), false, "taint arch:NoSchedule not tolerated"},
		{"NoExecute not tolerated", node("a", "arm64", true, func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "node.kubernetes.io/unreachable", Effect: corev1.TaintEffectNoExecute}}
		}), false, "taint node.kubernetes.io/unreachable:NoExecute not tolerated"},
		{"PreferNoSchedule ignored", node("a", "arm64", true, func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "x", Effect: corev1.TaintEffectPreferNoSchedule}}
		}), true, ""},
		{"control plane taint", node("m", "amd64", true, func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "node-role.kubernetes.io/master", Effect: corev1.TaintEffectNoSchedule}}
		}), false, "taint node-role.kubernetes.io/master:NoSchedule not tolerated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := NodeUsable(&tt.node, tolerations)
			if ok != tt.want || why != tt.why {
				t.Errorf("got (%v, %q), want (%v, %q)", ok, why, tt.want, tt.why)
			}
		})
	}
}

func TestHostArch(t *testing.T) {
	master := func(n *corev1.Node) { n.Labels[LabelNodeRoleMaster] = "" }
	tests := []struct {
		name  string
		nodes []corev1.Node
		want  string
	}{
		{"none", nil, "amd64"},
		{"control plane wins over many workers", []corev1.Node{node("m", "arm64", true, master), node("a", "amd64", true), node("b", "amd64", true)}, "arm64"},
		{"most workers", []corev1.Node{node("a", "arm64", true), node("b", "amd64", true), node("c", "arm64", true)}, "arm64"},
	}
	for _, tt := range tests {
		if got := HostArch(tt.nodes); got != tt.want {
			t.Errorf("%s: HostArch = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestAMI(t *testing.T) {
	st := streamFixture(t)
	tests := []struct {
		name, arch, region, want, problem string
	}{
		{"aarch64 eu-west-3 (the seed's AMI)", "arm64", "eu-west-3", "ami-0eab6a7956a66deda", ""},
		{"x86_64 us-east-1", "amd64", "us-east-1", "ami-0c3e7f6b21a6d3f88", ""},
		{"region missing for aarch64", "arm64", "us-east-2", "", "stream rhcos-4.21 has no aarch64 AMI for AWS region us-east-2"},
		{"ppc64le has no AWS images", "ppc64le", "eu-west-3", "", "stream rhcos-4.21 has no AWS images for ppc64le"},
		{"s390x missing", "s390x", "eu-west-3", "", "stream rhcos-4.21 in ConfigMap openshift-machine-config-operator/coreos-bootimages has no architecture s390x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AMI(st, tt.arch, tt.region)
			var p *Problem
			if tt.problem != "" {
				if !errors.As(err, &p) || p.Reason != v1alpha1.ReasonBootImageNotFound || p.Message != tt.problem {
					t.Fatalf("err = %v, want BootImageNotFound %q", err, tt.problem)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("AMI = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := AMI("{not json", "arm64", "eu-west-3"); err == nil || !strings.Contains(err.Error(), "not CoreOS stream metadata") {
		t.Errorf("garbage stream: err = %v", err)
	}
}

func TestMachineSetName(t *testing.T) {
	if got := MachineSetName("build-multiarch-tw9w9", "arm64", "eu-west-3b"); got != "build-multiarch-tw9w9-arm64-build-eu-west-3b" {
		t.Errorf("got %q", got)
	}
	long := MachineSetName(strings.Repeat("x", 50), "arm64", "ap-southeast-2a")
	if len(long) > 63 || long != MachineSetName(strings.Repeat("x", 50), "arm64", "ap-southeast-2a") {
		t.Errorf("long name %q (%d) not a stable label value", long, len(long))
	}
}

func TestPlanMachineSetsClonesTheWorkerForArm64(t *testing.T) {
	worker := workerFixture(t)
	sets, err := PlanMachineSets(PlanInput{
		Arch: "arm64", InfrastructureName: "build-multiarch-tw9w9", Region: "eu-west-3",
		MachineSets: []machinev1beta1.MachineSet{worker}, HostArch: "amd64",
		Zones: []string{"eu-west-3b", "eu-west-3c"}, InstanceType: "m6g.2xlarge",
		StreamJSON: streamFixture(t), StreamFound: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 2 {
		t.Fatalf("got %d MachineSets, want one per zone", len(sets))
	}
	ms := sets[0]
	name := "build-multiarch-tw9w9-arm64-build-eu-west-3b"
	if ms.Name != name || ms.Namespace != "openshift-machine-api" || *ms.Spec.Replicas != 0 || len(ms.OwnerReferences) != 0 {
		t.Errorf("name/namespace/replicas/owners: %s/%s %d %v", ms.Namespace, ms.Name, *ms.Spec.Replicas, ms.OwnerReferences)
	}
	if diff := cmp.Diff(map[string]string{
		LabelCluster: "build-multiarch-tw9w9", LabelManagedBy: "true", LabelArch: "arm64",
	}, ms.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{
		AnnotationAutoscalerLabels: "kubernetes.io/arch=arm64", AnnotationReplicas: "0",
	}, ms.Annotations); diff != "" {
		t.Errorf("annotations (-want +got): vCPU/memoryMb/GPU/maxPods must go\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{LabelCluster: "build-multiarch-tw9w9", LabelMachineSet: name}, ms.Spec.Selector.MatchLabels); diff != "" {
		t.Errorf("selector (-want +got):\n%s", diff)
	}
	if ms.Spec.Template.Labels[LabelMachineSet] != name || ms.Spec.Template.Labels[LabelMachineRole] != "worker" {
		t.Errorf("template labels: %v", ms.Spec.Template.Labels)
	}
	if _, ok := ms.Spec.Template.Spec.Labels[LabelNodeRoleWorker]; !ok {
		t.Errorf("node labels: %v", ms.Spec.Template.Spec.Labels)
	}
	cfg, err := AWSProviderConfig(ms)
	if err != nil {
		t.Fatal(err)
	}
	if ptr.Deref(cfg.AMI.ID, "") != "ami-0eab6a7956a66deda" || cfg.InstanceType != "m6g.2xlarge" ||
		cfg.Placement.AvailabilityZone != "eu-west-3b" || cfg.Placement.Region != "eu-west-3" {
		t.Errorf("providerSpec ami %v type %s placement %+v", cfg.AMI, cfg.InstanceType, cfg.Placement)
	}
	if diff := cmp.Diff([]string{"build-multiarch-tw9w9-private-eu-west-3b"}, cfg.Subnet.Filters[0].Values); diff != "" {
		t.Errorf("subnet filter (-want +got):\n%s", diff)
	}
	// Everything else of the template is kept.
	if cfg.IAMInstanceProfile == nil || *cfg.IAMInstanceProfile.ID != "build-multiarch-tw9w9-worker-profile" ||
		cfg.UserDataSecret.Name != "worker-user-data" || cfg.BlockDevices[0].EBS.VolumeSize == nil || *cfg.BlockDevices[0].EBS.VolumeSize != 120 {
		t.Errorf("template settings lost: %+v", cfg)
	}
	// The template is not modified.
	if tc, _ := AWSProviderConfig(&worker); tc.InstanceType != "m5a.2xlarge" || worker.Spec.Selector.MatchLabels[LabelMachineSet] != worker.Name {
		t.Errorf("template modified")
	}
	if sets[1].Name != "build-multiarch-tw9w9-arm64-build-eu-west-3c" {
		t.Errorf("second zone: %s", sets[1].Name)
	}
}

func TestPlanMachineSetsProblems(t *testing.T) {
	worker := workerFixture(t)
	ok := PlanInput{
		Arch: "arm64", InfrastructureName: "build-multiarch-tw9w9", Region: "eu-west-3",
		MachineSets: []machinev1beta1.MachineSet{worker}, InstanceType: "m6g.2xlarge",
		StreamJSON: streamFixture(t), StreamFound: true,
	}
	byID := worker.DeepCopy()
	cfg, _ := AWSProviderConfig(byID)
	cfg.Subnet = machinev1beta1.AWSResourceReference{ID: ptr.To("subnet-0123")}
	byID.Spec.Template.Spec.ProviderSpec.Value.Raw, _ = json.Marshal(cfg)
	ours := worker.DeepCopy()
	ours.Labels[LabelManagedBy] = "true"
	tests := []struct {
		name   string
		mutate func(*PlanInput)
		reason string
		zones  []string
	}{
		{"template zone by default", func(*PlanInput) {}, "", []string{"eu-west-3a"}},
		{"ppc64le on AWS", func(in *PlanInput) { in.Arch = "ppc64le" }, v1alpha1.ReasonUnsupportedArch, nil},
		{"no instance type", func(in *PlanInput) { in.InstanceType = "" }, v1alpha1.ReasonUnsupportedArch, nil},
		{"amd64 instance type for arm64", func(in *PlanInput) { in.InstanceType = "m5a.large" }, v1alpha1.ReasonUnsupportedArch, nil},
		{"no worker MachineSet", func(in *PlanInput) { in.MachineSets = nil }, v1alpha1.ReasonNoTemplateMachineSet, nil},
		{"only our own MachineSets", func(in *PlanInput) { in.MachineSets = []machinev1beta1.MachineSet{*ours} }, v1alpha1.ReasonNoTemplateMachineSet, nil},
		{"no ConfigMap", func(in *PlanInput) { in.StreamFound = false }, v1alpha1.ReasonBootImageNotFound, nil},
		{"region missing", func(in *PlanInput) { in.Region = "ap-south-2" }, v1alpha1.ReasonBootImageNotFound, nil},
		{"subnet by id, other zone", func(in *PlanInput) {
			in.MachineSets = []machinev1beta1.MachineSet{*byID}
			in.Zones = []string{"eu-west-3b"}
		}, v1alpha1.ReasonNoTemplateMachineSet, nil},
		{"subnet by id, same zone", func(in *PlanInput) {
			in.MachineSets = []machinev1beta1.MachineSet{*byID}
			in.Zones = []string{"eu-west-3a"}
		}, "", []string{"eu-west-3a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := ok
			tt.mutate(&in)
			sets, err := PlanMachineSets(in)
			var p *Problem
			if tt.reason != "" {
				if !errors.As(err, &p) || p.Reason != tt.reason {
					t.Fatalf("err = %v, want reason %s", err, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var zones []string
			for _, ms := range sets {
				c, _ := AWSProviderConfig(ms)
				zones = append(zones, c.Placement.AvailabilityZone)
			}
			if diff := cmp.Diff(tt.zones, zones); diff != "" {
				t.Errorf("zones (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSelectTemplatePrefersHostArch(t *testing.T) {
	amd := workerFixture(t)
	arm := workerFixture(t)
	arm.Name = "a-hand-made-aarch64-worker"
	arm.Annotations[AnnotationAutoscalerLabels] = "kubernetes.io/arch=arm64"
	infra := workerFixture(t)
	infra.Name = "0-infra"
	infra.Spec.Template.Labels[LabelMachineRole] = "infra"
	sets := []machinev1beta1.MachineSet{infra, arm, amd}
	for host, want := range map[string]string{"amd64": amd.Name, "arm64": arm.Name} {
		got, err := SelectTemplate(sets, host)
		if err != nil || got.Name != want {
			t.Errorf("host %s: got %v, %v; want %s", host, got, err, want)
		}
	}
}

func TestSetLabelInList(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "kubernetes.io/arch=arm64"},
		{"kubernetes.io/arch=amd64", "kubernetes.io/arch=arm64"},
		{"a=b,kubernetes.io/arch=amd64,c=d", "a=b,kubernetes.io/arch=arm64,c=d"},
		{"a=b", "a=b,kubernetes.io/arch=arm64"},
	} {
		if got := SetLabelInList(tt.in, LabelArchNode, "arm64"); got != tt.want {
			t.Errorf("SetLabelInList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func build(name string, created int, platforms []v1alpha1.Platform, mutate ...func(*v1alpha1.MultiArchBuild)) v1alpha1.MultiArchBuild {
	b := v1alpha1.MultiArchBuild{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ns", Name: name, Generation: 1,
		CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, created, 0, 0, time.UTC)),
	}}
	b.Spec.Platforms = platforms
	for _, m := range mutate {
		m(&b)
	}
	return b
}

func runName(b *v1alpha1.MultiArchBuild) string { return b.Name + "-run" }

func TestNeededArchs(t *testing.T) {
	both := []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}
	finished := func(b *v1alpha1.MultiArchBuild) {
		b.Status.LatestRun = &v1alpha1.RunReference{Name: runName(b), Generation: 1, CompletionTime: &metav1.Time{}}
	}
	tests := []struct {
		name  string
		build v1alpha1.MultiArchBuild
		want  []string
	}{
		{"new build", build("a", 0, both), []string{"amd64", "arm64"}},
		{"default platforms", build("a", 0, nil), []string{"amd64", "arm64"}},
		{"finished", build("a", 0, both, finished), nil},
		{"finished run of an older rebuild token still needs", build("a", 0, both, finished, func(b *v1alpha1.MultiArchBuild) {
			b.Status.LatestRun.Name = "a-old"
		}), []string{"amd64", "arm64"}},
		{"arm64 built, amd64 building", build("a", 0, both, func(b *v1alpha1.MultiArchBuild) {
			b.Status.LatestRun = &v1alpha1.RunReference{Name: runName(b), Generation: 1}
			b.Status.Platforms = []v1alpha1.PlatformStatus{{Platform: v1alpha1.PlatformLinuxARM64, State: v1alpha1.PlatformBuilt}, {Platform: v1alpha1.PlatformLinuxAMD64, State: v1alpha1.PlatformBuilding}}
		}), []string{"amd64"}},
		{"deleting", build("a", 0, both, func(b *v1alpha1.MultiArchBuild) { b.DeletionTimestamp = &metav1.Time{} }), nil},
		{"Tekton missing", build("a", 0, both, func(b *v1alpha1.MultiArchBuild) {
			b.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionPipelinesAvailable, Status: metav1.ConditionFalse, ObservedGeneration: 1}}
		}), nil},
		{"stale Tekton condition of an older generation", build("a", 0, both, func(b *v1alpha1.MultiArchBuild) {
			b.Generation = 2
			b.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionPipelinesAvailable, Status: metav1.ConditionFalse, ObservedGeneration: 1}}
		}), []string{"amd64", "arm64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, NeededArchs(&tt.build, runName)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDemandSharesAndPicksTheOldestInstanceType(t *testing.T) {
	arm := []v1alpha1.Platform{v1alpha1.PlatformLinuxARM64}
	override := func(it string) func(*v1alpha1.MultiArchBuild) {
		return func(b *v1alpha1.MultiArchBuild) { b.Spec.Capacity.InstanceTypes = map[string]string{"arm64": it} }
	}
	unmanaged := func(b *v1alpha1.MultiArchBuild) { b.Spec.Capacity.Policy = v1alpha1.CapacityUnmanaged }
	builds := []v1alpha1.MultiArchBuild{
		build("c", 3, arm, override("c7g.xlarge")),
		build("d", 1, arm, override("m5a.xlarge")), // amd64 type: ignored for the MachineSet
		build("b", 2, arm, override("m6g.xlarge")),
		build("a", 1, arm),
		build("u", 0, arm, unmanaged, override("t4g.large")),
		build("x", 0, []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64}, unmanaged),
	}
	d := Demand(builds, runName)
	want := map[string]*ArchDemand{
		"arm64": {Managed: nnames("a", "d", "b", "c"), Builds: 5, InstanceType: "m6g.xlarge"},
		"amd64": {Builds: 1},
	}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestShare(t *testing.T) {
	for _, tt := range []struct {
		total int32
		n     int
		want  []int32
	}{
		{1, 3, []int32{1, 0, 0}}, {3, 3, []int32{1, 1, 1}}, {4, 3, []int32{2, 1, 1}}, {2, 1, []int32{2}},
	} {
		var got []int32
		for i := 0; i < tt.n; i++ {
			got = append(got, Share(tt.total, i, tt.n))
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Share(%d over %d) (-want +got):\n%s", tt.total, tt.n, diff)
		}
	}
}

func TestDecideScale(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	s := func(v string) *string { return &v }
	base := ScaleInput{Now: now, Target: 1, IdleTimeout: 30 * time.Minute, Conflict: DefaultConflictPolicy}
	tests := []struct {
		name string
		in   func(ScaleInput) ScaleInput
		want ScaleDecision
	}{
		{"scale up a new MachineSet", func(in ScaleInput) ScaleInput {
			in.ScaleUp, in.Needed, in.Annotations = true, true, map[string]string{AnnotationReplicas: "0"}
			return in
		}, ScaleDecision{Replicas: ptr.To[int32](1), Annotations: map[string]*string{AnnotationReplicas: s("1")}}},
		{"needed, nodes exist: leave alone", func(in ScaleInput) ScaleInput {
			in.Replicas, in.Needed, in.Annotations = 1, true, map[string]string{AnnotationReplicas: "1"}
			return in
		}, ScaleDecision{}},
		{"needed again: forget idle time", func(in ScaleInput) ScaleInput {
			in.Replicas, in.Needed, in.Annotations = 1, true, map[string]string{AnnotationReplicas: "1", AnnotationLastNeeded: at(-time.Minute)}
			return in
		}, ScaleDecision{Annotations: map[string]*string{AnnotationLastNeeded: nil}}},
		{"someone scaled above target while needed: keep", func(in ScaleInput) ScaleInput {
			in.Replicas, in.ScaleUp, in.Needed, in.Annotations = 3, true, true, map[string]string{AnnotationReplicas: "1"}
			return in
		}, ScaleDecision{}},
		{"idle starts", func(in ScaleInput) ScaleInput {
			in.Replicas, in.Annotations = 1, map[string]string{AnnotationReplicas: "1"}
			return in
		}, ScaleDecision{Annotations: map[string]*string{AnnotationLastNeeded: s(at(0))}, RequeueAfter: 30 * time.Minute}},
		{"idle, not long enough", func(in ScaleInput) ScaleInput {
			in.Replicas, in.Annotations = 1, map[string]string{AnnotationReplicas: "1", AnnotationLastNeeded: at(-29 * time.Minute)}
			return in
		}, ScaleDecision{RequeueAfter: time.Minute}},
		{"idle timeout: scale to zero", func(in ScaleInput) ScaleInput {
			in.Replicas, in.Annotations = 1, map[string]string{AnnotationReplicas: "1", AnnotationLastNeeded: at(-30 * time.Minute)}
			return in
		}, ScaleDecision{Replicas: ptr.To[int32](0), Annotations: map[string]*string{AnnotationLastNeeded: nil, AnnotationReplicas: s("0")}}},
		{"at zero and idle: nothing", func(in ScaleInput) ScaleInput {
			in.Annotations = map[string]string{AnnotationReplicas: "0"}
			return in
		}, ScaleDecision{}},
		{"first correction", func(in ScaleInput) ScaleInput {
			in.ScaleUp, in.Needed, in.Annotations = true, true, map[string]string{AnnotationReplicas: "1"}
			return in
		}, ScaleDecision{Replicas: ptr.To[int32](1), Corrected: true, Annotations: map[string]*string{
			AnnotationReplicas: s("1"), AnnotationCorrections: s("1"), AnnotationCorrectionsSince: s(at(0))}}},
		{"third correction in the window: conflict", func(in ScaleInput) ScaleInput {
			in.ScaleUp, in.Needed, in.Annotations = true, true, map[string]string{AnnotationReplicas: "1",
				AnnotationCorrections: "2", AnnotationCorrectionsSince: at(-5 * time.Minute)}
			return in
		}, ScaleDecision{Conflict: true, NewConflict: true, RequeueAfter: 15 * time.Minute, Annotations: map[string]*string{
			AnnotationCorrections: s("3"), AnnotationCorrectionsSince: s(at(-5 * time.Minute)), AnnotationConflictSince: s(at(0))}}},
		{"corrections of an old window start over", func(in ScaleInput) ScaleInput {
			in.ScaleUp, in.Needed, in.Annotations = true, true, map[string]string{AnnotationReplicas: "1",
				AnnotationCorrections: "2", AnnotationCorrectionsSince: at(-11 * time.Minute)}
			return in
		}, ScaleDecision{Replicas: ptr.To[int32](1), Corrected: true, Annotations: map[string]*string{
			AnnotationReplicas: s("1"), AnnotationCorrections: s("1"), AnnotationCorrectionsSince: s(at(0))}}},
		{"in conflict: stand back", func(in ScaleInput) ScaleInput {
			in.ScaleUp, in.Needed, in.Annotations = true, true, map[string]string{AnnotationReplicas: "1", AnnotationConflictSince: at(-10 * time.Minute)}
			return in
		}, ScaleDecision{Conflict: true, RequeueAfter: 5 * time.Minute}},
		{"conflict over: try again", func(in ScaleInput) ScaleInput {
			in.ScaleUp, in.Needed, in.Annotations = true, true, map[string]string{AnnotationReplicas: "1", AnnotationConflictSince: at(-16 * time.Minute),
				AnnotationCorrections: "3", AnnotationCorrectionsSince: at(-20 * time.Minute)}
			return in
		}, ScaleDecision{Replicas: ptr.To[int32](1), Corrected: true, Annotations: map[string]*string{
			AnnotationConflictSince: nil, AnnotationReplicas: s("1"), AnnotationCorrections: s("1"), AnnotationCorrectionsSince: s(at(0))}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, DecideScale(tt.in(base))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAssess(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	aws := Infrastructure{Found: true, Platform: "AWS", Region: "eu-west-3", Name: "build-multiarch-tw9w9"}
	ours := workerFixture(t)
	ours.Labels[LabelManagedBy], ours.Labels[LabelArch] = "true", "arm64"
	ours.Spec.Replicas = ptr.To[int32](0)
	scaling := ours.DeepCopy()
	scaling.Spec.Replicas = ptr.To[int32](1)
	conflict := ours.DeepCopy()
	conflict.Annotations[AnnotationConflictSince] = now.Add(-time.Minute).Format(time.RFC3339)
	foreign := workerFixture(t)
	tests := []struct {
		name     string
		view     View
		reason   string
		terminal bool
		create   bool
	}{
		{"nodes", View{Arch: "arm64", UsableNodes: []string{"n"}}, v1alpha1.ReasonNodesAvailable, false, false},
		{"vanilla", View{Arch: "arm64"}, v1alpha1.ReasonNoNodes, true, false},
		{"unmanaged", View{Arch: "arm64", MachineAPI: true, Infra: aws, Policy: v1alpha1.CapacityUnmanaged}, v1alpha1.ReasonNoNodes, true, false},
		{"unmanaged sees a MachineSet scaling up", View{Arch: "arm64", MachineAPI: true, Infra: aws, Policy: v1alpha1.CapacityUnmanaged,
			Sets: MachineSets{Ours: []*machinev1beta1.MachineSet{scaling}}}, v1alpha1.ReasonProvisioningNodes, false, false},
		{"no Infrastructure", View{Arch: "arm64", MachineAPI: true}, v1alpha1.ReasonMachineAPIUnavailable, true, false},
		{"not AWS", View{Arch: "arm64", MachineAPI: true, Infra: Infrastructure{Found: true, Platform: "BareMetal", Name: "x"}}, v1alpha1.ReasonUnsupportedPlatform, true, false},
		{"ppc64le", View{Arch: "ppc64le", MachineAPI: true, Infra: aws}, v1alpha1.ReasonUnsupportedArch, true, false},
		{"s390x", View{Arch: "s390x", MachineAPI: true, Infra: aws}, v1alpha1.ReasonUnsupportedArch, true, false},
		{"create", View{Arch: "arm64", MachineAPI: true, Infra: aws}, v1alpha1.ReasonProvisioningNodes, false, true},
		{"ours at zero: scale", View{Arch: "arm64", MachineAPI: true, Infra: aws, Sets: MachineSets{Ours: []*machinev1beta1.MachineSet{&ours}}}, v1alpha1.ReasonProvisioningNodes, false, false},
		{"foreign scaled: reuse", View{Arch: "amd64", MachineAPI: true, Infra: aws, Sets: MachineSets{Foreign: []*machinev1beta1.MachineSet{&foreign}}}, v1alpha1.ReasonProvisioningNodes, false, false},
		{"conflict", View{Arch: "arm64", MachineAPI: true, Infra: aws, Now: now, Conflict: DefaultConflictPolicy,
			Sets: MachineSets{Ours: []*machinev1beta1.MachineSet{conflict}}}, v1alpha1.ReasonMachineSetConflict, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Assess(tt.view)
			if got.Reason != tt.reason || got.Terminal != tt.terminal || got.Create != tt.create || got.Ready != (tt.reason == v1alpha1.ReasonNodesAvailable) {
				t.Errorf("got %+v, want reason %s terminal %v create %v", got, tt.reason, tt.terminal, tt.create)
			}
			if !strings.Contains(got.Message, tt.view.Arch) {
				t.Errorf("message %q does not name the architecture", got.Message)
			}
		})
	}
}

func nnames(names ...string) []types.NamespacedName {
	out := make([]types.NamespacedName, len(names))
	for i, n := range names {
		out[i] = types.NamespacedName{Namespace: "ns", Name: n}
	}
	return out
}

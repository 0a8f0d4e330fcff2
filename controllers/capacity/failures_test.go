package capacity

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	configv1 "github.com/openshift/api/config/v1"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	plan "github.com/multiarch-build/multiarch-build-operator/internal/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

func capRawStatus(t *testing.T, st *machinev1beta1.AWSMachineProviderStatus) *runtime.RawExtension {
	t.Helper()
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return &runtime.RawExtension{Raw: raw}
}

// policy creates or replaces the BuildCapacityPolicy cluster.
func (f *capFixture) policy(spec v1alpha1.BuildCapacityPolicySpec) {
	f.t.Helper()
	p := &v1alpha1.BuildCapacityPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.BuildCapacityPolicyName}}
	_ = f.c.Delete(f.ctx, p)
	p.Spec = spec
	f.must(f.c.Create(f.ctx, p))
}

// machine creates a Machine of MachineSet ms, created age ago, and gives it
// a status: Failed with the AWS error, or Provisioned without a node.
func (f *capFixture) machine(ms *machinev1beta1.MachineSet, name string, failed string) *machinev1beta1.Machine {
	f.t.Helper()
	m := &machinev1beta1.Machine{ObjectMeta: metav1.ObjectMeta{Namespace: capMachineNS, Name: name,
		Labels: map[string]string{plan.LabelMachineSet: ms.Name}}}
	m.Spec = ms.Spec.Template.Spec
	f.must(f.c.Create(f.ctx, m))
	if failed != "" {
		m.Status.Phase = ptr.To(plan.MachinePhaseFailed)
		m.Status.ErrorReason = ptr.To(machinev1beta1.CreateMachineError)
		m.Status.ErrorMessage = ptr.To(failed)
	} else {
		m.Status.Phase = ptr.To("Provisioned")
	}
	f.must(f.c.Status().Update(f.ctx, m))
	return m
}

func (f *capFixture) getSet(name string) *machinev1beta1.MachineSet {
	f.t.Helper()
	ms := &machinev1beta1.MachineSet{}
	f.must(f.c.Get(f.ctx, client.ObjectKey{Namespace: capMachineNS, Name: name}, ms))
	return ms
}

func (f *capFixture) cleanPolicyAndMachines() {
	_ = f.c.DeleteAllOf(f.ctx, &machinev1beta1.Machine{}, client.InNamespace(capMachineNS))
	_ = f.c.Delete(f.ctx, &v1alpha1.BuildCapacityPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.BuildCapacityPolicyName}})
	_ = f.c.Delete(f.ctx, &configv1.ClusterVersion{ObjectMeta: metav1.ObjectMeta{Name: "version"}})
}

func TestCapacityFailuresAndPolicy(t *testing.T) {
	env := testenv.Start(t, testenv.Ours, testenv.OpenShiftMachine, testenv.OpenShiftConfig)
	f := newCapFixture(t, env)
	story := func(name string, fn func(t *testing.T, f *capFixture)) {
		t.Run(name, func(t *testing.T) {
			f.t = t
			defer f.reset()
			defer f.cleanPolicyAndMachines()
			fn(t, f)
		})
	}
	zoneA, zoneB := capInfraName+"-arm64-build-eu-west-3a", capInfraName+"-arm64-build-eu-west-3b"

	story("capacity refused in one zone moves to the next; refused everywhere fails the build with the Machine's error and scales back", func(t *testing.T, f *capFixture) {
		f.policy(v1alpha1.BuildCapacityPolicySpec{Zones: []string{"eu-west-3a", "eu-west-3b"}, ProvisioningTimeout: "15m",
			Architectures: []v1alpha1.ArchitectureCapacityPolicy{{Arch: v1alpha1.ArchARM64, InstanceTypes: []string{"m6g.xlarge"}}}})
		b := f.build("htop", capBoth)
		f.reconcile("arm64") // creates one MachineSet per zone
		f.reconcile("arm64") // scales the first
		if a, bb := f.getSet(zoneA), f.getSet(zoneB); ptr.Deref(a.Spec.Replicas, -1) != 1 || ptr.Deref(bb.Spec.Replicas, -1) != 0 || plan.InstanceTypeOf(a) != "m6g.xlarge" {
			t.Fatalf("before the failure: %s=%v %s=%v", zoneA, a.Spec.Replicas, zoneB, bb.Spec.Replicas)
		}
		// InsufficientInstanceCapacity is a CreateError: the Machine stays
		// Provisioning with the error in its provider status.
		m := &machinev1beta1.Machine{ObjectMeta: metav1.ObjectMeta{Namespace: capMachineNS, Name: zoneA + "-x1",
			Labels: map[string]string{plan.LabelMachineSet: zoneA}}}
		m.Spec = f.getSet(zoneA).Spec.Template.Spec
		f.must(f.c.Create(f.ctx, m))
		m.Status.Phase = ptr.To("Provisioning")
		m.Status.ProviderStatus = capRawStatus(t, &machinev1beta1.AWSMachineProviderStatus{Conditions: []metav1.Condition{{
			Type: string(machinev1beta1.MachineCreation), Status: metav1.ConditionFalse, Reason: machinev1beta1.MachineCreationFailedConditionReason,
			Message:            "error creating EC2 instance: InsufficientInstanceCapacity: We currently do not have sufficient m6g.xlarge capacity in the Availability Zone you requested (eu-west-3a).",
			LastTransitionTime: metav1.Now()}}})
		f.must(f.c.Status().Update(f.ctx, m))
		f.reconcile("arm64")
		a := f.getSet(zoneA)
		if ptr.Deref(a.Spec.Replicas, -1) != 0 || !strings.Contains(a.Annotations[plan.AnnotationFailedTypes], "m6g.xlarge=") ||
			!strings.Contains(a.Annotations[plan.AnnotationLastFailure], "MachineCreationFailed") {
			t.Fatalf("failed zone not scaled back and recorded: replicas %v annotations %v", a.Spec.Replicas, a.Annotations)
		}
		if ev := strings.Join(f.events(), "\n"); !strings.Contains(ev, "MachineFailed") || !strings.Contains(ev, "sufficient m6g.xlarge capacity") {
			t.Errorf("no MachineFailed event with the AWS error: %s", ev)
		}
		f.reconcile("arm64")
		if bb := f.getSet(zoneB); ptr.Deref(bb.Spec.Replicas, -1) != 1 {
			t.Fatalf("next zone not scaled up: %v", bb.Spec.Replicas)
		}
		res := f.check(b)
		if res.Failed || res.Reason != v1alpha1.ReasonProvisioningNodes || !strings.Contains(res.Waiting[v1alpha1.PlatformLinuxARM64], zoneB) ||
			!strings.Contains(res.Waiting[v1alpha1.PlatformLinuxARM64], "sufficient m6g.xlarge capacity") {
			t.Fatalf("while trying the next zone: %+v", res)
		}

		f.machine(f.getSet(zoneB), zoneB+"-y1", "error launching instance: InsufficientInstanceCapacity in eu-west-3b")
		f.reconcile("arm64")
		f.reconcile("arm64")
		for _, n := range []string{zoneA, zoneB} {
			if ms := f.getSet(n); ptr.Deref(ms.Spec.Replicas, -1) != 0 {
				t.Errorf("%s at %v after every zone failed", n, ms.Spec.Replicas)
			}
		}
		res = f.check(b)
		if !res.Failed || !res.Terminal || res.Reason != v1alpha1.ReasonProvisioningFailed ||
			!strings.Contains(res.Message, "InsufficientInstanceCapacity in eu-west-3b") || !strings.Contains(res.Message, "m6g.xlarge") {
			t.Fatalf("every zone failed: %+v", res)
		}
		if res.Ready || res.Waiting[v1alpha1.PlatformLinuxAMD64] != "" {
			t.Errorf("amd64 should be ready: %+v", res)
		}
	})

	story("a type refused in the only zone falls back to the policy's next instance type", func(t *testing.T, f *capFixture) {
		f.policy(v1alpha1.BuildCapacityPolicySpec{Zones: []string{"eu-west-3a"},
			Architectures: []v1alpha1.ArchitectureCapacityPolicy{{Arch: v1alpha1.ArchARM64, InstanceTypes: []string{"m6g.xlarge", "m7g.xlarge"}}}})
		b := f.build("htop", capArm)
		f.reconcile("arm64")
		f.reconcile("arm64")
		f.machine(f.getSet(zoneA), zoneA+"-x1", "error launching instance: InsufficientInstanceCapacity")
		f.reconcile("arm64") // records the failure, scales to 0
		f.reconcile("arm64") // switches to the next type
		a := f.getSet(zoneA)
		if plan.InstanceTypeOf(a) != "m7g.xlarge" || ptr.Deref(a.Spec.Replicas, -1) != 0 {
			t.Fatalf("after the fallback: type %s replicas %v", plan.InstanceTypeOf(a), a.Spec.Replicas)
		}
		_ = f.c.DeleteAllOf(f.ctx, &machinev1beta1.Machine{}, client.InNamespace(capMachineNS))
		f.reconcile("arm64")
		if a := f.getSet(zoneA); ptr.Deref(a.Spec.Replicas, -1) != 1 {
			t.Fatalf("fallback type not scaled up: %v", a.Spec.Replicas)
		}
		if res := f.check(b); res.Failed || !strings.Contains(res.Waiting[v1alpha1.PlatformLinuxARM64], "m7g.xlarge") {
			t.Fatalf("check during the fallback: %+v", res)
		}
		if ev := strings.Join(f.events(), "\n"); !strings.Contains(ev, "InstanceTypeFallback") {
			t.Errorf("no InstanceTypeFallback event: %s", ev)
		}
	})

	story("a Machine without a node at the provisioning timeout is a failure; a build waiting longer fails with ProvisioningTimeout", func(t *testing.T, f *capFixture) {
		f.policy(v1alpha1.BuildCapacityPolicySpec{ProvisioningTimeout: "10m",
			Architectures: []v1alpha1.ArchitectureCapacityPolicy{{Arch: v1alpha1.ArchARM64, InstanceTypes: []string{"m6g.xlarge"}}}})
		b := f.build("htop", capArm)
		f.reconcile("arm64")
		f.reconcile("arm64")
		ms := f.onlyOurs("arm64")
		m := f.machine(&ms, ms.Name+"-z1", "")
		f.clk.SetTime(m.CreationTimestamp.Add(time.Minute))
		if next := f.reconcile("arm64"); next.RequeueAfter <= 0 || next.RequeueAfter > 10*time.Minute {
			t.Errorf("no requeue at the Machine's provisioning timeout: %v", next.RequeueAfter)
		}
		if got := f.onlyOurs("arm64"); ptr.Deref(got.Spec.Replicas, -1) != 1 {
			t.Fatalf("scaled back before the timeout: %v", got.Spec.Replicas)
		}
		f.clk.SetTime(m.CreationTimestamp.Add(11 * time.Minute))
		f.reconcile("arm64")
		got := f.onlyOurs("arm64")
		if ptr.Deref(got.Spec.Replicas, -1) != 0 || !strings.Contains(got.Annotations[plan.AnnotationLastFailure], "ProvisioningTimeout") {
			t.Fatalf("Machine without a node not handled: replicas %v annotations %v", got.Spec.Replicas, got.Annotations)
		}
		// The build's own wait (status.platforms[].nodeWait) bounds it too.
		f.must(f.c.Get(f.ctx, client.ObjectKeyFromObject(b), b))
		b.Status.Platforms = []v1alpha1.PlatformStatus{{Platform: v1alpha1.PlatformLinuxARM64, State: v1alpha1.PlatformWaiting,
			NodeWait: &v1alpha1.NodeWait{Run: pipeline.RunName(b), Since: metav1.NewTime(f.clk.Now().Add(-20 * time.Minute))}}}
		f.must(f.c.Status().Update(f.ctx, b))
		res := f.check(b)
		if !res.Failed || (res.Reason != v1alpha1.ReasonProvisioningTimeout && res.Reason != v1alpha1.ReasonProvisioningFailed) {
			t.Fatalf("a build waiting 20m with a 10m timeout: %+v", res)
		}
	})

	story("a tenant's instance type off the policy's list is refused with the allowed list, and nothing is made for it", func(t *testing.T, f *capFixture) {
		f.policy(v1alpha1.BuildCapacityPolicySpec{
			Architectures: []v1alpha1.ArchitectureCapacityPolicy{{Arch: v1alpha1.ArchARM64, InstanceTypes: []string{"m6g.xlarge", "m7g.xlarge"}}}})
		b := f.build("greedy", capBoth, func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Capacity.InstanceTypes = map[string]string{"arm64": "m6g.16xlarge"}
		})
		res := f.check(b)
		msg := res.Waiting[v1alpha1.PlatformLinuxARM64]
		if res.Reason != v1alpha1.ReasonCapacityNotAllowed || !res.Terminal || !strings.Contains(msg, "m6g.16xlarge") || !strings.Contains(msg, "m6g.xlarge, m7g.xlarge") {
			t.Fatalf("disallowed type: %+v", res)
		}
		f.reconcile("arm64")
		if ours, _ := f.machineSets("arm64"); len(ours) != 0 {
			t.Fatalf("%d MachineSets made for a refused build", len(ours))
		}
		// The policy's status summarises the architecture.
		p := &v1alpha1.BuildCapacityPolicy{}
		f.must(f.c.Get(f.ctx, client.ObjectKey{Name: v1alpha1.BuildCapacityPolicyName}, p))
		if len(p.Status.Architectures) == 0 || p.Status.ObservedGeneration != p.Generation {
			t.Fatalf("policy status not written: %+v", p.Status)
		}
		rv := p.ResourceVersion
		f.reconcile("arm64")
		f.must(f.c.Get(f.ctx, client.ObjectKey{Name: v1alpha1.BuildCapacityPolicyName}, p))
		if p.ResourceVersion != rv {
			t.Errorf("a reconcile that changed nothing wrote the policy status again")
		}
	})

	story("a single-architecture release payload gives UnsupportedPlatform and no MachineSet", func(t *testing.T, f *capFixture) {
		cv := &configv1.ClusterVersion{ObjectMeta: metav1.ObjectMeta{Name: "version"},
			Spec: configv1.ClusterVersionSpec{ClusterID: "3f6e1c5d-9b2a-4e8f-a1c7-0d4b6e2f8a91", Channel: "stable-4.21"}}
		f.must(f.c.Create(f.ctx, cv))
		cv.Status = configv1.ClusterVersionStatus{
			Desired:     configv1.Release{Version: "4.21.3", Image: "quay.io/openshift-release-dev/ocp-release@sha256:8d1c0e3b7a4f5e6d2c9b1a0f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d"},
			VersionHash: "x", ObservedGeneration: 1,
			History: []configv1.UpdateHistory{{State: configv1.CompletedUpdate, Version: "4.21.3", Image: "quay.io/openshift-release-dev/ocp-release@sha256:8d1c0e3b7a4f5e6d2c9b1a0f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d",
				StartedTime: metav1.Now(), CompletionTime: ptr.To(metav1.Now()), Verified: true}},
		}
		f.must(f.c.Status().Update(f.ctx, cv))
		b := f.build("htop", capBoth)
		res := f.check(b)
		if res.Reason != v1alpha1.ReasonUnsupportedPlatform || !res.Terminal || !strings.Contains(res.Message, "multi-arch") {
			t.Fatalf("single-arch payload: %+v", res)
		}
		f.reconcile("arm64")
		if ours, _ := f.machineSets("arm64"); len(ours) != 0 {
			t.Fatalf("%d MachineSets made on a single-arch payload", len(ours))
		}
		cv.Status.Desired.Architecture = configv1.ClusterVersionArchitectureMulti
		f.must(f.c.Status().Update(f.ctx, cv))
		if res := f.check(b); res.Reason != v1alpha1.ReasonProvisioningNodes {
			t.Fatalf("multi-arch payload: %+v", res)
		}
	})

	story("in a manager: a namespace the policy's selector leaves out gets no managed capacity until it is labelled", func(t *testing.T, f *capFixture) {
		mgr, err := ctrl.NewManager(operatorConfig(t, env), capManagerOptions())
		f.must(err)
		cc, err := NewCluster(mgr, settings.Default())
		f.must(err)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _ = mgr.Start(ctx) }()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			t.Fatal("cache did not sync")
		}
		f.policy(v1alpha1.BuildCapacityPolicySpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"builds.example.com/capacity": "managed"}}})
		b := f.build("htop", capBoth)
		deadline := time.Now().Add(20 * time.Second)
		var res Result
		for time.Now().Before(deadline) {
			if res, err = cc.Check(ctx, b); err == nil && res.Reason == v1alpha1.ReasonCapacityNotAllowed {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if res.Reason != v1alpha1.ReasonCapacityNotAllowed || !strings.Contains(res.Message, "namespaceSelector") {
			t.Fatalf("namespace left out: %+v (%v)", res, err)
		}
		ns := &corev1.Namespace{}
		f.must(f.c.Get(f.ctx, client.ObjectKey{Name: capBuildNS}, ns))
		ns.Labels["builds.example.com/capacity"] = "managed"
		f.must(f.c.Update(f.ctx, ns))
		defer func() {
			f.must(f.c.Get(f.ctx, client.ObjectKey{Name: capBuildNS}, ns))
			delete(ns.Labels, "builds.example.com/capacity")
			f.must(f.c.Update(f.ctx, ns))
		}()
		deadline = time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if res, err = cc.Check(ctx, b); err == nil && res.Reason == v1alpha1.ReasonProvisioningNodes {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if res.Reason != v1alpha1.ReasonProvisioningNodes {
			t.Fatalf("namespace labelled: %+v (%v)", res, err)
		}
	})

	story("demand leaks: a refused build, and one past its timeout plus the provisioning timeout, hold no node", func(t *testing.T, f *capFixture) {
		f.policy(v1alpha1.BuildCapacityPolicySpec{ProvisioningTimeout: "10m", IdleTimeout: "5m"})
		refused := f.build("refused", capArm)
		f.must(f.c.Get(f.ctx, client.ObjectKeyFromObject(refused), refused))
		refused.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionSucceeded, Status: metav1.ConditionFalse,
			Reason: v1alpha1.ReasonForbidden, Message: "create PipelineRun: forbidden", ObservedGeneration: refused.Generation, LastTransitionTime: metav1.Now()}}
		f.must(f.c.Status().Update(f.ctx, refused))
		old := f.build("old", capArm, func(b *v1alpha1.MultiArchBuild) { b.Spec.Timeout = "30m" })
		f.must(f.c.Get(f.ctx, client.ObjectKeyFromObject(old), old))
		old.Status.Platforms = []v1alpha1.PlatformStatus{{Platform: v1alpha1.PlatformLinuxARM64, State: v1alpha1.PlatformWaiting,
			NodeWait: &v1alpha1.NodeWait{Run: pipeline.RunName(old), Since: metav1.NewTime(f.clk.Now().Add(-41 * time.Minute))}}}
		f.must(f.c.Status().Update(f.ctx, old))
		f.reconcile("arm64")
		if ours, _ := f.machineSets("arm64"); len(ours) != 0 {
			t.Fatalf("%d MachineSets made for builds that cannot run", len(ours))
		}
		// The same old build 39 minutes in still counts.
		old.Status.Platforms[0].NodeWait.Since = metav1.NewTime(f.clk.Now().Add(-39 * time.Minute))
		f.must(f.c.Status().Update(f.ctx, old))
		f.reconcile("arm64")
		if ours, _ := f.machineSets("arm64"); len(ours) != 1 {
			t.Fatalf("%d MachineSets for a build within its bound", len(ours))
		}
		_ = corev1.TaintEffectNoSchedule
	})
}

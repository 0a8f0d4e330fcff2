//go:build e2e && capacity

package e2e

// The capacity pass of the e2e tier (make test-e2e-capacity): the cluster
// starts with an amd64 node only (MAB_ARM64_NODE=machine) and an arm64 node
// exists only while a Machine of an arm64 MachineSet runs (hack/machinesim,
// the local Machine API on AWS). The operator, in cluster with its CSV's
// RBAC, must create the arm64 MachineSet from the worker, survive a zone
// without capacity, build, and scale back to zero; and fail a build with the
// Machine's own error when no zone can give a node.

import (
	"context"
	"strings"
	"testing"
	"time"

	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	plan "github.com/multiarch-build/multiarch-build-operator/internal/capacity"
)

const machineNS = "openshift-machine-api"

func machineClient(t *testing.T) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, machinev1beta1.Install} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(rc, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ourArm64Sets are the operator's arm64 MachineSets, by name.
func ourArm64Sets(ctx context.Context, c client.Client) (map[string]*machinev1beta1.MachineSet, error) {
	var list machinev1beta1.MachineSetList
	if err := c.List(ctx, &list, client.InNamespace(machineNS), client.MatchingLabels{plan.LabelManagedBy: "true", plan.LabelArch: "arm64"}); err != nil {
		return nil, err
	}
	out := map[string]*machinev1beta1.MachineSet{}
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out, nil
}

func arm64Nodes(ctx context.Context) ([]string, error) {
	var nodes corev1.NodeList
	if err := kc.List(ctx, &nodes, client.MatchingLabels{"kubernetes.io/arch": "arm64"}); err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes.Items {
		out = append(out, n.Name)
	}
	return out, nil
}

func setMachineSim(t *testing.T, c client.Client, data map[string]string) {
	t.Helper()
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: machineNS, Name: "machine-sim"}}
	_ = c.Delete(ctx, cm)
	cm.Data = data
	if err := c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
}

func TestCapacityScaleFromZeroAndBack(t *testing.T) {
	ctx := context.Background()
	c := machineClient(t)
	// A clean cloud: no MachineSet of the operator left by an earlier run
	// (with its recorded failures) and no Machine of one.
	if err := c.DeleteAllOf(ctx, &machinev1beta1.MachineSet{}, client.InNamespace(machineNS),
		client.MatchingLabels{plan.LabelManagedBy: "true"}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		var ms machinev1beta1.MachineList
		if err := c.List(ctx, &ms, client.InNamespace(machineNS)); err != nil {
			t.Fatal(err)
		}
		left := 0
		for _, m := range ms.Items {
			if !strings.Contains(m.Name, "-worker-") {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Machines of earlier MachineSets still there", left)
		}
	}
	if nodes, err := arm64Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("the capacity pass needs a cluster without arm64 nodes (MAB_ARM64_NODE=machine): %v %v", nodes, err)
	}
	// The admin's policy: arm64 on m6g.xlarge in two zones, short idle and
	// provisioning timeouts for the test.
	policy := &v1alpha1.BuildCapacityPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.BuildCapacityPolicyName}}
	_ = c.Delete(ctx, policy)
	policy.Spec = v1alpha1.BuildCapacityPolicySpec{
		Zones: []string{"eu-west-3a", "eu-west-3b"}, IdleTimeout: "20s", ProvisioningTimeout: "4m",
		Architectures: []v1alpha1.ArchitectureCapacityPolicy{{Arch: v1alpha1.ArchARM64, InstanceTypes: []string{"m6g.xlarge"}, MaxReplicas: ptr.To[int32](1)}},
	}
	if err := c.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, policy) })
	// EC2 has no m6g.xlarge capacity in eu-west-3a.
	setMachineSim(t, c, map[string]string{"bootDelay": "5s", "insufficientCapacity": "m6g.xlarge@eu-west-3a"})
	t.Cleanup(func() {
		_ = c.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: machineNS, Name: "machine-sim"}})
	})

	url := gitRepo(t, "e2e-capacity", map[string]string{
		"Containerfile": "FROM " + cfg.BaseImage + "\nRUN uname -m > /built-on\n",
	})
	ns := namespace(t, "e2e-capacity")
	b := newBuild(ns, "from-zero", url, "e2e/capacity")
	start := time.Now()
	res := runBuild(t, b, v1alpha1.PhaseSucceeded)
	built := time.Now()
	checkPushed(t, res)

	sets, err := ourArm64Sets(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	var created time.Time
	var failedZone, usedSet string
	for name, ms := range sets {
		if created.IsZero() || ms.CreationTimestamp.Before(&metav1.Time{Time: created}) {
			created = ms.CreationTimestamp.Time
		}
		if f := ms.Annotations[plan.AnnotationLastFailure]; f != "" {
			failedZone = name
			t.Logf("MachineSet %s recorded: %s", name, f)
			if !strings.Contains(f, "InsufficientInstanceCapacity") {
				t.Errorf("%s: the failure does not name EC2's error: %s", name, f)
			}
		}
	}
	var arm *v1alpha1.PlatformStatus
	for i := range res.build.Status.Platforms {
		if res.build.Status.Platforms[i].Platform == v1alpha1.PlatformLinuxARM64 {
			arm = &res.build.Status.Platforms[i]
		}
	}
	switch {
	case len(sets) != 2:
		t.Errorf("want one operator MachineSet per allowed zone, got %d", len(sets))
	case failedZone == "" || !strings.HasSuffix(failedZone, "eu-west-3a"):
		t.Errorf("the eu-west-3a MachineSet recorded no failure (failed: %q)", failedZone)
	case arm == nil || arm.NodeWait == nil || arm.NodeWait.Until == nil:
		t.Errorf("status.platforms[linux/arm64].nodeWait not recorded: %+v", arm)
	default:
		usedSet = arm.NodeWait.MachineSet
		if !strings.HasSuffix(usedSet, "eu-west-3b") || arm.NodeWait.InstanceType != "m6g.xlarge" {
			t.Errorf("nodeWait names %s (%s), want the eu-west-3b MachineSet on m6g.xlarge", usedSet, arm.NodeWait.InstanceType)
		}
		if !strings.HasPrefix(arm.NodeName, "ip-") {
			t.Errorf("arm64 built on %q, want a node booted by a Machine", arm.NodeName)
		}
	}
	var nodeReady time.Time
	if arm != nil && arm.NodeWait != nil && arm.NodeWait.Until != nil {
		nodeReady = arm.NodeWait.Until.Time
	}

	// Idle: back to zero, node drained and gone.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		sets, err := ourArm64Sets(ctx, c)
		nodes, err2 := arm64Nodes(ctx)
		up := 0
		for _, ms := range sets {
			up += int(ptr.Deref(ms.Spec.Replicas, 1))
		}
		if err == nil && err2 == nil && up == 0 && len(nodes) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not back to zero 3m after the build: replicas %d, arm64 nodes %v (%v %v)", up, nodes, err, err2)
		}
		time.Sleep(time.Second)
	}
	zero := time.Now()
	t.Logf("SUMMARY: capacity scale-from-zero: build created -> MachineSet created +%.0fs (whole-second timestamp) -> arm64 node usable %.1fs -> build %s %.1fs -> MachineSets at 0, node gone %.1fs (idle timeout 20s); node wait %ds on %s",
		max(0, created.Sub(start).Round(time.Second).Seconds()), nodeReady.Sub(start).Seconds(), res.build.Status.Phase, built.Sub(start).Seconds(), zero.Sub(start).Seconds(),
		ptr.Deref(arm.NodeWait.Seconds, -1), usedSet)

	// No zone can give the type: the build fails with the Machine's error,
	// and what was scaled up for it goes back to 0.
	setMachineSim(t, c, map[string]string{"bootDelay": "5s", "unsupported": "m6g.xlarge"})
	b2 := newBuild(ns, "no-capacity", url, "e2e/capacity")
	if err := kc.Create(ctx, b2); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	deadline = time.Now().Add(5 * time.Minute)
	for {
		cur := &v1alpha1.MultiArchBuild{}
		if err := kc.Get(ctx, client.ObjectKeyFromObject(b2), cur); err != nil {
			t.Fatal(err)
		}
		if cur.Status.Phase == v1alpha1.PhaseFailed {
			c := apimeta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionSucceeded)
			if c == nil || c.Reason != v1alpha1.ReasonProvisioningFailed || !strings.Contains(c.Message, "not supported in your requested Availability Zone") {
				t.Fatalf("Succeeded = %+v, want ProvisioningFailed naming the Machine's error", c)
			}
			var msg string
			for _, p := range cur.Status.Platforms {
				if p.Platform == v1alpha1.PlatformLinuxARM64 {
					msg = p.Message
				}
			}
			if !strings.Contains(msg, "InvalidConfiguration") {
				t.Errorf("status.platforms[linux/arm64].message does not carry the Machine error: %q", msg)
			}
			if lr := cur.Status.LatestRun; lr != nil {
				// The operator's node cache may still hold the arm64 node
				// drained a moment ago: a run may start, and must then be
				// cancelled for the same reason.
				run := &tektonv1.PipelineRun{}
				if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: lr.Name}, run); err != nil {
					t.Fatal(err)
				}
				if run.Spec.Status != tektonv1.PipelineRunSpecStatusCancelledRunFinally {
					t.Errorf("run %s started for a build without an arm64 node and not cancelled (spec.status %q)", lr.Name, run.Spec.Status)
				} else {
					t.Logf("run %s had started (the node was still in the operator's cache) and was cancelled", lr.Name)
				}
			}
			t.Logf("SUMMARY: capacity refused in every zone: build Failed after %.1fs: %s", time.Since(t0).Seconds(), c.Message)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %s after 5m: %+v", cur.Status.Phase, cur.Status.Conditions)
		}
		time.Sleep(time.Second)
	}
	// A tenant asking for an instance type the admin did not allow is
	// refused at admission with the allowed list (config/policy's
	// ValidatingAdmissionPolicy, whose parameter is the BuildCapacityPolicy;
	// the operator's own check, for clusters without it, is in the envtest
	// stories).
	b3 := newBuild(ns, "greedy", url, "e2e/capacity")
	b3.Spec.Capacity.InstanceTypes = map[string]string{"arm64": "m6g.16xlarge"}
	err = kc.Create(ctx, b3)
	if err == nil {
		t.Fatalf("a build asking for m6g.16xlarge was admitted; the policy allows m6g.xlarge only")
	}
	if !strings.Contains(err.Error(), "m6g.16xlarge") || !strings.Contains(err.Error(), "are m6g.xlarge") {
		t.Errorf("the refusal does not name the type and the allowed list: %v", err)
	}
	t.Logf("SUMMARY: capacity disallowed instance type refused at admission: %v", err)

	deadline = time.Now().Add(time.Minute)
	for {
		sets, _ := ourArm64Sets(ctx, c)
		up := 0
		for _, ms := range sets {
			up += int(ptr.Deref(ms.Spec.Replicas, 1))
		}
		if up == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("MachineSets still at %d replicas after the build failed", up)
		}
		time.Sleep(time.Second)
	}
}

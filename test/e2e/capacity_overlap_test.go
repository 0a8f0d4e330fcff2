//go:build e2e && capacity

package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	plan "github.com/multiarch-build/multiarch-build-operator/internal/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

// TestCapacityOverlapWallTime measures a two-arch build from zero arm64
// nodes with a simulated boot (machine-sim bootDelay, MAB_BOOT_DELAY,
// default 60s): the build's wall time, when its run started and when clone
// and preflight ended against when the arm64 node became usable. Run it
// with the operator's default (--start-runs-while-provisioning) and with
// MAB_OPERATOR_ARGS=--start-runs-while-provisioning=false (gate, then run)
// to compare:
//
//	MAB_ARM64_NODE=machine go test -tags 'e2e capacity' ./test/e2e/ -run TestCapacityOverlapWallTime -v
//	MAB_ARM64_NODE=machine MAB_OPERATOR_ARGS=--start-runs-while-provisioning=false go test ... (same)
func TestCapacityOverlapWallTime(t *testing.T) {
	ctx := context.Background()
	c := machineClient(t)
	if err := c.DeleteAllOf(ctx, &machinev1beta1.MachineSet{}, client.InNamespace(machineNS),
		client.MatchingLabels{plan.LabelManagedBy: "true"}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(time.Second) {
		nodes, err := arm64Nodes(ctx)
		if err == nil && len(nodes) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the capacity pass needs a cluster without arm64 nodes (MAB_ARM64_NODE=machine): %v %v", nodes, err)
		}
	}
	policy := &v1alpha1.BuildCapacityPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.BuildCapacityPolicyName}}
	_ = c.Delete(ctx, policy)
	policy.Spec = v1alpha1.BuildCapacityPolicySpec{
		Zones: []string{"eu-west-3a"}, IdleTimeout: "20s", ProvisioningTimeout: "6m",
		Architectures: []v1alpha1.ArchitectureCapacityPolicy{{Arch: v1alpha1.ArchARM64, InstanceTypes: []string{"m6g.xlarge"}, MaxReplicas: ptr.To[int32](1)}},
	}
	if err := c.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, policy) })
	boot := os.Getenv("MAB_BOOT_DELAY")
	if boot == "" {
		boot = "60s"
	}
	setMachineSim(t, c, map[string]string{"bootDelay": boot})

	url := gitRepo(t, "e2e-overlap", map[string]string{
		"Containerfile": "FROM " + cfg.BaseImage + "\nRUN uname -m > /built-on\n",
	})
	ns := namespace(t, "e2e-overlap")
	b := newBuild(ns, "overlap", url, "e2e/overlap")
	start := time.Now()
	res := runBuild(t, b, v1alpha1.PhaseSucceeded)
	wall := res.wall
	var nodeReady time.Time
	for _, p := range res.build.Status.Platforms {
		if p.Platform == v1alpha1.PlatformLinuxARM64 && p.NodeWait != nil && p.NodeWait.Until != nil {
			nodeReady = p.NodeWait.Until.Time
		}
	}
	var runStart time.Time
	if lr := res.build.Status.LatestRun; lr != nil && lr.StartTime != nil {
		runStart = lr.StartTime.Time
	}
	// When clone and preflight were done: the clone task (NodeJS, Maven) or
	// the preflight step of the first platform's build task (Containerfile).
	var checked float64
	for _, tr := range res.taskRuns {
		if tr.Labels["tekton.dev/pipelineTask"] == pipeline.TaskClone && tr.Status.CompletionTime != nil {
			checked = tr.Status.CompletionTime.Sub(start).Seconds()
		}
		for _, st := range tr.Status.Steps {
			if st.Name == pipeline.StepPreflight && st.Terminated != nil {
				checked = st.Terminated.FinishedAt.Sub(start).Seconds()
			}
		}
	}
	mode := "start-runs-while-provisioning (default)"
	if strings.Contains(os.Getenv("MAB_OPERATOR_ARGS"), "start-runs-while-provisioning=false") {
		mode = "gate, then run (--start-runs-while-provisioning=false)"
	}
	t.Logf("SUMMARY: overlap %s, bootDelay %s: build wall %.1fs; run started +%.1fs; clone and preflight done +%.1fs; arm64 node usable +%.1fs",
		mode, boot, wall.Seconds(), runStart.Sub(start).Seconds(), checked, nodeReady.Sub(start).Seconds())
}

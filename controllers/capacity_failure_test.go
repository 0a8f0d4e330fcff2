package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/controllers/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

var provisioningFailed = capacity.Result{Reason: v1alpha1.ReasonProvisioningFailed, Terminal: true, Failed: true,
	Message: "linux/arm64: no arm64 node could be provisioned: m6g.xlarge in eu-west-3a: Machine x: InvalidConfiguration: not supported",
	Waiting: map[v1alpha1.Platform]string{v1alpha1.PlatformLinuxARM64: "no arm64 node could be provisioned: InvalidConfiguration"},
	Nodes:   map[v1alpha1.Platform]capacity.NodeSource{v1alpha1.PlatformLinuxARM64: {MachineSet: "infra-arm64-build-eu-west-3a", InstanceType: "m6g.xlarge"}}}

func (f *fakeCapacity) set(r capacity.Result) {
	f.mu.Lock()
	f.res = r
	f.mu.Unlock()
}

// capacityEvents gives the operator a capacity watch the test drives, as
// the real checker's BuildWatches (nodes, MachineSets) drive it.
func capacityEvents(ch chan event.GenericEvent) operatorOption {
	return func(_ **rest.Config, r *MultiArchBuildReconciler) {
		r.CapacityWatches = []source.Source{source.Channel(ch, &handler.EnqueueRequestForObject{})}
	}
}

// poke is a capacity change concerning the build (what a node or
// MachineSet event maps to).
func poke(t *testing.T, ch chan event.GenericEvent, ns, name string) {
	t.Helper()
	ch <- event.GenericEvent{Object: getBuild(t, ns, name)}
}

func TestCapacityFailureFailsTheBuildUntilARebuild(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	capc := &fakeCapacity{res: provisioningFailed}
	events := make(chan event.GenericEvent, 4)
	startOperator(t, env, ns, capc, capacityEvents(events))
	b := createBuild(t, newBuild(ns, "no-node"))
	eventually(t, "Failed with ProvisioningFailed", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		c := condOf(b, v1alpha1.ConditionSucceeded)
		return b.Status.Phase == v1alpha1.PhaseFailed && c.Reason == v1alpha1.ReasonProvisioningFailed &&
			strings.Contains(c.Message, "InvalidConfiguration"), fmt.Sprintf("%s %+v", b.Status.Phase, c)
	})
	var arm *v1alpha1.PlatformStatus
	for i := range b.Status.Platforms {
		if b.Status.Platforms[i].Platform == v1alpha1.PlatformLinuxARM64 {
			arm = &b.Status.Platforms[i]
		}
	}
	if arm == nil || arm.NodeWait == nil || arm.NodeWait.Until == nil || arm.NodeWait.MachineSet != "infra-arm64-build-eu-west-3a" ||
		arm.NodeWait.InstanceType != "m6g.xlarge" || arm.NodeWait.Run != pipeline.RunName(b) || !strings.Contains(arm.Message, "InvalidConfiguration") {
		t.Fatalf("arm64 status: %+v", arm)
	}
	if n := len(runsOf(t, adminClient, ns)); n != 0 {
		t.Fatalf("%d runs for a build no node can take", n)
	}
	// Nodes come back: the failed run stays failed...
	capc.set(capacity.Result{Ready: true, Reason: v1alpha1.ReasonNodesAvailable})
	poke(t, events, ns, b.Name)
	time.Sleep(2 * time.Second)
	if b = getBuild(t, ns, b.Name); b.Status.Phase != v1alpha1.PhaseFailed || len(runsOf(t, adminClient, ns)) != 0 {
		t.Fatalf("a failed build ran again without a rebuild: %s", b.Status.Phase)
	}
	for _, p := range b.Status.Platforms {
		if p.Platform == v1alpha1.PlatformLinuxARM64 && !strings.Contains(p.Message, "InvalidConfiguration") {
			t.Errorf("after another reconcile, arm64 no longer says why: %q", p.Message)
		}
	}
	// ...until the user asks for a new run.
	b.Annotations = map[string]string{"build.multiarch.io/rebuild": "2"}
	if err := adminClient.Update(ctx, b); err != nil {
		t.Fatal(err)
	}
	waitForRun(t, ns, b.Name)
}

func TestCapacityFailureCancelsARunStillWaitingForItsNode(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	capc := readyCapacity()
	events := make(chan event.GenericEvent, 4)
	startOperator(t, env, ns, capc, capacityEvents(events))
	b := createBuild(t, newBuild(ns, "node-gone"))
	run := waitForRun(t, ns, b.Name)
	eventually(t, "both platforms Waiting in the run", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return b.Status.LatestRun != nil && len(b.Status.Platforms) == 2 && b.Status.Platforms[1].State == v1alpha1.PlatformWaiting, fmt.Sprintf("%+v", b.Status.Platforms)
	})
	// The arm64 node the run was started for is gone, and no zone can give one.
	capc.set(provisioningFailed)
	poke(t, events, ns, b.Name)
	eventually(t, "the run cancelled and the build Failed", func() (bool, string) {
		got := &tektonv1.PipelineRun{}
		if err := adminClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: run.Name}, got); err != nil {
			return false, err.Error()
		}
		b = getBuild(t, ns, b.Name)
		c := condOf(b, v1alpha1.ConditionSucceeded)
		return got.Spec.Status == tektonv1.PipelineRunSpecStatusCancelledRunFinally && b.Status.Phase == v1alpha1.PhaseFailed &&
			c.Reason == v1alpha1.ReasonProvisioningFailed, fmt.Sprintf("run %q, build %s %+v", got.Spec.Status, b.Status.Phase, c)
	})
}

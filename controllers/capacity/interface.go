package capacity

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// Checker answers, for one MultiArchBuild, whether a node of every
// requested architecture can take its build pods now. The build reconciler
// asks before it starts a run; the capacity controller does the cluster-wide
// work (MachineSets) and the checker only reads.
type Checker interface {
	Check(ctx context.Context, build *v1alpha1.MultiArchBuild) (Result, error)
}

// Watcher is implemented by a Checker whose answer changes
// with cluster objects (nodes, MachineSets). The build reconciler adds each
// source to its controller (builder.WatchesRawSource); they enqueue the
// builds that still need the architecture that changed, so a waiting build
// (Terminal ones included) is re-checked when a node appears.
type Watcher interface {
	BuildWatches() []source.Source
}

// Result is the answer of a Checker.
type Result struct {
	// Ready is true when every platform has a usable node.
	Ready bool
	// Reason and Message become the CapacityReady condition.
	Reason  string
	Message string
	// Waiting maps each platform that has no usable node yet to a short
	// explanation shown in status.platforms[].message.
	Waiting map[v1alpha1.Platform]string
	// Terminal is true when waiting cannot help until the user or the
	// cluster admin acts (for example an architecture no MachineSet can serve
	// and no node has): the build reports it and does not requeue on a timer.
	Terminal bool
}

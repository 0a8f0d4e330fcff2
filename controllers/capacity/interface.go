package capacity

import (
	"context"

	corev1 "k8s.io/api/core/v1"

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
	// Failed is true when the build cannot get a node at all (every
	// allowed instance type failed in every zone, or the provisioning
	// timeout passed): the build fails with Reason.
	Failed bool
	// Nodes names, for each waiting platform, the operator's MachineSet
	// scaled up for it, for status.platforms[].nodeWait.
	Nodes map[v1alpha1.Platform]NodeSource
	// Tolerations per architecture for the build pods, from the
	// BuildCapacityPolicy; nil when there is none (the flags apply).
	Tolerations map[string][]corev1.Toleration
}

// NodeSource is where a platform's node is to come from.
type NodeSource struct {
	MachineSet   string
	InstanceType string
}

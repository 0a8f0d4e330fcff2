package capacity

import (
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// RunNameFunc names the PipelineRun of a build's current generation and
// rebuild token (pipeline.RunName).
type RunNameFunc func(*v1alpha1.MultiArchBuild) string

// ArchDemand is the cluster-wide demand for one architecture.
type ArchDemand struct {
	// Managed are the builds with policy Managed that need the architecture:
	// they may have MachineSets created and scaled up.
	Managed []types.NamespacedName
	// Builds counts every build (either policy) that needs it: any keeps a
	// scaled-up MachineSet from idling down.
	Builds int
	// InstanceType is the spec.capacity.instanceTypes override of the oldest
	// Managed build that has one of this architecture, "" when none does.
	InstanceType string
}

// DemandOptions bound and filter what builds count as needing.
type DemandOptions struct {
	// Now is the time to judge waits against (zero: no time-based bound).
	Now time.Time
	// ProvisioningTimeout bounds how long a build may wait for a node; 0
	// means no bound. A build holds capacity at most for its spec.timeout
	// plus this, counted from when it started to wait.
	ProvisioningTimeout time.Duration
	// ManagedAllowed says whether the cluster's policy lets a Managed
	// build have MachineSets made or scaled up for an architecture; nil
	// allows every one. A build it refuses still counts in Builds (it
	// keeps a scaled-up MachineSet from idling down under its pods).
	ManagedAllowed func(b *v1alpha1.MultiArchBuild, arch string) bool
	// InstanceTypeAllowed says whether a build's spec.capacity.instanceTypes
	// override may be used; nil allows every one.
	InstanceTypeAllowed func(arch, instanceType string) bool
}

// NeededArchs returns the architectures build still needs nodes of (see the
// package documentation), sorted, without time-based bounds.
func NeededArchs(b *v1alpha1.MultiArchBuild, runName RunNameFunc) []string {
	return NeededArchsAt(b, runName, DemandOptions{})
}

// NeededArchsAt is NeededArchs with the bounds of o.
func NeededArchsAt(b *v1alpha1.MultiArchBuild, runName RunNameFunc, o DemandOptions) []string {
	if b.DeletionTimestamp != nil || blocked(b, o) {
		return nil
	}
	platforms := b.Spec.Platforms
	if len(platforms) == 0 {
		platforms = []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}
	}
	name := ""
	if runName != nil {
		name = runName(b)
	}
	current := b.Status.LatestRun != nil && runName != nil && b.Status.LatestRun.Name == name &&
		b.Status.LatestRun.Generation == b.Generation
	if current && b.Status.LatestRun.CompletionTime != nil {
		return nil
	}
	if expired(b, name, current, o) {
		return nil
	}
	done := map[v1alpha1.Platform]bool{}
	if current {
		for _, p := range b.Status.Platforms {
			if p.State == v1alpha1.PlatformBuilt || p.State == v1alpha1.PlatformFailed || p.State == v1alpha1.PlatformCancelled {
				done[p.Platform] = true
			}
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range platforms {
		if a := p.Arch(); !done[p] && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

// WaitingSince is when the build's run named run started to wait for a
// node (the earliest status.platforms[].nodeWait.since of that run), zero
// when it has not waited.
func WaitingSince(b *v1alpha1.MultiArchBuild, run string) time.Time {
	var since time.Time
	for _, p := range b.Status.Platforms {
		if w := p.NodeWait; w != nil && w.Run == run && (since.IsZero() || w.Since.Time.Before(since)) {
			since = w.Since.Time
		}
	}
	return since
}

// expired: the build has held capacity for longer than it may: its wait
// for a node began (or its run started) more than ProvisioningTimeout +
// spec.timeout ago. Whatever it still waits for, it would have failed or
// timed out by now (a run deleted by someone, a volume that never binds).
func expired(b *v1alpha1.MultiArchBuild, run string, current bool, o DemandOptions) bool {
	if o.Now.IsZero() || o.ProvisioningTimeout <= 0 {
		return false
	}
	start := WaitingSince(b, run)
	if current && b.Status.LatestRun.StartTime != nil && start.IsZero() {
		start = b.Status.LatestRun.StartTime.Time
	}
	if start.IsZero() {
		return false
	}
	timeout, err := b.Spec.TimeoutDuration()
	if err != nil || timeout <= 0 {
		timeout = time.Hour
	}
	return o.Now.Sub(start) > timeout+o.ProvisioningTimeout
}

// blocked: the build cannot run whatever the nodes, so it must not make
// the operator pay for one: its prerequisites failed, a write it needs was
// refused (it retries, and needs nodes again once an admin fixed it), its
// run was deleted by someone else, or it already failed for want of a node.
func blocked(b *v1alpha1.MultiArchBuild, o DemandOptions) bool {
	for _, c := range b.Status.Conditions {
		if c.ObservedGeneration != 0 && c.ObservedGeneration != b.Generation {
			continue
		}
		if c.Status != metav1.ConditionFalse {
			continue
		}
		switch c.Reason {
		case v1alpha1.ReasonInvalidSpec, v1alpha1.ReasonForbidden, v1alpha1.ReasonRejected, v1alpha1.ReasonConflict,
			v1alpha1.ReasonRunDeleted, v1alpha1.ReasonRunCreateFailed,
			v1alpha1.ReasonProvisioningFailed, v1alpha1.ReasonProvisioningTimeout:
			return true
		}
		switch {
		case c.Type == v1alpha1.ConditionPipelinesAvailable,
			c.Type == v1alpha1.ConditionStorageReady && c.Reason == v1alpha1.ReasonStorageClassNotFound:
			return true
		case c.Type == v1alpha1.ConditionStorageReady && (c.Reason == v1alpha1.ReasonVolumePending || c.Reason == v1alpha1.ReasonVolumeLost):
			// A volume that does not bind within the provisioning timeout
			// will not let the run start either.
			if !o.Now.IsZero() && o.ProvisioningTimeout > 0 && o.Now.Sub(c.LastTransitionTime.Time) > o.ProvisioningTimeout {
				return true
			}
		}
	}
	return false
}

// Policy is the build's capacity policy with the default applied.
func Policy(b *v1alpha1.MultiArchBuild) v1alpha1.CapacityPolicy {
	if b.Spec.Capacity.Policy == "" {
		return v1alpha1.CapacityManaged
	}
	return b.Spec.Capacity.Policy
}

// Demand aggregates NeededArchs over builds, per architecture.
func Demand(builds []v1alpha1.MultiArchBuild, runName RunNameFunc) map[string]*ArchDemand {
	return DemandAt(builds, runName, DemandOptions{})
}

// DemandAt aggregates NeededArchsAt over builds, per architecture.
func DemandAt(builds []v1alpha1.MultiArchBuild, runName RunNameFunc, o DemandOptions) map[string]*ArchDemand {
	sorted := make([]*v1alpha1.MultiArchBuild, len(builds))
	for i := range builds {
		sorted[i] = &builds[i]
	}
	// Oldest first, so the instance type choice is stable and first come.
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	out := map[string]*ArchDemand{}
	for _, b := range sorted {
		for _, a := range NeededArchsAt(b, runName, o) {
			d := out[a]
			if d == nil {
				d = &ArchDemand{}
				out[a] = d
			}
			d.Builds++
			if Policy(b) != v1alpha1.CapacityManaged || o.ManagedAllowed != nil && !o.ManagedAllowed(b, a) {
				continue
			}
			d.Managed = append(d.Managed, types.NamespacedName{Namespace: b.Namespace, Name: b.Name})
			// An override of the wrong architecture (m5a for arm64) is
			// that build's problem (Check reports it), not everyone's.
			if it := b.Spec.Capacity.InstanceTypes[a]; d.InstanceType == "" && it != "" &&
				(o.InstanceTypeAllowed == nil || o.InstanceTypeAllowed(a, it)) {
				if ia := InstanceTypeArch(it); ia == "" || ia == a {
					d.InstanceType = it
				}
			}
		}
	}
	return out
}

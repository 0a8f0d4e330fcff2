package capacity

import (
	"sort"

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

// NeededArchs returns the architectures build still needs nodes of (see the
// package documentation), sorted.
func NeededArchs(b *v1alpha1.MultiArchBuild, runName RunNameFunc) []string {
	if b.DeletionTimestamp != nil || blocked(b) {
		return nil
	}
	platforms := b.Spec.Platforms
	if len(platforms) == 0 {
		platforms = []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}
	}
	current := b.Status.LatestRun != nil && runName != nil && b.Status.LatestRun.Name == runName(b) &&
		b.Status.LatestRun.Generation == b.Generation
	if current && b.Status.LatestRun.CompletionTime != nil {
		return nil
	}
	done := map[v1alpha1.Platform]bool{}
	if current {
		for _, p := range b.Status.Platforms {
			if p.State == v1alpha1.PlatformBuilt || p.State == v1alpha1.PlatformFailed {
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

// blocked: the build cannot run whatever the nodes, so it must not make
// the operator pay for one.
func blocked(b *v1alpha1.MultiArchBuild) bool {
	for _, c := range b.Status.Conditions {
		if c.ObservedGeneration != 0 && c.ObservedGeneration != b.Generation {
			continue
		}
		if c.Status != metav1.ConditionFalse {
			continue
		}
		switch {
		case c.Type == v1alpha1.ConditionPipelinesAvailable,
			c.Reason == v1alpha1.ReasonInvalidSpec,
			c.Type == v1alpha1.ConditionStorageReady && c.Reason == v1alpha1.ReasonStorageClassNotFound:
			return true
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
		for _, a := range NeededArchs(b, runName) {
			d := out[a]
			if d == nil {
				d = &ArchDemand{}
				out[a] = d
			}
			d.Builds++
			if Policy(b) != v1alpha1.CapacityManaged {
				continue
			}
			d.Managed = append(d.Managed, types.NamespacedName{Namespace: b.Namespace, Name: b.Name})
			// An override of the wrong architecture (m5a for arm64) is
			// that build's problem (Check reports it), not everyone's.
			if it := b.Spec.Capacity.InstanceTypes[a]; d.InstanceType == "" && it != "" {
				if ia := InstanceTypeArch(it); ia == "" || ia == a {
					d.InstanceType = it
				}
			}
		}
	}
	return out
}

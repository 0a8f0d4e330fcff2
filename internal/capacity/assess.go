package capacity

import (
	"fmt"
	"sort"
	"strings"
	"time"

	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	"k8s.io/utils/ptr"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// Infrastructure is what the operator needs from Infrastructure/cluster.
type Infrastructure struct {
	// Found is false when the object (or its CRD) does not exist.
	Found bool
	// Platform is status.platformStatus.type (AWS, Azure, BareMetal, ...).
	Platform string
	// Region is status.platformStatus.aws.region on AWS and
	// status.platformStatus.gcp.region on GCP; Azure's status has none (the
	// template MachineSet's location is used).
	Region string
	// Name is status.infrastructureName, the prefix of MachineSet names.
	Name string
}

// MachineSets sorts the MachineSets that serve one architecture.
type MachineSets struct {
	// Ours are managed by the operator, sorted by name.
	Ours []*machinev1beta1.MachineSet
	// Foreign are the others, sorted by name.
	Foreign []*machinev1beta1.MachineSet
}

// ServingArch splits the MachineSets whose nodes have goArch.
func ServingArch(sets []machinev1beta1.MachineSet, goArch string) MachineSets {
	var out MachineSets
	for i := range sets {
		ms := &sets[i]
		if ms.DeletionTimestamp != nil {
			continue
		}
		if a, _ := MachineSetArch(ms); a != goArch {
			continue
		}
		if IsManaged(ms) {
			out.Ours = append(out.Ours, ms)
		} else {
			out.Foreign = append(out.Foreign, ms)
		}
	}
	sort.Slice(out.Ours, func(i, j int) bool { return out.Ours[i].Name < out.Ours[j].Name })
	sort.Slice(out.Foreign, func(i, j int) bool { return out.Foreign[i].Name < out.Foreign[j].Name })
	return out
}

// Replicas is spec.replicas with the Machine API default of 1.
func Replicas(ms *machinev1beta1.MachineSet) int32 { return ptr.Deref(ms.Spec.Replicas, 1) }

// View is everything observed about one architecture, for one build's policy.
type View struct {
	Arch   string
	Policy v1alpha1.CapacityPolicy
	// UsableNodes are the Ready, schedulable, tolerated nodes of Arch.
	UsableNodes []string
	// MachineAPI: the MachineSet CRD is served.
	MachineAPI bool
	Infra      Infrastructure
	Sets       MachineSets
	Now        time.Time
	Conflict   ConflictPolicy
	// Candidates are the instance types the operator may use for Arch, in
	// order (the build's allowed override, else the policy's default and
	// fallbacks); a MachineSet whose type failed in its zone moves to the
	// next (see Eligible, NextInstanceType).
	Candidates []string
	// SingleArchPayload: ClusterVersion says the release payload is not
	// multi-architecture, so only nodes of ControlPlaneArch can join.
	SingleArchPayload bool
	ControlPlaneArch  string
}

// Status is the capacity of one architecture, as a CapacityReady reason.
type Status struct {
	Ready   bool
	Reason  string
	Message string
	// Terminal: waiting does not help until an admin or the user acts.
	Terminal bool
	// Failed: the cloud refused every instance type in every zone the
	// policy allows (Reason ProvisioningFailed): the build fails.
	Failed bool
	// Create: the capacity controller should create MachineSets (call
	// PlanMachineSets); the reason is then ProvisioningNodes unless the plan
	// fails.
	Create bool
}

// Assess says whether v.Arch can take build pods now, and if not, why and
// what the capacity controller does about it. The order of the checks is the
// order of the outcomes a user sees: nodes, a MachineSet at odds with another
// controller, nodes on their way, then why none can come.
func Assess(v View) Status {
	nodeLabel := LabelArchNode + "=" + v.Arch
	if len(v.UsableNodes) > 0 {
		return Status{Ready: true, Reason: v1alpha1.ReasonNodesAvailable,
			Message: fmt.Sprintf("%d usable %s node(s): %s", len(v.UsableNodes), v.Arch, strings.Join(first(v.UsableNodes, 3), ", "))}
	}
	for _, ms := range v.Sets.Ours {
		if InConflict(ms.Annotations, v.Now, v.Conflict) {
			return Status{Reason: v1alpha1.ReasonMachineSetConflict,
				Message: fmt.Sprintf("no usable %s node; another controller keeps changing the replicas of MachineSet %s/%s: the operator stands back until %s (scale it yourself, or stop the other writer)",
					v.Arch, ms.Namespace, ms.Name, conflictUntil(ms, v.Conflict))}
		}
	}
	if v.SingleArchPayload && v.ControlPlaneArch != "" && v.Arch != v.ControlPlaneArch {
		return Status{Reason: v1alpha1.ReasonUnsupportedPlatform, Terminal: true,
			Message: fmt.Sprintf("no usable %s node, and none can join: the cluster runs a single-architecture (%s) release payload (ClusterVersion version status.desired.architecture is not Multi); migrate the cluster to the multi-architecture payload (oc adm upgrade --to-multi-arch) before adding %s nodes", v.Arch, v.ControlPlaneArch, v.Arch)}
	}
	var failures []string
	exhausted := len(v.Sets.Ours) > 0
	for _, ms := range v.Sets.Ours {
		if f := ms.Annotations[AnnotationLastFailure]; f != "" && TypeFailed(ms.Annotations, InstanceTypeOf(ms), v.Now) {
			failures = append(failures, f)
		}
		if NextInstanceType(ms.Annotations, candidatesOr(v.Candidates, InstanceTypeOf(ms)), v.Now) != "" {
			exhausted = false
		}
	}
	if exhausted && len(failures) > 0 {
		return Status{Reason: v1alpha1.ReasonProvisioningFailed, Terminal: true, Failed: true,
			Message: fmt.Sprintf("no %s node could be provisioned: every allowed instance type (%s) failed in every zone: %s; the operator scaled its MachineSets back to 0 and tries again after %s",
				v.Arch, strings.Join(candidatesOr(v.Candidates), ", "), strings.Join(failures, "; "), FailureMemory)}
	}
	failed := ""
	if len(failures) > 0 {
		failed = "; earlier: " + strings.Join(failures, "; ")
	}
	var scaling []string
	for _, ms := range append(append([]*machinev1beta1.MachineSet{}, v.Sets.Ours...), v.Sets.Foreign...) {
		if r := Replicas(ms); r > 0 {
			scaling = append(scaling, fmt.Sprintf("%s (%s, %d/%d ready)", ms.Name, InstanceTypeOf(ms), ms.Status.ReadyReplicas, r))
		}
	}
	if len(scaling) > 0 {
		return Status{Reason: v1alpha1.ReasonProvisioningNodes,
			Message: fmt.Sprintf("waiting for %s nodes from MachineSet %s%s", v.Arch, strings.Join(scaling, ", "), failed)}
	}
	noNode := fmt.Sprintf("no Ready, schedulable node with %s", nodeLabel)
	if !v.MachineAPI {
		return Status{Reason: v1alpha1.ReasonNoNodes, Terminal: true,
			Message: noNode + "; this cluster has no OpenShift Machine API (MachineSet not served) to create one: add a node of that architecture"}
	}
	if v.Policy == v1alpha1.CapacityUnmanaged {
		return Status{Reason: v1alpha1.ReasonNoNodes, Terminal: true,
			Message: noNode + "; spec.capacity.policy is Unmanaged, so the operator does not create one"}
	}
	if !v.Infra.Found || v.Infra.Name == "" || v.Infra.Platform == "" {
		return Status{Reason: v1alpha1.ReasonMachineAPIUnavailable, Terminal: true,
			Message: noNode + "; Infrastructure/cluster has no status.infrastructureName or status.platformStatus, so no MachineSet can be made"}
	}
	if !SupportedPlatform(v.Infra.Platform) {
		return Status{Reason: v1alpha1.ReasonUnsupportedPlatform, Terminal: true,
			Message: fmt.Sprintf("%s; the operator creates MachineSets on AWS, Azure and GCP only, this cluster runs on %s: add a %s MachineSet yourself", noNode, v.Infra.Platform, v.Arch)}
	}
	if !PlatformArchs[v.Infra.Platform][v.Arch] {
		return Status{Reason: v1alpha1.ReasonUnsupportedArch, Terminal: true,
			Message: fmt.Sprintf("%s; %s has no %s instance types: remove linux/%s from spec.platforms or add such a node", noNode, v.Infra.Platform, v.Arch, v.Arch)}
	}
	if len(v.Sets.Ours) > 0 {
		names := make([]string, len(v.Sets.Ours))
		for i, ms := range v.Sets.Ours {
			names[i] = ms.Name
		}
		return Status{Reason: v1alpha1.ReasonProvisioningNodes,
			Message: fmt.Sprintf("scaling up MachineSet %s for %s nodes%s", strings.Join(names, ", "), v.Arch, failed)}
	}
	return Status{Reason: v1alpha1.ReasonProvisioningNodes, Create: true,
		Message: fmt.Sprintf("creating a MachineSet for %s nodes", v.Arch)}
}

func conflictUntil(ms *machinev1beta1.MachineSet, p ConflictPolicy) string {
	since, _ := parseTime(ms.Annotations[AnnotationConflictSince])
	return since.Add(p.Backoff).UTC().Format(time.RFC3339)
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(append([]string{}, s[:n]...), "...")
	}
	return s
}

// candidatesOr is candidates, or the given current types when the policy
// names none (any type the MachineSet has is then the only candidate).
func candidatesOr(candidates []string, current ...string) []string {
	if len(candidates) > 0 {
		return candidates
	}
	return current
}

package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BuildCapacityPolicyName is the name of the one BuildCapacityPolicy the
// operator reads (OpenShift's singleton convention for cluster configuration:
// the API server refuses any other name).
const BuildCapacityPolicyName = "cluster"

// Architecture is a CPU architecture, the value of the node label
// kubernetes.io/arch.
// +kubebuilder:validation:Enum=amd64;arm64;ppc64le;s390x
type Architecture string

// The architectures the operator can build for.
const (
	ArchAMD64   Architecture = "amd64"
	ArchARM64   Architecture = "arm64"
	ArchPPC64LE Architecture = "ppc64le"
	ArchS390X   Architecture = "s390x"
)

// ManagedCapacityState says whether the operator creates and scales
// MachineSets at all.
// +kubebuilder:validation:Enum=Enabled;Disabled
type ManagedCapacityState string

const (
	// ManagedCapacityEnabled lets the operator create and scale MachineSets
	// for builds whose spec.capacity.policy is Managed.
	ManagedCapacityEnabled ManagedCapacityState = "Enabled"
	// ManagedCapacityDisabled: the operator never creates or scales a
	// MachineSet; every build is treated as Unmanaged (it waits for nodes
	// someone else provides). MachineSets already scaled up still go back to
	// zero when idle.
	ManagedCapacityDisabled ManagedCapacityState = "Disabled"
)

// BuildCapacityPolicySpec is what a cluster admin decides about build node
// capacity. Every field is optional: an unset field keeps the operator's
// flag (internal/settings), so an empty spec, or no object at all, behaves
// as the operator did before this API existed.
//
// Durations are strings (such as 30m or 1h30m), validated by CEL, not
// metav1.Duration: a typed read-modify-write of a metav1.Duration turns "30m"
// into "30m0s", which a GitOps tool then reports as drift from Git and
// writes back forever.
type BuildCapacityPolicySpec struct {
	// managedCapacity Enabled (the default) lets the operator create and
	// scale OpenShift MachineSets for builds whose spec.capacity.policy is
	// Managed; Disabled: it never creates or scales one, every build waits
	// for nodes that exist (as with policy Unmanaged), and MachineSets it
	// scaled up earlier still go back to zero when idle.
	// +kubebuilder:default=Enabled
	// +optional
	ManagedCapacity ManagedCapacityState `json:"managedCapacity,omitempty"`

	// namespaceSelector selects the namespaces whose builds may get Managed
	// capacity (by the namespace's labels). Absent or empty ({}): every
	// namespace. A build with spec.capacity.policy Managed in a namespace it
	// does not select is refused at admission (with the guard-rail policy
	// installed) and otherwise treated as Unmanaged.
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="spec.namespaceSelector.matchExpressions[].operator must be In, NotIn, Exists or DoesNotExist"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['In', 'NotIn']) || (has(e.values) && size(e.values) > 0))",message="spec.namespaceSelector.matchExpressions[].values must not be empty when the operator is In or NotIn"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0)",message="spec.namespaceSelector.matchExpressions[].values must be empty when the operator is Exists or DoesNotExist"
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// architectures is the policy of each architecture (amd64, arm64,
	// ppc64le, s390x), at most one entry each. An architecture not listed
	// keeps the operator's flags: --instance-type, --arch-toleration,
	// --machineset-replicas, and any instance type a tenant asks for.
	// +kubebuilder:validation:MaxItems=4
	// +listType=map
	// +listMapKey=arch
	// +optional
	Architectures []ArchitectureCapacityPolicy `json:"architectures,omitempty"`

	// zones are the availability zones build MachineSets may be created in,
	// in order of preference (the first is tried first, the next ones are
	// fallbacks). Default: --machineset-zones, else the zone of the template
	// worker MachineSet. An architecture's own zones replace this list for
	// that architecture.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.all(z, z.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'))",message="spec.zones entries must be zone names such as us-east-1a: letters, digits, '-', '_' and '.'"
	// +kubebuilder:validation:XValidation:rule="self.all(z, self.exists_one(y, y == z))",message="spec.zones must not list a zone twice: remove the duplicate"
	// +listType=atomic
	// +optional
	Zones []string `json:"zones,omitempty"`

	// idleTimeout is how long a MachineSet the operator manages stays scaled
	// up with no build needing its architecture before it goes back to 0, as
	// a duration such as 30m or 1h. Default: --machineset-idle-timeout (30m).
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s')",message="spec.idleTimeout must be a positive duration such as 30m, 1h or 1h30m"
	// +optional
	IdleTimeout string `json:"idleTimeout,omitempty"`

	// provisioningTimeout is how long a build may wait for a node of an
	// architecture it needs before it fails, as a duration such as 20m.
	// Default: no limit of its own (the build's spec.timeout still applies
	// once its run starts).
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s')",message="spec.provisioningTimeout must be a positive duration such as 20m, 1h or 1h30m"
	// +optional
	ProvisioningTimeout string `json:"provisioningTimeout,omitempty"`
}

// ArchitectureCapacityPolicy is the policy of one architecture.
type ArchitectureCapacityPolicy struct {
	// arch is the architecture: amd64, arm64, ppc64le or s390x (the node
	// label kubernetes.io/arch).
	// +required
	Arch Architecture `json:"arch"`

	// instanceTypes are the cloud instance types of this architecture's
	// build MachineSets, in order: the first is the default, the others are
	// fallbacks, tried in order when the first cannot be provisioned. They
	// are also the only types a MultiArchBuild may ask for in
	// spec.capacity.instanceTypes. Absent: --instance-type for this
	// architecture, and tenants may ask for any type.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(t, t.matches('^[a-z0-9-]+[.][a-z0-9-]+$'))",message="spec.architectures[].instanceTypes entries must be instance types such as m6g.2xlarge, not empty"
	// +kubebuilder:validation:XValidation:rule="self.all(t, self.exists_one(u, u == t))",message="spec.architectures[].instanceTypes must not list an instance type twice: remove the duplicate"
	// +listType=atomic
	// +optional
	InstanceTypes []string `json:"instanceTypes,omitempty"`

	// maxReplicas is the most nodes of this architecture the operator's
	// MachineSets may have, summed over zones, while builds need it (0 to
	// 100). 0 forbids Managed capacity for this architecture: its builds wait
	// for nodes that exist. Default: --machineset-replicas (1).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxReplicas *int32 `json:"maxReplicas,omitempty"`

	// tolerations are added to this architecture's build pods, and a node
	// taint they tolerate does not make a node unusable for the build.
	// Replaces --arch-toleration for this architecture when set.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// zones replace spec.zones for this architecture (not every zone offers
	// every instance type), in order of preference.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.all(z, z.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'))",message="spec.architectures[].zones entries must be zone names such as us-east-1a: letters, digits, '-', '_' and '.'"
	// +kubebuilder:validation:XValidation:rule="self.all(z, self.exists_one(y, y == z))",message="spec.architectures[].zones must not list a zone twice: remove the duplicate"
	// +listType=atomic
	// +optional
	Zones []string `json:"zones,omitempty"`
}

// BuildCapacityPolicyStatus is what the capacity controller observed.
type BuildCapacityPolicyStatus struct {
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions report whether the policy is applied.
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// architectures summarise the build capacity of each architecture.
	// +listType=map
	// +listMapKey=arch
	// +optional
	Architectures []ArchitectureCapacityStatus `json:"architectures,omitempty"`
}

// ArchitectureCapacityStatus is the build capacity of one architecture.
type ArchitectureCapacityStatus struct {
	// arch is the architecture.
	Arch Architecture `json:"arch"`
	// machineSets are the names of the MachineSets the operator manages for
	// this architecture (in the Machine API namespace).
	// +listType=atomic
	// +optional
	MachineSets []string `json:"machineSets,omitempty"`
	// replicas is the sum of the desired replicas of those MachineSets.
	// +optional
	Replicas int32 `json:"replicas"`
	// readyNodes is the number of Ready, schedulable nodes of this
	// architecture that build pods may use.
	// +optional
	ReadyNodes int32 `json:"readyNodes"`
	// lastScaleTime is when the operator last changed the replicas of one
	// of those MachineSets.
	// +optional
	LastScaleTime *metav1.Time `json:"lastScaleTime,omitempty"`
}

// BuildCapacityPolicy is the cluster admin's policy for build node capacity:
// whether and where the operator creates MachineSets, which instance types
// each architecture uses and tenants may ask for, how many nodes, for how
// long. Cluster-scoped, one object named cluster.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bcp
// +kubebuilder:printcolumn:name="Managed",type=string,JSONPath=`.spec.managedCapacity`
// +kubebuilder:printcolumn:name="Architectures",type=string,JSONPath=`.spec.architectures[*].arch`
// +kubebuilder:printcolumn:name="Idle Timeout",type=string,JSONPath=`.spec.idleTimeout`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'cluster'",message="metadata.name must be cluster: BuildCapacityPolicy is a singleton, the operator reads only the object named cluster"
type BuildCapacityPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the admin's policy; every field is optional.
	// +kubebuilder:default={}
	// +optional
	Spec BuildCapacityPolicySpec `json:"spec,omitempty"`

	// status is what the capacity controller observed.
	// +optional
	Status BuildCapacityPolicyStatus `json:"status,omitempty"`
}

// BuildCapacityPolicyList is a list of BuildCapacityPolicies.
// +kubebuilder:object:root=true
type BuildCapacityPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BuildCapacityPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&BuildCapacityPolicy{}, &BuildCapacityPolicyList{})
}

package capacity

// Labels and annotations the operator sets on the MachineSets it manages.
const (
	// LabelManagedBy marks a MachineSet the operator created (or an admin
	// handed over): the only MachineSets it scales.
	LabelManagedBy = "build.multiarch.io/managed-by-operator"
	// LabelArch is the kubernetes.io/arch value the MachineSet's nodes have.
	LabelArch = "build.multiarch.io/arch"

	// AnnotationLastNeeded is when a build last needed the MachineSet
	// (RFC 3339); absent while one needs it or while it is at zero.
	AnnotationLastNeeded = "build.multiarch.io/last-needed"
	// AnnotationReplicas is the replica count the operator last wrote.
	AnnotationReplicas = "build.multiarch.io/replicas"
	// AnnotationLastScale is when the operator last changed the replicas.
	AnnotationLastScale = "build.multiarch.io/last-scale"
	// AnnotationCorrections counts the times the operator had to write
	// replicas again after someone else changed them, since
	// AnnotationCorrectionsSince.
	AnnotationCorrections      = "build.multiarch.io/corrections"
	AnnotationCorrectionsSince = "build.multiarch.io/corrections-since"
	// AnnotationConflictSince is set while the operator stands back from a
	// MachineSet another controller keeps resizing.
	AnnotationConflictSince = "build.multiarch.io/conflict-since"
)

// OpenShift Machine API and node labels and annotations.
const (
	LabelArchNode        = "kubernetes.io/arch"
	LabelMachineSet      = "machine.openshift.io/cluster-api-machineset"
	LabelMachineRole     = "machine.openshift.io/cluster-api-machine-role"
	LabelCluster         = "machine.openshift.io/cluster-api-cluster"
	LabelNodeRoleWorker  = "node-role.kubernetes.io/worker"
	LabelNodeRoleMaster  = "node-role.kubernetes.io/master"
	LabelNodeRoleControl = "node-role.kubernetes.io/control-plane"

	// AnnotationAutoscalerLabels lists the labels the nodes of a MachineSet
	// will have (k=v,k=v), for the cluster autoscaler's scale from zero; the
	// AWS machine controller writes kubernetes.io/arch there, and the
	// machine-config operator reads it to choose the boot image.
	AnnotationAutoscalerLabels = "capacity.cluster-autoscaler.kubernetes.io/labels"
	AnnotationVCPU             = "machine.openshift.io/vCPU"
	AnnotationMemoryMb         = "machine.openshift.io/memoryMb"
	AnnotationGPU              = "machine.openshift.io/GPU"
	AnnotationMaxPods          = "machine.openshift.io/maxPods"
)

// droppedAnnotations are not copied from the template: they describe the
// template's instance type, or how it was last applied.
var droppedAnnotations = []string{
	AnnotationVCPU, AnnotationMemoryMb, AnnotationGPU, AnnotationMaxPods,
	"kubectl.kubernetes.io/last-applied-configuration",
	AnnotationLastNeeded, AnnotationReplicas, AnnotationCorrections,
	AnnotationCorrectionsSince, AnnotationConflictSince,
}

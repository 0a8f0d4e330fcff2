// Package capacity decides, from values only, whether every architecture a
// MultiArchBuild asks for has a node that can take its build pods, and which
// OpenShift MachineSets to create or scale so that it does. It never holds a
// client: the capacity controller and checker (package controllers/capacity)
// fetch the objects, call these functions and write the results.
//
// # Why a dedicated, cluster-wide capacity controller
//
// MachineSets are shared: three builds that need arm64 must share one arm64
// MachineSet, and the MachineSet may only go back to zero when no build needs
// arm64 any more. A decision taken inside one build's reconcile sees one build
// and would race with the reconciles of the others (three creates, or one build
// scaling down what another still needs). So the demand is aggregated per
// architecture over every MultiArchBuild (Demand), and one controller, keyed by
// architecture, is the only writer of MachineSets. The build reconciler only
// reads (capacity.Checker.Check) and never writes a MachineSet; this controller
// never writes a MultiArchBuild's status (one writer per status). Both call
// Assess on the same observations, so what a build reports is what the
// controller does.
//
// A build needs an architecture while it is not finished (its current run,
// named from generation and rebuild token, has no completion time), it is not
// being deleted, its preflight did not fail (PipelinesAvailable False, an
// InvalidSpec, a missing StorageClass: it cannot run anyway) and that
// platform's build is not already Built or Failed in the current run. Only
// builds with policy Managed create or scale up MachineSets; builds of either
// policy keep a scaled-up MachineSet from idling down (scaling down would drain
// the node their pods run on).
//
// # Which architecture a MachineSet serves
//
// MachineSetArch looks, in order, at: our label build.multiarch.io/arch (set on
// every MachineSet the operator creates); the annotation
// capacity.cluster-autoscaler.kubernetes.io/labels, where OpenShift's AWS
// machine controller records kubernetes.io/arch=<arch> for every MachineSet (and
// which the machine-config operator's boot image controller reads too); and,
// for MachineSets that have neither yet, the AWS instance type family: a "g"
// after the generation digit (m6g, c7gn, r8gd, t4g, x2gd, is4gen) or the a1
// family is AWS Graviton, i.e. arm64; anything else is amd64. The AMI is not
// used: the same AMI id says nothing without the stream it came from.
//
// # Creating a MachineSet
//
// PlanMachineSets clones a worker MachineSet (template labels
// machine.openshift.io/cluster-api-machine-role=worker, not one of ours,
// preferring one that serves the control plane's architecture), once per
// configured zone, named <infrastructureName>-<arch>-build-<zone>, with
// replicas 0, the AMI of that architecture and region from the
// coreos-bootimages stream, the instance type of the oldest Managed build that
// overrides it (else the operator default), selector and template labels
// rewritten, the node-role.kubernetes.io/worker node label, our labels, and no
// owner references (a MachineSet outlives any one build). The autoscaler
// annotation capacity.cluster-autoscaler.kubernetes.io/labels is rewritten to
// the new kubernetes.io/arch, because the machine-config operator's boot image
// controller picks the AMI it writes back from that annotation: a stale
// amd64 there would put the x86_64 AMI back on an arm64 MachineSet. The
// machine.openshift.io/vCPU, memoryMb, GPU and maxPods annotations are dropped:
// they describe the template's instance type, and the machine controller fills
// them in again for the new one.
//
// # Scaling, idling and conflicts
//
// Only MachineSets the operator created (label
// build.multiarch.io/managed-by-operator=true) are ever scaled, up or down: a
// MachineSet someone else made is theirs to size. One with replicas above zero
// that serves a needed architecture is reused (the operator waits for its
// nodes instead of creating a duplicate); one at zero is left alone and the
// operator creates its own. An admin can hand a MachineSet over by adding the
// managed-by label.
//
// While a Managed build needs an architecture and no usable node of it exists,
// the operator's MachineSets of that architecture are raised to
// Settings.MachineSetReplicas, spread over the zones (Share). When no build
// needs it, the time is recorded in the annotation build.multiarch.io/last-needed
// (so it survives restarts) and the MachineSet goes to zero once
// Settings.MachineSetIdleTimeout has passed; demand in the meantime removes the
// annotation.
//
// The operator records the replica count it last wrote in the annotation
// build.multiarch.io/replicas. Finding a different count when it has to write
// again means someone else (a person, the cluster autoscaler, GitOps) changed
// it. Such corrections are counted in a window (annotations
// build.multiarch.io/corrections and corrections-since); past
// ConflictPolicy.MaxCorrections the operator stops writing replicas, records
// build.multiarch.io/conflict-since, emits a Warning event and reports
// CapacityReady False with reason MachineSetConflict, for ConflictPolicy.Backoff,
// after which it tries again.
package capacity

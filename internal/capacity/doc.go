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
// capacity.cluster-autoscaler.kubernetes.io/labels, where OpenShift's AWS,
// Azure and GCP machine controllers record kubernetes.io/arch=<arch> for every
// MachineSet (and which the machine-config operator's boot image controller
// reads too); and, for MachineSets that have neither yet, the instance type
// (InstanceTypeArch). On AWS a "g" after the generation digit (m6g, c7gn,
// r8gd, t4g, x2gd, is4gen) or the a1 family is Graviton, i.e. arm64; on Azure
// a "p" among the additive features after the vCPU count (Standard_D4ps_v5,
// Standard_E8pds_v5, Standard_B2pls_v2) is Arm64; on GCP the t2a, c4a, n4a and
// a4x series are Arm; anything else is amd64. The boot image is not used: the
// same AMI id or image name says nothing without the stream it came from.
//
// # Creating a MachineSet
//
// The operator creates MachineSets on AWS, Azure and GCP (Infrastructure
// status.platformStatus.type; PlanInput.Platform, or the template's
// providerSpec kind when the caller does not say). Any other platform
// (VSphere, BareMetal, None, ...) is UnsupportedPlatform: the admin adds a
// MachineSet of the architecture, which the operator then reuses. All three
// have amd64 and arm64 machines only (PlatformArchs).
//
// PlanMachineSets clones a worker MachineSet of the platform (template labels
// machine.openshift.io/cluster-api-machine-role=worker, not one of ours,
// preferring one that serves the control plane's architecture), once per
// configured zone (else the template's), with replicas 0, selector and
// template labels rewritten, the node-role.kubernetes.io/worker node label,
// our labels, and no owner references (a MachineSet outlives any one build).
// Everything else of the template's providerSpec (network, subnet, security
// groups, identity, disks, tags) is kept; what changes per platform:
//
//   - AWS (AWSMachineProviderConfig): named <infrastructureName>-<arch>-build-<zone>
//     (eu-west-3b); the AMI of the architecture and region (platformStatus.aws.region,
//     else the template's placement.region) from the coreos-bootimages stream
//     (images.aws); instanceType; placement.availabilityZone, and the subnet
//     filter that names the template's zone rewritten to the new one.
//   - Azure (AzureMachineProviderSpec): named <infrastructureName>-<arch>-build-<location><zone>
//     (eastus1), as the installer names its <infra>-worker-eastus1; zones are
//     "1", "2", "3" ("" in a location without zones), the location stays the
//     template's (Azure's platformStatus has no region). vmSize, and image: the
//     unpaid RHCOS marketplace image of the architecture from the stream
//     (rhel-coreos-extensions.marketplace.azure.no-purchase-plan, publisher
//     azureopenshift, offer aro4, SKU 420-arm for aarch64), type
//     MarketplaceNoPlan, as the installer and the machine-config operator
//     write it; Hyper-V generation 2 for Arm64 (its only one), for amd64 the
//     template's generation. Paid marketplace images have no Arm64 SKU. A
//     stream that offers only the VHD (rhel-coreos-extensions.azure-disk) for
//     the architecture is BootImageNotFound: the admin copies the VHD into a
//     compute gallery image (architecture Arm64, generation V2) and gives its
//     resourceID as the boot image (PlanInput.BootImage, image type ID). A
//     template making confidential VMs cannot be copied to arm64.
//   - GCP (GCPMachineProviderSpec): named <infrastructureName>-<arch>-build-<zone>
//     (us-central1-a); the zone must be in the region (platformStatus.gcp.region,
//     else the template's). machineType, and the image of the boot disk
//     (disks[].boot): projects/<project>/global/images/<name> from the stream's
//     images.gcp of the architecture, as the installer and the machine-config
//     operator write it. The boot disk type follows the machine series: the
//     installer's pd-ssd becomes hyperdisk-balanced on series that boot from
//     Hyperdisk only (c4a, n4a, c4, n4, ...), hyperdisk back to pd-ssd on t2a.
//
// The instance type is the one of the oldest Managed build that overrides it,
// else the operator default: on Azure and GCP the operator's setting when it
// is a VM size or machine type of that platform, else DefaultInstanceTypes
// (Standard_D4ps_v5 and t2a-standard-4 for arm64, Standard_D4s_v5 and
// n2-standard-4 for amd64), since the operator's defaults are AWS instance
// types (DefaultInstanceType). An instance type of another platform, or of
// another architecture, is UnsupportedArchitecture.
//
// The autoscaler annotation capacity.cluster-autoscaler.kubernetes.io/labels
// is rewritten to the new kubernetes.io/arch, because the machine-config
// operator's boot image controller picks the image it writes back (AMI,
// marketplace image, GCP image) from that annotation: a stale amd64 there
// would put the x86_64 image back on an arm64 MachineSet. The
// machine.openshift.io/vCPU, memoryMb, GPU and maxPods annotations are
// dropped: they describe the template's instance type, and the machine
// controller fills them in again for the new one.
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

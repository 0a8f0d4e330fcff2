package v1alpha1

// Condition types of a MultiArchBuild.
const (
	// ConditionReady is True when the current generation was built and pushed.
	// It is the summary that kubectl wait, Argo CD and OLM read.
	ConditionReady = "Ready"
	// ConditionPipelinesAvailable is True when Tekton's CRDs are served and its
	// feature flags allow the generated pipeline.
	ConditionPipelinesAvailable = "PipelinesAvailable"
	// ConditionStorageReady is True when the workspace PVC is Bound (or waits
	// for its first consumer).
	ConditionStorageReady = "StorageReady"
	// ConditionCapacityReady is True when every requested platform has a
	// schedulable Ready node.
	ConditionCapacityReady = "CapacityReady"
	// ConditionBuilderReady is True when the ServiceAccount the build pods
	// run as exists and, for the operator-managed one, is bound to the
	// builder's SCC ClusterRole.
	ConditionBuilderReady = "BuilderReady"
	// ConditionSucceeded mirrors the latest PipelineRun: Unknown while it runs,
	// True when pushed, False with Tekton's reason and the failing task.
	ConditionSucceeded = "Succeeded"
	// ConditionRetry says what became of the latest request of the
	// annotation build.multiarch.io/retry-failed: True when its run was
	// started, Unknown while the last run still runs, False when refused.
	// It is not part of Ready: a refused retry leaves the last verdict as is.
	ConditionRetry = "Retry"
)

// Condition reasons. CamelCase, stable: users and tools match on them.
const (
	// Ready
	ReasonBuilt             = "Built"
	ReasonBuilding          = "Building"
	ReasonBuildFailed       = "BuildFailed"
	ReasonWaitingForPrereqs = "WaitingForPrerequisites"

	// PipelinesAvailable
	ReasonTektonAvailable        = "TektonAvailable"
	ReasonTektonNotInstalled     = "TektonNotInstalled"
	ReasonAffinityAssistantPins  = "AffinityAssistantPinsRun"
	ReasonInlineSpecDisabled     = "InlineSpecDisabled"
	ReasonFeatureFlagsUnreadable = "FeatureFlagsUnreadable"

	// Any prerequisite condition (StorageReady, BuilderReady) and
	// Succeeded: the API server refused a write the operator needed (RBAC,
	// admission such as OwnerReferencesPermissionEnforcement, a
	// ResourceQuota); the message is the API server's.
	ReasonForbidden = "Forbidden"
	// The API server rejected the object as invalid (an admission policy or
	// a schema the operator's version does not match).
	ReasonRejected = "Rejected"

	// StorageReady and BuilderReady: an object with the name the operator
	// uses exists and was not made by it for this build; it is never adopted.
	ReasonConflict = "Conflict"

	// BuilderReady
	ReasonBuilderBound           = "BuilderBound"
	ReasonServiceAccountFromSpec = "ServiceAccountFromSpec"

	// StorageReady
	ReasonVolumeBound             = "VolumeBound"
	ReasonWaitingForFirstConsumer = "WaitingForFirstConsumer"
	ReasonVolumePending           = "VolumePending"
	ReasonStorageClassNotFound    = "StorageClassNotFound"
	ReasonVolumeLost              = "VolumeLost"

	// CapacityReady
	ReasonNodesAvailable        = "NodesAvailable"
	ReasonProvisioningNodes     = "ProvisioningNodes"
	ReasonNoNodes               = "NoNodes"
	ReasonMachineAPIUnavailable = "MachineAPIUnavailable"
	ReasonUnsupportedPlatform   = "UnsupportedPlatform"
	ReasonNoTemplateMachineSet  = "NoTemplateMachineSet"
	ReasonBootImageNotFound     = "BootImageNotFound"
	ReasonUnsupportedArch       = "UnsupportedArchitecture"
	ReasonMachineSetConflict    = "MachineSetConflict"
	// ReasonProvisioningFailed: every allowed instance type in every
	// allowed zone gave a Failed Machine (capacity, quota, a type missing
	// in the zone); the message names the Machine's error. The build fails.
	ReasonProvisioningFailed = "ProvisioningFailed"
	// ReasonProvisioningTimeout: no usable node within the provisioning
	// timeout. The build fails.
	ReasonProvisioningTimeout = "ProvisioningTimeout"
	// ReasonCapacityNotAllowed: the BuildCapacityPolicy does not let this
	// build have managed capacity (disabled, namespace not selected, an
	// instance type not on the allowed list, maxReplicas 0).
	ReasonCapacityNotAllowed = "CapacityNotAllowed"

	// Succeeded
	ReasonRunPending      = "RunPending"
	ReasonRunRunning      = "Running"
	ReasonRunSucceeded    = "Succeeded"
	ReasonRunFailed       = "Failed"
	ReasonRunTimeout      = "PipelineRunTimeout"
	ReasonRunCancelled    = "Cancelled"
	ReasonRunDeleted      = "PipelineRunDeleted"
	ReasonRunCreateFailed = "PipelineRunCreateFailed"
	ReasonInvalidSpec     = "InvalidSpec"
	// ReasonReusedImageMissing: the check-reused task of a retry run found
	// a reused per-platform image gone from the registry (or unreadable
	// with the push credentials); nothing was built. Also on Retry.
	ReasonReusedImageMissing = "ReusedImageMissing"

	// Retry
	ReasonRetryStarted     = "RetryStarted"
	ReasonRetryWaiting     = "RetryWaiting"
	ReasonNothingToRetry   = "NothingToRetry"
	ReasonSpecChanged      = "SpecChanged"
	ReasonRetryNotPossible = "RetryNotPossible"
)

// Package pipeline turns a MultiArchBuild into the Tekton PipelineRun that
// builds every architecture natively and pushes one manifest list. It is pure:
// values in, objects out, no client.
package pipeline

import (
	"strings"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
)

// Labels tying generated objects to their MultiArchBuild. Tekton copies
// PipelineRun labels to TaskRuns and pods.
const (
	LabelBuild      = "build.multiarch.io/build"
	LabelGeneration = "build.multiarch.io/generation"
	LabelRebuild    = "build.multiarch.io/rebuild-token"
	// LabelArch is set (through the embedded task metadata) on every TaskRun
	// bound to one architecture; its value is the kubernetes.io/arch value.
	LabelArch      = "build.multiarch.io/arch"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "multiarch-build-operator"
)

// PipelineRun results the controller reads (status.results of the run):
//   - IMAGE_DIGEST: digest of the pushed manifest list (OCI index), sha256:...
//   - IMAGE_URL: the repository of the pushed manifest list, without tag or
//     digest: IMAGE_URL@IMAGE_DIGEST names exactly what was built (the tag may
//     move). Tekton Chains' type hint: it reads the pair as IMAGE_URL@IMAGE_DIGEST,
//     so a digest in IMAGE_URL would make the reference unparsable and the
//     list would go unsigned
//   - COMMIT: the full Git commit SHA that was built
//   - ArchDigestResult(arch): digest of each platform's image manifest, as
//     pushed by its build task and listed in the pushed index
//
// TaskRun results:
//   - build-<arch>: IMAGE_DIGEST (the platform's image, pushed by digest) and
//     IMAGE_URL (the repository, no tag: it was pushed untagged), the pair
//     Tekton Chains reads as the image IMAGE_URL@IMAGE_DIGEST; and
//     INDEX_IMAGE_DIGEST and INDEX_IMAGE_URL: the pushed manifest list, from
//     the one build task whose index step found every other platform's image
//     pushed and assembled the list (empty in the others); Chains reads that
//     pair too (the *IMAGE_URL/*IMAGE_DIGEST type hint)
//   - clone (NodeJS, Maven), or every build-<arch> of a Containerfile build
//     (each clones for itself): COMMIT and SOURCE_DATE_EPOCH (the commit's
//     time, the builds' --timestamp)
//   - push (only a retry that rebuilds nothing has it): IMAGE_DIGEST and
//     IMAGE_URL of the manifest list
//   - every task: ERROR, written only when the task fails: one line (at most
//     300 bytes) saying why, the failing tool's own error first (buildah's
//     "Error: ...", git's "fatal: ...", npm's first "npm error"). The
//     controller shows it instead of Tekton's "step exited with code N".
const (
	ResultImageDigest     = "IMAGE_DIGEST"
	ResultImageURL        = "IMAGE_URL"
	ResultCommit          = "COMMIT"
	ResultSourceDateEpoch = "SOURCE_DATE_EPOCH"
	ResultError           = "ERROR"
	// ResultPushStarted is written by build-<arch> when its push by digest
	// starts: seconds since the epoch. It splits the build step into the
	// building and pushing phases of status.platforms[].timings.
	ResultPushStarted = "PUSH_STARTED"
	// ResultReused is written by build-<arch> when it built nothing but
	// reused the image an earlier build of the same commit, build
	// arguments and base images recorded in the layer cache: that record,
	// cache-repository:image-<key>.
	ResultReused = "REUSED"
	// ResultIndexDigest and ResultIndexURL name the pushed manifest list in
	// the build task that assembled it, "" in the others.
	ResultIndexDigest = "INDEX_IMAGE_DIGEST"
	ResultIndexURL    = "INDEX_IMAGE_URL"
)

// MaxErrorLen bounds the ERROR result, in bytes.
const MaxErrorLen = 300

// ArchDigestResult is the PipelineRun result holding the digest of one
// architecture's image manifest, e.g. IMAGE_DIGEST_ARM64.
func ArchDigestResult(arch string) string {
	return ResultImageDigest + "_" + strings.ToUpper(arch)
}

// Input is everything Generate needs.
type Input struct {
	Build    *v1alpha1.MultiArchBuild
	Settings settings.Settings
	// WorkspaceClaim is the name of the ReadWriteMany PVC shared by the tasks.
	WorkspaceClaim string
	// Retry, when set, makes a retry run: see Retry.
	Retry *Retry
	// Cluster, when set, is the cluster's proxy, trust and registries
	// configuration every step gets (see ClusterConfig).
	Cluster *ClusterConfig
}

// Names of the pipeline tasks. The controller finds a platform's TaskRun by
// the label tekton.dev/pipelineTask=BuildTaskName(arch) (or by LabelArch).
const (
	TaskClone   = "clone"
	TaskMaven   = "maven"
	TaskPush    = "push"
	TaskCleanup = "cleanup"
	// StepPreflight checks in the registry that every image the
	// Containerfile builds FROM offers every platform the run builds. It is
	// the last step of clone (NodeJS, Maven), which every architecture task
	// follows, or, for a Containerfile build, a step of the first platform's
	// build task right after its clone, on the node that is there first in
	// the usual case (amd64): a base image without arm64 fails the run in
	// seconds, the task's ERROR result naming the image and the platform,
	// before a node of that architecture has built anything.
	StepPreflight = "preflight"
	// StepIndex ends every build task: it publishes the platform's digest on
	// the shared volume and, in the task that finds every platform's image
	// pushed, assembles and pushes the manifest list (scripts/push.sh).
	StepIndex = "index"
)

// BuildTaskName is the pipeline task building the image of one architecture
// (the kubernetes.io/arch value, e.g. "arm64").
func BuildTaskName(arch string) string { return "build-" + arch }

// InstallTaskName is the NodeJS pipeline task installing the dependencies of
// one architecture.
func InstallTaskName(arch string) string { return "install-" + arch }

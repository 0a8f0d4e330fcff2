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

// PipelineRun results the controller reads.
const (
	ResultImageDigest = "IMAGE_DIGEST"
	ResultImageURL    = "IMAGE_URL"
	ResultCommit      = "COMMIT"
)

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
}

package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// maxNameLen is the longest PipelineRun name we produce: a DNS label, so the
// name is also usable as a label value and as a directory name.
const maxNameLen = 63

// RunName is the deterministic name of the PipelineRun that builds the given
// generation of build with its current rebuild token
// (annotation build.multiarch.io/rebuild):
//
//	<name>-<generation>-<hash>
//
// where hash is the first 5 hex digits of sha256(name, uid, generation, token).
// With the annotation build.multiarch.io/retry-failed set, its value is
// hashed too (after a 0 byte and "retry"), so that a new value names a new
// run; without it the name is what it always was.
// The name part is truncated so the whole is a DNS label of at most 63
// characters; the hash keeps truncated names distinct. The same inputs always
// give the same name, so an operator restart or a stale cache finds the
// existing run instead of creating a second one. The UID keeps a deleted and
// recreated build of the same name from adopting a run its predecessor left
// behind (garbage collection may not have removed it yet).
func RunName(build *v1alpha1.MultiArchBuild) string {
	gen := strconv.FormatInt(build.Generation, 10)
	token := build.Annotations[v1alpha1.RebuildAnnotation]
	in := build.Name + "\x00" + string(build.UID) + "\x00" + gen + "\x00" + token
	if retry := build.Annotations[v1alpha1.RetryFailedAnnotation]; retry != "" {
		in += "\x00retry\x00" + retry
	}
	sum := sha256.Sum256([]byte(in))
	suffix := "-" + gen + "-" + hex.EncodeToString(sum[:])[:5]
	// A MultiArchBuild name is a DNS subdomain; the run name is kept a DNS
	// label (dots become dashes) because Tekton derives TaskRun and pod names
	// from it. The hash is over the original name, so "a.b" and "a-b" differ.
	name := strings.ReplaceAll(build.Name, ".", "-")
	if max := maxNameLen - len(suffix); len(name) > max {
		name = name[:max]
	}
	return strings.TrimRight(name, "-") + suffix
}

// rebuildLabel turns the free-form rebuild token into a label value: empty
// stays empty, anything else becomes a short hash (label values are limited
// to 63 characters of [A-Za-z0-9._-]).
func rebuildLabel(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:16]
}

// RebuildLabel is the value of LabelRebuild on the runs of the build's
// current rebuild token ("" when it has none).
func RebuildLabel(build *v1alpha1.MultiArchBuild) string {
	return rebuildLabel(build.Annotations[v1alpha1.RebuildAnnotation])
}

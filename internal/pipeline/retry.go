package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Annotations of a PipelineRun created while the build carried the
// annotation build.multiarch.io/retry-failed:
//
//   - AnnotationRetryToken: the annotation's value when the run was created,
//     on every run (full or retry): a value equal to the last run's asks for
//     nothing, so a value left in place (GitOps) is used once;
//   - AnnotationRetryOf: on a retry run, the run whose failed platforms it
//     rebuilds;
//   - AnnotationReused: on a retry run, the platforms it does not rebuild, as
//     JSON {"linux/amd64": {"digest": "sha256:...", "run": "<run that built it>"}}.
const (
	AnnotationRetryToken = v1alpha1.RetryFailedAnnotation
	AnnotationRetryOf    = "build.multiarch.io/retry-of"
	AnnotationReused     = "build.multiarch.io/reused"
)

// TaskCheckReused is the first task of a retry run that reuses images: it
// reads the manifest of every reused image from the registry, with the push
// credentials, and fails naming the first one that is gone. Nothing is
// built when it fails.
const TaskCheckReused = "check-reused"

// Retry makes Generate produce a retry run: only the platforms not in Reused
// are built, from commit Revision, and the push task lists the Reused
// digests next to the new ones.
type Retry struct {
	// Of is the run whose failed platforms are rebuilt.
	Of string
	// Revision is the commit Of cloned (its COMMIT); empty when unknown,
	// which is allowed only when nothing is reused.
	Revision string
	// Reused are the platforms Of built (or itself reused), with their digests.
	Reused map[v1alpha1.Platform]Reuse
}

// Reuse is one platform's image listed again by a retry.
type Reuse struct {
	Digest string `json:"digest"`
	// Run built the image.
	Run string `json:"run"`
}

var (
	digestPattern = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	commitPattern = regexp.MustCompile(`^[a-f0-9]{40}([a-f0-9]{24})?$`)
)

// ReusedOf reads the reused platforms of a run from its annotations; nil for
// a run that is not a retry or reuses nothing. Values that are not a digest
// and a run name are dropped: the annotation is read back from the cluster.
func ReusedOf(annotations map[string]string) map[v1alpha1.Platform]Reuse {
	raw := annotations[AnnotationReused]
	if raw == "" {
		return nil
	}
	var m map[v1alpha1.Platform]Reuse
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return nil
	}
	for p, r := range m {
		if !digestPattern.MatchString(r.Digest) || len(validation.IsDNS1123Label(r.Run)) > 0 {
			delete(m, p)
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// applyRetry checks a Retry against the plan (it comes from status, not
// from the API server's validation) and applies it.
func (p *plan) applyRetry(r *Retry) error {
	p.built = p.platforms
	if r == nil {
		return nil
	}
	if errs := validation.IsDNS1123Label(r.Of); len(errs) > 0 {
		return fmt.Errorf("pipeline: Retry.Of %q is not a run name", r.Of)
	}
	if r.Revision != "" && !commitPattern.MatchString(r.Revision) {
		return fmt.Errorf("pipeline: Retry.Revision %q is not a commit SHA", r.Revision)
	}
	if len(r.Reused) > 0 && r.Revision == "" {
		return errors.New("pipeline: a retry that reuses images needs the commit they were built from")
	}
	inSpec := map[v1alpha1.Platform]bool{}
	for _, pl := range p.platforms {
		inSpec[pl] = true
	}
	for pl, u := range r.Reused {
		if !inSpec[pl] {
			return fmt.Errorf("pipeline: reused platform %q is not in spec.platforms", pl)
		}
		if !digestPattern.MatchString(u.Digest) {
			return fmt.Errorf("pipeline: reused digest %q of %s is not sha256:<64 hex>", u.Digest, pl)
		}
		if errs := validation.IsDNS1123Label(u.Run); len(errs) > 0 {
			return fmt.Errorf("pipeline: reused run %q of %s is not a run name", u.Run, pl)
		}
	}
	p.retry = r
	if r.Revision != "" {
		p.revision = r.Revision
	}
	p.built = nil
	for _, pl := range p.platforms {
		if _, ok := r.Reused[pl]; !ok {
			p.built = append(p.built, pl)
		}
	}
	return nil
}

// reusedPlatforms are the reused platforms in spec order.
func (p *plan) reusedPlatforms() []v1alpha1.Platform {
	var out []v1alpha1.Platform
	if p.retry == nil {
		return nil
	}
	for _, pl := range p.platforms {
		if _, ok := p.retry.Reused[pl]; ok {
			out = append(out, pl)
		}
	}
	return out
}

func (g *generator) annotations() map[string]string {
	p := g.p
	a := map[string]string{}
	if p.retryToken != "" {
		a[AnnotationRetryToken] = p.retryToken
	}
	if p.retry != nil {
		a[AnnotationRetryOf] = p.retry.Of
		if len(p.retry.Reused) > 0 {
			b, _ := json.Marshal(p.retry.Reused) // encoding/json sorts map keys: same input, same text
			a[AnnotationReused] = string(b)
		}
	}
	if len(a) == 0 {
		return nil
	}
	return a
}

package pipeline

import (
	"fmt"
	"strings"
	"testing"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

const (
	retryCommit  = "3b11df8a6c1e0f3c4f6f1f0ed6f1a1b2c3d4e5f6"
	retryDigestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	retryDigestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func retryInput(b *v1alpha1.MultiArchBuild, reused map[v1alpha1.Platform]Reuse) Input {
	if b.Annotations == nil {
		b.Annotations = map[string]string{}
	}
	b.Annotations[v1alpha1.RetryFailedAnnotation] = "1700000000"
	in := input(b)
	in.Retry = &Retry{Of: "htop-1-abcde", Revision: retryCommit, Reused: reused}
	return in
}

// A retry of a run whose amd64 build succeeded and arm64 build failed: only
// build-arm64 runs, from the failed run's commit; push lists amd64's digest.
func TestRetryBuildsOnlyTheFailedPlatformFromTheCommit(t *testing.T) {
	in := retryInput(htopBuild(), map[v1alpha1.Platform]Reuse{v1alpha1.PlatformLinuxAMD64: {Digest: retryDigestA, Run: "htop-1-abcde"}})
	pr := mustGenerate(t, in)
	var names []string
	for _, pt := range allTasks(pr) {
		names = append(names, pt.Name)
	}
	if got, want := strings.Join(names, ","), "check-reused,build-arm64,cleanup"; got != want {
		t.Fatalf("tasks %s, want %s", got, want)
	}
	if v := runParam(pr, paramGitRevision).StringVal; v != retryCommit {
		t.Errorf("GIT_REVISION %q, want the failed run's commit %s", v, retryCommit)
	}
	build := taskNamed(t, pr, BuildTaskName("arm64"))
	if len(build.RunAfter) != 1 || build.RunAfter[0] != TaskCheckReused {
		t.Errorf("build-arm64 runs after %v, want [check-reused]: nothing is built when a reused image is gone", build.RunAfter)
	}
	// build-arm64 clones the commit and lists amd64's reused digest with its own.
	if got := envOf(stepNamed(t, build, "clone"), "GIT_REVISION"); got != "$(params."+paramGitRevision+")" {
		t.Errorf("clone GIT_REVISION = %q", got)
	}
	index := stepNamed(t, build, StepIndex)
	if got := envOf(index, "IMAGE_DIGEST_AMD64"); got != retryDigestA {
		t.Errorf("index IMAGE_DIGEST_AMD64 = %q, want the reused digest", got)
	}
	if got := envOf(index, "IMAGE_DIGEST_ARM64"); got != "" {
		t.Errorf("index IMAGE_DIGEST_ARM64 = %q, want none: its own, from the build step", got)
	}
	if args := index.Args; strings.Join(args, " ") != "linux/amd64 linux/arm64" {
		t.Errorf("index lists %v, want both platforms in spec order", args)
	}
	check := mainStep(taskNamed(t, pr, TaskCheckReused))
	if got := strings.Join(check.Args, " "); got != "linux/amd64 "+retryDigestA+" htop-1-abcde" {
		t.Errorf("check-reused args %q", got)
	}
	if envOf(check, "REGISTRY_AUTH_DIR") != mountPushSecret {
		t.Errorf("check-reused must read the registry with the push credentials")
	}
	for _, s := range pr.Spec.TaskRunSpecs {
		if s.PipelineTaskName != "build-arm64" {
			t.Errorf("taskRunSpec for %s: only rebuilt platforms are pinned", s.PipelineTaskName)
		}
	}
	for _, r := range pr.Spec.PipelineSpec.Results {
		if r.Name == ArchDigestResult("amd64") {
			t.Errorf("pipeline result %s for a reused platform", r.Name)
		}
	}
	if pr.Annotations[AnnotationRetryOf] != "htop-1-abcde" || pr.Annotations[AnnotationRetryToken] != "1700000000" {
		t.Errorf("annotations %v", pr.Annotations)
	}
	if got := ReusedOf(pr.Annotations); len(got) != 1 || got[v1alpha1.PlatformLinuxAMD64].Digest != retryDigestA {
		t.Errorf("ReusedOf(annotations) = %v", got)
	}
	if pr.Name == RunName(htopBuild()) {
		t.Errorf("a retry value must name a new run")
	}
}

// Every strategy, every subset of reused platforms (none, some, all): the
// retry run passes Tekton's validation, with and without its defaults.
func TestRetryRunPassesTektonValidation(t *testing.T) {
	ctxs := tektonContexts(t)
	for strategy, sample := range sampleBuilds {
		b := sample()
		b.Spec.Platforms = []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64, v1alpha1.PlatformLinuxS390X}
		for mask := 0; mask < 1<<len(b.Spec.Platforms); mask++ {
			reused := map[v1alpha1.Platform]Reuse{}
			for i, p := range b.Spec.Platforms {
				if mask&(1<<i) != 0 {
					reused[p] = Reuse{Digest: retryDigestB, Run: "earlier-1-abcde"}
				}
			}
			t.Run(fmt.Sprintf("%s/reused=%b", strategy, mask), func(t *testing.T) {
				pr := mustGenerate(t, retryInput(b.DeepCopy(), reused))
				builds := 0
				for _, pt := range allTasks(pr) {
					if strings.HasPrefix(pt.Name, "build-") {
						builds++
					}
				}
				if builds != len(b.Spec.Platforms)-len(reused) {
					t.Errorf("%d build tasks, want %d", builds, len(b.Spec.Platforms)-len(reused))
				}
				for ctxName, ctx := range ctxs {
					if err := pr.Validate(ctx); err != nil {
						t.Errorf("Tekton validation with %s flags: %v", ctxName, err)
					}
					d := pr.DeepCopy()
					d.SetDefaults(ctx)
					if err := d.Validate(ctx); err != nil {
						t.Errorf("Tekton validation after defaults with %s flags: %v", ctxName, err)
					}
				}
			})
		}
	}
}

func TestRetryInputsFromStatusAreValidated(t *testing.T) {
	for name, r := range map[string]*Retry{
		"bad digest":           {Of: "x-1-abcde", Revision: retryCommit, Reused: map[v1alpha1.Platform]Reuse{v1alpha1.PlatformLinuxAMD64: {Digest: "sha256:$(params.x)", Run: "x"}}},
		"platform not in spec": {Of: "x-1-abcde", Revision: retryCommit, Reused: map[v1alpha1.Platform]Reuse{v1alpha1.PlatformLinuxS390X: {Digest: retryDigestA, Run: "x"}}},
		"reuse without commit": {Of: "x-1-abcde", Reused: map[v1alpha1.Platform]Reuse{v1alpha1.PlatformLinuxAMD64: {Digest: retryDigestA, Run: "x"}}},
		"revision not a SHA":   {Of: "x-1-abcde", Revision: "main"},
		"bad run name":         {Of: "X;rm", Revision: retryCommit},
		"bad reused run":       {Of: "x-1-abcde", Revision: retryCommit, Reused: map[v1alpha1.Platform]Reuse{v1alpha1.PlatformLinuxAMD64: {Digest: retryDigestA, Run: "$(context.x)"}}},
	} {
		in := input(htopBuild())
		in.Retry = r
		if _, err := Generate(in); err == nil {
			t.Errorf("%s: Generate accepted %+v", name, r)
		}
	}
}

func TestRetryValueNamesANewRunAndNoValueKeepsTheName(t *testing.T) {
	b := htopBuild()
	base := RunName(b)
	b.Annotations = map[string]string{v1alpha1.RetryFailedAnnotation: ""}
	if RunName(b) != base {
		t.Errorf("an empty retry value changed the run name")
	}
	b.Annotations[v1alpha1.RetryFailedAnnotation] = "1"
	one := RunName(b)
	b.Annotations[v1alpha1.RetryFailedAnnotation] = "2"
	if one == base || RunName(b) == one {
		t.Errorf("names %s %s %s must differ", base, one, RunName(b))
	}
}

func TestReusedOfDropsValuesThatAreNotDigestsAndRunNames(t *testing.T) {
	got := ReusedOf(map[string]string{AnnotationReused: `{"linux/amd64":{"digest":"` + retryDigestA + `","run":"r-1-abcde"},"linux/arm64":{"digest":"latest","run":"r"},"linux/s390x":{"digest":"` + retryDigestA + `","run":"A B"}}`})
	if len(got) != 1 || got[v1alpha1.PlatformLinuxAMD64].Run != "r-1-abcde" {
		t.Errorf("ReusedOf = %v", got)
	}
	if ReusedOf(map[string]string{AnnotationReused: "{"}) != nil || ReusedOf(nil) != nil {
		t.Error("invalid or absent annotation must give nil")
	}
}

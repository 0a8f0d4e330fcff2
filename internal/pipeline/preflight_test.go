package pipeline

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/testutil/images"
	"github.com/multiarch-build/multiarch-build-operator/internal/testutil/registry"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// The preflight task, for real: clone then preflight run with buildah
// against a registry holding a two-platform list (amd64 + arm64), a list
// of amd64 only and single images (no list) per architecture. What the
// build would pull must offer both platforms; scratch, earlier stages,
// stages the final one does not need and images pinned by --platform pass.
func TestPreflightChecksEveryBaseImageOffersEveryPlatform(t *testing.T) {
	if _, err := exec.LookPath("buildah"); err != nil {
		t.Skip("buildah is not on PATH: the real-build tests need the Debian packages buildah docker-registry qemu-user-static binfmt-support busybox-static git")
	}
	two := []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}
	reg := registry.Start(t)
	st := images.NewStorage(t, reg.Env()...)
	multi := reg.Host + "/base/multi:v1"
	amd64List := reg.Host + "/base/amd64-list:v1"
	images.BuildBusyboxBase(t, st, multi, []string{"linux/amd64", "linux/arm64"})
	images.BuildBusyboxBase(t, images.NewStorage(t, reg.Env()...), amd64List, []string{"linux/amd64"})
	// Single images, no list: their configuration says the platform.
	for _, arch := range []string{"amd64", "arm64"} {
		st.Buildah(t, "push", "--quiet", "localhost/test-busybox-base:"+arch, "docker://"+reg.Host+"/base/single:"+arch)
	}
	single := reg.Host + "/base/single"
	git := startGitServer(t, "builder", "s3cret")

	for _, tc := range []struct {
		name          string
		containerfile string
		buildArgs     []v1alpha1.BuildArg
		platforms     []v1alpha1.Platform
		// wantError: the run fails in preflight, its ERROR result holding
		// these; empty: preflight passes.
		wantError []string
	}{
		{name: "a two-platform base passes", containerfile: "FROM " + multi + "\nRUN true\n"},
		{
			name:          "an amd64-only list fails naming the image and linux/arm64",
			containerfile: "FROM " + multi + " AS ok\nFROM " + amd64List + "\nCOPY --from=ok /bin/busybox /bin/busybox\n",
			wantError:     []string{"image " + amd64List, "offers no linux/arm64", "it offers linux/amd64", "line 2 of Containerfile"},
		},
		{
			name:          "a single amd64 image (no list) fails naming it",
			containerfile: "FROM " + single + ":amd64\n",
			wantError:     []string{"image " + single + ":amd64", "offers no linux/arm64", "it offers linux/amd64"},
		},
		{
			name:          "the same single image passes for amd64 alone",
			containerfile: "FROM " + single + ":amd64\n",
			platforms:     []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64},
		},
		{
			name: "scratch, earlier stages and unused stages pass",
			containerfile: "# escape=\\\n# a comment\nFROM scratch AS empty\nFROM " + multi + " AS Base\n" +
				"FROM " + amd64List + " AS unused\nRUN true\n" +
				"FROM base AS middle\nCOPY --from=empty / /\nFROM middle\nCOPY --from=0 / /\n",
		},
		{
			name:          "build args and ARG defaults resolve FROM",
			containerfile: "ARG REGISTRY=nowhere.invalid\nARG REPO=base/multi\nARG TAG\nFROM ${REGISTRY}/$REPO:${TAG:-v0}\n",
			buildArgs:     []v1alpha1.BuildArg{{Name: "REGISTRY", Value: reg.Host}, {Name: "TAG", Value: "v1"}},
		},
		{
			name:          "ARG TARGETARCH takes each platform's value",
			containerfile: "ARG TARGETARCH\nARG BASE=" + single + ":${TARGETARCH}\nFROM \\\n  $BASE\n",
		},
		{
			name:          "ARG-resolved FROM of an amd64-only image fails naming the resolved image",
			containerfile: "ARG BASE=" + multi + "\nFROM $BASE\n",
			buildArgs:     []v1alpha1.BuildArg{{Name: "BASE", Value: amd64List}},
			wantError:     []string{"image " + amd64List, "offers no linux/arm64"},
		},
		{
			name:          "a stage pinned with --platform needs that platform only",
			containerfile: "FROM --platform=linux/amd64 " + amd64List + " AS tools\nFROM --platform=$TARGETPLATFORM " + multi + "\nCOPY --from=tools /bin/busybox /tools\n",
		},
		{
			name:          "COPY --from an image checks that image",
			containerfile: "FROM " + multi + "\nCOPY --from=" + single + ":amd64 /bin/busybox /x\n",
			wantError:     []string{"image " + single + ":amd64", "line 2", "offers no linux/arm64"},
		},
		{
			name:          "a heredoc's body is not read as instructions",
			containerfile: "FROM " + multi + "\nRUN <<EOF\nFROM " + amd64List + "\nEOF\n",
		},
		{
			// Not a verdict: buildah's manifest commands resolve less than
			// its pulls (no tag-only mirrors in 1.28), so the build pulls it
			// and reports a missing image in buildah's own words.
			name:          "an image preflight cannot read is left to the build",
			containerfile: "FROM " + reg.Host + "/base/missing:v1\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "public/preflight-" + strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(tc.name) + ".git"
			git.repo(t, repo, map[string]string{"Containerfile": tc.containerfile})
			platforms := tc.platforms
			if platforms == nil {
				platforms = two
			}
			b := &v1alpha1.MultiArchBuild{
				ObjectMeta: sampleMeta("preflight"),
				Spec: v1alpha1.MultiArchBuildSpec{
					Source:    v1alpha1.SourceSpec{Git: v1alpha1.GitSource{URL: git.url(repo)}},
					Strategy:  v1alpha1.StrategySpec{BuildArgs: tc.buildArgs},
					Platforms: platforms,
					Output:    v1alpha1.OutputSpec{Image: reg.Host + "/test/preflight:v1"},
				},
			}
			pr, err := Generate(Input{Build: b, Settings: testSettings(), WorkspaceClaim: "ws"})
			if err != nil {
				t.Fatal(err)
			}
			// The first platform's build task checks: its clone, then preflight.
			first := BuildTaskName(platforms[0].Arch())
			if len(tc.wantError) == 0 {
				// Only clone and preflight: the builds are the other tests' business.
				spec := pr.Spec.PipelineSpec
				spec.Tasks = slices.DeleteFunc(spec.Tasks, func(pt tektonv1.PipelineTask) bool {
					return pt.Name != first
				})
				ts := &spec.Tasks[0].TaskSpec.TaskSpec
				ts.Steps = slices.DeleteFunc(ts.Steps, func(st tektonv1.Step) bool {
					return st.Name == "build" || st.Name == StepIndex
				})
				ts.Results = slices.DeleteFunc(ts.Results, func(r tektonv1.TaskResult) bool {
					return r.Name != ResultCommit && r.Name != ResultSourceDateEpoch && r.Name != ResultError
				})
				spec.Results, spec.Finally = nil, nil
			}
			r := &localRunner{t: t, shared: t.TempDir(), clientEnv: reg.Env(), allowFailure: len(tc.wantError) > 0}
			start := time.Now()
			r.run(pr)
			t.Logf("preflight took %s", r.stepDurations[first+"/"+StepPreflight].Round(time.Millisecond))
			if len(tc.wantError) == 0 {
				if r.failure != nil {
					t.Fatalf("task %s failed: %s", r.failure.task, r.failure.results[ResultError])
				}
				return
			}
			f := r.failure
			if f == nil {
				t.Fatal("the run succeeded")
			}
			msg := f.results[ResultError]
			t.Logf("failed after %s in %s: %s", time.Since(start).Round(time.Millisecond), f.task, msg)
			if f.task != first || f.step != StepPreflight {
				t.Errorf("failed step %s/%s, want %s/%s", f.task, f.step, first, StepPreflight)
			}
			for _, want := range tc.wantError {
				if !strings.Contains(msg, want) {
					t.Errorf("%s result %q lacks %q", ResultError, msg, want)
				}
			}
			for task := range r.taskDurations {
				if task != first && task != TaskCleanup {
					t.Errorf("task %s ran after preflight failed", task)
				}
			}
			for step := range r.stepDurations {
				if step == first+"/build" || step == first+"/"+StepIndex {
					t.Errorf("step %s ran after preflight failed", step)
				}
			}
			if _, ok := r.taskDurations[TaskCleanup]; !ok {
				t.Error("the finally task did not run after the failure")
			}
		})
	}
}

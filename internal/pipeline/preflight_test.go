package pipeline

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
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
		// bases: the first platform's images, each with the platform whose
		// entry's digest the bases file (the image reuse's key) records;
		// nil: no bases file (no reuse). Only when preflight passes.
		bases [][2]string
	}{
		{name: "a two-platform base passes", containerfile: "FROM " + multi + "\nRUN true\n", bases: [][2]string{{multi, "linux/amd64"}}},
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
			bases:         [][2]string{{single + ":amd64", "linux/amd64"}},
		},
		{
			name: "scratch, earlier stages and unused stages pass",
			containerfile: "# escape=\\\n# a comment\nFROM scratch AS empty\nFROM " + multi + " AS Base\n" +
				"FROM " + amd64List + " AS unused\nRUN true\n" +
				"FROM base AS middle\nCOPY --from=empty / /\nFROM middle\nCOPY --from=0 / /\n",
			bases: [][2]string{{multi, "linux/amd64"}},
		},
		{
			name:          "build args and ARG defaults resolve FROM",
			containerfile: "ARG REGISTRY=nowhere.invalid\nARG REPO=base/multi\nARG TAG\nFROM ${REGISTRY}/$REPO:${TAG:-v0}\n",
			buildArgs:     []v1alpha1.BuildArg{{Name: "REGISTRY", Value: reg.Host}, {Name: "TAG", Value: "v1"}},
			bases:         [][2]string{{multi, "linux/amd64"}},
		},
		{
			name:          "ARG TARGETARCH takes each platform's value",
			containerfile: "ARG TARGETARCH\nARG BASE=" + single + ":${TARGETARCH}\nFROM \\\n  $BASE\n",
			bases:         [][2]string{{single + ":amd64", "linux/amd64"}},
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
			bases:         [][2]string{{amd64List, "linux/amd64"}, {multi, "linux/amd64"}},
		},
		{
			name:          "COPY --from an image checks that image",
			containerfile: "FROM " + multi + "\nCOPY --from=" + single + ":amd64 /bin/busybox /x\n",
			wantError:     []string{"image " + single + ":amd64", "line 2", "offers no linux/arm64"},
		},
		{
			name:          "a heredoc's body is not read as instructions",
			containerfile: "FROM " + multi + "\nRUN <<EOF\nFROM " + amd64List + "\nEOF\n",
			bases:         [][2]string{{multi, "linux/amd64"}},
		},
		{
			// The commit does not pin what a URL serves: no reuse.
			name:          "ADD from a URL passes without a key",
			containerfile: "FROM " + multi + "\nADD --chmod=644 https://example.invalid/tool.tgz /tool.tgz\n",
		},
		{
			name:          "a FROM preflight cannot expand passes without a key",
			containerfile: "ARG BASE=" + multi + "\nFROM ${BASE%:*}:v1\n",
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
				checkBases(t, reg, filepath.Join(r.storageDirs[first], strings.TrimPrefix(basesFile, mountStorage+"/")), platforms[0], tc.bases)
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

// checkBases compares the bases file preflight wrote (path) with want: one
// line per image, the digests of its entries for the platform, as the
// registry serves them; want nil: no file.
func checkBases(t *testing.T, reg *registry.Registry, path string, pl v1alpha1.Platform, want [][2]string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if want == nil {
		if err == nil {
			t.Errorf("preflight wrote a bases file (image reuse) it must not write:\n%s", data)
		} else if !os.IsNotExist(err) {
			t.Error(err)
		}
		return
	}
	if err != nil {
		t.Fatalf("no bases file for the image reuse: %v", err)
	}
	lines := []string{"multiarch-build bases v1 " + string(pl)}
	var body []string
	for _, w := range want {
		body = append(body, w[0]+"\t"+w[1]+"\t"+platformDigests(t, reg, w[0], w[1]))
	}
	slices.Sort(body)
	lines = append(lines, body...)
	if got := strings.TrimSuffix(string(data), "\n"); got != strings.Join(lines, "\n") {
		t.Errorf("bases file:\n%s\nwant:\n%s", got, strings.Join(lines, "\n"))
	}
}

// platformDigests are the digests of ref's entries of platform's os/arch as
// the registry serves ref (the manifest's own digest for a single image).
func platformDigests(t *testing.T, reg *registry.Registry, ref, platform string) string {
	t.Helper()
	repo, tag, _ := strings.Cut(strings.TrimPrefix(ref, reg.Host+"/"), ":")
	m, err := reg.Manifest(context.Background(), repo, tag)
	if err != nil {
		t.Fatal(err)
	}
	var index struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(m.Body, &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) == 0 {
		return m.Digest
	}
	var out []string
	for _, e := range index.Manifests {
		if e.Platform.OS+"/"+e.Platform.Architecture == platform {
			out = append(out, e.Digest)
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

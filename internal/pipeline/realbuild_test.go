package pipeline

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/testutil/images"
	"github.com/multiarch-build/multiarch-build-operator/internal/testutil/registry"
	corev1 "k8s.io/api/core/v1"
)

// The key proof that the generated pipeline works: the embedded scripts build
// real amd64 and arm64 images with buildah (arm64 RUN lines execute under
// qemu-user-static binfmt emulation), push a manifest list to a real registry,
// and report the digests the registry serves. Needs buildah, docker-registry,
// git, qemu-user-static + binfmt-support, busybox-static (and
// busybox-static:arm64 through apt-get download), npm and network access to
// registry.npmjs.org for the NodeJS case.
func TestScriptsBuildAndPushRealMultiArchImages(t *testing.T) {
	if _, err := exec.LookPath("buildah"); err != nil {
		t.Skip("buildah is not on PATH: the real-build tests need the Debian packages buildah docker-registry qemu-user-static binfmt-support busybox-static git npm (see .ci/run)")
	}
	platforms := []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}

	reg := registry.Start(t)
	base := reg.Host + "/base/busybox:latest"
	start := time.Now()
	images.BuildBusyboxBase(t, images.NewStorage(t, reg.Env()...), base, []string{"linux/amd64", "linux/arm64"})
	t.Logf("busybox base image for amd64+arm64 built and pushed in %s", time.Since(start).Round(time.Millisecond))
	git := startGitServer(t, "builder", "s3cret")

	newRunner := func(t *testing.T, shared string) *localRunner {
		return &localRunner{
			t:         t,
			shared:    shared,
			clientEnv: reg.Env(),
			secrets: map[string]map[string]string{
				"git-auth": {"username": "builder", "password": "s3cret"},
				// The legacy dockercfg format; the local registry needs no
				// credentials but the script must still accept the Secret.
				"registry-dockercfg": {".dockercfg": fmt.Sprintf(`{%q:{"auth":"dXNlcjpwYXNz"}}`, reg.Host)},
				"registry-json":      {".dockerconfigjson": fmt.Sprintf(`{"auths":{%q:{"auth":"dXNlcjpwYXNz"}}}`, reg.Host)},
				"m2":                 {"settings.xml": "<settings/>"},
			},
		}
	}

	t.Run("Containerfile", func(t *testing.T) {
		tricky := `a b;$(touch /tmp/pwned) "q" 'x' $HOME` + "\n`id`"
		commit := git.repo(t, "private/app.git", map[string]string{
			"src/Containerfile": "FROM " + base + "\nARG VERSION\nARG TRICKY\n" +
				"RUN printf 'arch=%s\\nversion=%s\\ntricky=%s\\n' \"$(uname -m)\" \"$VERSION\" \"$TRICKY\" > /built-by\n" +
				"COPY hello.txt /hello.txt\n",
			"src/hello.txt": "hello\n",
		})
		b := &v1alpha1.MultiArchBuild{
			ObjectMeta: sampleMeta("app"),
			Spec: v1alpha1.MultiArchBuildSpec{
				Source: v1alpha1.SourceSpec{
					Git:        v1alpha1.GitSource{URL: git.url("private/app.git"), Revision: commit, SecretRef: &corev1.LocalObjectReference{Name: "git-auth"}},
					ContextDir: "src",
				},
				Strategy:  v1alpha1.StrategySpec{BuildArgs: []v1alpha1.BuildArg{{Name: "VERSION", Value: "1.2"}, {Name: "TRICKY", Value: tricky}}},
				Platforms: platforms,
				Output:    v1alpha1.OutputSpec{Image: reg.Host + "/test/app:v1", PushSecretRef: &corev1.LocalObjectReference{Name: "registry-dockercfg"}},
			},
		}
		// As the operator runs it: a run referring to the shared Pipeline,
		// the Secrets' names and the run's own name given at run time.
		pl, pr, err := GenerateReferenced(Input{Build: b, Settings: testSettings(), WorkspaceClaim: "ws"})
		if err != nil {
			t.Fatal(err)
		}
		if pl == nil || pr.Spec.PipelineSpec != nil {
			t.Fatalf("not a referenced run: Pipeline %v", pl)
		}
		r := newRunner(t, t.TempDir())
		start := time.Now()
		results := r.run(resolved(pr, pl))
		wall := time.Since(start)
		t.Logf("two-arch Containerfile build (build-amd64, build-arm64, cleanup) took %s; per task: %v", wall.Round(time.Millisecond), roundDurations(r.taskDurations))

		if results[ResultCommit] != commit {
			t.Errorf("COMMIT = %q, want %q", results[ResultCommit], commit)
		}
		idx := checkPushedIndex(t, reg, "test/app", "v1", results, platforms)
		for _, pl := range platforms {
			builtBy := readImageFile(t, reg, "test/app", idx[pl.Arch()], "built-by")
			want := fmt.Sprintf("arch=%s\nversion=1.2\ntricky=%s\n", unameOf(pl.Arch()), tricky)
			if diff := cmp.Diff(want, builtBy); diff != "" {
				t.Errorf("%s: /built-by (-want +got): build args must reach buildah verbatim and RUN must execute on %s:\n%s", pl, pl, diff)
			}
		}
		if _, err := os.Stat(filepath.Join(r.shared, RunDir(pr.Name))); !os.IsNotExist(err) {
			t.Errorf("cleanup left the run directory behind: %v", err)
		}
	})

	t.Run("NodeJS", func(t *testing.T) {
		repo := "public/node.git"
		git.repo(t, repo, map[string]string{
			"app/package.json":      `{"name":"hello","version":"1.0.0","private":true,"dependencies":{"is-number":"7.0.0"}}` + "\n",
			"app/package-lock.json": nodeLock,
			"app/index.js":          "console.log(require('is-number')(42));\n",
			"app/Containerfile":     "FROM " + base + "\nCOPY node_modules /app/node_modules\nCOPY index.js /app/index.js\nCOPY platform.txt /platform.txt\n",
		})
		shared := t.TempDir()
		b := &v1alpha1.MultiArchBuild{
			ObjectMeta: sampleMeta("node"),
			Spec: v1alpha1.MultiArchBuildSpec{
				Source:    v1alpha1.SourceSpec{Git: v1alpha1.GitSource{URL: git.url(repo), Revision: "main"}, ContextDir: "app"},
				Strategy:  v1alpha1.StrategySpec{Type: v1alpha1.StrategyNodeJS},
				Platforms: platforms,
				Output:    v1alpha1.OutputSpec{Image: reg.Host + "/test/node", PushSecretRef: &corev1.LocalObjectReference{Name: "registry-json"}},
			},
		}
		npmLogs := filepath.Join(shared, "cache", "npm", "_logs")
		var fetches []map[string]int
		for run := 1; run <= 2; run++ {
			b.Annotations = map[string]string{v1alpha1.RebuildAnnotation: fmt.Sprint(run)}
			pr, err := Generate(Input{Build: b, Settings: testSettings(), WorkspaceClaim: "ws"})
			if err != nil {
				t.Fatal(err)
			}
			r := newRunner(t, shared)
			// Mark each platform's private copy after its install: the image of
			// a platform must contain its own mark, never another platform's.
			r.afterTask = func(task string) {
				for _, pl := range platforms {
					if task == InstallTaskName(pl.Arch()) {
						dir := filepath.Join(shared, RunDir(pr.Name), "arch", pl.Arch(), "source", "app")
						if err := os.WriteFile(filepath.Join(dir, "platform.txt"), []byte(pl), 0o644); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			before := listDir(npmLogs)
			start := time.Now()
			results := r.run(pr)
			t.Logf("NodeJS run %d took %s; per task: %v", run, time.Since(start).Round(time.Millisecond), roundDurations(r.taskDurations))
			fetches = append(fetches, npmFetches(t, npmLogs, before))

			idx := checkPushedIndex(t, reg, "test/node", "latest", results, platforms)
			for _, pl := range platforms {
				if got := readImageFile(t, reg, "test/node", idx[pl.Arch()], "platform.txt"); got != string(pl) {
					t.Errorf("the %s image was built from the %q copy of the sources", pl, got)
				}
				if got := readImageFile(t, reg, "test/node", idx[pl.Arch()], "app/node_modules/is-number/package.json"); !strings.Contains(got, `"version": "7.0.0"`) {
					t.Errorf("the %s image lacks node_modules/is-number 7.0.0: %q", pl, got)
				}
			}
			if _, err := os.Stat(filepath.Join(shared, RunDir(pr.Name))); !os.IsNotExist(err) {
				t.Errorf("run %d: cleanup left the run directory behind: %v", run, err)
			}
			if _, err := os.Stat(filepath.Join(shared, "cache", "npm", "_cacache")); err != nil {
				t.Errorf("run %d: the npm cache is not on the shared volume: %v", run, err)
			}
		}
		t.Logf("npm GET requests by outcome: run 1 %v, run 2 %v", fetches[0], fetches[1])
		total := func(m map[string]int) int {
			n := 0
			for _, v := range m {
				n += v
			}
			return n
		}
		if fetches[0]["cache miss"] == 0 {
			t.Errorf("run 1 downloaded nothing (%v): the test does not exercise the cache", fetches[0])
		}
		if n := fetches[1]["cache miss"] + fetches[1]["cache updated"] + fetches[1]["network"]; n != 0 || total(fetches[1]) >= total(fetches[0]) {
			t.Errorf("run 2 downloaded %d responses again (run 1 %v, run 2 %v): the npm cache on the shared volume was not reused", n, fetches[0], fetches[1])
		}
	})

	t.Run("Maven", func(t *testing.T) {
		// A stub mvn stands in for Maven (no Maven Central here): it records its
		// argv and writes target/app.jar, which every platform then packages.
		stubs := t.TempDir()
		if err := os.WriteFile(filepath.Join(stubs, "mvn"), []byte(mvnStub), 0o755); err != nil {
			t.Fatal(err)
		}
		repo := "public/quarkus.git"
		commit := git.repo(t, repo, map[string]string{
			"svc/pom.xml":                        "<project/>\n",
			"svc/src/main/docker/Dockerfile.jvm": "FROM " + base + "\nCOPY target/app.jar /deployments/app.jar\n",
		})
		shared := t.TempDir()
		goals := []string{"package", "-DskipTests", "-Dquarkus.package.type=fast-jar"}
		b := &v1alpha1.MultiArchBuild{
			ObjectMeta: sampleMeta("quarkus"),
			Spec: v1alpha1.MultiArchBuildSpec{
				// A short SHA: the server cannot serve it shallowly, the clone
				// script falls back to fetching every branch and resolving it.
				Source: v1alpha1.SourceSpec{Git: v1alpha1.GitSource{URL: git.url(repo), Revision: commit[:10]}, ContextDir: "svc"},
				Strategy: v1alpha1.StrategySpec{
					Type:          v1alpha1.StrategyMaven,
					Containerfile: "src/main/docker/Dockerfile.jvm",
					Maven:         &v1alpha1.MavenStrategy{Goals: goals, SettingsSecretRef: &corev1.LocalObjectReference{Name: "m2"}},
				},
				Platforms: platforms,
				Output:    v1alpha1.OutputSpec{Image: reg.Host + "/test/quarkus:1.0"},
			},
		}
		pr, err := Generate(Input{Build: b, Settings: testSettings(), WorkspaceClaim: "ws"})
		if err != nil {
			t.Fatal(err)
		}
		r := newRunner(t, shared)
		r.extraPath = stubs
		var mvnArgs []string
		r.afterTask = func(task string) {
			if task == TaskMaven {
				data, err := os.ReadFile(filepath.Join(shared, RunDir(pr.Name), "source", "svc", "target", "mvn-args"))
				if err != nil {
					t.Fatalf("the maven task did not run mvn in the context directory: %v", err)
				}
				mvnArgs = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			}
		}
		results := r.run(pr)
		if results[ResultCommit] != commit {
			t.Errorf("COMMIT = %q, want %q (revision %s)", results[ResultCommit], commit, commit[:10])
		}
		repoDir := filepath.Join(shared, "cache", "m2", "repository")
		want := append([]string{"--batch-mode", "--no-transfer-progress", "-Dmaven.repo.local=" + repoDir, "-s", "<settings.xml of the m2 Secret>"}, goals...)
		if len(mvnArgs) > 4 && strings.HasSuffix(mvnArgs[4], "/settings.xml") {
			mvnArgs[4] = "<settings.xml of the m2 Secret>"
		}
		if diff := cmp.Diff(want, mvnArgs); diff != "" {
			t.Errorf("mvn argv (-want +got):\n%s", diff)
		}
		if _, err := os.Stat(filepath.Join(repoDir, "stub-was-here")); err != nil {
			t.Errorf("the Maven repository is not kept in cache/m2 on the shared volume: %v", err)
		}
		idx := checkPushedIndex(t, reg, "test/quarkus", "1.0", results, platforms)
		for _, pl := range platforms {
			if got := readImageFile(t, reg, "test/quarkus", idx[pl.Arch()], "deployments/app.jar"); got != "jar built once\n" {
				t.Errorf("%s image: /deployments/app.jar = %q", pl, got)
			}
		}
	})
}

// A failed build says why in the words of the tool that failed: the task's
// ERROR result (what the controller shows in status) holds buildah's or
// git's own error line, not "step exited with code N".
func TestScriptsReportTheToolsOwnErrorInTheErrorResult(t *testing.T) {
	if _, err := exec.LookPath("buildah"); err != nil {
		t.Skip("buildah is not on PATH: the real-build tests need the Debian packages buildah docker-registry qemu-user-static binfmt-support busybox-static git")
	}
	if want := fmt.Sprintf(`"${line:0:%d}"`, MaxErrorLen); !strings.Contains(scriptLib, want) {
		t.Fatalf("lib.sh does not cap the ERROR result at MaxErrorLen (%d): no %s", MaxErrorLen, want)
	}
	platforms := []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}
	reg := registry.Start(t)
	base := reg.Host + "/base/busybox:latest"
	images.BuildBusyboxBase(t, images.NewStorage(t, reg.Env()...), base, []string{"linux/amd64", "linux/arm64"})
	git := startGitServer(t, "builder", "s3cret")

	for _, tc := range []struct {
		name      string
		files     map[string]string
		password  string // of the git Secret
		wantTask  string
		wantError []string // substrings of the ERROR result
	}{
		{
			name:      "no FROM",
			files:     map[string]string{"Containerfile": "RUN true\n"},
			password:  "s3cret",
			wantTask:  BuildTaskName("amd64"),
			wantError: []string{"Error: no FROM statement found"},
		},
		{
			name:      "RUN fails on arm64 only",
			files:     map[string]string{"Containerfile": "FROM " + base + "\n" + `RUN echo "Error: a line of the RUN's own"; [ "$(uname -m)" != aarch64 ]` + "\n"},
			password:  "s3cret",
			wantTask:  BuildTaskName("arm64"),
			wantError: []string{`Error: building at STEP "RUN echo`, "exit status 1"},
		},
		{
			name:      "wrong git password",
			files:     map[string]string{"Containerfile": "FROM " + base + "\n"},
			password:  "wrong",
			wantTask:  BuildTaskName("amd64"), // its clone step: each platform clones for itself
			wantError: []string{"fatal: Authentication failed for", "cannot fetch", "spec.source.git.secretRef"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "private/" + strings.ReplaceAll(tc.name, " ", "-") + ".git"
			git.repo(t, repo, tc.files)
			b := &v1alpha1.MultiArchBuild{
				ObjectMeta: sampleMeta("fails"),
				Spec: v1alpha1.MultiArchBuildSpec{
					Source:    v1alpha1.SourceSpec{Git: v1alpha1.GitSource{URL: git.url(repo), SecretRef: &corev1.LocalObjectReference{Name: "git-auth"}}},
					Platforms: platforms,
					Output:    v1alpha1.OutputSpec{Image: reg.Host + "/test/fails:v1"},
				},
			}
			pr, err := Generate(Input{Build: b, Settings: testSettings(), WorkspaceClaim: "ws"})
			if err != nil {
				t.Fatal(err)
			}
			r := &localRunner{t: t, shared: t.TempDir(), clientEnv: reg.Env(), allowFailure: true,
				secrets: map[string]map[string]string{"git-auth": {"username": "builder", "password": tc.password}}}
			r.run(pr)
			f := r.failure
			if f == nil {
				t.Fatal("the run succeeded")
			}
			msg := f.results[ResultError]
			t.Logf("task %s step %s failed; %s = %q", f.task, f.step, ResultError, msg)
			if f.task != tc.wantTask {
				t.Errorf("failed task %s, want %s", f.task, tc.wantTask)
			}
			for _, want := range tc.wantError {
				if !strings.Contains(msg, want) {
					t.Errorf("%s result %q lacks %q", ResultError, msg, want)
				}
			}
			if strings.ContainsAny(msg, "\n\r") || len(msg) > MaxErrorLen {
				t.Errorf("%s result is not one line of at most %d bytes: %d bytes %q", ResultError, MaxErrorLen, len(msg), msg)
			}
			if _, ok := r.taskDurations[TaskCleanup]; !ok {
				t.Error("the finally task did not run after the failure")
			}
			if _, err := os.Stat(filepath.Join(r.shared, RunDir(pr.Name))); !os.IsNotExist(err) {
				t.Errorf("cleanup left the failed run's directory behind: %v", err)
			}
			if _, err := reg.Manifest(context.Background(), "test/fails", "v1"); err == nil {
				t.Error("a failed build pushed its tag")
			}
		})
	}
}

// Same commit and spec: the same per-architecture digests and the same index
// digest, build after build (buildah --timestamp from the commit time, the
// list assembled in the spec's order). Another commit of the same files (only
// its time differs): other digests.
func TestScriptsBuildReproducibleImages(t *testing.T) {
	if _, err := exec.LookPath("buildah"); err != nil {
		t.Skip("buildah is not on PATH: the real-build tests need the Debian packages buildah docker-registry qemu-user-static binfmt-support busybox-static git")
	}
	platforms := []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}
	reg := registry.Start(t)
	base := reg.Host + "/base/busybox:latest"
	images.BuildBusyboxBase(t, images.NewStorage(t, reg.Env()...), base, []string{"linux/amd64", "linux/arm64"})
	git := startGitServer(t, "builder", "s3cret")
	files := map[string]string{
		"app/Containerfile": "FROM " + base + "\nARG VERSION\n" +
			`RUN mkdir -p /srv && printf '%s\n' "$VERSION" > /srv/version && uname -m > /srv/arch` + "\n" +
			"COPY hello.txt /srv/hello.txt\n",
		"app/hello.txt": "hello\n",
	}
	first := git.repoAt(t, "public/repro.git", files, "@1700000000 +0000")
	other := git.repoAt(t, "public/repro-later.git", files, "@1700003600 +0000")

	build := func(repo, revision, token string, cache v1alpha1.LayerCacheMode) (map[string]string, time.Duration) {
		b := &v1alpha1.MultiArchBuild{
			ObjectMeta: sampleMeta("repro"),
			Spec: v1alpha1.MultiArchBuildSpec{
				Source:    v1alpha1.SourceSpec{Git: v1alpha1.GitSource{URL: git.url(repo), Revision: revision}, ContextDir: "app"},
				Strategy:  v1alpha1.StrategySpec{BuildArgs: []v1alpha1.BuildArg{{Name: "VERSION", Value: "1.0"}}},
				Platforms: platforms,
				Output:    v1alpha1.OutputSpec{Image: reg.Host + "/test/repro:v1", LayerCache: &v1alpha1.LayerCacheSpec{Mode: cache}},
			},
		}
		b.Annotations = map[string]string{v1alpha1.RebuildAnnotation: token}
		pr, err := Generate(Input{Build: b, Settings: testSettings(), WorkspaceClaim: "ws"})
		if err != nil {
			t.Fatal(err)
		}
		r := &localRunner{t: t, shared: t.TempDir(), clientEnv: reg.Env()}
		res := r.run(pr)
		checkPushedIndex(t, reg, "test/repro", "v1", res, platforms)
		return res, r.stepDurations[TaskPush+"/push"]
	}
	digests := func(res map[string]string) map[string]string {
		out := map[string]string{ResultImageDigest: res[ResultImageDigest]}
		for _, pl := range platforms {
			out[ArchDigestResult(pl.Arch())] = res[ArchDigestResult(pl.Arch())]
		}
		return out
	}
	// Without the layer cache twice, then with it, cold then warm: the same
	// digests each time within a mode. (The modes differ from each other:
	// without --layers buildah commits one layer per stage, with it one per
	// instruction.)
	one, push1 := build("public/repro.git", first, "1", v1alpha1.LayerCacheDisabled)
	two, push2 := build("public/repro.git", first, "2", v1alpha1.LayerCacheDisabled)
	t.Logf("same commit twice: %v; push step %s then %s", digests(one), push1.Round(time.Millisecond), push2.Round(time.Millisecond))
	if diff := cmp.Diff(digests(one), digests(two)); diff != "" {
		t.Errorf("two builds of commit %s give different digests (-first +second):\n%s", first, diff)
	}
	cold, _ := build("public/repro.git", first, "3", v1alpha1.LayerCacheRegistry)
	warm, _ := build("public/repro.git", first, "4", v1alpha1.LayerCacheRegistry)
	t.Logf("same commit with the layer cache, cold then warm: %v", digests(cold))
	if diff := cmp.Diff(digests(cold), digests(warm)); diff != "" {
		t.Errorf("a build of commit %s from a warm layer cache gives other digests than the cold one (-cold +warm):\n%s", first, diff)
	}
	// The commit time reaches the image when its layers are built (a warm
	// cache would hand back the earlier commit's identical layers: see
	// TestScriptsLayerCache).
	later, _ := build("public/repro-later.git", other, "5", v1alpha1.LayerCacheDisabled)
	t.Logf("same files, commit an hour later: %v", digests(later))
	for name, d := range digests(later) {
		if d == digests(one)[name] {
			t.Errorf("%s = %s for commits %s and %s: the commit time does not reach the image", name, d, first, other)
		}
	}
}

// The layer cache (spec.output.layerCache, buildah --layers --cache-from
// --cache-to the registry): each build task starts from an empty buildah
// storage, as on a cluster, so whatever it reuses came from the cache
// repository. The Containerfile's dependency layer is slow and records a
// random id: the same id in a later image means the layer was reused, a new
// one that it was built again.
func TestScriptsLayerCache(t *testing.T) {
	if _, err := exec.LookPath("buildah"); err != nil {
		t.Skip("buildah is not on PATH: the real-build tests need the Debian packages buildah docker-registry qemu-user-static binfmt-support busybox-static git")
	}
	platforms := []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}
	reg := registry.Start(t)
	base := reg.Host + "/base/busybox:latest"
	images.BuildBusyboxBase(t, images.NewStorage(t, reg.Env()...), base, []string{"linux/amd64", "linux/arm64"})
	git := startGitServer(t, "builder", "s3cret")
	files := func(app string) map[string]string {
		return map[string]string{
			"Containerfile": "FROM " + base + "\n" +
				"COPY deps.txt /deps.txt\n" +
				"RUN sleep 4 && cat /proc/sys/kernel/random/uuid > /deps-id\n" +
				"COPY app.txt /app.txt\n",
			"deps.txt": "is-number 7.0.0\n",
			"app.txt":  app,
		}
	}
	commitA := git.repoAt(t, "public/cached.git", files("v1\n"), "@1700000000 +0000")
	commitB := git.repoAt(t, "public/cached-b.git", files("v2\n"), "@1700003600 +0000")

	type result struct {
		index  string
		deps   map[string]string // arch -> /deps-id
		app    map[string]string // arch -> /app.txt
		reused map[string]string // arch -> the REUSED result
		builds time.Duration     // build-<arch> tasks, summed
	}
	builder := ""
	build := func(repo, commit, token string, cache *v1alpha1.LayerCacheSpec) result {
		b := &v1alpha1.MultiArchBuild{
			ObjectMeta: sampleMeta("cached"),
			Spec: v1alpha1.MultiArchBuildSpec{
				Source:    v1alpha1.SourceSpec{Git: v1alpha1.GitSource{URL: git.url(repo), Revision: commit}},
				Platforms: platforms,
				Output:    v1alpha1.OutputSpec{Image: reg.Host + "/test/cached:v1", LayerCache: cache},
				// The runner runs this machine's buildah whatever the image.
				BuilderImage: builder,
			},
		}
		b.Annotations = map[string]string{v1alpha1.RebuildAnnotation: token}
		pr, err := Generate(Input{Build: b, Settings: testSettings(), WorkspaceClaim: "ws"})
		if err != nil {
			t.Fatal(err)
		}
		r := &localRunner{t: t, shared: t.TempDir(), clientEnv: reg.Env()}
		res := r.run(pr)
		idx := checkPushedIndex(t, reg, "test/cached", "v1", res, platforms)
		out := result{index: res[ResultImageDigest], deps: map[string]string{}, app: map[string]string{}, reused: map[string]string{}}
		for _, pl := range platforms {
			out.deps[pl.Arch()] = readImageFile(t, reg, "test/cached", idx[pl.Arch()], "deps-id")
			out.app[pl.Arch()] = readImageFile(t, reg, "test/cached", idx[pl.Arch()], "app.txt")
			out.reused[pl.Arch()] = r.taskResults[BuildTaskName(pl.Arch())][ResultReused]
			out.builds += r.taskDurations[BuildTaskName(pl.Arch())]
		}
		return out
	}
	cacheRepo := reg.Host + "/test/cached-layers"
	inRepo := &v1alpha1.LayerCacheSpec{Repository: cacheRepo}

	cold := build("public/cached.git", commitA, "1", inRepo)
	warm := build("public/cached.git", commitA, "2", inRepo)
	// Another builder image may lay out the same image differently.
	builder = "quay.io/buildah/stable:v1.41.4"
	otherBuilder := build("public/cached.git", commitA, "2b", inRepo)
	builder = ""
	changed := build("public/cached-b.git", commitB, "3", inRepo)
	off := build("public/cached-b.git", commitB, "4", &v1alpha1.LayerCacheSpec{Mode: v1alpha1.LayerCacheDisabled})
	// The base image's tag moves to a new image: the same commit builds again.
	images.BuildBusyboxBase(t, images.NewStorage(t, reg.Env()...), base, []string{"linux/amd64", "linux/arm64"})
	rebased := build("public/cached.git", commitA, "5", inRepo)
	t.Logf("build tasks (amd64 + arm64): cold cache %s, unchanged rebuild %s (%.2f x cold), app.txt changed %s, cache disabled %s, base image moved %s",
		cold.builds.Round(time.Millisecond), warm.builds.Round(time.Millisecond), warm.builds.Seconds()/cold.builds.Seconds(),
		changed.builds.Round(time.Millisecond), off.builds.Round(time.Millisecond), rebased.builds.Round(time.Millisecond))

	// The image reuse: the unchanged rebuild built nothing; every other
	// build had a new key (commit, base image) or no cache.
	for arch := range cold.deps {
		if want := cacheRepo + ":image-"; !strings.HasPrefix(warm.reused[arch], want) {
			t.Errorf("%s: the unchanged rebuild's REUSED = %q, want the record %s<key>: it built again", arch, warm.reused[arch], want)
		}
		for name, r := range map[string]result{"cold": cold, "other builder image": otherBuilder, "app.txt changed": changed, "cache disabled": off, "base image moved": rebased} {
			if r.reused[arch] != "" {
				t.Errorf("%s: the %s build reused %s instead of building", arch, name, r.reused[arch])
			}
		}
		if rebased.deps[arch] == cold.deps[arch] {
			t.Errorf("%s: after the base image moved, /deps-id is still %s: built on the old base", arch, cold.deps[arch])
		}
	}
	if warm.reused["amd64"] == warm.reused["arm64"] {
		t.Errorf("amd64 and arm64 reused one record %s: the key must hold the platform", warm.reused["amd64"])
	}

	if cold.deps["amd64"] == cold.deps["arm64"] {
		t.Errorf("amd64 and arm64 images share /deps-id %s: each architecture must build (and cache) its own layer", cold.deps["amd64"])
	}
	if diff := cmp.Diff(cold.deps, warm.deps); diff != "" {
		t.Errorf("unchanged rebuild: the dependency layer was built again instead of reused from %s (-cold +warm /deps-id):\n%s", cacheRepo, diff)
	}
	if warm.index != cold.index {
		t.Errorf("unchanged rebuild from the cache pushed index %s, the cold build %s: every layer is the same", warm.index, cold.index)
	}
	if diff := cmp.Diff(cold.deps, changed.deps); diff != "" {
		t.Errorf("a source-only change (app.txt) rebuilt the dependency layer (-before +after /deps-id):\n%s", diff)
	}
	for arch, app := range changed.app {
		if app != "v2\n" {
			t.Errorf("%s: /app.txt = %q after the change, want the new sources' \"v2\\n\": the cache handed back a stale layer", arch, app)
		}
	}
	for arch, id := range off.deps {
		if id == cold.deps[arch] {
			t.Errorf("%s: layerCache.mode Disabled reused the cached dependency layer %s", arch, id)
		}
	}
	// The cache lives where the spec says, not in the output repository.
	if _, err := reg.Manifest(context.Background(), "test/cached-layers", cacheTagOf(t, reg, "test/cached-layers")); err != nil {
		t.Errorf("no cached layer in %s: %v", cacheRepo, err)
	}
	if tags := listTags(t, reg, "test/cached"); len(tags) != 1 || tags[0] != "v1" {
		t.Errorf("output repository tags = %v, want only [v1]: the cache was given another repository", tags)
	}
}

// listTags lists repo's tags in the test registry.
func listTags(t *testing.T, reg *registry.Registry, repo string) []string {
	t.Helper()
	resp, err := reg.Client().Get("https://" + reg.Host + "/v2/" + repo + "/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Tags []string `json:"tags"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("tags of %s: %v", repo, err)
	}
	sort.Strings(out.Tags)
	return out.Tags
}

// cacheTagOf returns one of the cache keys buildah tagged in repo.
func cacheTagOf(t *testing.T, reg *registry.Registry, repo string) string {
	t.Helper()
	for _, tag := range listTags(t, reg, repo) {
		if len(tag) == 64 {
			return tag
		}
	}
	t.Fatalf("%s holds no cache key tag (64 hex digits)", repo)
	return ""
}

const mvnStub = `#!/bin/sh
set -e
mkdir -p target
printf '%s\n' "$@" > target/mvn-args
printf 'jar built once\n' > target/app.jar
for a in "$@"; do
  case "$a" in -Dmaven.repo.local=*) mkdir -p "${a#*=}" && touch "${a#*=}/stub-was-here" ;; esac
done
`

// nodeLock pins is-number 7.0.0 (a dependency without dependencies).
const nodeLock = `{
  "name": "hello",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {
      "name": "hello",
      "version": "1.0.0",
      "dependencies": {
        "is-number": "7.0.0"
      }
    },
    "node_modules/is-number": {
      "version": "7.0.0",
      "resolved": "https://registry.npmjs.org/is-number/-/is-number-7.0.0.tgz",
      "integrity": "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==",
      "license": "MIT",
      "engines": {
        "node": ">=0.12.0"
      }
    }
  }
}
`

func unameOf(arch string) string {
	return map[string]string{"amd64": "x86_64", "arm64": "aarch64", "ppc64le": "ppc64le", "s390x": "s390x"}[arch]
}

type ociIndex struct {
	MediaType string `json:"mediaType"`
	Manifests []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Platform  struct {
			Architecture string `json:"architecture"`
			OS           string `json:"os"`
		} `json:"platform"`
	} `json:"manifests"`
}

// checkPushedIndex asserts what the registry serves for repo:tag against the
// run's results and returns the per-architecture manifest digests.
func checkPushedIndex(t *testing.T, reg *registry.Registry, repo, tag string, results map[string]string, platforms []v1alpha1.Platform) map[string]string {
	t.Helper()
	m, err := reg.Manifest(context.Background(), repo, tag)
	if err != nil {
		t.Fatal(err)
	}
	if results[ResultImageDigest] != m.Digest {
		t.Errorf("IMAGE_DIGEST = %q, but the index the registry serves for %s:%s has sha256 %s", results[ResultImageDigest], repo, tag, m.Digest)
	}
	if m.HeaderDigest != m.Digest {
		t.Errorf("registry Docker-Content-Digest %s != sha256 of the body %s", m.HeaderDigest, m.Digest)
	}
	if want := reg.Host + "/" + repo; results[ResultImageURL] != want {
		t.Errorf("IMAGE_URL = %q, want %q", results[ResultImageURL], want)
	}
	t.Logf("%s:%s is a %s of %d bytes, sha256 %s", repo, tag, m.MediaType, len(m.Body), m.Digest)
	var idx ociIndex
	if err := json.Unmarshal(m.Body, &idx); err != nil {
		t.Fatalf("index: %v\n%s", err, m.Body)
	}
	if !strings.Contains(m.MediaType, "index") && !strings.Contains(m.MediaType, "manifest.list") {
		t.Errorf("%s:%s is a %s, not a manifest list", repo, tag, m.MediaType)
	}
	got := map[string]string{}
	var gotPlatforms []string
	for _, d := range idx.Manifests {
		gotPlatforms = append(gotPlatforms, d.Platform.OS+"/"+d.Platform.Architecture)
		got[d.Platform.Architecture] = d.Digest
	}
	var wantPlatforms []string
	for _, pl := range platforms {
		wantPlatforms = append(wantPlatforms, string(pl))
		if r := results[ArchDigestResult(pl.Arch())]; r != got[pl.Arch()] {
			t.Errorf("%s = %q, the index lists %q", ArchDigestResult(pl.Arch()), r, got[pl.Arch()])
		}
	}
	sort.Strings(gotPlatforms)
	sort.Strings(wantPlatforms)
	if diff := cmp.Diff(wantPlatforms, gotPlatforms); diff != "" {
		t.Errorf("platforms of the pushed index (-want +got):\n%s", diff)
	}
	return got
}

// readImageFile returns the content of path (without leading /) in the image
// manifest digest of repo, reading its layers from the registry, top first.
func readImageFile(t *testing.T, reg *registry.Registry, repo, digest, path string) string {
	t.Helper()
	m, err := reg.Manifest(context.Background(), repo, digest)
	if err != nil {
		t.Fatal(err)
	}
	var man struct {
		Layers []struct {
			Digest    string `json:"digest"`
			MediaType string `json:"mediaType"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(m.Body, &man); err != nil {
		t.Fatal(err)
	}
	for i := len(man.Layers) - 1; i >= 0; i-- {
		body, err := reg.Blob(context.Background(), repo, man.Layers[i].Digest)
		if err != nil {
			t.Fatal(err)
		}
		var rd io.Reader = body
		if strings.Contains(man.Layers[i].MediaType, "gzip") {
			gz, err := gzip.NewReader(body)
			if err != nil {
				t.Fatal(err)
			}
			rd = gz
		}
		tr := tar.NewReader(rd)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimPrefix(h.Name, "./") == path {
				b, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				body.Close()
				return string(b)
			}
		}
		body.Close()
	}
	t.Fatalf("%s not found in %s@%s", path, repo, digest)
	return ""
}

func listDir(dir string) map[string]bool {
	out := map[string]bool{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		out[e.Name()] = true
	}
	return out
}

// npmFetches counts the GET requests npm logged ("http fetch GET ...") by
// outcome ("cache miss", "cache updated", "cache stale", ...; "network" when
// npm names none) in the debug logs written to the cache directory since
// before. A package npm takes from its cache by integrity is not logged at all.
func npmFetches(t *testing.T, dir string, before map[string]bool) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for name := range listDir(dir) {
		if before[name] {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, "http fetch GET") {
				continue
			}
			if i := strings.LastIndex(line, "("); i >= 0 && strings.HasSuffix(line, ")") {
				counts[line[i+1:len(line)-1]]++
			} else {
				counts["network"]++
			}
		}
	}
	return counts
}

func roundDurations(m map[string]time.Duration) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v.Round(100 * time.Millisecond).String()
	}
	return out
}

// gitServer serves bare repositories over smart HTTP (git http-backend as
// CGI): paths under public/ anonymously, under private/ with basic auth.
type gitServer struct {
	root, host string
}

func startGitServer(t *testing.T, user, password string) *gitServer {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git not on PATH: %v", err)
	}
	root := t.TempDir()
	backend := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	mux := http.NewServeMux()
	mux.Handle("/public/", backend)
	mux.Handle("/private/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &gitServer{root: root, host: l.Addr().String()}
}

func (g *gitServer) url(repo string) string { return "http://" + g.host + "/" + repo }

// repo creates the bare repository path (e.g. public/x.git) holding files
// in one commit on main, and returns the commit SHA.
func (g *gitServer) repo(t *testing.T, path string, files map[string]string) string {
	t.Helper()
	return g.repoAt(t, path, files, "")
}

// repoAt is repo with the commit's author and committer date (git's date
// formats, e.g. "@1700000000 +0000"); empty: now.
func (g *gitServer) repoAt(t *testing.T, path string, files map[string]string, date string) string {
	t.Helper()
	work := t.TempDir()
	for name, content := range files {
		p := filepath.Join(work, filepath.FromSlash(name))
		mustMkdir(t, filepath.Dir(p))
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitRun := func(dir string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.com",
			"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.com", "GIT_CONFIG_GLOBAL=/dev/null")
		if date != "" {
			cmd.Env = append(cmd.Env, "GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	gitRun(work, "init", "-q", "-b", "main")
	gitRun(work, "add", ".")
	gitRun(work, "commit", "-q", "-m", "test sources")
	bare := filepath.Join(g.root, filepath.FromSlash(path))
	gitRun(work, "clone", "-q", "--bare", work, bare)
	return gitRun(work, "rev-parse", "HEAD")
}

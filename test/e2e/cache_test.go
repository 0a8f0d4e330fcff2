//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// cacheContainerfile has a slow dependency layer that records a random id:
// the same id in a later image means the layer came from the cache.
const cacheContainerfile = "COPY deps.txt /deps.txt\n" +
	"RUN sleep 20 && cat /proc/sys/kernel/random/uuid > /deps-id\n" +
	"COPY app.txt /app.txt\n"

// TestLayerCacheRebuilds: the layer cache (spec.output.layerCache, on by
// default, in the output repository) on the cluster. A cold build, an
// unchanged rebuild and a rebuild after a change to the sources only: the
// slow dependency layer is built once per architecture and reused by both
// rebuilds. The unchanged rebuild builds nothing: each build task finds the
// image the cold build recorded for the same commit, arguments and base
// images. The changed one pulls the dependency layer from the registry (its
// buildah storage is an emptyDir, gone with the pod). Times are logged, not
// asserted: the README quotes them.
func TestLayerCacheRebuilds(t *testing.T) {
	t.Parallel()
	files := func(app string) map[string]string {
		return map[string]string{
			"Containerfile": "FROM " + cfg.BaseImage + "\n" + cacheContainerfile,
			"deps.txt":      "ms 2.1.3\n",
			"app.txt":       app,
		}
	}
	url := gitRepo(t, "e2e-cache", files("v1\n"))
	ns := namespace(t, "e2e-cache")
	// A repository of its own per run: the cache starts cold.
	b := newBuild(ns, "cached", url, "e2e/cache-"+ns)
	cold := runBuild(t, b, v1alpha1.PhaseSucceeded)

	type seen struct{ deps, app map[string]string }
	read := func(res result) seen {
		s := seen{deps: map[string]string{}, app: map[string]string{}}
		for arch, img := range checkPushed(t, res) {
			f, err := imageFiles(context.Background(), repoOf(b), img, "deps-id", "app.txt")
			if err != nil {
				t.Fatal(err)
			}
			s.deps[arch], s.app[arch] = strings.TrimSpace(string(f["deps-id"])), string(f["app.txt"])
		}
		return s
	}
	rebuild := func(token string, prev result) result {
		cur := &v1alpha1.MultiArchBuild{}
		if err := kc.Get(context.Background(), client.ObjectKeyFromObject(b), cur); err != nil {
			t.Fatal(err)
		}
		cur.Annotations = map[string]string{v1alpha1.RebuildAnnotation: token}
		start := time.Now()
		if err := kc.Update(context.Background(), cur); err != nil {
			t.Fatal(err)
		}
		return waitBuild(t, cur, prev.build.Status.LatestRun.Name, start, v1alpha1.PhaseSucceeded)
	}
	before := read(cold)
	if before.deps["amd64"] == "" || before.deps["amd64"] == before.deps["arm64"] {
		t.Fatalf("/deps-id per architecture = %v: want one id each", before.deps)
	}

	warm := rebuild("unchanged", cold)
	same := read(warm)
	for arch, id := range before.deps {
		if same.deps[arch] != id {
			t.Errorf("%s: the unchanged rebuild built the dependency layer again (/deps-id %s, was %s)", arch, same.deps[arch], id)
		}
	}
	if warm.build.Status.Digest != cold.build.Status.Digest {
		t.Errorf("unchanged rebuild pushed %s, the cold build %s: every layer is the same", warm.build.Status.Digest, cold.build.Status.Digest)
	}
	// Same commit, arguments and base images: no platform built again.
	for _, p := range warm.build.Status.Platforms {
		if !strings.Contains(p.Message, "not built again") {
			t.Errorf("%s: the unchanged rebuild built again (message %q): the image reuse did not find the cold build's record", p.Platform, p.Message)
		}
	}

	gitRepo(t, "e2e-cache", files("v2\n")) // a new commit on main: the sources only
	changed := rebuild("app-changed", warm)
	if changed.build.Status.Revision == cold.build.Status.Revision {
		t.Fatalf("the third build built commit %s again", changed.build.Status.Revision)
	}
	after := read(changed)
	for _, p := range changed.build.Status.Platforms {
		if p.Message != "" {
			t.Errorf("%s: the build of a new commit says %q: it must build, from the layer cache", p.Platform, p.Message)
		}
	}
	for arch, id := range before.deps {
		if after.deps[arch] != id {
			t.Errorf("%s: a change to app.txt only rebuilt the dependency layer (/deps-id %s, was %s)", arch, after.deps[arch], id)
		}
		if after.app[arch] != "v2\n" {
			t.Errorf("%s: /app.txt = %q, want the new commit's \"v2\\n\"", arch, after.app[arch])
		}
	}
	slowest := func(res result) float64 { return slowestArchTask(res).Seconds() }
	t.Logf("SUMMARY: layer cache: cold build %.0fs (slowest architecture task %.0fs), unchanged rebuild %.0fs (%.0fs; %.2f x cold), sources changed %.0fs (%.0fs)",
		cold.wall.Seconds(), slowest(cold), warm.wall.Seconds(), slowest(warm), warm.wall.Seconds()/cold.wall.Seconds(),
		changed.wall.Seconds(), slowest(changed))
}

// slowestArchTask is the longest build-<arch> TaskRun of a run.
func slowestArchTask(res result) time.Duration {
	var d time.Duration
	for _, tr := range res.taskRuns {
		if !strings.HasPrefix(tr.Labels["tekton.dev/pipelineTask"], "build-") || tr.Status.StartTime == nil || tr.Status.CompletionTime == nil {
			continue
		}
		if x := tr.Status.CompletionTime.Sub(tr.Status.StartTime.Time); x > d {
			d = x
		}
	}
	return d
}

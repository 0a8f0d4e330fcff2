//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

// A Containerfile FROM an image without arm64 fails in seconds, in the
// preflight step of build-amd64 (the first platform's task, which checks
// every platform) or of build-arm64 (which, with the layer cache, checks its
// own), whichever gets there first, with a message naming the image and
// linux/arm64; the operator cancels the run at once, so build-arm64 never
// pushes an image. The image is the amd64 instance of the
// cluster's base image, pushed by the test under its own tag (a single
// image, no list), and named through a build argument (ARG-resolved FROM).
func TestPreflightFailsOnABaseImageWithoutArm64(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	amd64Only := pushAMD64Only(t)
	url := gitRepo(t, "e2e-preflight", map[string]string{
		"Containerfile": "ARG BASE=" + cfg.BaseImage + "\nFROM $BASE\nRUN true\n",
	})
	ns := namespace(t, "e2e-preflight")
	b := newBuild(ns, "no-arm64-base", url, "e2e/preflight")
	b.Spec.Strategy.BuildArgs = []v1alpha1.BuildArg{{Name: "BASE", Value: amd64Only}}
	start := time.Now()
	if err := kc.Create(ctx, b); err != nil {
		t.Fatalf("create MultiArchBuild: %v", err)
	}
	key := client.ObjectKeyFromObject(b)
	last := ""
	for {
		cur := &v1alpha1.MultiArchBuild{}
		if err := kc.Get(ctx, key, cur); err != nil {
			t.Fatal(err)
		}
		line := string(cur.Status.Phase)
		for _, p := range cur.Status.Platforms {
			line += fmt.Sprintf(" %s=%s", p.Platform, p.State)
		}
		if line != last {
			t.Logf("%6.1fs %s: %s", time.Since(start).Seconds(), key, line)
			last = line
		}
		if cur.Status.ObservedGeneration == cur.Generation &&
			(cur.Status.Phase == v1alpha1.PhaseSucceeded || cur.Status.Phase == v1alpha1.PhaseFailed) {
			b = cur
			break
		}
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("%s still %s after %s", key, cur.Status.Phase, time.Since(start))
		}
		time.Sleep(500 * time.Millisecond)
	}
	wall := time.Since(start)
	if b.Status.Phase != v1alpha1.PhaseFailed {
		t.Fatalf("%s ended %s, want Failed", key, b.Status.Phase)
	}
	succ := apimeta.FindStatusCondition(b.Status.Conditions, v1alpha1.ConditionSucceeded)
	if succ == nil || succ.Status != metav1.ConditionFalse {
		t.Fatalf("Succeeded = %+v, want False", succ)
	}
	t.Logf("failed after %s: Succeeded=False reason=%s message=%q", wall.Round(100*time.Millisecond), succ.Reason, succ.Message)
	for _, want := range []string{" failed: " + pipeline.StepPreflight + ":", amd64Only, "linux/arm64"} {
		if !strings.Contains(succ.Message, want) {
			t.Errorf("Succeeded message %q lacks %q", succ.Message, want)
		}
	}
	if !strings.Contains(succ.Message, "task "+pipeline.BuildTaskName("amd64")+" failed") && !strings.Contains(succ.Message, "task "+pipeline.BuildTaskName("arm64")+" failed") {
		t.Errorf("Succeeded message %q names neither build task", succ.Message)
	}
	trs := &tektonv1.TaskRunList{}
	if err := kc.List(ctx, trs, client.InNamespace(ns), client.MatchingLabels{"tekton.dev/pipelineRun": b.Status.LatestRun.Name}); err != nil {
		t.Fatal(err)
	}
	var tasks []string
	var preflight time.Duration
	for _, tr := range trs.Items {
		task := tr.Labels["tekton.dev/pipelineTask"]
		c := tr.Status.GetCondition(apis.ConditionSucceeded)
		state := "running"
		if c != nil {
			state = c.Reason
		}
		tasks = append(tasks, task+"="+state)
		if task == pipeline.BuildTaskName("arm64") && c != nil && c.IsTrue() {
			t.Errorf("TaskRun %s succeeded: preflight must stop the run before an arm64 image is pushed", tr.Name)
		}
		for _, st := range tr.Status.Steps {
			if st.Name == pipeline.StepPreflight && st.Terminated != nil && st.Terminated.ExitCode != 0 {
				preflight = st.Terminated.FinishedAt.Sub(st.Terminated.StartedAt.Time)
			}
		}
	}
	run := &tektonv1.PipelineRun{}
	if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: b.Status.LatestRun.Name}, run); err != nil {
		t.Fatal(err)
	}
	if run.Spec.Status != tektonv1.PipelineRunSpecStatusCancelledRunFinally {
		t.Errorf("PipelineRun spec.status %q, want %s: the operator cancels the other platforms when one fails", run.Spec.Status, tektonv1.PipelineRunSpecStatusCancelledRunFinally)
	}
	t.Logf("TaskRuns: %v; preflight step %s; build wall time to Failed %s", tasks, preflight, wall.Round(100*time.Millisecond))
	if wall > 2*time.Minute {
		t.Errorf("the build took %s to fail: preflight should end it in seconds", wall)
	}
}

// pushAMD64Only pushes the linux/amd64 image of the cluster's base image
// list under the tag amd64-only of the same repository (its blobs are
// there) and returns its reference.
func pushAMD64Only(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	ref := strings.TrimPrefix(cfg.BaseImage, cfg.Registry+"/")
	repo, tag, _ := strings.Cut(ref, ":")
	idx, err := getManifest(ctx, repo, tag)
	if err != nil {
		t.Fatal(err)
	}
	var d *descriptor
	for i := range idx.Manifests {
		if p := idx.Manifests[i].Platform; p != nil && p.OS == "linux" && p.Architecture == "amd64" {
			d = &idx.Manifests[i]
		}
	}
	if d == nil {
		t.Fatalf("%s has no linux/amd64 entry: %+v", cfg.BaseImage, idx)
	}
	resp, err := regGet(ctx, repo, "manifests", d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v2/%s/manifests/amd64-only", cfg.Registry, repo), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", d.MediaType)
	put, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer put.Body.Close()
	if put.StatusCode >= 300 {
		b, _ := io.ReadAll(put.Body)
		t.Fatalf("PUT %s:amd64-only: %s %s", repo, put.Status, b)
	}
	out := cfg.Registry + "/" + repo + ":amd64-only"
	t.Logf("pushed %s (the linux/amd64 image of %s, no list)", out, cfg.BaseImage)
	return out
}

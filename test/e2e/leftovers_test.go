//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/storage"
)

// volumeEntries lists what the build's shared volume holds at its root and
// in runs/, read on the host from the local PV's hostPath.
func volumeEntries(t *testing.T, b *v1alpha1.MultiArchBuild) (root, runs []string) {
	t.Helper()
	ctx := context.Background()
	pvc := &corev1.PersistentVolumeClaim{}
	if err := kc.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: storage.ClaimName(b)}, pvc); err != nil {
		t.Fatal(err)
	}
	pv := &corev1.PersistentVolume{}
	if err := kc.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, pv); err != nil {
		t.Fatal(err)
	}
	if pv.Spec.HostPath == nil {
		t.Fatalf("PV %s is not a hostPath volume", pv.Name)
	}
	list := func(dir string) []string {
		des, err := os.ReadDir(dir)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, de := range des {
			out = append(out, de.Name())
		}
		sort.Strings(out)
		return out
	}
	return list(pv.Spec.HostPath.Path), list(filepath.Join(pv.Spec.HostPath.Path, "runs"))
}

// waitFor polls cond every second.
func waitFor(t *testing.T, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		time.Sleep(time.Second)
	}
}

// archTaskRunning: a build-<arch> TaskRun of run has a pod.
func archTaskRunning(ns, run string) (bool, string) {
	trs := &tektonv1.TaskRunList{}
	if err := kc.List(context.Background(), trs, client.InNamespace(ns), client.MatchingLabels{"tekton.dev/pipelineRun": run}); err != nil {
		return false, err.Error()
	}
	for _, tr := range trs.Items {
		if strings.HasPrefix(tr.Labels["tekton.dev/pipelineTask"], "build-") && tr.Status.PodName != "" {
			return true, ""
		}
	}
	return false, "no build task running yet"
}

// TestNothingLeftOnTheVolume: a run superseded mid-build (cancelled with its
// finally), a run deleted mid-build (no finally at all) and a run that
// succeeds: afterwards the shared volume holds the caches and no run's
// directory. Also checks the hardened build pods as the kubelet ran them.
func TestNothingLeftOnTheVolume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := gitRepo(t, "e2e-leftovers", map[string]string{
		"Containerfile": "FROM " + cfg.BaseImage + "\nARG ROUND=0\nRUN sleep 12 && echo $ROUND > /round\n",
	})
	ns := namespace(t, "e2e-leftovers")
	b := newBuild(ns, "leftovers", url, "e2e/leftovers")
	if err := kc.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(b)
	// runOf waits for status.latestRun of generation gen other than not.
	runOf := func(gen int64, not string) string {
		var name string
		waitFor(t, "the run of generation", 3*time.Minute, func() (bool, string) {
			cur := &v1alpha1.MultiArchBuild{}
			if err := kc.Get(ctx, key, cur); err != nil {
				return false, err.Error()
			}
			if lr := cur.Status.LatestRun; lr != nil && lr.Generation == gen && lr.Name != not {
				name = lr.Name
				return true, ""
			}
			return false, "latestRun " + string(cur.Status.Phase)
		})
		return name
	}

	// 1. superseded mid-build
	first := runOf(1, "")
	waitFor(t, "the first run building", 5*time.Minute, func() (bool, string) { return archTaskRunning(ns, first) })
	cur := &v1alpha1.MultiArchBuild{}
	if err := kc.Get(ctx, key, cur); err != nil {
		t.Fatal(err)
	}
	cur.Spec.Strategy.BuildArgs = []v1alpha1.BuildArg{{Name: "ROUND", Value: "2"}}
	if err := kc.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	// Argo CD sees the edit as Progressing at once, whatever the last build was.
	checkArgo(t, cur, "right after the spec edit")
	second := runOf(2, "")
	waitFor(t, "the first run to end cancelled, its cleanup done", 3*time.Minute, func() (bool, string) {
		pr := &tektonv1.PipelineRun{}
		if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: first}, pr); err != nil {
			return false, err.Error()
		}
		c := pr.Status.GetCondition(apis.ConditionSucceeded)
		return c != nil && c.Status == corev1.ConditionFalse && pr.Spec.Status == tektonv1.PipelineRunSpecStatusCancelledRunFinally,
			string(pr.Spec.Status) + " " + pr.Status.GetCondition(apis.ConditionSucceeded).GetReason()
	})
	cleanup := &tektonv1.TaskRunList{}
	if err := kc.List(ctx, cleanup, client.InNamespace(ns), client.MatchingLabels{"tekton.dev/pipelineRun": first, "tekton.dev/pipelineTask": pipeline.TaskCleanup}); err != nil {
		t.Fatal(err)
	}
	if len(cleanup.Items) != 1 || !cleanup.Items[0].Status.GetCondition(apis.ConditionSucceeded).IsTrue() {
		t.Errorf("the superseded run's cleanup did not run and succeed: %d TaskRuns", len(cleanup.Items))
	}

	// 2. deleted mid-build: its directory stays behind
	waitFor(t, "the second run building", 5*time.Minute, func() (bool, string) { return archTaskRunning(ns, second) })
	if err := kc.Delete(ctx, &tektonv1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: second}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "PipelineRunDeleted", 2*time.Minute, func() (bool, string) {
		if err := kc.Get(ctx, key, cur); err != nil {
			return false, err.Error()
		}
		c := apimeta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionSucceeded)
		return c != nil && c.Reason == v1alpha1.ReasonRunDeleted, fmt.Sprintf("%+v", c)
	})
	if _, runs := volumeEntries(t, cur); !strings.Contains(strings.Join(runs, ","), second) {
		t.Logf("runs/ after the delete: %v (the deleted run's directory may already be gone with its pods)", runs)
	}

	// 3. a new run of the same generation succeeds and sweeps what is left
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	cur.Annotations[v1alpha1.RebuildAnnotation] = "after-delete"
	if err := kc.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	third := runOf(2, second)
	if third == second {
		t.Fatalf("no new run after the rebuild annotation")
	}
	waitFor(t, "the third run to succeed", 8*time.Minute, func() (bool, string) {
		if err := kc.Get(ctx, key, cur); err != nil {
			return false, err.Error()
		}
		return cur.Status.Phase == v1alpha1.PhaseSucceeded && cur.Status.LatestRun.Name == third && cur.Status.LatestRun.CompletionTime != nil, string(cur.Status.Phase)
	})
	waitFor(t, "the third run's cleanup", 2*time.Minute, func() (bool, string) {
		pr := &tektonv1.PipelineRun{}
		if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: third}, pr); err != nil {
			return false, err.Error()
		}
		return pr.Status.CompletionTime != nil, "running"
	})
	root, runs := volumeEntries(t, cur)
	if len(runs) != 0 {
		t.Errorf("runs/ still holds %v after a supersede, a delete and a success", runs)
	}
	for _, e := range root {
		if e != "runs" && e != "cache" {
			t.Errorf("the volume's root holds %q", e)
		}
	}
	t.Logf("volume after three runs (superseded %s, deleted %s, succeeded %s): root %v, runs/ %v", first, second, third, root, runs)

	// The build pods as the kubelet ran them: hardened.
	pods := &corev1.PodList{}
	if err := kc.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"tekton.dev/pipelineRun": third}); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken {
			t.Errorf("pod %s mounts a ServiceAccount token", p.Name)
		}
		for _, c := range p.Spec.Containers {
			if c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
				t.Errorf("pod %s container %s allows privilege escalation", p.Name, c.Name)
			}
			if sc := c.SecurityContext; c.Name != "step-build" && c.Name != "step-push" && c.Name != "step-preflight" && c.Name != "step-index" &&
				(sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
				t.Errorf("pod %s container %s: no RuntimeDefault seccomp", p.Name, c.Name)
			}
			for _, m := range c.VolumeMounts {
				if strings.Contains(m.MountPath, "serviceaccount") {
					t.Errorf("pod %s container %s mounts %s", p.Name, c.Name, m.MountPath)
				}
			}
		}
	}
	t.Logf("%d build pods of %s: no ServiceAccount token, no privilege escalation, RuntimeDefault seccomp on the tool steps (buildah's build, preflight, index and push steps excepted: user namespaces)", len(pods.Items), third)
}

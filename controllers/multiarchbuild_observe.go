package controllers

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

// observeRun reports the current run: Succeeded, latestRun, per-platform
// state and digests, and the pushed image.
func (r *MultiArchBuildReconciler) observeRun(ctx context.Context, s *buildScope) error {
	st := &s.build.Status
	run := s.outcome.Run
	if s.outcome.Deleted && st.LatestRun != nil && st.LatestRun.CompletionTime != nil {
		// It finished before it was deleted: what it reported still holds.
		return nil
	}
	if run != nil {
		var list tektonv1.TaskRunList
		if err := r.tekton.Reader().List(ctx, &list, client.InNamespace(run.Namespace),
			client.MatchingLabels{"tekton.dev/pipelineRun": run.Name}); err != nil {
			return fmt.Errorf("list TaskRuns of %s: %w", klog.KObj(run), err)
		}
		s.taskRuns = list.Items
		s.outcome.FailedTask, s.outcome.FailedTaskName, s.outcome.FailedOnItsOwn = failedTaskOf(s.taskRuns)
		s.outcome.Pushed = pushedTaskRun(s.taskRuns)
		if err := r.failFast(ctx, s, run); err != nil {
			return err
		}
		if c := run.Status.GetCondition(apis.ConditionSucceeded); c != nil && c.Reason == tektonv1.PipelineRunReasonCouldntGetPipeline.String() {
			// Its shared Pipeline was deleted under it: the next run creates
			// it again.
			ns := run.Namespace
			r.pipelines.forget(func(k types.NamespacedName) bool { return k.Namespace == ns })
		}
		gen := s.build.Generation
		if g, err := strconv.ParseInt(run.Labels[pipeline.LabelGeneration], 10, 64); err == nil {
			gen = g // a run kept current by a refused retry may be of an older generation
		}
		st.LatestRun = &v1alpha1.RunReference{Name: run.Name, Generation: gen,
			StartTime: run.Status.StartTime, CompletionTime: run.Status.CompletionTime,
			Revision: runRevision(run, s.taskRuns), RetryOf: run.Annotations[pipeline.AnnotationRetryOf]}
		if err := r.findNodes(ctx, s); err != nil {
			return err
		}
	}
	succeeded := succeededCondition(s.outcome)
	s.setCondition(succeeded)

	var waiting map[v1alpha1.Platform]string
	if s.capacityRes != nil {
		waiting = s.capacityRes.Waiting
	}
	st.Platforms = platformStatuses(s.build, run, s.taskRuns, waiting, s.nodes)
	r.recordNodeWaits(s)
	st.BuildSeconds = buildSecondsSummary(st.Platforms)
	if run != nil && s.outcome.FailedTaskName == pipeline.TaskCheckReused && succeeded.Status == metav1.ConditionFalse {
		s.setRetry(metav1.ConditionFalse, v1alpha1.ReasonReusedImageMissing, succeeded.Message)
	}
	if run != nil && succeeded.Status == metav1.ConditionTrue {
		res := builtResults(run, s.taskRuns)
		if d := res[pipeline.ResultImageDigest]; d != "" {
			st.Digest = d
			st.Image = repository(s.build.Spec.Output.Image) + "@" + d
		}
		if c := res[pipeline.ResultCommit]; c != "" {
			st.Revision = c
		}
	}
	return nil
}

// failFast cancels a run whose preflight step failed while other tasks
// still run (its cleanup still runs): no platform of it can be used, and
// Tekton itself lets running tasks finish, so the other platforms' builds,
// even those whose pods still wait for a node, would only keep nodes busy.
// Any other failure lets the other platforms finish: their images are what
// a retry (build.multiarch.io/retry-failed) reuses. Once: a cancelled run is
// not patched again.
func (r *MultiArchBuildReconciler) failFast(ctx context.Context, s *buildScope, run *tektonv1.PipelineRun) error {
	o := s.outcome
	if !o.FailedOnItsOwn || o.Pushed != nil || runFinished(run) || run.Spec.Status != "" || !preflightFailed(s.taskRuns) {
		return nil
	}
	base := run.DeepCopy()
	run.Spec.Status = tektonv1.PipelineRunSpecStatusCancelledRunFinally
	if err := r.Client.Patch(ctx, run, client.MergeFrom(base)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("cancel PipelineRun %s after %s: %w", klog.KObj(run), o.FailedTask, err)
	}
	r.Recorder.Eventf(s.build, run, corev1.EventTypeWarning, "RunCancelled", "Cancel",
		"cancelled PipelineRun %s: %s, and the manifest list needs every platform", run.Name, o.FailedTask)
	return nil
}

// preflightFailed: the first step that failed in a failed TaskRun is the
// preflight step (later steps of a failed TaskRun end in error too).
func preflightFailed(taskRuns []tektonv1.TaskRun) bool {
	for i := range taskRuns {
		tr := &taskRuns[i]
		if c := tr.Status.GetCondition(apis.ConditionSucceeded); c == nil || c.Status != corev1.ConditionFalse {
			continue
		}
		if firstFailedStep(tr) == pipeline.StepPreflight {
			return true
		}
	}
	return false
}

// firstFailedStep names the first step of a TaskRun that ended with a
// non-zero exit code, "" while none did.
func firstFailedStep(tr *tektonv1.TaskRun) string {
	for _, st := range tr.Status.Steps {
		if t := st.Terminated; t != nil && t.ExitCode != 0 {
			if st.Name != "" {
				return st.Name
			}
			return strings.TrimPrefix(st.Container, "step-")
		}
	}
	return ""
}

// findNodes records the node each architecture was built on. Tekton does
// not put the node in TaskRun status, so it comes from the build pod: one
// uncached GET of one pod per architecture and run (no pod cache), and only
// until it is known: it is carried over from status afterwards.
func (r *MultiArchBuildReconciler) findNodes(ctx context.Context, s *buildScope) error {
	s.nodes = map[string]string{}
	prev := map[string]string{}
	if lr := s.before.LatestRun; lr != nil && lr.Name == s.outcome.Run.Name {
		for _, p := range s.before.Platforms {
			if p.NodeName != "" {
				prev[p.Platform.Arch()] = p.NodeName
			}
		}
	}
	for _, tr := range s.taskRuns {
		arch := tr.Labels[pipeline.LabelArch]
		if arch == "" || s.nodes[arch] != "" {
			continue
		}
		if n := prev[arch]; n != "" {
			s.nodes[arch] = n
			continue
		}
		if tr.Status.PodName == "" {
			continue
		}
		if c := tr.Status.GetCondition(apis.ConditionSucceeded); c != nil && c.Reason == "Pending" {
			continue
		}
		pod := &corev1.Pod{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: tr.Namespace, Name: tr.Status.PodName}, pod)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return fmt.Errorf("get build pod %s/%s: %w", tr.Namespace, tr.Status.PodName, err)
		default:
			s.nodes[arch] = pod.Spec.NodeName
		}
	}
	return nil
}

// recordNodeWaits fills status.platforms[].nodeWait for the current run:
// opened when capacity first says a platform has no usable node, with the
// MachineSet and instance type scaled up for it; closed when the node is
// usable, the run exists, or the build failed for want of a node. A wait
// of an older run is not carried over.
func (r *MultiArchBuildReconciler) recordNodeWaits(s *buildScope) {
	prev := map[v1alpha1.Platform]*v1alpha1.NodeWait{}
	for _, p := range s.before.Platforms {
		if p.NodeWait != nil && p.NodeWait.Run == s.runName {
			prev[p.Platform] = p.NodeWait.DeepCopy()
		}
	}
	now := metav1.NewTime(r.clock().Truncate(time.Second))
	closeWait := func(w *v1alpha1.NodeWait) {
		if w.Until == nil {
			w.Until = &now
			sec := int64(now.Sub(w.Since.Time) / time.Second)
			w.Seconds = &sec
		}
	}
	res := s.capacityRes
	for i := range s.build.Status.Platforms {
		p := &s.build.Status.Platforms[i]
		w := prev[p.Platform]
		switch {
		case res == nil:
			// Capacity was not asked (the run exists): a wait still open
			// ended when the run could start.
			if w != nil {
				closeWait(w)
			}
		case res.Waiting[p.Platform] != "":
			if w == nil {
				w = &v1alpha1.NodeWait{Run: s.runName, Since: now}
			}
			if src, ok := res.Nodes[p.Platform]; ok && w.Until == nil {
				w.MachineSet, w.InstanceType = src.MachineSet, src.InstanceType
			}
			if res.Failed {
				closeWait(w)
			}
		case w != nil:
			closeWait(w)
		}
		p.NodeWait = w
	}
}

// runRevision is the commit a run cloned: its COMMIT result, else its
// TaskRuns' (a run that failed after the clone has no pipeline results on
// every Tekton version).
func runRevision(run *tektonv1.PipelineRun, taskRuns []tektonv1.TaskRun) string {
	if c := runResults(run)[pipeline.ResultCommit]; c != "" {
		return c
	}
	return taskRunsCommit(taskRuns)
}

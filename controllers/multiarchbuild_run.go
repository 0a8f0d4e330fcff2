package controllers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/storage"
)

// currentRun is the PipelineRun of the build's generation and rebuild token,
// nil when it does not exist. Looked up once per reconcile.
func (r *MultiArchBuildReconciler) currentRun(ctx context.Context, s *buildScope) (*tektonv1.PipelineRun, error) {
	if s.runs != nil {
		return s.outcome.Run, nil
	}
	var list tektonv1.PipelineRunList
	if err := r.tekton.Reader().List(ctx, &list, client.InNamespace(s.build.Namespace),
		client.MatchingLabels{pipeline.LabelBuild: s.build.Name}); err != nil {
		return nil, fmt.Errorf("list PipelineRuns of %s: %w", klog.KObj(s.build), err)
	}
	s.runs = make([]tektonv1.PipelineRun, 0, len(list.Items))
	for i := range list.Items {
		if metav1.IsControlledBy(&list.Items[i], s.build) {
			s.runs = append(s.runs, list.Items[i])
		}
	}
	if err := r.resolveRetry(ctx, s); err != nil {
		return nil, err
	}
	for i := range s.runs {
		if s.runs[i].Name == s.runName {
			s.outcome.Run = &s.runs[i]
		}
	}
	if err := r.checkDeleted(ctx, s); err != nil {
		return nil, err
	}
	return s.outcome.Run, nil
}

// checkDeleted: status.latestRun names the run of this generation and
// token (names are deterministic) and the cache does not have it. The cache
// may lag behind a run just created, so the API server has the last word.
func (r *MultiArchBuildReconciler) checkDeleted(ctx context.Context, s *buildScope) error {
	lr := s.build.Status.LatestRun
	if s.outcome.Run != nil || lr == nil || lr.Name != s.runName {
		return nil
	}
	run := &tektonv1.PipelineRun{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: s.build.Namespace, Name: s.runName}, run)
	switch {
	case apierrors.IsNotFound(err):
		s.outcome.Deleted = true
	case err != nil:
		return fmt.Errorf("get PipelineRun %s/%s: %w", s.build.Namespace, s.runName, err)
	case metav1.IsControlledBy(run, s.build):
		s.outcome.Run = run
	}
	return nil
}

// ensureRun cancels runs of older generations or tokens, and creates the
// run of this one when the prerequisites are met. Runs are never updated
// except to cancel them, and never recreated once deleted.
func (r *MultiArchBuildReconciler) ensureRun(ctx context.Context, s *buildScope) error {
	if _, err := r.currentRun(ctx, s); err != nil {
		return err
	}
	if err := r.cancelSuperseded(ctx, s); err != nil {
		return err
	}
	if s.outcome.Run != nil || s.outcome.Deleted {
		return nil
	}
	if len(s.blocked) > 0 {
		s.outcome.Blocked = s.blocked
		return nil
	}
	if r.expect.recent(s.build.Namespace, s.runName) {
		// Created moments ago; the watch brings it into the cache.
		s.requeue(2 * time.Second)
		return nil
	}
	cfg := r.Settings
	if s.capacityRes != nil && s.capacityRes.Tolerations != nil {
		// The BuildCapacityPolicy's tolerations replace the flags'.
		cfg.Tolerations = s.capacityRes.Tolerations
	}
	cluster, clusterCfg, ok, err := r.clusterConfigFor(ctx, s)
	if err != nil || !ok {
		return err // !ok: the configuration is bad; the outcome says where
	}
	shared, run, err := pipeline.GenerateReferenced(pipeline.Input{Build: s.build, Settings: cfg, WorkspaceClaim: storage.ClaimName(s.build), Retry: s.retry, Cluster: cluster})
	if err != nil {
		s.outcome.CreateErr, s.outcome.CreateReason = err, v1alpha1.ReasonInvalidSpec
		return nil // the user must change the spec; the generation change re-queues
	}
	if err := r.ensureClusterConfigMap(ctx, s, cluster, clusterCfg); err != nil {
		return err
	}
	run.Name, run.Namespace = s.runName, s.build.Namespace
	// The caches and the TaskRun mapping select on these two labels.
	if run.Labels == nil {
		run.Labels = map[string]string{}
	}
	run.Labels[pipeline.LabelManagedBy] = pipeline.ManagedBy
	if run.Labels[pipeline.LabelBuild] == "" {
		run.Labels[pipeline.LabelBuild] = s.build.Name
	}
	if err := controllerutil.SetControllerReference(s.build, run, r.Scheme); err != nil {
		return fmt.Errorf("own PipelineRun %s: %w", run.Name, err)
	}
	what := "create PipelineRun " + klog.KObj(run).String()
	err = nil
	if shared != nil {
		if err = r.ensurePipeline(ctx, shared); err != nil {
			what = "create Pipeline " + klog.KObj(shared).String() + " (the pipeline PipelineRun " + run.Name + " refers to)"
		}
	}
	if err == nil {
		err = r.Client.Create(ctx, run)
	}
	switch {
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return err // the namespace is going away: Reconcile stops, no retry
	case apierrors.IsAlreadyExists(err):
		// Deterministic name: a run of this generation and token exists.
	case apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err):
		s.outcome.CreateErr, s.outcome.CreateReason = fmt.Errorf("%s: %w", what, err), v1alpha1.ReasonRunCreateFailed
		if apierrors.IsForbidden(err) {
			// RBAC, admission or a ResourceQuota: an admin can fix it, so
			// look again later, with a growing delay.
			c, _ := refusedCondition(v1alpha1.ConditionSucceeded, refuse(what, err))
			s.outcome.CreateErr, s.outcome.CreateReason = errors.New(c.Message), v1alpha1.ReasonForbidden
			s.requeue(backoff(r.clock(), s.build.Status.Conditions, v1alpha1.ConditionSucceeded))
		}
		return nil
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	default:
		buildsStarted.Inc()
		r.expect.add(s.build.Namespace, s.runName)
		logger(ctx).V(1).Info("started run", "pipelineRun", klog.KObj(run))
	}
	if s.retry != nil {
		s.setRetry(metav1.ConditionTrue, v1alpha1.ReasonRetryStarted, retryStartedMessage(run.Name, s.build, s.retry))
	}
	s.outcome.Run = run
	return nil
}

// cancelSuperseded cancels every unfinished run of the build that is not
// the current one (a newer generation or rebuild token replaced it), and
// lets its cleanup run.
func (r *MultiArchBuildReconciler) cancelSuperseded(ctx context.Context, s *buildScope) error {
	for i := range s.runs {
		run := &s.runs[i]
		if run.Name == s.runName || runFinished(run) || run.Spec.Status == tektonv1.PipelineRunSpecStatusCancelled ||
			run.Spec.Status == tektonv1.PipelineRunSpecStatusCancelledRunFinally {
			continue
		}
		base := run.DeepCopy()
		// CancelledRunFinally, not Cancelled: the finally cleanup task still
		// runs and removes the run's directory from the shared volume.
		run.Spec.Status = tektonv1.PipelineRunSpecStatusCancelledRunFinally
		if err := r.Client.Patch(ctx, run, client.MergeFrom(base)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("cancel PipelineRun %s: %w", klog.KObj(run), err)
		}
		r.Recorder.Eventf(s.build, run, corev1.EventTypeNormal, "RunCancelled", "Cancel",
			"cancelled PipelineRun %s: superseded by %s", run.Name, s.runName)
	}
	return nil
}

func runFinished(run *tektonv1.PipelineRun) bool {
	c := run.Status.GetCondition(apis.ConditionSucceeded)
	return c != nil && c.Status != corev1.ConditionUnknown
}

// pruneRuns deletes finished runs past spec.runHistoryLimit, oldest first.
// The current run is never pruned: status points at it.
func (r *MultiArchBuildReconciler) pruneRuns(ctx context.Context, s *buildScope) error {
	limit := 3
	if s.build.Spec.RunHistoryLimit != nil {
		limit = int(*s.build.Spec.RunHistoryLimit)
	}
	var finished []*tektonv1.PipelineRun
	for i := range s.runs {
		if runFinished(&s.runs[i]) {
			finished = append(finished, &s.runs[i])
		}
	}
	if len(finished) <= limit {
		return nil
	}
	sort.Slice(finished, func(i, j int) bool { return finishedAt(finished[i]).Before(finishedAt(finished[j])) })
	excess := len(finished) - limit
	for _, run := range finished {
		if excess == 0 {
			break
		}
		if run.Name == s.runName {
			continue
		}
		excess--
		err := r.Client.Delete(ctx, run, client.PropagationPolicy(metav1.DeletePropagationBackground),
			client.Preconditions{UID: &run.UID})
		if client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("prune PipelineRun %s: %w", klog.KObj(run), err)
		}
	}
	return nil
}

func finishedAt(run *tektonv1.PipelineRun) time.Time {
	if run.Status.CompletionTime != nil {
		return run.Status.CompletionTime.Time
	}
	return run.CreationTimestamp.Time
}

// expectations remembers runs created in the last few seconds, so that a
// reconcile whose cache has not seen the new run yet neither creates it again
// (a wasted write) nor reports it deleted.
type expectations struct {
	mu      sync.Mutex
	created map[string]time.Time
}

const expectationTTL = 30 * time.Second

func (e *expectations) add(ns, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.created == nil {
		e.created = map[string]time.Time{}
	}
	now := time.Now()
	for k, t := range e.created {
		if now.Sub(t) > expectationTTL {
			delete(e.created, k)
		}
	}
	e.created[ns+"/"+name] = now
}

func (e *expectations) recent(ns, name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.created[ns+"/"+name]
	return ok && time.Since(t) < expectationTTL
}

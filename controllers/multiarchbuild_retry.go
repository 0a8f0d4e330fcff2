package controllers

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

// resolveRetry decides what a value of the annotation
// build.multiarch.io/retry-failed asks for, once the build's runs are
// listed. Every run records the value it was created under
// (pipeline.AnnotationRetryToken), so a value is new only while no run of
// it exists and the last run (status.latestRun) was created under another.
// A new value then:
//
//   - waits while the last run runs: the run stays current (RetryWaiting);
//   - is refused when the last run succeeded: it stays current, Ready
//     stays as it was (NothingToRetry);
//   - is refused when the spec changed since the last run, or a new rebuild
//     token asks for a full build: the new generation or token is built in
//     full, as without the annotation (SpecChanged, RetryNotPossible);
//   - otherwise makes the run of this value a retry of the last run: the
//     platforms it did not build are built from its commit, the others are
//     listed again with their digests (s.retry; RetryStarted once created).
//
// Only s.runName, s.retry and the Retry condition change here.
func (r *MultiArchBuildReconciler) resolveRetry(ctx context.Context, s *buildScope) error {
	token := s.build.Annotations[v1alpha1.RetryFailedAnnotation]
	if token == "" {
		return nil
	}
	for i := range s.runs {
		if s.runs[i].Name == s.runName {
			return nil // the run of this value exists: it is current
		}
	}
	if r.expect.recent(s.build.Namespace, s.runName) {
		return nil
	}
	lr := s.before.LatestRun
	if lr == nil {
		// Status names no run yet: the newest run, if any, is the last one.
		newest := s.newestRun()
		if newest == nil {
			s.setRetry(metav1.ConditionFalse, v1alpha1.ReasonRetryNotPossible,
				"build.multiarch.io/retry-failed: there is no earlier run to retry; the build runs in full")
			return nil
		}
		gen, _ := strconv.ParseInt(newest.Labels[pipeline.LabelGeneration], 10, 64)
		lr = &v1alpha1.RunReference{Name: newest.Name, Generation: gen}
	}
	if lr.Name == s.runName {
		return nil // created, then deleted: checkDeleted reports it
	}
	last := s.findRun(lr.Name)
	if last == nil && lr.Generation != s.build.Generation {
		s.setRetry(metav1.ConditionFalse, v1alpha1.ReasonSpecChanged, fmt.Sprintf(
			"build.multiarch.io/retry-failed refused: the spec changed since run %s (generation %d, now %d); generation %d is built in full",
			lr.Name, lr.Generation, s.build.Generation, s.build.Generation))
		return nil
	}
	if last == nil {
		run := &tektonv1.PipelineRun{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: s.build.Namespace, Name: lr.Name}, run)
		switch {
		case apierrors.IsNotFound(err) || (err == nil && !metav1.IsControlledBy(run, s.build)):
			// Nothing to read its platforms from: keep describing it as before.
			s.runName = lr.Name
			s.setRetry(metav1.ConditionFalse, v1alpha1.ReasonRetryNotPossible, fmt.Sprintf(
				"build.multiarch.io/retry-failed: the last run %s no longer exists; start a full build with the annotation build.multiarch.io/rebuild", lr.Name))
			return nil
		case err != nil:
			return fmt.Errorf("get PipelineRun %s/%s: %w", s.build.Namespace, lr.Name, err)
		}
		s.runs = append(s.runs, *run)
		last = &s.runs[len(s.runs)-1]
	}
	if last.Annotations[pipeline.AnnotationRetryToken] == token {
		// Already used: a new generation or rebuild token is built in full.
		return nil
	}
	tc := last.Status.GetCondition(apis.ConditionSucceeded)
	switch {
	case lr.Generation != s.build.Generation:
		s.setRetry(metav1.ConditionFalse, v1alpha1.ReasonSpecChanged, fmt.Sprintf(
			"build.multiarch.io/retry-failed refused: the spec changed since run %s (generation %d, now %d); generation %d is built in full",
			last.Name, lr.Generation, s.build.Generation, s.build.Generation))
		return nil
	case last.Labels[pipeline.LabelRebuild] != pipeline.RebuildLabel(s.build):
		s.setRetry(metav1.ConditionFalse, v1alpha1.ReasonRetryNotPossible, fmt.Sprintf(
			"build.multiarch.io/retry-failed refused: a new build.multiarch.io/rebuild token asks for a full build since run %s", last.Name))
		return nil
	case tc == nil || tc.Status == corev1.ConditionUnknown:
		s.runName = last.Name
		s.setRetry(metav1.ConditionUnknown, v1alpha1.ReasonRetryWaiting, fmt.Sprintf(
			"build.multiarch.io/retry-failed: run %s is still running; its failed platforms are rebuilt when it has failed", last.Name))
		return nil
	case tc.Status == corev1.ConditionTrue:
		s.runName = last.Name
		s.setRetry(metav1.ConditionFalse, v1alpha1.ReasonNothingToRetry, fmt.Sprintf(
			"build.multiarch.io/retry-failed refused: nothing failed in the last run %s, it succeeded; start a full build with the annotation build.multiarch.io/rebuild", last.Name))
		return nil
	}
	if b := s.before.LatestRun; b == nil || b.Name != last.Name {
		// Its failure is not in status yet: decided on the next reconcile.
		s.runName = last.Name
		s.setRetry(metav1.ConditionUnknown, v1alpha1.ReasonRetryWaiting, fmt.Sprintf(
			"build.multiarch.io/retry-failed: waiting for the status of run %s", last.Name))
		return nil
	}
	retry := &pipeline.Retry{Of: last.Name, Revision: lr.Revision, Reused: map[v1alpha1.Platform]pipeline.Reuse{}}
	for _, p := range s.before.Platforms {
		if p.State == v1alpha1.PlatformBuilt && p.Digest != "" {
			retry.Reused[p.Platform] = pipeline.Reuse{Digest: p.Digest, Run: orDefault(p.ReusedFrom, last.Name)}
		}
	}
	if len(retry.Reused) > 0 && retry.Revision == "" {
		s.runName = last.Name
		s.setRetry(metav1.ConditionFalse, v1alpha1.ReasonRetryNotPossible, fmt.Sprintf(
			"build.multiarch.io/retry-failed refused: the commit run %s built is not known, so its images cannot be reused; start a full build with the annotation build.multiarch.io/rebuild", last.Name))
		return nil
	}
	s.retry = retry
	return nil
}

// newestRun is the build's most recently created run, nil without any.
func (s *buildScope) newestRun() *tektonv1.PipelineRun {
	var out *tektonv1.PipelineRun
	for i := range s.runs {
		if out == nil || out.CreationTimestamp.Before(&s.runs[i].CreationTimestamp) {
			out = &s.runs[i]
		}
	}
	return out
}

func (s *buildScope) findRun(name string) *tektonv1.PipelineRun {
	for i := range s.runs {
		if s.runs[i].Name == name {
			return &s.runs[i]
		}
	}
	return nil
}

// setRetry records the condition Retry. It is no prerequisite: a refused
// retry blocks nothing and leaves Ready as it was.
func (s *buildScope) setRetry(status metav1.ConditionStatus, reason, message string) {
	setCond(&s.build.Status, s.build.Generation, metav1.Condition{Type: v1alpha1.ConditionRetry, Status: status, Reason: reason, Message: message})
}

// retryStartedMessage says what a retry run rebuilds and reuses.
func retryStartedMessage(run string, build *v1alpha1.MultiArchBuild, retry *pipeline.Retry) string {
	var rebuilt, reused []string
	for _, p := range build.Spec.Platforms {
		if u, ok := retry.Reused[p]; ok {
			reused = append(reused, fmt.Sprintf("%s (%s from run %s)", p, u.Digest, u.Run))
		} else {
			rebuilt = append(rebuilt, string(p))
		}
	}
	msg := fmt.Sprintf("run %s retries run %s", run, retry.Of)
	if retry.Revision != "" {
		msg += " at commit " + retry.Revision
	}
	if len(rebuilt) > 0 {
		msg += ": rebuilds " + strings.Join(rebuilt, ", ")
	} else {
		msg += ": rebuilds nothing"
	}
	if len(reused) > 0 {
		msg += "; reuses " + strings.Join(reused, ", ")
	}
	return msg
}

// reusedPlatforms reads the platforms a run lists again from its
// annotations, as platform -> reuse.
func reusedPlatforms(run *tektonv1.PipelineRun) map[v1alpha1.Platform]pipeline.Reuse {
	if run == nil {
		return nil
	}
	return pipeline.ReusedOf(run.Annotations)
}

// buildSecondsSummary is status.buildSeconds: each platform's building
// seconds, "reused" for one a retry did not rebuild, in spec order.
func buildSecondsSummary(platforms []v1alpha1.PlatformStatus) string {
	var parts []string
	for _, p := range platforms {
		switch {
		case p.ReusedFrom != "":
			parts = append(parts, p.Platform.Arch()+"=reused")
		case p.Timings != nil && p.Timings.Building != nil && p.Timings.Building.Seconds != nil:
			parts = append(parts, fmt.Sprintf("%s=%ds", p.Platform.Arch(), *p.Timings.Building.Seconds))
		}
	}
	return strings.Join(parts, " ")
}

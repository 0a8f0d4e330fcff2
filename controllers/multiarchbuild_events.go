package controllers

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// transition is one event to emit for a condition change.
type transition struct {
	eventType, reason, note string
}

// transitions compares the status before and after a reconcile and returns
// the events to emit: only on changes, so a reconcile with nothing new is silent.
func transitions(before, after []metav1.Condition) []transition {
	var out []transition
	changed := func(t string) (*metav1.Condition, bool) {
		a := meta.FindStatusCondition(after, t)
		if a == nil {
			return nil, false
		}
		b := meta.FindStatusCondition(before, t)
		return a, b == nil || b.Status != a.Status || b.Reason != a.Reason
	}
	if c, ok := changed(v1alpha1.ConditionPipelinesAvailable); ok && c.Status == metav1.ConditionFalse {
		out = append(out, transition{corev1.EventTypeWarning, c.Reason, c.Message})
	}
	if c, ok := changed(v1alpha1.ConditionStorageReady); ok && c.Status == metav1.ConditionFalse && c.Reason != v1alpha1.ReasonVolumePending {
		out = append(out, transition{corev1.EventTypeWarning, c.Reason, c.Message})
	}
	if c, ok := changed(v1alpha1.ConditionBuilderReady); ok && c.Status == metav1.ConditionFalse {
		out = append(out, transition{corev1.EventTypeWarning, c.Reason, c.Message})
	}
	if c, ok := changed(v1alpha1.ConditionCapacityReady); ok && c.Status == metav1.ConditionFalse {
		out = append(out, transition{corev1.EventTypeNormal, c.Reason, c.Message})
	}
	if c, ok := changed(v1alpha1.ConditionRetry); ok {
		switch c.Status {
		case metav1.ConditionTrue:
			out = append(out, transition{corev1.EventTypeNormal, c.Reason, c.Message})
		case metav1.ConditionFalse:
			out = append(out, transition{corev1.EventTypeWarning, c.Reason, c.Message})
		}
	}
	if c, ok := changed(v1alpha1.ConditionSucceeded); ok {
		switch c.Status {
		case metav1.ConditionTrue:
			out = append(out, transition{corev1.EventTypeNormal, "BuildSucceeded", c.Message})
		case metav1.ConditionFalse:
			out = append(out, transition{corev1.EventTypeWarning, c.Reason, c.Message})
		}
	}
	return out
}

// recordTransitions emits events and metrics for what changed in this
// reconcile. Called after the status patch succeeded, so a retried reconcile
// does not count twice.
func (r *MultiArchBuildReconciler) recordTransitions(s *buildScope) {
	for _, t := range transitions(s.before.Conditions, s.build.Status.Conditions) {
		r.Recorder.Eventf(s.build, nil, t.eventType, t.reason, "Reconcile", "%s", t.note)
	}
	after := s.build.Status.Conditions
	if c := meta.FindStatusCondition(after, v1alpha1.ConditionSucceeded); c != nil && c.Status != metav1.ConditionUnknown {
		if b := meta.FindStatusCondition(s.before.Conditions, v1alpha1.ConditionSucceeded); b == nil || b.Status != c.Status || b.Reason != c.Reason {
			buildsFinished.WithLabelValues(c.Reason).Inc()
			if lr := s.build.Status.LatestRun; lr != nil && lr.StartTime != nil {
				end := r.clock() // pushed, the run's cleanup still going
				if lr.CompletionTime != nil {
					end = lr.CompletionTime.Time
				}
				buildDuration.WithLabelValues(c.Reason).Observe(end.Sub(lr.StartTime.Time).Seconds())
			}
			observePlatformPhases(s.build.Status.Platforms)
		}
	}
	// Time waiting for capacity, per architecture, when it becomes ready.
	b := meta.FindStatusCondition(s.before.Conditions, v1alpha1.ConditionCapacityReady)
	if a := meta.FindStatusCondition(after, v1alpha1.ConditionCapacityReady); a != nil && a.Status == metav1.ConditionTrue &&
		b != nil && b.Status == metav1.ConditionFalse {
		waited := r.clock().Sub(b.LastTransitionTime.Time).Seconds()
		for _, p := range s.build.Spec.Platforms {
			capacityWait.WithLabelValues(p.Arch()).Observe(waited)
		}
	}
}

// observePlatformPhases records the phases of every platform the finished
// run built (not those it reused) in multiarchbuild_platform_phase_seconds.
func observePlatformPhases(platforms []v1alpha1.PlatformStatus) {
	for _, p := range platforms {
		if p.ReusedFrom != "" {
			continue
		}
		for name, ph := range timingPhases(p.Timings) {
			if ph != nil && ph.Seconds != nil {
				platformPhase.WithLabelValues(p.Platform.Arch(), name).Observe(float64(*ph.Seconds))
			}
		}
	}
}

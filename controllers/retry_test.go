package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

const (
	retryCommit = "3b11df8a6c1e0f3c4f6f1f0ed6f1a1b2c3d4e5f6"
	retryAMD    = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	retryARM    = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	retryIndex  = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
)

// addTaskRunWith is addTaskRun with task results and step states, as
// Tekton writes them.
func addTaskRunWith(t *testing.T, run *tektonv1.PipelineRun, task, arch string, status corev1.ConditionStatus, results map[string]string, steps ...tektonv1.StepState) {
	t.Helper()
	addTaskRun(t, run, task, arch, status, map[corev1.ConditionStatus]string{corev1.ConditionTrue: "Succeeded", corev1.ConditionFalse: "Failed", corev1.ConditionUnknown: "Running"}[status], "", "")
	eventually(t, "the TaskRun status", func() (bool, string) {
		tr := &tektonv1.TaskRun{}
		if err := adminClient.Get(ctx, types.NamespacedName{Namespace: run.Namespace, Name: run.Name + "-" + task}, tr); err != nil {
			return false, err.Error()
		}
		for k, v := range results {
			tr.Status.Results = append(tr.Status.Results, tektonv1.TaskRunResult{Name: k, Type: tektonv1.ResultsTypeString, Value: *tektonv1.NewStructuredValues(v)})
		}
		tr.Status.Steps = steps
		err := adminClient.Status().Update(ctx, tr)
		return err == nil, fmt.Sprint(err)
	})
}

// failArm64 runs the first run of a build to a failure of build-arm64
// after build-amd64 (which cloned for itself) succeeded, as Tekton reports it.
func failArm64(t *testing.T, ns, name string) (*v1alpha1.MultiArchBuild, *tektonv1.PipelineRun) {
	t.Helper()
	run := waitForRun(t, ns, name)
	addTaskRunWith(t, run, "build-amd64", "amd64", corev1.ConditionTrue, map[string]string{pipeline.ResultImageDigest: retryAMD, pipeline.ResultCommit: retryCommit})
	addTaskRunWith(t, run, "build-arm64", "arm64", corev1.ConditionFalse, map[string]string{pipeline.ResultError: "Error: building at STEP \"RUN ./flaky\": exit status 1"})
	// Tekton 1.x gives a failed run the results it can resolve.
	finishRun(t, run, corev1.ConditionFalse, "Failed", "Tasks Completed: 3 (Failed: 1, Cancelled 0), Skipped: 1", map[string]string{
		pipeline.ResultCommit: retryCommit, pipeline.ArchDigestResult("amd64"): retryAMD})
	var b *v1alpha1.MultiArchBuild
	eventually(t, "a Failed build with the run's commit", func() (bool, string) {
		b = getBuild(t, ns, name)
		return b.Status.Phase == v1alpha1.PhaseFailed && b.Status.LatestRun != nil && b.Status.LatestRun.Revision == retryCommit &&
			len(b.Status.Platforms) == 2 && b.Status.Platforms[1].State == v1alpha1.PlatformFailed, fmt.Sprintf("%+v", b.Status)
	})
	return b, run
}

func retry(t *testing.T, b *v1alpha1.MultiArchBuild, token string) {
	t.Helper()
	patch(t, b, func(b *v1alpha1.MultiArchBuild) {
		if b.Annotations == nil {
			b.Annotations = map[string]string{}
		}
		b.Annotations[v1alpha1.RetryFailedAnnotation] = token
	})
}

func pipelineTasks(run *tektonv1.PipelineRun) []string {
	var out []string
	for _, pt := range pipelineSpecOf(adminClient, run).Tasks {
		out = append(out, pt.Name)
	}
	return out
}

// indexEnv is an environment variable of the index step of a build task.
func indexEnv(run *tektonv1.PipelineRun, task, name string) string {
	for _, pt := range pipelineSpecOf(adminClient, run).Tasks {
		if pt.Name != task {
			continue
		}
		for _, st := range pt.TaskSpec.Steps {
			if st.Name != pipeline.StepIndex {
				continue
			}
			for _, e := range st.Env {
				if e.Name == name {
					return e.Value
				}
			}
		}
	}
	return ""
}

func TestRetryFailedRebuildsOnlyTheFailedPlatformAtTheSameCommit(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "flaky"))
	b, first := failArm64(t, ns, b.Name)

	retry(t, b, "1700000000")
	second := waitForRun(t, ns, b.Name)
	if second.Name == first.Name {
		t.Fatal("no new run")
	}
	if got := strings.Join(pipelineTasks(second), ","); got != "check-reused,build-arm64" {
		t.Errorf("retry run tasks %s, want check-reused,build-arm64: only arm64 is rebuilt", got)
	}
	if got := indexEnv(second, "build-arm64", "IMAGE_DIGEST_AMD64"); got != retryAMD {
		t.Errorf("build-arm64's index IMAGE_DIGEST_AMD64 = %q, want amd64's reused digest %s", got, retryAMD)
	}
	for _, p := range second.Spec.Params {
		if p.Name == "GIT_REVISION" && p.Value.StringVal != retryCommit {
			t.Errorf("GIT_REVISION %q, want the failed run's commit %s, not the branch", p.Value.StringVal, retryCommit)
		}
	}
	if second.Annotations[pipeline.AnnotationRetryOf] != first.Name {
		t.Errorf("annotations %v", second.Annotations)
	}
	eventually(t, "Retry RetryStarted", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		c := condOf(b, v1alpha1.ConditionRetry)
		return c.Status == metav1.ConditionTrue && c.Reason == v1alpha1.ReasonRetryStarted && strings.Contains(c.Message, first.Name) &&
			b.Status.LatestRun.Name == second.Name, fmt.Sprintf("%+v", b.Status)
	})
	// While it runs, amd64 is already reported reused.
	if p := b.Status.Platforms[0]; p.ReusedFrom != first.Name || p.Digest != retryAMD || p.State != v1alpha1.PlatformBuilt {
		t.Errorf("amd64 %+v, want Built with the reused digest from %s", p, first.Name)
	}

	start := metav1.NewTime(time.Now().Add(-100 * time.Second).Truncate(time.Second))
	push := metav1.NewTime(start.Add(80 * time.Second))
	end := metav1.NewTime(start.Add(90 * time.Second))
	addTaskRunWith(t, second, "build-arm64", "arm64", corev1.ConditionTrue,
		map[string]string{pipeline.ResultImageDigest: retryARM, pipeline.ResultPushStarted: fmt.Sprint(push.Unix())},
		tektonv1.StepState{Name: "build", ContainerState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{StartedAt: start, FinishedAt: end}}})
	finishRun(t, second, corev1.ConditionTrue, "Succeeded", "done", map[string]string{
		pipeline.ResultImageDigest: retryIndex, pipeline.ResultCommit: retryCommit, pipeline.ArchDigestResult("arm64"): retryARM})
	eventually(t, "a Ready build", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return condOf(b, v1alpha1.ConditionReady).Status == metav1.ConditionTrue, fmt.Sprintf("%+v", b.Status)
	})
	st := b.Status
	if st.Digest != retryIndex || st.Revision != retryCommit || st.LatestRun.RetryOf != first.Name {
		t.Errorf("status %+v", st)
	}
	amd, arm := st.Platforms[0], st.Platforms[1]
	if amd.ReusedFrom != first.Name || amd.Digest != retryAMD || amd.Timings != nil {
		t.Errorf("amd64 %+v, want reused from %s with digest %s", amd, first.Name, retryAMD)
	}
	if arm.ReusedFrom != "" || arm.Digest != retryARM || arm.Timings == nil || arm.Timings.Building == nil ||
		ptr.Deref(arm.Timings.Building.Seconds, -1) != 80 || ptr.Deref(arm.Timings.Pushing.Seconds, -1) != 10 {
		t.Errorf("arm64 %+v timings %+v, want rebuilt, building 80s, pushing 10s", arm, arm.Timings)
	}
	if st.BuildSeconds != "amd64=reused arm64=80s" {
		t.Errorf("buildSeconds %q", st.BuildSeconds)
	}
	if n := len(runsOf(t, adminClient, ns)); n != 2 {
		t.Errorf("%d runs, want 2", n)
	}
	eventually(t, "the platform phase histogram", func() (bool, string) {
		families, err := metrics.Registry.Gather()
		if err != nil {
			return false, err.Error()
		}
		for _, f := range families {
			if f.GetName() != "multiarchbuild_platform_phase_seconds" {
				continue
			}
			for _, m := range f.Metric {
				labels := map[string]string{}
				for _, l := range m.Label {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["arch"] == "arm64" && labels["phase"] == "pushing" && m.Histogram.GetSampleCount() > 0 {
					return true, ""
				}
			}
		}
		return false, "no arm64 pushing sample"
	})

	// The value stays (GitOps): a spec change later builds in full.
	patch(t, b, func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.Revision = "v2" })
	third := waitForRun(t, ns, b.Name)
	if got := strings.Join(pipelineTasks(third), ","); got != "build-amd64,build-arm64" || third.Annotations[pipeline.AnnotationRetryOf] != "" {
		t.Errorf("run after a spec change: tasks %s annotations %v, want a full run", got, third.Annotations)
	}
}

func TestRetryFailedIsRefusedWhenNothingFailed(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "fine"))
	run := waitForRun(t, ns, b.Name)
	finishRun(t, run, corev1.ConditionTrue, "Succeeded", "done", map[string]string{pipeline.ResultImageDigest: retryIndex, pipeline.ResultCommit: retryCommit})
	eventually(t, "Ready", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return b.Status.Phase == v1alpha1.PhaseSucceeded, string(b.Status.Phase)
	})
	retry(t, b, "1")
	eventually(t, "Retry NothingToRetry", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		c := condOf(b, v1alpha1.ConditionRetry)
		return c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonNothingToRetry && strings.Contains(c.Message, run.Name), fmt.Sprintf("%+v", c)
	})
	consistently(t, "no new run, Ready kept", 2*time.Second, func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		n := len(runsOf(t, adminClient, ns))
		return n == 1 && condOf(b, v1alpha1.ConditionReady).Status == metav1.ConditionTrue && b.Status.LatestRun.Name == run.Name,
			fmt.Sprintf("%d runs, %+v", n, b.Status)
	})
	if !hasEvent(t, ns, v1alpha1.ReasonNothingToRetry) {
		t.Error("no NothingToRetry event")
	}
}

func TestRetryFailedIsRefusedWhenTheSpecChanged(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "edited"))
	b, first := failArm64(t, ns, b.Name)
	patch(t, b, func(b *v1alpha1.MultiArchBuild) {
		b.Spec.Source.Git.Revision = "v2"
		b.Annotations = map[string]string{v1alpha1.RetryFailedAnnotation: "1"}
	})
	eventually(t, "Retry SpecChanged", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		c := condOf(b, v1alpha1.ConditionRetry)
		return c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonSpecChanged && strings.Contains(c.Message, first.Name), fmt.Sprintf("%+v", c)
	})
	run := waitForRun(t, ns, b.Name)
	if got := strings.Join(pipelineTasks(run), ","); got != "build-amd64,build-arm64" || run.Annotations[pipeline.AnnotationRetryOf] != "" {
		t.Errorf("tasks %s annotations %v: the new generation must be built in full, not as a retry", got, run.Annotations)
	}
}

func TestRetryFailedWaitsForTheRunningRun(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "busy"))
	first := waitForRun(t, ns, b.Name)
	finishRun(t, first, corev1.ConditionUnknown, "Running", "Tasks Completed: 1", nil)
	b = getBuild(t, ns, b.Name)
	retry(t, b, "1")
	eventually(t, "Retry RetryWaiting", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		c := condOf(b, v1alpha1.ConditionRetry)
		return c.Status == metav1.ConditionUnknown && c.Reason == v1alpha1.ReasonRetryWaiting, fmt.Sprintf("%+v", c)
	})
	consistently(t, "the running run neither cancelled nor replaced", 2*time.Second, func() (bool, string) {
		runs := runsOf(t, adminClient, ns)
		return len(runs) == 1 && runs[0].Spec.Status == "", fmt.Sprintf("%d runs", len(runs))
	})
}

func TestRetryWhoseReusedImageIsGoneSaysWhich(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "gone"))
	b, _ = failArm64(t, ns, b.Name)
	retry(t, b, "1")
	second := waitForRun(t, ns, b.Name)
	msg := "reused image " + retryAMD + " (linux/amd64, pushed by run x) is gone from quay.io/nmasse_itix/htop-multiarch"
	addTaskRunWith(t, second, pipeline.TaskCheckReused, "", corev1.ConditionFalse, map[string]string{pipeline.ResultError: msg})
	finishRun(t, second, corev1.ConditionFalse, "Failed", "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 3", nil)
	eventually(t, "Succeeded ReusedImageMissing", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		s, r := condOf(b, v1alpha1.ConditionSucceeded), condOf(b, v1alpha1.ConditionRetry)
		return s.Reason == v1alpha1.ReasonReusedImageMissing && strings.Contains(s.Message, retryAMD) &&
			r.Status == metav1.ConditionFalse && r.Reason == v1alpha1.ReasonReusedImageMissing, fmt.Sprintf("%+v %+v", s, r)
	})
	if b.Status.Phase != v1alpha1.PhaseFailed {
		t.Errorf("phase %s", b.Status.Phase)
	}
}

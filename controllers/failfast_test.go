package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

// The platforms build side by side. When build-amd64's preflight step
// fails while build-arm64 still waits for its node, Tekton would
// let build-arm64 run to its end; the operator cancels the run at once (the
// list needs every platform; cleanup still runs) and, once Tekton reports
// the run cancelled, the build is Failed with the failure's message, not
// Cancelled. A run is cancelled once, and never for its cleanup failing.
func TestAFailedPlatformCancelsTheOthers(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "failfast"))
	run := waitForRun(t, ns, b.Name)
	finishRun(t, run, corev1.ConditionUnknown, "Running", "Tasks Completed: 0 (Failed: 0, Cancelled 0), Incomplete: 2, Skipped: 0", nil)
	addTaskRun(t, run, "build-arm64", "arm64", corev1.ConditionUnknown, "Pending", "pod status \"PodScheduled\":\"False\"", "")
	msg := "preflight: image r.example/base:1 (line 1 of Containerfile) offers no linux/arm64 image (it offers linux/amd64)"
	exited := func(name string, code int32) tektonv1.StepState {
		return tektonv1.StepState{Name: name, ContainerState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}}
	}
	addTaskRunWith(t, run, "build-amd64", "amd64", corev1.ConditionFalse, map[string]string{"ERROR": msg},
		exited("prepare", 0), exited("clone", 0), exited(pipeline.StepPreflight, 1), exited("build", 1), exited(pipeline.StepIndex, 1))

	eventually(t, "the run cancelled by the operator", func() (bool, string) {
		cur := &tektonv1.PipelineRun{}
		if err := adminClient.Get(ctx, client.ObjectKeyFromObject(run), cur); err != nil {
			return false, err.Error()
		}
		return cur.Spec.Status == tektonv1.PipelineRunSpecStatusCancelledRunFinally, fmt.Sprintf("spec.status %q", cur.Spec.Status)
	})
	// While Tekton cancels, the build still runs.
	if c := condOf(getBuild(t, ns, b.Name), v1alpha1.ConditionSucceeded); c.Status != metav1.ConditionUnknown {
		t.Errorf("Succeeded %s/%s before the run ended", c.Status, c.Reason)
	}
	// Tekton cancels build-arm64 and ends the run.
	eventually(t, "build-arm64 cancelled", func() (bool, string) {
		tr := &tektonv1.TaskRun{}
		if err := adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: run.Name + "-build-arm64"}, tr); err != nil {
			return false, err.Error()
		}
		tr.Status.Conditions = duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse,
			Reason: tektonv1.TaskRunReasonCancelled.String(), Message: "TaskRun was cancelled"}}
		err := adminClient.Status().Update(ctx, tr)
		return err == nil, fmt.Sprint(err)
	})
	finishRun(t, run, corev1.ConditionFalse, string(tektonv1.PipelineRunReasonCancelled), "PipelineRun \"x\" was cancelled", nil)
	eventually(t, "a Failed build naming build-amd64's failure", func() (bool, string) {
		c := condOf(getBuild(t, ns, b.Name), v1alpha1.ConditionSucceeded)
		return c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonRunFailed &&
			strings.Contains(c.Message, "task build-amd64 failed: "+msg), fmt.Sprintf("%+v", c)
	})
	if p := getBuild(t, ns, b.Name).Status.Platforms; len(p) != 2 || p[0].State != v1alpha1.PlatformFailed {
		t.Errorf("platforms %+v, want linux/amd64 Failed", p)
	}
}

// A build step's failure does not cancel the others: a retry reuses the
// images of the platforms that succeed (TestRetryFailed in the e2e tier).
func TestABuildFailureLetsTheOtherPlatformsFinish(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "letfinish"))
	run := waitForRun(t, ns, b.Name)
	finishRun(t, run, corev1.ConditionUnknown, "Running", "Tasks Completed: 0 (Failed: 0, Cancelled 0), Incomplete: 2, Skipped: 0", nil)
	addTaskRun(t, run, "build-amd64", "amd64", corev1.ConditionUnknown, "Running", "", "p1")
	build := tektonv1.StepState{Name: "build", ContainerState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}
	addTaskRunWith(t, run, "build-arm64", "arm64", corev1.ConditionFalse, map[string]string{"ERROR": "Error: building at STEP \"RUN ./flaky\": exit status 1"}, build)
	eventually(t, "build-arm64 Failed in status", func() (bool, string) {
		p := getBuild(t, ns, b.Name).Status.Platforms
		return len(p) == 2 && p[1].State == v1alpha1.PlatformFailed, fmt.Sprintf("%+v", p)
	})
	consistently(t, "the run not cancelled", 3*time.Second, func() (bool, string) {
		cur := &tektonv1.PipelineRun{}
		if err := adminClient.Get(ctx, client.ObjectKeyFromObject(run), cur); err != nil {
			return false, err.Error()
		}
		return cur.Spec.Status == "", fmt.Sprintf("spec.status %q", cur.Spec.Status)
	})
}

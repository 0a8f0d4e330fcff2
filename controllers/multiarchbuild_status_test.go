package controllers

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/controllers/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/storage"
)

func TestPipelinesCondition(t *testing.T) {
	flags := func(ns string, data map[string]string) featureFlags {
		return featureFlags{Namespace: ns, Data: data}
	}
	tests := []struct {
		name        string
		served      bool
		ff          featureFlags
		wantStatus  metav1.ConditionStatus
		wantReason  string
		wantMessage []string
	}{
		{"Tekton absent", false, featureFlags{}, metav1.ConditionFalse, v1alpha1.ReasonTektonNotInstalled, []string{"pipelineruns.tekton.dev"}},
		{"no ConfigMap: defaults", true, featureFlags{}, metav1.ConditionTrue, v1alpha1.ReasonTektonAvailable, nil},
		{"coschedule workspaces (default) is fine: the PVC is a task volume", true, flags("tekton-pipelines", map[string]string{"coschedule": "workspaces"}), metav1.ConditionTrue, v1alpha1.ReasonTektonAvailable, nil},
		{"coschedule disabled", true, flags("tekton-pipelines", map[string]string{"coschedule": "disabled"}), metav1.ConditionTrue, v1alpha1.ReasonTektonAvailable, nil},
		{"coschedule pipelineruns pins the run", true, flags("tekton-pipelines", map[string]string{"coschedule": "pipelineruns"}), metav1.ConditionFalse, v1alpha1.ReasonAffinityAssistantPins,
			[]string{"tekton-pipelines/feature-flags", `coschedule="pipelineruns"`, `kubectl patch configmap feature-flags -n tekton-pipelines --type merge -p '{"data":{"coschedule":"workspaces"}}'`}},
		{"isolate-pipelinerun on OpenShift Pipelines: fix through TektonConfig", true, flags("openshift-pipelines", map[string]string{"coschedule": "isolate-pipelinerun"}), metav1.ConditionFalse, v1alpha1.ReasonAffinityAssistantPins,
			[]string{"openshift-pipelines/feature-flags", `oc patch tektonconfig config --type merge -p '{"spec":{"pipeline":{"coschedule":"workspaces"}}}'`}},
		{"inline pipeline specs disabled", true, flags("tekton-pipelines", map[string]string{"disable-inline-spec": "pipeline,taskrun"}), metav1.ConditionFalse, v1alpha1.ReasonInlineSpecDisabled,
			[]string{"pipeline, taskrun", "disable-inline-spec"}},
		{"disable-inline-spec empty", true, flags("tekton-pipelines", map[string]string{"disable-inline-spec": ""}), metav1.ConditionTrue, v1alpha1.ReasonTektonAvailable, nil},
		{"flags unreadable: assume defaults, do not block", true, featureFlags{Err: errors.New("forbidden")}, metav1.ConditionUnknown, v1alpha1.ReasonFeatureFlagsUnreadable, []string{"forbidden"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := pipelinesCondition(tt.served, tt.ff)
			if c.Status != tt.wantStatus || c.Reason != tt.wantReason {
				t.Errorf("got %s/%s, want %s/%s (%s)", c.Status, c.Reason, tt.wantStatus, tt.wantReason, c.Message)
			}
			for _, m := range tt.wantMessage {
				if !strings.Contains(c.Message, m) {
					t.Errorf("message %q lacks %q", c.Message, m)
				}
			}
		})
	}
}

func TestStorageAndCapacityConditions(t *testing.T) {
	if c := storageCondition(storage.Verdict{Ready: true, Reason: v1alpha1.ReasonWaitingForFirstConsumer}); c.Status != metav1.ConditionTrue {
		t.Errorf("WaitForFirstConsumer must not block: %+v", c)
	}
	if c := storageCondition(storage.Verdict{Reason: v1alpha1.ReasonStorageClassNotFound, Message: "m"}); c.Status != metav1.ConditionFalse || c.Message != "m" {
		t.Errorf("%+v", c)
	}
	tests := []struct {
		name       string
		res        *capacity.Result
		wantStatus metav1.ConditionStatus
		wantReason string
	}{
		{"no checker", nil, metav1.ConditionTrue, v1alpha1.ReasonNodesAvailable},
		{"ready", &capacity.Result{Ready: true}, metav1.ConditionTrue, v1alpha1.ReasonNodesAvailable},
		{"provisioning", &capacity.Result{Reason: v1alpha1.ReasonProvisioningNodes}, metav1.ConditionFalse, v1alpha1.ReasonProvisioningNodes},
		{"not ready without a reason", &capacity.Result{}, metav1.ConditionFalse, v1alpha1.ReasonNoNodes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := capacityCondition(tt.res)
			if c.Status != tt.wantStatus || c.Reason != tt.wantReason {
				t.Errorf("got %s/%s, want %s/%s", c.Status, c.Reason, tt.wantStatus, tt.wantReason)
			}
		})
	}
}

func runWith(status corev1.ConditionStatus, reason, message string) *tektonv1.PipelineRun {
	r := &tektonv1.PipelineRun{}
	r.Name = "htop-1-abcde"
	if status != "" {
		r.Status.Conditions = duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: status, Reason: reason, Message: message}}
	}
	return r
}

func TestSucceededCondition(t *testing.T) {
	tests := []struct {
		name        string
		o           runOutcome
		wantStatus  metav1.ConditionStatus
		wantReason  string
		wantMessage string
	}{
		{"waiting for prerequisites", runOutcome{Blocked: []string{"StorageReady"}}, metav1.ConditionUnknown, v1alpha1.ReasonRunPending, "StorageReady"},
		{"created, Tekton has not started it", runOutcome{Run: runWith("", "", "")}, metav1.ConditionUnknown, v1alpha1.ReasonRunPending, "waits for Tekton"},
		{"running", runOutcome{Run: runWith(corev1.ConditionUnknown, "Running", "")}, metav1.ConditionUnknown, v1alpha1.ReasonRunRunning, "is running"},
		{"pending in Tekton", runOutcome{Run: runWith(corev1.ConditionUnknown, "PipelineRunPending", "")}, metav1.ConditionUnknown, v1alpha1.ReasonRunPending, ""},
		{"succeeded", runOutcome{Run: runWith(corev1.ConditionTrue, "Succeeded", "")}, metav1.ConditionTrue, v1alpha1.ReasonRunSucceeded, "succeeded"},
		{"failed names the task", runOutcome{Run: runWith(corev1.ConditionFalse, "Failed", "Tasks Completed: 3 (Failed: 1)"), FailedTask: "task build-arm64 failed: exit 1"},
			metav1.ConditionFalse, v1alpha1.ReasonRunFailed, "task build-arm64 failed: exit 1"},
		{"timeout", runOutcome{Run: runWith(corev1.ConditionFalse, "PipelineRunTimeout", "not within 1h")}, metav1.ConditionFalse, v1alpha1.ReasonRunTimeout, "not within 1h"},
		{"cancelled", runOutcome{Run: runWith(corev1.ConditionFalse, "Cancelled", "")}, metav1.ConditionFalse, v1alpha1.ReasonRunCancelled, ""},
		{"cancelled running finally", runOutcome{Run: runWith(corev1.ConditionFalse, "CancelledRunningFinally", "")}, metav1.ConditionFalse, v1alpha1.ReasonRunCancelled, ""},
		{"other Tekton failure is Failed", runOutcome{Run: runWith(corev1.ConditionFalse, "CouldntGetTask", "")}, metav1.ConditionFalse, v1alpha1.ReasonRunFailed, ""},
		{"deleted", runOutcome{Deleted: true}, metav1.ConditionFalse, v1alpha1.ReasonRunDeleted, "rebuild="},
		{"invalid spec", runOutcome{CreateErr: errors.New("bad"), CreateReason: v1alpha1.ReasonInvalidSpec}, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, "bad"},
		// The index is pushed: done, while the finally task cleans up.
		{"pushed, cleanup running", runOutcome{Run: runWith(corev1.ConditionUnknown, "Running", ""), Pushed: &tektonv1.TaskRun{}},
			metav1.ConditionTrue, v1alpha1.ReasonRunSucceeded, "pushed the index (its cleanup of the volume goes on)"},
		{"pushed, cleanup failed", runOutcome{Run: runWith(corev1.ConditionFalse, "Failed", "Tasks Completed: 4 (Failed: 1)"), Pushed: &tektonv1.TaskRun{}, FailedTask: "task cleanup failed: rm: busy"},
			metav1.ConditionTrue, v1alpha1.ReasonRunSucceeded, "pushed the index; then task cleanup failed: rm: busy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := succeededCondition(tt.o)
			if c.Status != tt.wantStatus || c.Reason != tt.wantReason || !strings.Contains(c.Message, tt.wantMessage) {
				t.Errorf("got %s/%s %q, want %s/%s containing %q", c.Status, c.Reason, c.Message, tt.wantStatus, tt.wantReason, tt.wantMessage)
			}
		})
	}
}

// Until Tekton publishes the run's results (after the finally task), the
// digest and commit come from the TaskRuns that wrote them; a push that has
// not succeeded yet is not "pushed".
func TestBuiltResultsBeforeTheRunEnds(t *testing.T) {
	tr := func(task string, st corev1.ConditionStatus, results map[string]string) tektonv1.TaskRun {
		r := tektonv1.TaskRun{ObjectMeta: metav1.ObjectMeta{Name: "run-" + task, Labels: map[string]string{"tekton.dev/pipelineTask": task}}}
		r.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: st})
		for k, v := range results {
			r.Status.Results = append(r.Status.Results, tektonv1.TaskRunResult{Name: k, Type: tektonv1.ResultsTypeString, Value: *tektonv1.NewStructuredValues(v)})
		}
		return r
	}
	digest := "sha256:" + strings.Repeat("a", 64)
	// A Containerfile run: each build task cloned; build-arm64 finished
	// last and pushed the list, build-amd64's list results are empty.
	trs := []tektonv1.TaskRun{
		tr(pipeline.BuildTaskName("amd64"), corev1.ConditionTrue, map[string]string{pipeline.ResultCommit: "abc123\n",
			pipeline.ResultImageDigest: "sha256:" + strings.Repeat("b", 64), pipeline.ResultIndexDigest: "", pipeline.ResultIndexURL: ""}),
		tr(pipeline.BuildTaskName("arm64"), corev1.ConditionTrue, map[string]string{pipeline.ResultCommit: "abc123",
			pipeline.ResultImageDigest: "sha256:" + strings.Repeat("d", 64), pipeline.ResultIndexDigest: digest + "\n", pipeline.ResultIndexURL: "r.example/a"}),
	}
	run := runWith(corev1.ConditionUnknown, "Running", "")
	got := builtResults(run, trs)
	want := map[string]string{pipeline.ResultCommit: "abc123", pipeline.ResultImageDigest: digest, pipeline.ResultImageURL: "r.example/a"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if tr := pushedTaskRun(trs); tr == nil || tr.Name != "run-build-arm64" {
		t.Errorf("pushed by %v, want the build-arm64 TaskRun, whose index step pushed the list", tr)
	}
	if pushedTaskRun(trs[:1]) != nil {
		t.Error("a build TaskRun with empty list results is seen as pushed")
	}
	trs[1].Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionUnknown})
	if pushedTaskRun(trs) != nil {
		t.Error("a running build TaskRun is seen as pushed")
	}
	// Pushed by arm64 while amd64's pod still ends: not done yet.
	trs[1].Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue})
	trs[0].Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionUnknown})
	if pushedTaskRun(trs) != nil {
		t.Error("pushed while another build TaskRun runs")
	}
	// NodeJS and Maven: the commit from clone; a retry that rebuilds
	// nothing: the list from its push task.
	trs = []tektonv1.TaskRun{
		tr(pipeline.TaskClone, corev1.ConditionTrue, map[string]string{pipeline.ResultCommit: "def456"}),
		tr(pipeline.TaskPush, corev1.ConditionTrue, map[string]string{pipeline.ResultImageDigest: digest, pipeline.ResultImageURL: "r.example/b"}),
	}
	got = builtResults(run, trs)
	want = map[string]string{pipeline.ResultCommit: "def456", pipeline.ResultImageDigest: digest, pipeline.ResultImageURL: "r.example/b"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("clone and push: results (-want +got):\n%s", diff)
	}
	// The run's own results win once Tekton has them.
	run.Status.Results = []tektonv1.PipelineRunResult{{Name: pipeline.ResultImageDigest, Value: *tektonv1.NewStructuredValues("sha256:" + strings.Repeat("c", 64))}}
	if got := builtResults(run, trs)[pipeline.ResultImageDigest]; got != "sha256:"+strings.Repeat("c", 64) {
		t.Errorf("digest = %s, want the PipelineRun's result", got)
	}
}

func cond(t string, s metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: t + " message"}
}

// stale marks every condition as set for generation 0 while the build
// under test is at generation 1, except Succeeded keeps 0 too.
func stale(cs []metav1.Condition) []metav1.Condition {
	out := append([]metav1.Condition(nil), cs...)
	for i := range out {
		if out[i].Type != v1alpha1.ConditionSucceeded {
			out[i].ObservedGeneration = 1
		}
	}
	return out
}

func TestReadyConditionAndPhase(t *testing.T) {
	ok := []metav1.Condition{
		cond(v1alpha1.ConditionPipelinesAvailable, metav1.ConditionTrue, v1alpha1.ReasonTektonAvailable),
		cond(v1alpha1.ConditionStorageReady, metav1.ConditionTrue, v1alpha1.ReasonVolumeBound),
		cond(v1alpha1.ConditionCapacityReady, metav1.ConditionTrue, v1alpha1.ReasonNodesAvailable),
	}
	with := func(cs ...metav1.Condition) []metav1.Condition {
		out := append([]metav1.Condition(nil), ok...)
		for _, c := range cs {
			replaced := false
			for i := range out {
				if out[i].Type == c.Type {
					out[i], replaced = c, true
				}
			}
			if !replaced {
				out = append(out, c)
			}
		}
		return out
	}
	tests := []struct {
		name       string
		conds      []metav1.Condition
		runExists  bool
		wantReady  metav1.ConditionStatus
		wantReason string
		wantPhase  v1alpha1.Phase
	}{
		{"Tekton missing", with(cond(v1alpha1.ConditionPipelinesAvailable, metav1.ConditionFalse, v1alpha1.ReasonTektonNotInstalled)), false, metav1.ConditionFalse, v1alpha1.ReasonWaitingForPrereqs, v1alpha1.PhasePending},
		{"storage missing", with(cond(v1alpha1.ConditionStorageReady, metav1.ConditionFalse, v1alpha1.ReasonStorageClassNotFound), cond(v1alpha1.ConditionSucceeded, metav1.ConditionUnknown, v1alpha1.ReasonRunPending)), false, metav1.ConditionFalse, v1alpha1.ReasonWaitingForPrereqs, v1alpha1.PhasePending},
		{"provisioning nodes", with(cond(v1alpha1.ConditionCapacityReady, metav1.ConditionFalse, v1alpha1.ReasonProvisioningNodes), cond(v1alpha1.ConditionSucceeded, metav1.ConditionUnknown, v1alpha1.ReasonRunPending)), false, metav1.ConditionFalse, v1alpha1.ReasonWaitingForPrereqs, v1alpha1.PhaseProvisioning},
		{"running", with(cond(v1alpha1.ConditionSucceeded, metav1.ConditionUnknown, v1alpha1.ReasonRunRunning)), true, metav1.ConditionFalse, v1alpha1.ReasonBuilding, v1alpha1.PhaseBuilding},
		{"created, not started", with(cond(v1alpha1.ConditionSucceeded, metav1.ConditionUnknown, v1alpha1.ReasonRunPending)), true, metav1.ConditionFalse, v1alpha1.ReasonBuilding, v1alpha1.PhaseBuilding},
		{"built", with(cond(v1alpha1.ConditionSucceeded, metav1.ConditionTrue, v1alpha1.ReasonRunSucceeded)), true, metav1.ConditionTrue, v1alpha1.ReasonBuilt, v1alpha1.PhaseSucceeded},
		{"failed", with(cond(v1alpha1.ConditionSucceeded, metav1.ConditionFalse, v1alpha1.ReasonRunFailed)), true, metav1.ConditionFalse, v1alpha1.ReasonBuildFailed, v1alpha1.PhaseFailed},
		{"run deleted", with(cond(v1alpha1.ConditionSucceeded, metav1.ConditionFalse, v1alpha1.ReasonRunDeleted)), false, metav1.ConditionFalse, v1alpha1.ReasonBuildFailed, v1alpha1.PhaseFailed},
		// A verdict of an older generation (ObservedGeneration 0, the build is
		// at 1): the spec was edited and the reconcile of the new generation
		// has not observed its run. Never Ready with the old image, never Failed.
		{"stale success", stale(with(cond(v1alpha1.ConditionSucceeded, metav1.ConditionTrue, v1alpha1.ReasonRunSucceeded))), false, metav1.ConditionFalse, v1alpha1.ReasonBuilding, v1alpha1.PhasePending},
		{"stale success, new run exists", stale(with(cond(v1alpha1.ConditionSucceeded, metav1.ConditionTrue, v1alpha1.ReasonRunSucceeded))), true, metav1.ConditionFalse, v1alpha1.ReasonBuilding, v1alpha1.PhaseBuilding},
		{"stale failure", stale(with(cond(v1alpha1.ConditionSucceeded, metav1.ConditionFalse, v1alpha1.ReasonRunFailed))), false, metav1.ConditionFalse, v1alpha1.ReasonBuilding, v1alpha1.PhasePending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &v1alpha1.MultiArchBuild{}
			if strings.HasPrefix(tt.name, "stale") {
				b.Generation = 1
			}
			r := readyCondition(b, tt.conds)
			if r.Status != tt.wantReady || r.Reason != tt.wantReason {
				t.Errorf("Ready %s/%s, want %s/%s", r.Status, r.Reason, tt.wantReady, tt.wantReason)
			}
			if p := phaseOf(tt.conds, b.Generation, tt.runExists); p != tt.wantPhase {
				t.Errorf("phase %s, want %s", p, tt.wantPhase)
			}
		})
	}
}

func taskRun(task, arch string, status corev1.ConditionStatus, reason, pod string) tektonv1.TaskRun {
	tr := tektonv1.TaskRun{}
	tr.Name = "run-" + task
	tr.Labels = map[string]string{"tekton.dev/pipelineTask": task, pipeline.LabelArch: arch}
	tr.Status.PodName = pod
	if status != "" {
		tr.Status.Conditions = duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: status, Reason: reason, Message: reason + " msg"}}
	}
	return tr
}

func TestPlatformStatuses(t *testing.T) {
	b := &v1alpha1.MultiArchBuild{Spec: v1alpha1.MultiArchBuildSpec{Platforms: []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}}}
	run := runWith(corev1.ConditionUnknown, "Running", "")
	done := runWith(corev1.ConditionTrue, "Succeeded", "")
	done.Status.Results = []tektonv1.PipelineRunResult{
		{Name: "IMAGE_DIGEST_AMD64", Value: *tektonv1.NewStructuredValues("sha256:a")},
		{Name: "IMAGE_DIGEST_ARM64", Value: *tektonv1.NewStructuredValues("sha256:b\n")},
	}
	tests := []struct {
		name     string
		run      *tektonv1.PipelineRun
		taskRuns []tektonv1.TaskRun
		waiting  map[v1alpha1.Platform]string
		nodes    map[string]string
		want     []v1alpha1.PlatformStatus
	}{
		{"no run yet: waiting with the capacity message", nil, nil, map[v1alpha1.Platform]string{v1alpha1.PlatformLinuxARM64: "scaling up"}, nil, []v1alpha1.PlatformStatus{
			{Platform: "linux/amd64", State: v1alpha1.PlatformWaiting}, {Platform: "linux/arm64", State: v1alpha1.PlatformWaiting, Message: "scaling up"}}},
		{"one building on its node, one not scheduled", run, []tektonv1.TaskRun{
			taskRun("build-amd64", "amd64", corev1.ConditionUnknown, "Running", "p1"),
			taskRun("build-arm64", "arm64", corev1.ConditionUnknown, "Pending", "p2"),
		}, nil, map[string]string{"amd64": "n1"}, []v1alpha1.PlatformStatus{
			{Platform: "linux/amd64", State: v1alpha1.PlatformBuilding, NodeName: "n1"},
			{Platform: "linux/arm64", State: v1alpha1.PlatformWaiting, Message: "the build pod is not scheduled yet"}}},
		{"its TaskRun exists, no node for its pod: the capacity message, not \"not scheduled\"", run, []tektonv1.TaskRun{
			taskRun("build-amd64", "amd64", corev1.ConditionUnknown, "Running", "p1"),
			taskRun("build-arm64", "arm64", corev1.ConditionUnknown, "Pending", "p2"),
		}, map[v1alpha1.Platform]string{v1alpha1.PlatformLinuxARM64: "Machine m: InvalidConfiguration"}, nil, []v1alpha1.PlatformStatus{
			{Platform: "linux/amd64", State: v1alpha1.PlatformBuilding},
			{Platform: "linux/arm64", State: v1alpha1.PlatformWaiting, Message: "Machine m: InvalidConfiguration"}}},
		{"cancelled for capacity: Cancelled with the capacity message", run, []tektonv1.TaskRun{
			taskRun("build-arm64", "arm64", corev1.ConditionFalse, tektonv1.TaskRunReasonCancelled.String(), ""),
		}, map[v1alpha1.Platform]string{v1alpha1.PlatformLinuxARM64: "Machine m: InvalidConfiguration"}, nil, []v1alpha1.PlatformStatus{
			{Platform: "linux/amd64", State: v1alpha1.PlatformWaiting},
			{Platform: "linux/arm64", State: v1alpha1.PlatformCancelled, Message: "Machine m: InvalidConfiguration"}}},
		{"NodeJS install done, build running: Building", run, []tektonv1.TaskRun{
			taskRun("install-arm64", "arm64", corev1.ConditionTrue, "Succeeded", "p1"),
			taskRun("build-arm64", "arm64", "", "", ""),
		}, nil, nil, []v1alpha1.PlatformStatus{
			{Platform: "linux/amd64", State: v1alpha1.PlatformWaiting},
			{Platform: "linux/arm64", State: v1alpha1.PlatformBuilding}}},
		{"failed names the task", run, []tektonv1.TaskRun{
			taskRun("build-arm64", "arm64", corev1.ConditionFalse, "Failed", "p1"),
		}, nil, nil, []v1alpha1.PlatformStatus{
			{Platform: "linux/amd64", State: v1alpha1.PlatformWaiting},
			{Platform: "linux/arm64", State: v1alpha1.PlatformFailed, Message: "build-arm64: Failed msg"}}},
		{"a cancelled platform is Cancelled, the failed one Failed", run, []tektonv1.TaskRun{
			taskRun("build-amd64", "amd64", corev1.ConditionFalse, tektonv1.TaskRunReasonCancelled.String(), "p1"),
			taskRun("build-arm64", "arm64", corev1.ConditionFalse, "Failed", "p2"),
		}, nil, nil, []v1alpha1.PlatformStatus{
			{Platform: "linux/amd64", State: v1alpha1.PlatformCancelled, Message: "build-amd64: TaskRunCancelled msg"},
			{Platform: "linux/arm64", State: v1alpha1.PlatformFailed, Message: "build-arm64: Failed msg"}}},
		{"digests from the run results", done, []tektonv1.TaskRun{
			taskRun("build-amd64", "amd64", corev1.ConditionTrue, "Succeeded", "p1"),
			taskRun("build-arm64", "arm64", corev1.ConditionTrue, "Succeeded", "p2"),
		}, nil, nil, []v1alpha1.PlatformStatus{
			{Platform: "linux/amd64", State: v1alpha1.PlatformBuilt, Digest: "sha256:a"},
			{Platform: "linux/arm64", State: v1alpha1.PlatformBuilt, Digest: "sha256:b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := platformStatuses(b, tt.run, tt.taskRuns, tt.waiting, tt.nodes)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestFailedTaskPicksTheFailedTaskRun(t *testing.T) {
	trs := []tektonv1.TaskRun{
		taskRun("build-amd64", "amd64", corev1.ConditionTrue, "Succeeded", ""),
		taskRun("push", "", corev1.ConditionFalse, "Failed", ""),
	}
	if got := failedTask(trs); got != "task push failed: Failed msg" {
		t.Errorf("failedTask = %q", got)
	}
	if got := failedTask(trs[:1]); got != "" {
		t.Errorf("failedTask with none failed = %q", got)
	}
	// build-arm64's preflight failed; Tekton cancelled build-amd64, which
	// sorts first: the cause is named, not the cancellation.
	trs = []tektonv1.TaskRun{
		taskRun("build-amd64", "amd64", corev1.ConditionFalse, tektonv1.TaskRunReasonCancelled.String(), ""),
		taskRun("build-arm64", "arm64", corev1.ConditionFalse, "Failed", ""),
	}
	if got := failedTask(trs); got != "task build-arm64 failed: Failed msg" {
		t.Errorf("failedTask = %q, want the failure, not the cancellation", got)
	}
	if got := failedTask(trs[:1]); got != "task build-amd64 failed: "+tektonv1.TaskRunReasonCancelled.String()+" msg" {
		t.Errorf("failedTask with only a cancellation = %q", got)
	}
}

func TestRepositoryStripsTheTag(t *testing.T) {
	for in, want := range map[string]string{
		"quay.io/team/app:1.0":         "quay.io/team/app",
		"quay.io/team/app":             "quay.io/team/app",
		"localhost:5000/team/app":      "localhost:5000/team/app",
		"localhost:5000/team/app:v1.2": "localhost:5000/team/app",
	} {
		if got := repository(in); got != want {
			t.Errorf("repository(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTransitionsEmitEventsOnlyOnChange(t *testing.T) {
	running := []metav1.Condition{cond(v1alpha1.ConditionSucceeded, metav1.ConditionUnknown, v1alpha1.ReasonRunRunning)}
	failed := []metav1.Condition{cond(v1alpha1.ConditionSucceeded, metav1.ConditionFalse, v1alpha1.ReasonRunTimeout)}
	done := []metav1.Condition{cond(v1alpha1.ConditionSucceeded, metav1.ConditionTrue, v1alpha1.ReasonRunSucceeded)}
	noTekton := []metav1.Condition{cond(v1alpha1.ConditionPipelinesAvailable, metav1.ConditionFalse, v1alpha1.ReasonTektonNotInstalled)}
	tests := []struct {
		name          string
		before, after []metav1.Condition
		want          []string
	}{
		{"nothing changed", failed, failed, nil},
		{"running to timeout", running, failed, []string{"Warning/PipelineRunTimeout"}},
		{"running to succeeded", running, done, []string{"Normal/BuildSucceeded"}},
		{"still running", running, running, nil},
		{"Tekton missing", nil, noTekton, []string{"Warning/TektonNotInstalled"}},
		{"Tekton still missing", noTekton, noTekton, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, tr := range transitions(tt.before, tt.after) {
				got = append(got, tr.eventType+"/"+tr.reason)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestBackoffGrowsWithWaitingTimeAndIsBounded(t *testing.T) {
	now := time.Now()
	at := func(ago time.Duration) []metav1.Condition {
		return []metav1.Condition{{Type: "X", LastTransitionTime: metav1.NewTime(now.Add(-ago))}}
	}
	for _, tt := range []struct {
		conds []metav1.Condition
		want  time.Duration
	}{
		{nil, 5 * time.Second},
		{at(time.Second), 5 * time.Second},
		{at(time.Minute), time.Minute},
		{at(time.Hour), 5 * time.Minute},
	} {
		if got := backoff(now, tt.conds, "X"); got != tt.want {
			t.Errorf("backoff = %s, want %s", got, tt.want)
		}
	}
}

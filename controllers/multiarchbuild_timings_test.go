package controllers

import (
	"fmt"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

func timedTaskRun(task string, created time.Time, step string, start, end time.Time, results map[string]string) tektonv1.TaskRun {
	tr := tektonv1.TaskRun{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"tekton.dev/pipelineTask": task},
		CreationTimestamp: metav1.NewTime(created)}}
	st := tektonv1.StepState{Name: step}
	switch {
	case start.IsZero():
		st.Waiting = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
	case end.IsZero():
		st.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(start)}
	default:
		st.Terminated = &corev1.ContainerStateTerminated{StartedAt: metav1.NewTime(start), FinishedAt: metav1.NewTime(end)}
	}
	tr.Status.Steps = []tektonv1.StepState{st}
	for k, v := range results {
		tr.Status.Results = append(tr.Status.Results, tektonv1.TaskRunResult{Name: k, Value: *tektonv1.NewStructuredValues(v)})
	}
	return tr
}

func secs(p *v1alpha1.PhaseTiming) string {
	if p == nil {
		return "-"
	}
	if p.Seconds == nil {
		return "open"
	}
	return fmt.Sprint(*p.Seconds)
}

func TestPlatformTimingsFromTaskRunStatus(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		name string
		trs  []tektonv1.TaskRun
		want string // waiting installing building pushing
	}{
		{"no TaskRun", nil, "nil"},
		{"pod not started", []tektonv1.TaskRun{timedTaskRun("build-arm64", at(0), "build", time.Time{}, time.Time{}, nil)}, "open - - -"},
		{"building", []tektonv1.TaskRun{timedTaskRun("build-arm64", at(0), "build", at(12), time.Time{}, nil)}, "12 - open -"},
		{"built and pushed", []tektonv1.TaskRun{timedTaskRun("build-arm64", at(0), "build", at(12), at(112), map[string]string{"PUSH_STARTED": fmt.Sprint(at(100).Unix())})}, "12 - 88 12"},
		{"PUSH_STARTED outside the step is ignored", []tektonv1.TaskRun{timedTaskRun("build-arm64", at(0), "build", at(12), at(112), map[string]string{"PUSH_STARTED": fmt.Sprint(at(500).Unix())})}, "12 - 100 -"},
		{"PUSH_STARTED not a number", []tektonv1.TaskRun{timedTaskRun("build-arm64", at(0), "build", at(12), at(112), map[string]string{"PUSH_STARTED": "soon"})}, "12 - 100 -"},
		{"NodeJS: waiting is the install pod's", []tektonv1.TaskRun{
			timedTaskRun("install-arm64", at(0), "install", at(30), at(90), nil),
			timedTaskRun("build-arm64", at(91), "build", at(95), at(195), map[string]string{"PUSH_STARTED": fmt.Sprint(at(190).Unix())}),
		}, "30 60 95 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm := platformTimings("arm64", tc.trs)
			got := "nil"
			if tm != nil {
				got = fmt.Sprintf("%s %s %s %s", secs(tm.Waiting), secs(tm.Installing), secs(tm.Building), secs(tm.Pushing))
			}
			if got != tc.want {
				t.Errorf("timings %s, want %s", got, tc.want)
			}
		})
	}
}

func TestBuildSecondsSummary(t *testing.T) {
	got := buildSecondsSummary([]v1alpha1.PlatformStatus{
		{Platform: v1alpha1.PlatformLinuxAMD64, ReusedFrom: "r-1-abcde"},
		{Platform: v1alpha1.PlatformLinuxARM64, Timings: &v1alpha1.PlatformTimings{Building: &v1alpha1.PhaseTiming{Seconds: ptr.To(int64(130))}}},
		{Platform: v1alpha1.PlatformLinuxS390X, Timings: &v1alpha1.PlatformTimings{Building: &v1alpha1.PhaseTiming{}}},
	})
	if got != "amd64=reused arm64=130s" {
		t.Errorf("summary %q", got)
	}
}

func TestSlimTektonObjectKeepsStepTimesAndOurAnnotations(t *testing.T) {
	pr := &tektonv1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
		"build.multiarch.io/reused": "{}", "kubectl.kubernetes.io/last-applied-configuration": "{...}"}}}
	_, _ = slimTektonObject(pr)
	if len(pr.Annotations) != 1 || pr.Annotations["build.multiarch.io/reused"] != "{}" {
		t.Errorf("annotations %v", pr.Annotations)
	}
	tr := timedTaskRun("build-arm64", time.Unix(0, 0), "build", time.Unix(10, 0), time.Unix(20, 0), nil)
	tr.Status.Steps[0].ImageID = "x"
	tr.Status.Steps[0].Terminated.Message = "[{\"key\":\"IMAGE_DIGEST\"}]"
	_, _ = slimTektonObject(&tr)
	st := tr.Status.Steps[0]
	if st.Name != "build" || st.ImageID != "" || st.Terminated.Message != "" || st.Terminated.FinishedAt.Unix() != 20 {
		t.Errorf("step %+v", st)
	}
}

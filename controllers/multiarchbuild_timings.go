package controllers

import (
	"strconv"
	"strings"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

// platformTimings are the phases of one platform's build, from the TaskRuns
// of its architecture as observeRun listed them (no other read):
//
//   - waiting: the first arch-bound TaskRun (install-<arch> for NodeJS,
//     else build-<arch>) created, until its first step ran (or it ended
//     without one);
//   - installing: the install step of install-<arch>;
//   - building: the build step of build-<arch>, until its PUSH_STARTED result
//     (the whole step without one);
//   - pushing: from PUSH_STARTED until the build step ended.
//
// nil when no TaskRun of the platform exists.
func platformTimings(arch string, trs []tektonv1.TaskRun) *v1alpha1.PlatformTimings {
	var install, build *tektonv1.TaskRun
	for i := range trs {
		switch trs[i].Labels["tekton.dev/pipelineTask"] {
		case pipeline.InstallTaskName(arch):
			install = &trs[i]
		case pipeline.BuildTaskName(arch):
			build = &trs[i]
		}
	}
	first := build
	if install != nil {
		first = install
	}
	if first == nil {
		return nil
	}
	t := &v1alpha1.PlatformTimings{}
	start, _ := stepWindow(first, "")
	switch {
	case start != nil:
		t.Waiting = phase(first.CreationTimestamp, start)
	case first.Status.CompletionTime != nil:
		t.Waiting = phase(first.CreationTimestamp, first.Status.CompletionTime)
	case !first.CreationTimestamp.IsZero():
		t.Waiting = phase(first.CreationTimestamp, nil)
	}
	if install != nil {
		if s, e := stepWindow(install, "install"); s != nil {
			t.Installing = phase(*s, e)
		}
	}
	if build != nil {
		if s, e := stepWindow(build, "build"); s != nil {
			if push := pushStarted(build, *s, e); push != nil {
				t.Building = phase(*s, push)
				t.Pushing = phase(*push, e)
			} else {
				t.Building = phase(*s, e)
			}
		}
	}
	if *t == (v1alpha1.PlatformTimings{}) {
		return nil
	}
	return t
}

// stepWindow is when a step of the TaskRun started and ended (end nil while
// it runs); the first step when name is empty.
func stepWindow(tr *tektonv1.TaskRun, name string) (start, end *metav1.Time) {
	for i := range tr.Status.Steps {
		st := &tr.Status.Steps[i]
		if name != "" && st.Name != name && st.Container != "step-"+name {
			continue
		}
		switch {
		case st.Terminated != nil:
			s, e := st.Terminated.StartedAt, st.Terminated.FinishedAt
			if s.IsZero() {
				return nil, nil
			}
			if e.IsZero() {
				return &s, nil
			}
			return &s, &e
		case st.Running != nil && !st.Running.StartedAt.IsZero():
			s := st.Running.StartedAt
			return &s, nil
		}
		return nil, nil
	}
	return nil, nil
}

// pushStarted reads the PUSH_STARTED result of a build TaskRun; nil unless
// it is a time within the build step (it is data from the build).
func pushStarted(tr *tektonv1.TaskRun, start metav1.Time, end *metav1.Time) *metav1.Time {
	for _, r := range tr.Status.Results {
		if r.Name != pipeline.ResultPushStarted {
			continue
		}
		sec, err := strconv.ParseInt(strings.TrimSpace(r.Value.StringVal), 10, 64)
		if err != nil {
			return nil
		}
		t := metav1.NewTime(time.Unix(sec, 0))
		if t.Before(&start) || (end != nil && end.Before(&t)) {
			return nil
		}
		return &t
	}
	return nil
}

func phase(start metav1.Time, end *metav1.Time) *v1alpha1.PhaseTiming {
	p := &v1alpha1.PhaseTiming{Start: metav1.NewTime(start.Time.Truncate(time.Second))}
	if end != nil {
		e := metav1.NewTime(end.Time.Truncate(time.Second))
		p.End = &e
		sec := int64(e.Sub(p.Start.Time) / time.Second)
		if sec < 0 {
			sec = 0
		}
		p.Seconds = &sec
	}
	return p
}

// timingPhases are the phases of a platform's timings by metric label.
func timingPhases(t *v1alpha1.PlatformTimings) map[string]*v1alpha1.PhaseTiming {
	if t == nil {
		return nil
	}
	return map[string]*v1alpha1.PhaseTiming{"waiting": t.Waiting, "installing": t.Installing, "building": t.Building, "pushing": t.Pushing}
}

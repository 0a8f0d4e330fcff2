// Package argocd holds the Argo CD health check of MultiArchBuild
// (health.lua) and the tests that run it the way Argo CD does.
package argocd

import (
	"os"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

const healthScript = "health.lua"

// health is what Argo CD reads back from the script's returned table.
type health struct {
	Status  string
	Message string
}

// runHealth runs script like Argo CD's util/lua VM does for a custom health
// check: standard libraries skipped except package, base and table, the
// object converted from unstructured into a global table "obj", and a table
// with status and message returned.
func runHealth(t *testing.T, script string, obj map[string]interface{}) health {
	t.Helper()
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.fn), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			t.Fatalf("open %s: %v", lib.name, err)
		}
	}
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		t.Fatalf("health.lua failed: %v", err)
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health.lua returned %s, Argo CD expects a table", l.Get(-1).Type())
	}
	h := health{}
	if s, ok := ret.RawGetString("status").(lua.LString); ok {
		h.Status = string(s)
	}
	if m, ok := ret.RawGetString("message").(lua.LString); ok {
		h.Message = string(m)
	}
	switch h.Status {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
	default:
		t.Fatalf("health.lua returned status %q, which Argo CD rejects as invalid", h.Status)
	}
	return h
}

// toLua converts an unstructured value the way Argo CD's decodeValue does:
// maps to tables, slices to 1-based arrays, every number to a Lua number.
func toLua(l *lua.LState, v interface{}) lua.LValue {
	switch v := v.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []interface{}:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]interface{}:
		tbl := l.CreateTable(0, len(v))
		for k, item := range v {
			tbl.RawSetH(lua.LString(k), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}

func readScript(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(healthScript)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// build returns a MultiArchBuild at generation gen, shaped as the API server
// returns it, with the given status applied by mutate.
func build(gen int64, mutate func(*v1alpha1.MultiArchBuildStatus)) *v1alpha1.MultiArchBuild {
	limit := int32(3)
	b := &v1alpha1.MultiArchBuild{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "MultiArchBuild"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "htop", Namespace: "build-multiarch", Generation: gen,
			CreationTimestamp: metav1.NewTime(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)),
		},
		Spec: v1alpha1.MultiArchBuildSpec{
			Source:          v1alpha1.SourceSpec{Git: v1alpha1.GitSource{URL: "https://github.com/nmasse-itix/tekton-pipeline-multiarch.git", Revision: "main"}, ContextDir: "examples/htop/src"},
			Strategy:        v1alpha1.StrategySpec{Type: v1alpha1.StrategyContainerfile, Containerfile: "Containerfile"},
			Platforms:       []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64},
			Output:          v1alpha1.OutputSpec{Image: "quay.io/nmasse_itix/htop-multiarch"},
			RunHistoryLimit: &limit,
		},
	}
	if mutate != nil {
		mutate(&b.Status)
	}
	return b
}

func cond(typ string, status metav1.ConditionStatus, reason, message string, gen int64) metav1.Condition {
	return metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: gen,
		LastTransitionTime: metav1.NewTime(time.Date(2026, 11, 26, 10, 1, 0, 0, time.UTC)),
	}
}

func platforms(state v1alpha1.PlatformState) []v1alpha1.PlatformStatus {
	return []v1alpha1.PlatformStatus{
		{Platform: v1alpha1.PlatformLinuxAMD64, State: state, NodeName: "ip-10-0-1-2"},
		{Platform: v1alpha1.PlatformLinuxARM64, State: state, NodeName: "ip-10-0-2-3"},
	}
}

const (
	digest     = "sha256:3b5f4a2cbd1e0f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c"
	pushed     = "quay.io/nmasse_itix/htop-multiarch@" + digest
	runName    = "htop-2-4f7c"
	timeoutMsg = "PipelineRun htop-2-4f7c timed out after 1h0m0s in task build-arm64"
)

func TestHealth(t *testing.T) {
	started := metav1.NewTime(time.Date(2026, 11, 26, 10, 2, 0, 0, time.UTC))
	finished := metav1.NewTime(time.Date(2026, 11, 26, 10, 9, 0, 0, time.UTC))
	tests := []struct {
		name  string
		build *v1alpha1.MultiArchBuild
		want  health
		// noStatus drops .status the way the API server returns a new object
		// of a kind with a status subresource.
		noStatus bool
	}{{
		name:     "a build the operator has not seen yet is Progressing",
		build:    build(1, nil),
		noStatus: true,
		want:     health{"Progressing", "Waiting for the operator to report status"},
	}, {
		name:  "an empty status is Progressing until the operator observes the generation",
		build: build(1, nil),
		want:  health{"Progressing", "Waiting for the operator to observe generation 1"},
	}, {
		name: "a new spec generation not yet observed is Progressing even though the previous one is Ready",
		build: build(3, func(s *v1alpha1.MultiArchBuildStatus) {
			s.ObservedGeneration = 2
			s.Phase = v1alpha1.PhaseSucceeded
			s.Conditions = []metav1.Condition{cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonBuilt, "Pushed "+pushed, 2)}
			s.Digest, s.Image = digest, pushed
		}),
		want: health{"Progressing", "Waiting for the operator to observe generation 3"},
	}, {
		name: "an observed generation whose Ready verdict is of an older generation is Progressing, not Healthy",
		build: build(3, func(s *v1alpha1.MultiArchBuildStatus) {
			s.ObservedGeneration = 3
			s.Phase = v1alpha1.PhaseSucceeded
			s.Conditions = []metav1.Condition{
				cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonBuilt, "Pushed "+pushed, 2),
				cond(v1alpha1.ConditionSucceeded, metav1.ConditionTrue, v1alpha1.ReasonRunSucceeded, "PipelineRun htop-2-4f7c succeeded", 2),
			}
			s.Digest, s.Image = digest, pushed
		}),
		want: health{"Progressing", "Waiting for the build of generation 3"},
	}, {
		name: "waiting for nodes of an architecture is Progressing with the Ready message",
		build: build(2, func(s *v1alpha1.MultiArchBuildStatus) {
			s.ObservedGeneration = 2
			s.Phase = v1alpha1.PhaseProvisioning
			s.Conditions = []metav1.Condition{
				cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonWaitingForPrereqs, "Waiting for capacity: MachineSet build-multiarch-tw9w9-aarch64-worker-eu-west-3b is scaling up", 2),
				cond(v1alpha1.ConditionPipelinesAvailable, metav1.ConditionTrue, v1alpha1.ReasonTektonAvailable, "Tekton Pipelines is installed", 2),
				cond(v1alpha1.ConditionStorageReady, metav1.ConditionTrue, v1alpha1.ReasonVolumeBound, "PVC htop-workspace is Bound", 2),
				cond(v1alpha1.ConditionCapacityReady, metav1.ConditionFalse, v1alpha1.ReasonProvisioningNodes, "MachineSet build-multiarch-tw9w9-aarch64-worker-eu-west-3b is scaling up", 2),
			}
			s.Platforms = platforms(v1alpha1.PlatformWaiting)
		}),
		want: health{"Progressing", "Waiting for capacity: MachineSet build-multiarch-tw9w9-aarch64-worker-eu-west-3b is scaling up"},
	}, {
		name: "a missing Tekton install keeps the build Progressing, not Degraded: it starts once Tekton is there",
		build: build(1, func(s *v1alpha1.MultiArchBuildStatus) {
			s.ObservedGeneration = 1
			s.Phase = v1alpha1.PhasePending
			s.Conditions = []metav1.Condition{
				cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonWaitingForPrereqs, "Tekton Pipelines is not installed: install OpenShift Pipelines", 1),
				cond(v1alpha1.ConditionPipelinesAvailable, metav1.ConditionFalse, v1alpha1.ReasonTektonNotInstalled, "Tekton Pipelines is not installed: install OpenShift Pipelines", 1),
			}
		}),
		want: health{"Progressing", "Tekton Pipelines is not installed: install OpenShift Pipelines"},
	}, {
		name: "a running build is Progressing",
		build: build(2, func(s *v1alpha1.MultiArchBuildStatus) {
			s.ObservedGeneration = 2
			s.Phase = v1alpha1.PhaseBuilding
			s.Conditions = []metav1.Condition{
				cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonBuilding, "PipelineRun htop-2-4f7c is running", 2),
				cond(v1alpha1.ConditionSucceeded, metav1.ConditionUnknown, v1alpha1.ReasonRunRunning, "Tasks Completed: 1 (Failed: 0, Cancelled 0), Incomplete: 3, Skipped: 0", 2),
			}
			s.LatestRun = &v1alpha1.RunReference{Name: runName, Generation: 2, StartTime: &started}
			s.Platforms = platforms(v1alpha1.PlatformBuilding)
		}),
		want: health{"Progressing", "PipelineRun htop-2-4f7c is running"},
	}, {
		name: "a status with a phase but no conditions yet is Progressing with the phase",
		build: build(1, func(s *v1alpha1.MultiArchBuildStatus) {
			s.ObservedGeneration = 1
			s.Phase = v1alpha1.PhasePending
		}),
		want: health{"Progressing", "Pending"},
	}, {
		name: "the current generation built and pushed is Healthy and names the pushed image",
		build: build(2, func(s *v1alpha1.MultiArchBuildStatus) {
			s.ObservedGeneration = 2
			s.Phase = v1alpha1.PhaseSucceeded
			s.Conditions = []metav1.Condition{
				cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonBuilt, "Generation 2 built and pushed", 2),
				cond(v1alpha1.ConditionSucceeded, metav1.ConditionTrue, v1alpha1.ReasonRunSucceeded, "All Tasks have completed executing", 2),
			}
			s.LatestRun = &v1alpha1.RunReference{Name: runName, Generation: 2, StartTime: &started, CompletionTime: &finished}
			s.Platforms = platforms(v1alpha1.PlatformBuilt)
			s.Platforms[0].Digest = "sha256:" + "1111111111111111111111111111111111111111111111111111111111111111"
			s.Platforms[1].Digest = "sha256:" + "2222222222222222222222222222222222222222222222222222222222222222"
			s.Revision = "3b11df8c0f4e7a6d5b2c1e0f9a8b7c6d5e4f3a2b"
			s.Digest, s.Image = digest, pushed
		}),
		want: health{"Healthy", "Pushed " + pushed},
	}, {
		name: "Ready without a reported image is Healthy with the Ready message",
		build: build(1, func(s *v1alpha1.MultiArchBuildStatus) {
			s.ObservedGeneration = 1
			s.Phase = v1alpha1.PhaseSucceeded
			s.Conditions = []metav1.Condition{cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonBuilt, "Generation 1 built and pushed", 1)}
		}),
		want: health{"Healthy", "Generation 1 built and pushed"},
	}, {
		name: "a timed-out run is Degraded with the Succeeded message that names the failing task",
		build: build(2, func(s *v1alpha1.MultiArchBuildStatus) {
			s.ObservedGeneration = 2
			s.Phase = v1alpha1.PhaseFailed
			s.Conditions = []metav1.Condition{
				cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonBuildFailed, "The build of generation 2 failed", 2),
				cond(v1alpha1.ConditionSucceeded, metav1.ConditionFalse, v1alpha1.ReasonRunTimeout, timeoutMsg, 2),
			}
			s.LatestRun = &v1alpha1.RunReference{Name: runName, Generation: 2, StartTime: &started, CompletionTime: &finished}
			s.Platforms = []v1alpha1.PlatformStatus{
				{Platform: v1alpha1.PlatformLinuxAMD64, State: v1alpha1.PlatformBuilt, Digest: "sha256:" + "1111111111111111111111111111111111111111111111111111111111111111"},
				{Platform: v1alpha1.PlatformLinuxARM64, State: v1alpha1.PlatformFailed, Message: "timed out"},
			}
		}),
		want: health{"Degraded", timeoutMsg},
	}, {
		name: "Ready=False with reason BuildFailed is Degraded with the Ready message when Succeeded is absent",
		build: build(4, func(s *v1alpha1.MultiArchBuildStatus) {
			s.ObservedGeneration = 4
			s.Phase = v1alpha1.PhaseFailed
			s.Conditions = []metav1.Condition{cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonBuildFailed, "PipelineRun htop-4-0a1b was deleted", 4)}
		}),
		want: health{"Degraded", "PipelineRun htop-4-0a1b was deleted"},
	}, {
		name: "phase Failed without any condition message is Degraded with a generic message",
		build: build(1, func(s *v1alpha1.MultiArchBuildStatus) {
			s.ObservedGeneration = 1
			s.Phase = v1alpha1.PhaseFailed
		}),
		want: health{"Degraded", "The build failed"},
	}}
	script := readScript(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(tt.build)
			if err != nil {
				t.Fatal(err)
			}
			if tt.noStatus {
				delete(obj, "status")
			}
			if got := runHealth(t, script, obj); got != tt.want {
				t.Errorf("health = %+v, want %+v", got, tt.want)
			}
		})
	}
}

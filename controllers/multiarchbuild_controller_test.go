package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/controllers/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
	"github.com/multiarch-build/multiarch-build-operator/internal/storage"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

var ctx = context.Background()

func getBuild(t *testing.T, ns, name string) *v1alpha1.MultiArchBuild {
	t.Helper()
	b := &v1alpha1.MultiArchBuild{}
	if err := adminClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func condOf(b *v1alpha1.MultiArchBuild, t string) metav1.Condition {
	if c := meta.FindStatusCondition(b.Status.Conditions, t); c != nil {
		return *c
	}
	return metav1.Condition{}
}

func runsOf(t *testing.T, c client.Client, ns string) []tektonv1.PipelineRun {
	t.Helper()
	var list tektonv1.PipelineRunList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// waitForRun waits until the run of the build's current generation and
// token exists and returns it.
func waitForRun(t *testing.T, ns, name string) *tektonv1.PipelineRun {
	t.Helper()
	run := &tektonv1.PipelineRun{}
	eventually(t, "the PipelineRun", func() (bool, string) {
		b := getBuild(t, ns, name)
		err := adminClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: pipeline.RunName(b)}, run)
		return err == nil, fmt.Sprintf("%v; status %+v", err, b.Status.Conditions)
	})
	return run
}

func createBuild(t *testing.T, b *v1alpha1.MultiArchBuild) *v1alpha1.MultiArchBuild {
	t.Helper()
	if err := adminClient.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// finishRun writes a PipelineRun's status the way Tekton does: the
// Succeeded condition, start and completion times, results and child refs.
func finishRun(t *testing.T, run *tektonv1.PipelineRun, status corev1.ConditionStatus, reason, message string, results map[string]string) {
	t.Helper()
	eventually(t, "the run status update", func() (bool, string) {
		cur := &tektonv1.PipelineRun{}
		if err := adminClient.Get(ctx, client.ObjectKeyFromObject(run), cur); err != nil {
			return false, err.Error()
		}
		now := metav1.Now()
		start := metav1.NewTime(now.Add(-90 * time.Second))
		cur.Status.StartTime = &start
		if status != corev1.ConditionUnknown {
			cur.Status.CompletionTime = &now
		}
		cur.Status.Conditions = duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: status, Reason: reason, Message: message,
			LastTransitionTime: apis.VolatileTime{Inner: now}}}
		cur.Status.Results = nil
		for k, v := range results {
			cur.Status.Results = append(cur.Status.Results, tektonv1.PipelineRunResult{Name: k, Value: *tektonv1.NewStructuredValues(v)})
		}
		err := adminClient.Status().Update(ctx, cur)
		return err == nil, fmt.Sprint(err)
	})
}

// addTaskRun creates the TaskRun Tekton would create for a pipeline task,
// with the labels Tekton copies from the PipelineRun and the task metadata.
func addTaskRun(t *testing.T, run *tektonv1.PipelineRun, task, arch string, status corev1.ConditionStatus, reason, message, podName string) {
	t.Helper()
	labels := map[string]string{}
	for k, v := range run.Labels {
		labels[k] = v
	}
	labels["tekton.dev/pipelineRun"] = run.Name
	labels["tekton.dev/pipelineTask"] = task
	if arch != "" {
		labels[pipeline.LabelArch] = arch
	}
	tr := &tektonv1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: run.Name + "-" + task, Namespace: run.Namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "tekton.dev/v1", Kind: "PipelineRun", Name: run.Name, UID: run.UID, Controller: ptr.To(true)}}},
		Spec: tektonv1.TaskRunSpec{TaskSpec: &tektonv1.TaskSpec{Steps: []tektonv1.Step{{Name: "s", Image: "busybox"}}}},
	}
	if err := adminClient.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	tr.Status.PodName = podName
	tr.Status.Conditions = duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: status, Reason: reason, Message: message}}
	if err := adminClient.Status().Update(ctx, tr); err != nil {
		t.Fatal(err)
	}
}

// addPod creates the build pod of a TaskRun, already bound to a node.
func addPod(t *testing.T, ns, name, node string) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "step-build", Image: "busybox"}}}}
	if err := adminClient.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
}

func TestCreateMakesWorkspaceAndPipelineRunOfTheGeneratedShape(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "htop"))
	run := waitForRun(t, ns, b.Name)
	b = getBuild(t, ns, b.Name)

	wantPipeline, want, err := pipeline.GenerateReferenced(pipeline.Input{Build: b, Settings: settings.Default(), WorkspaceClaim: "htop-workspace"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want.Spec, run.Spec); d != "" {
		t.Errorf("PipelineRun spec differs from pipeline.GenerateReferenced (-want +got):\n%s", d)
	}
	// The shared Pipeline it refers to: created, labelled, owned by no
	// build (it serves every build of its shape in the namespace).
	pl := &tektonv1.Pipeline{}
	if err := adminClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: wantPipeline.Name}, pl); err != nil {
		t.Fatalf("the shared Pipeline %s: %v", wantPipeline.Name, err)
	}
	if d := cmp.Diff(wantPipeline.Spec, pl.Spec); d != "" {
		t.Errorf("Pipeline spec differs from pipeline.GenerateReferenced (-want +got):\n%s", d)
	}
	if pl.Labels[pipeline.LabelManagedBy] != pipeline.ManagedBy || len(pl.OwnerReferences) != 0 {
		t.Errorf("Pipeline labels %v owners %v", pl.Labels, pl.OwnerReferences)
	}
	// A second build of the same shape refers to the same Pipeline, and
	// creates none.
	b2 := createBuild(t, newBuild(ns, "htop2"))
	run2 := waitForRun(t, ns, b2.Name)
	if run2.Spec.PipelineRef == nil || run2.Spec.PipelineRef.Name != pl.Name {
		t.Errorf("second build's run refers to %+v, want %s", run2.Spec.PipelineRef, pl.Name)
	}
	pls := &tektonv1.PipelineList{}
	if err := adminClient.List(ctx, pls, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(pls.Items) != 1 {
		t.Errorf("%d Pipelines in the namespace, want the one shared", len(pls.Items))
	}
	for k, v := range want.Labels {
		if run.Labels[k] != v {
			t.Errorf("PipelineRun label %s = %q, want %q", k, run.Labels[k], v)
		}
	}
	if run.Name != pipeline.RunName(b) {
		t.Errorf("PipelineRun name %s, want the deterministic %s", run.Name, pipeline.RunName(b))
	}
	assertControlledBy(t, run, b)

	claim := &corev1.PersistentVolumeClaim{}
	if err := adminClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "htop-workspace"}, claim); err != nil {
		t.Fatal(err)
	}
	assertControlledBy(t, claim, b)
	if got := claim.Spec.AccessModes; len(got) != 1 || got[0] != corev1.ReadWriteMany {
		t.Errorf("claim access modes %v, want [ReadWriteMany]", got)
	}
	if got := ptr.Deref(claim.Spec.StorageClassName, ""); got != "efs-csi" {
		t.Errorf("claim StorageClass %q, want efs-csi", got)
	}
	if got := claim.Spec.Resources.Requests.Storage().String(); got != "10Gi" {
		t.Errorf("claim size %s, want 10Gi", got)
	}

	sa := &corev1.ServiceAccount{}
	if err := adminClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "multiarch-builder"}, sa); err != nil {
		t.Errorf("builder ServiceAccount: %v", err)
	} else if sa.Labels[pipeline.LabelManagedBy] != pipeline.ManagedBy || len(sa.OwnerReferences) != 0 {
		t.Errorf("builder ServiceAccount must be labelled and owned by nobody: labels %v owners %v", sa.Labels, sa.OwnerReferences)
	}
	rb := &rbacv1.RoleBinding{}
	if err := adminClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "multiarch-builder"}, rb); err != nil {
		t.Errorf("builder RoleBinding: %v", err)
	} else if rb.RoleRef.Kind != "ClusterRole" || rb.RoleRef.Name != settings.Default().BuilderClusterRole ||
		len(rb.Subjects) != 1 || rb.Subjects[0].Kind != "ServiceAccount" || rb.Subjects[0].Name != "multiarch-builder" || rb.Subjects[0].Namespace != ns {
		t.Errorf("builder RoleBinding must bind ServiceAccount %s/multiarch-builder to ClusterRole %s: %+v %+v",
			ns, settings.Default().BuilderClusterRole, rb.RoleRef, rb.Subjects)
	}

	eventually(t, "status of the started build", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		st := b.Status
		ok := st.Phase == v1alpha1.PhaseBuilding && st.LatestRun != nil && st.LatestRun.Name == run.Name &&
			condOf(b, v1alpha1.ConditionStorageReady).Reason == v1alpha1.ReasonWaitingForFirstConsumer &&
			condOf(b, v1alpha1.ConditionPipelinesAvailable).Status == metav1.ConditionTrue &&
			condOf(b, v1alpha1.ConditionSucceeded).Status == metav1.ConditionUnknown &&
			condOf(b, v1alpha1.ConditionReady).Status == metav1.ConditionFalse && st.ObservedGeneration == b.Generation
		return ok, fmt.Sprintf("%+v", st)
	})
}

func assertControlledBy(t *testing.T, obj metav1.Object, owner *v1alpha1.MultiArchBuild) {
	t.Helper()
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.UID != owner.UID || ref.Kind != "MultiArchBuild" || !ptr.Deref(ref.BlockOwnerDeletion, false) {
		t.Errorf("%s: controller owner %+v, want the MultiArchBuild %s (uid %s) with blockOwnerDeletion", obj.GetName(), ref, owner.Name, owner.UID)
	}
}

func TestEveryNamespacedChildIsOwnedByTheBuild(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "owned"))
	waitForRun(t, ns, b.Name)
	b = getBuild(t, ns, b.Name)

	var claims corev1.PersistentVolumeClaimList
	if err := adminClient.List(ctx, &claims, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	runs := runsOf(t, adminClient, ns)
	if len(claims.Items) != 1 || len(runs) != 1 {
		t.Fatalf("got %d claims and %d runs, want 1 and 1", len(claims.Items), len(runs))
	}
	assertControlledBy(t, &claims.Items[0], b)
	assertControlledBy(t, &runs[0], b)
}

func TestSucceededRunReportsDigestImageRevisionAndPlatforms(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "htop"))
	run := waitForRun(t, ns, b.Name)

	addPod(t, ns, "pod-amd64", "node-x86")
	addPod(t, ns, "pod-arm64", "node-arm")
	addTaskRun(t, run, "build-amd64", "amd64", corev1.ConditionTrue, "Succeeded", "All Steps have completed executing", "pod-amd64")
	addTaskRun(t, run, "build-arm64", "arm64", corev1.ConditionTrue, "Succeeded", "All Steps have completed executing", "pod-arm64")
	// arm64 built nothing: its image was reused from the layer cache.
	const record = "quay.io/nmasse_itix/htop-multiarch:image-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	eventually(t, "build-arm64's REUSED result", func() (bool, string) {
		tr := &tektonv1.TaskRun{}
		if err := adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: run.Name + "-build-arm64"}, tr); err != nil {
			return false, err.Error()
		}
		tr.Status.Results = append(tr.Status.Results, tektonv1.TaskRunResult{Name: pipeline.ResultReused, Type: tektonv1.ResultsTypeString, Value: *tektonv1.NewStructuredValues(record)})
		err := adminClient.Status().Update(ctx, tr)
		return err == nil, fmt.Sprint(err)
	})
	const (
		index = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
		amd   = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
		arm   = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	)
	finishRun(t, run, corev1.ConditionTrue, "Succeeded", "Tasks Completed: 4 (Failed: 0, Cancelled 0), Skipped: 0", map[string]string{
		pipeline.ResultImageDigest:         index + "\n",
		pipeline.ResultImageURL:            "quay.io/nmasse_itix/htop-multiarch:v1",
		pipeline.ResultCommit:              "3b11df8",
		pipeline.ArchDigestResult("amd64"): amd,
		pipeline.ArchDigestResult("arm64"): arm,
	})

	eventually(t, "a Ready build", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return condOf(b, v1alpha1.ConditionReady).Status == metav1.ConditionTrue, fmt.Sprintf("%+v", b.Status)
	})
	st := b.Status
	if st.Phase != v1alpha1.PhaseSucceeded || st.Digest != index || st.Revision != "3b11df8" ||
		st.Image != "quay.io/nmasse_itix/htop-multiarch@"+index {
		t.Errorf("status %+v", st)
	}
	wantPlatforms := []v1alpha1.PlatformStatus{
		{Platform: v1alpha1.PlatformLinuxAMD64, State: v1alpha1.PlatformBuilt, Digest: amd, NodeName: "node-x86"},
		{Platform: v1alpha1.PlatformLinuxARM64, State: v1alpha1.PlatformBuilt, Digest: arm, NodeName: "node-arm",
			Message: "not built again: the image of the same commit, build arguments and base images, recorded as " + record +
				" in the layer cache (spec.output.layerCache), was reused"},
	}
	if d := cmp.Diff(wantPlatforms, st.Platforms, cmpopts.IgnoreFields(v1alpha1.PlatformStatus{}, "Timings")); d != "" {
		t.Errorf("platforms (-want +got):\n%s", d)
	}
	if st.LatestRun == nil || st.LatestRun.CompletionTime == nil || st.LatestRun.Generation != b.Generation {
		t.Errorf("latestRun %+v", st.LatestRun)
	}
	if c := condOf(b, v1alpha1.ConditionSucceeded); c.Reason != v1alpha1.ReasonRunSucceeded {
		t.Errorf("Succeeded %+v", c)
	}
	eventually(t, "a BuildSucceeded event", func() (bool, string) { return hasEvent(t, ns, "BuildSucceeded"), "none" })
	eventually(t, "the build metrics", func() (bool, string) {
		families, err := metrics.Registry.Gather()
		if err != nil {
			return false, err.Error()
		}
		found := map[string]bool{}
		for _, f := range families {
			found[f.GetName()] = true
		}
		for _, name := range []string{"multiarchbuild_runs_started_total", "multiarchbuild_runs_finished_total", "multiarchbuild_run_duration_seconds"} {
			if !found[name] {
				return false, name + " not served"
			}
		}
		return true, ""
	})
}

func TestFailedRunNamesTheFailingTask(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "broken"))
	run := waitForRun(t, ns, b.Name)
	addTaskRun(t, run, "build-amd64", "amd64", corev1.ConditionTrue, "Succeeded", "", "")
	addTaskRun(t, run, "build-arm64", "arm64", corev1.ConditionFalse, "Failed", `"step-build" exited with code 1`, "")
	finishRun(t, run, corev1.ConditionFalse, "Failed", "Tasks Completed: 3 (Failed: 1, Cancelled 0), Skipped: 1", nil)

	eventually(t, "a Failed build", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return b.Status.Phase == v1alpha1.PhaseFailed, fmt.Sprintf("%+v", b.Status)
	})
	c := condOf(b, v1alpha1.ConditionSucceeded)
	if c.Reason != v1alpha1.ReasonRunFailed || !strings.Contains(c.Message, "build-arm64") || !strings.Contains(c.Message, "exited with code 1") {
		t.Errorf("Succeeded %+v, want reason Failed naming build-arm64 and its message", c)
	}
	if r := condOf(b, v1alpha1.ConditionReady); r.Status != metav1.ConditionFalse || r.Reason != v1alpha1.ReasonBuildFailed {
		t.Errorf("Ready %+v", r)
	}
	if p := b.Status.Platforms; len(p) != 2 || p[0].State != v1alpha1.PlatformBuilt || p[1].State != v1alpha1.PlatformFailed {
		t.Errorf("platforms %+v, want amd64 Built and arm64 Failed", p)
	}
}

func TestTimedOutRunReportsPipelineRunTimeout(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "slow"))
	run := waitForRun(t, ns, b.Name)
	finishRun(t, run, corev1.ConditionFalse, "PipelineRunTimeout", `PipelineRun "slow" failed to finish within "1h0m0s"`, nil)
	eventually(t, "a timed-out build", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		c := condOf(b, v1alpha1.ConditionSucceeded)
		return b.Status.Phase == v1alpha1.PhaseFailed && c.Reason == v1alpha1.ReasonRunTimeout, fmt.Sprintf("%+v", b.Status)
	})
}

func TestSpecChangeMidRunCancelsTheOldRunAndStartsANewOne(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "moving"))
	first := waitForRun(t, ns, b.Name)
	finishRun(t, first, corev1.ConditionUnknown, "Running", "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0", nil)

	b = getBuild(t, ns, b.Name)
	patch(t, b, func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.Revision = "v2" })
	second := waitForRun(t, ns, b.Name)
	if second.Name == first.Name {
		t.Fatalf("no new run for generation %d", b.Generation)
	}
	eventually(t, "the old run cancelled", func() (bool, string) {
		old := &tektonv1.PipelineRun{}
		if err := adminClient.Get(ctx, client.ObjectKeyFromObject(first), old); err != nil {
			return false, err.Error()
		}
		return old.Spec.Status == tektonv1.PipelineRunSpecStatusCancelledRunFinally, fmt.Sprintf("spec.status %q", old.Spec.Status)
	})
	old := &tektonv1.PipelineRun{}
	_ = adminClient.Get(ctx, client.ObjectKeyFromObject(first), old)
	first.Spec.Status = tektonv1.PipelineRunSpecStatusCancelledRunFinally
	if d := cmp.Diff(first.Spec, old.Spec); d != "" {
		t.Errorf("cancelling changed more than spec.status (-want +got):\n%s", d)
	}
	eventually(t, "latestRun on the new run", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return b.Status.LatestRun != nil && b.Status.LatestRun.Name == second.Name && b.Status.ObservedGeneration == b.Generation, fmt.Sprintf("%+v", b.Status.LatestRun)
	})
}

func TestRebuildAnnotationStartsANewRunOfTheSameGeneration(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "again"))
	first := waitForRun(t, ns, b.Name)
	finishRun(t, first, corev1.ConditionTrue, "Succeeded", "done", map[string]string{pipeline.ResultImageDigest: "sha256:" + strings.Repeat("a", 64)})
	eventually(t, "Ready", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return b.Status.Phase == v1alpha1.PhaseSucceeded, string(b.Status.Phase)
	})
	gen := b.Generation
	patch(t, b, func(b *v1alpha1.MultiArchBuild) {
		b.Annotations = map[string]string{v1alpha1.RebuildAnnotation: "1700000000"}
	})
	second := waitForRun(t, ns, b.Name)
	if second.Name == first.Name || getBuild(t, ns, b.Name).Generation != gen {
		t.Fatalf("rebuild: run %s (first %s), generation %d (was %d)", second.Name, first.Name, getBuild(t, ns, b.Name).Generation, gen)
	}
	eventually(t, "Building again", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return b.Status.Phase == v1alpha1.PhaseBuilding && b.Status.LatestRun.Name == second.Name, fmt.Sprintf("%+v", b.Status)
	})
	if n := len(runsOf(t, adminClient, ns)); n != 2 {
		t.Errorf("%d runs, want 2 (the finished one is kept by runHistoryLimit)", n)
	}
}

func TestRestartedManagerFindsTheRunAndWritesNothing(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	first := startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "restart"))
	waitForRun(t, ns, b.Name)
	eventually(t, "status recorded", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return b.Status.LatestRun != nil, ""
	})
	first.stop()

	second := startOperator(t, env, ns, readyCapacity())
	// The new manager reconciles every build at start; let it.
	time.Sleep(3 * time.Second)
	if n := len(runsOf(t, adminClient, ns)); n != 1 {
		t.Errorf("%d PipelineRuns after a restart, want 1", n)
	}
	if n, calls := second.writes.count(); n != 0 {
		t.Errorf("the restarted manager made %d writes, want 0: %v", n, calls)
	}
}

func TestNoOpReconcileMakesZeroWrites(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	op := startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "idle"))
	run := waitForRun(t, ns, b.Name)
	addPod(t, ns, "pod-amd64", "node-x86")
	addTaskRun(t, run, "build-amd64", "amd64", corev1.ConditionUnknown, "Running", "", "pod-amd64")
	eventually(t, "platform amd64 Building on its node", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return len(b.Status.Platforms) == 2 && b.Status.Platforms[0].State == v1alpha1.PlatformBuilding &&
			b.Status.Platforms[0].NodeName == "node-x86", fmt.Sprintf("%+v", b.Status.Platforms)
	})
	time.Sleep(time.Second) // let the cache catch up with the status patch
	before, _ := op.writes.count()
	for i := 0; i < 5; i++ {
		if _, err := op.r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(b)}); err != nil {
			t.Fatal(err)
		}
	}
	if after, calls := op.writes.count(); after != before {
		t.Errorf("5 reconciles with nothing to do made %d writes: %v", after-before, calls[before:])
	}
}

func TestExternallyDeletedRunIsReportedAndNotRecreated(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "victim"))
	run := waitForRun(t, ns, b.Name)
	eventually(t, "latestRun recorded", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return b.Status.LatestRun != nil && b.Status.LatestRun.Name == run.Name, ""
	})
	if err := adminClient.Delete(ctx, run); err != nil {
		t.Fatal(err)
	}
	eventually(t, "PipelineRunDeleted", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		c := condOf(b, v1alpha1.ConditionSucceeded)
		return c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonRunDeleted && b.Status.Phase == v1alpha1.PhaseFailed, fmt.Sprintf("%+v", c)
	})
	consistently(t, "no recreated run", 3*time.Second, func() (bool, string) {
		n := len(runsOf(t, adminClient, ns))
		return n == 0, fmt.Sprintf("%d runs", n)
	})
	eventually(t, "a Warning event", func() (bool, string) {
		return hasEvent(t, ns, v1alpha1.ReasonRunDeleted), "no event"
	})
}

// patch changes a build the way kubectl annotate/patch does: a merge patch
// of the change only (an Update of the whole object would also rewrite
// spec.timeout "1h" as "1h0m0s" and bump the generation).
func patch(t *testing.T, b *v1alpha1.MultiArchBuild, change func(*v1alpha1.MultiArchBuild)) {
	t.Helper()
	base := b.DeepCopy()
	change(b)
	if err := adminClient.Patch(ctx, b, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
}

func hasEvent(t *testing.T, ns, reason string) bool {
	var list corev1.EventList
	if err := adminClient.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.Reason == reason {
			return true
		}
	}
	return false
}

func TestMissingStorageClassIsReportedUntilItExists(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	class := "missing-" + ns
	b := newBuild(ns, "nostore")
	b.Spec.Workspace.StorageClassName = class
	createBuild(t, b)
	eventually(t, "StorageClassNotFound", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		c := condOf(b, v1alpha1.ConditionStorageReady)
		return c.Reason == v1alpha1.ReasonStorageClassNotFound && strings.Contains(c.Message, class) && b.Status.Phase == v1alpha1.PhasePending, fmt.Sprintf("%+v", c)
	})
	if n := len(runsOf(t, adminClient, ns)); n != 0 {
		t.Fatalf("%d runs without storage", n)
	}
	if err := createClass(ctx, adminClient, class, storagev1.VolumeBindingWaitForFirstConsumer); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = adminClient.Delete(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: class}})
	})
	waitForRun(t, ns, b.Name)
}

func TestImmediateClassWaitsUntilTheClaimIsBound(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	class := "immediate-" + ns
	if err := createClass(ctx, adminClient, class, storagev1.VolumeBindingImmediate); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = adminClient.Delete(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: class}})
	})
	b := newBuild(ns, "bindme")
	b.Spec.Workspace.StorageClassName = class
	createBuild(t, b)
	eventually(t, "VolumePending", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return condOf(b, v1alpha1.ConditionStorageReady).Reason == v1alpha1.ReasonVolumePending, fmt.Sprintf("%+v", b.Status.Conditions)
	})
	consistently(t, "no run while Pending", time.Second, func() (bool, string) {
		return len(runsOf(t, adminClient, ns)) == 0, "a run started on an unbound claim"
	})
	claim := &corev1.PersistentVolumeClaim{}
	if err := adminClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: storage.ClaimName(b)}, claim); err != nil {
		t.Fatal(err)
	}
	claim.Status.Phase = corev1.ClaimBound
	if err := adminClient.Status().Update(ctx, claim); err != nil {
		t.Fatal(err)
	}
	waitForRun(t, ns, b.Name)
	eventually(t, "VolumeBound", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return condOf(b, v1alpha1.ConditionStorageReady).Reason == v1alpha1.ReasonVolumeBound, ""
	})
}

func TestCapacityNotReadyHoldsTheRunAndReportsProvisioning(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	capc := &fakeCapacity{res: capacity.Result{Reason: v1alpha1.ReasonProvisioningNodes, Message: "scaling MachineSet arm64",
		Waiting: map[v1alpha1.Platform]string{v1alpha1.PlatformLinuxARM64: "MachineSet build-arm64 is scaling up"}}}
	// Gate, then run: the run waits for every node.
	startOperator(t, env, ns, capc, withSettings(func(s *settings.Settings) { s.StartRunsWhileProvisioning = false }))
	b := createBuild(t, newBuild(ns, "waits"))
	eventually(t, "Provisioning", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		return b.Status.Phase == v1alpha1.PhaseProvisioning && len(b.Status.Platforms) == 2 &&
			b.Status.Platforms[1].Message == "MachineSet build-arm64 is scaling up", fmt.Sprintf("%+v", b.Status)
	})
	if n := len(runsOf(t, adminClient, ns)); n != 0 {
		t.Fatalf("%d runs without capacity", n)
	}
	capc.mu.Lock()
	capc.res = capacity.Result{Ready: true}
	capc.mu.Unlock()
	waitForRun(t, ns, b.Name) // the capacity wait requeues with backoff (5s at first)
}

// --start-runs-while-provisioning (the default): while the arm64 node is
// being provisioned the run starts, so that clone and preflight run during
// the node's boot; status stays honest: Building, CapacityReady
// False/ProvisioningNodes, arm64 saying why it waits, until the node is
// there.
func TestProvisioningNodesStartsTheRunWhileTheNodeBoots(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	capc := &fakeCapacity{res: capacity.Result{Reason: v1alpha1.ReasonProvisioningNodes, Message: "scaling MachineSet arm64",
		Waiting: map[v1alpha1.Platform]string{v1alpha1.PlatformLinuxARM64: "MachineSet build-arm64 is scaling up"}}}
	events := make(chan event.GenericEvent, 4)
	startOperator(t, env, ns, capc, capacityEvents(events))
	b := createBuild(t, newBuild(ns, "overlaps"))
	run := waitForRun(t, ns, b.Name)
	eventually(t, "Building with CapacityReady False/ProvisioningNodes", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		c := condOf(b, v1alpha1.ConditionCapacityReady)
		return b.Status.Phase == v1alpha1.PhaseBuilding && c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonProvisioningNodes &&
			len(b.Status.Platforms) == 2 && b.Status.Platforms[1].Message == "MachineSet build-arm64 is scaling up", fmt.Sprintf("%s %+v %+v", b.Status.Phase, c, b.Status.Platforms)
	})
	// The node joined: CapacityReady turns True, the same run goes on.
	capc.set(capacity.Result{Ready: true, Reason: v1alpha1.ReasonNodesAvailable})
	poke(t, events, ns, b.Name)
	eventually(t, "CapacityReady True", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		c := condOf(b, v1alpha1.ConditionCapacityReady)
		return c.Status == metav1.ConditionTrue && b.Status.Phase == v1alpha1.PhaseBuilding, fmt.Sprintf("%s %+v", b.Status.Phase, c)
	})
	if runs := runsOf(t, adminClient, ns); len(runs) != 1 || runs[0].Name != run.Name {
		t.Fatalf("runs %v, want only %s", runs, run.Name)
	}
}

// A Terminal capacity problem (no MachineSet can serve arm64 and no node
// has it) still starts no run, whatever the setting.
func TestTerminalCapacityStartsNoRun(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	capc := &fakeCapacity{res: capacity.Result{Reason: v1alpha1.ReasonNoNodes, Terminal: true, Message: "no arm64 node and no MachineSet to make one",
		Waiting: map[v1alpha1.Platform]string{v1alpha1.PlatformLinuxARM64: "no node, no MachineSet"}}}
	startOperator(t, env, ns, capc)
	b := createBuild(t, newBuild(ns, "terminal"))
	eventually(t, "Provisioning, CapacityReady False", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		c := condOf(b, v1alpha1.ConditionCapacityReady)
		return b.Status.Phase == v1alpha1.PhaseProvisioning && c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonNoNodes, fmt.Sprintf("%s %+v", b.Status.Phase, c)
	})
	time.Sleep(time.Second)
	if n := len(runsOf(t, adminClient, ns)); n != 0 {
		t.Fatalf("%d runs for a build no node can take", n)
	}
}

func TestAffinityAssistantPinningIsReportedWithTheFix(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	tektonNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tekton-pipelines"}}
	if err := adminClient.Create(ctx, tektonNS); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	flags := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "feature-flags", Namespace: "tekton-pipelines"},
		Data: map[string]string{"coschedule": "pipelineruns"}}
	if err := adminClient.Create(ctx, flags); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = adminClient.Delete(ctx, flags) })
	startOperator(t, env, ns, readyCapacity())
	b := createBuild(t, newBuild(ns, "pinned"))
	eventually(t, "AffinityAssistantPinsRun", func() (bool, string) {
		b = getBuild(t, ns, b.Name)
		c := condOf(b, v1alpha1.ConditionPipelinesAvailable)
		return c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonAffinityAssistantPins &&
			strings.Contains(c.Message, `kubectl patch configmap feature-flags -n tekton-pipelines --type merge -p '{"data":{"coschedule":"workspaces"}}'`), fmt.Sprintf("%+v", c)
	})
	if n := len(runsOf(t, adminClient, ns)); n != 0 {
		t.Fatalf("%d runs although the flags pin them to one node", n)
	}
}

func TestRunsPastHistoryLimitArePrunedOldestFirst(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	startOperator(t, env, ns, readyCapacity())
	b := newBuild(ns, "pruned")
	b.Spec.RunHistoryLimit = ptr.To[int32](1)
	createBuild(t, b)
	var names []string
	for i := 0; i < 3; i++ {
		run := waitForRun(t, ns, b.Name)
		names = append(names, run.Name)
		finishRun(t, run, corev1.ConditionTrue, "Succeeded", "done", nil)
		eventually(t, "Succeeded", func() (bool, string) {
			b = getBuild(t, ns, b.Name)
			return b.Status.Phase == v1alpha1.PhaseSucceeded && b.Status.LatestRun.Name == run.Name, string(b.Status.Phase)
		})
		patch(t, b, func(b *v1alpha1.MultiArchBuild) {
			b.Annotations = map[string]string{v1alpha1.RebuildAnnotation: fmt.Sprint(i)}
		})
	}
	current := waitForRun(t, ns, b.Name)
	eventually(t, "pruned to the limit", func() (bool, string) {
		var got []string
		for _, r := range runsOf(t, adminClient, ns) {
			if r.DeletionTimestamp == nil {
				got = append(got, r.Name)
			}
		}
		// limit 1: the newest finished run plus the running one.
		want := map[string]bool{names[2]: true, current.Name: true}
		ok := len(got) == 2 && want[got[0]] && want[got[1]]
		return ok, fmt.Sprintf("runs %v, want %s and %s", got, names[2], current.Name)
	})
}

func TestTektonInstalledLaterStartsBuildsWithoutRestart(t *testing.T) {
	env := testenv.Start(t, testenv.Ours)
	c, err := client.New(env.Config, client.Options{Scheme: testScheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := createClass(ctx, c, defaultClass, storagev1.VolumeBindingWaitForFirstConsumer); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, c)
	op := startOperator(t, env, ns, readyCapacity())
	b := newBuild(ns, "early")
	if err := c.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	eventually(t, "TektonNotInstalled", func() (bool, string) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			return false, err.Error()
		}
		cond := condOf(b, v1alpha1.ConditionPipelinesAvailable)
		return cond.Reason == v1alpha1.ReasonTektonNotInstalled && b.Status.Phase == v1alpha1.PhasePending, fmt.Sprintf("%+v", b.Status)
	})
	// Waiting is quiet: no status rewrites while Tekton stays absent.
	time.Sleep(time.Second)
	waiting, _ := op.writes.count()
	time.Sleep(2 * time.Second)
	if n, calls := op.writes.count(); n != waiting {
		t.Errorf("%d writes while waiting for Tekton: %v", n-waiting, calls[waiting:])
	}
	if err := env.InstallCRDs(testenv.Tekton); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the run after Tekton appeared", func() (bool, string) {
		run := &tektonv1.PipelineRun{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			return false, err.Error()
		}
		err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: pipeline.RunName(b)}, run)
		return err == nil && condOf(b, v1alpha1.ConditionPipelinesAvailable).Status == metav1.ConditionTrue, fmt.Sprintf("%v %+v", err, b.Status.Conditions)
	})
	// And the new watches work: a finished run is reported.
	run := &tektonv1.PipelineRun{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: pipeline.RunName(b)}, run); err != nil {
		t.Fatal(err)
	}
	run.Status.Conditions = duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue, Reason: "Succeeded"}}
	if err := c.Status().Update(ctx, run); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Succeeded through the late watch", func() (bool, string) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			return false, err.Error()
		}
		return b.Status.Phase == v1alpha1.PhaseSucceeded, string(b.Status.Phase)
	})
}

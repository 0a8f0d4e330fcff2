package controllers

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/controllers/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/storage"
)

// Each function here decides one condition from observed values. They are
// pure and table-tested; the reconciler only gathers their inputs.

// flagPolicy is one check of Tekton's feature flags, in the style of
// cert-manager's policy chains: failed is true when the flag breaks the
// generated pipeline, and reason/message say why and how to fix it.
type flagPolicy func(ff featureFlags) (reason, message string, failed bool)

var flagPolicies = []flagPolicy{coschedulePolicy, inlineSpecPolicy}

func coschedulePolicy(ff featureFlags) (string, string, bool) {
	v := strings.TrimSpace(ff.Data["coschedule"])
	switch v {
	case "", "workspaces", "disabled":
		return "", "", false
	}
	return v1alpha1.ReasonAffinityAssistantPins, fmt.Sprintf(
		"Tekton feature flag coschedule=%q in ConfigMap %s/%s pins every task of a PipelineRun to one node, so a run can never use nodes of two architectures. Fix: %s",
		v, ff.Namespace, featureFlagsName, flagFix(ff.Namespace, "coschedule", "workspaces")), true
}

func inlineSpecPolicy(ff featureFlags) (string, string, bool) {
	var blocked []string
	for _, kind := range strings.Split(ff.Data["disable-inline-spec"], ",") {
		switch k := strings.TrimSpace(kind); k {
		case "pipeline", "pipelinerun", "taskrun":
			blocked = append(blocked, k)
		}
	}
	if len(blocked) == 0 {
		return "", "", false
	}
	return v1alpha1.ReasonInlineSpecDisabled, fmt.Sprintf(
		"Tekton feature flag disable-inline-spec=%q in ConfigMap %s/%s forbids inline specs (%s); the generated PipelineRun carries its pipeline and tasks inline. Fix: %s",
		ff.Data["disable-inline-spec"], ff.Namespace, featureFlagsName, strings.Join(blocked, ", "), flagFix(ff.Namespace, "disable-inline-spec", "")), true
}

// flagFix is the exact command that fixes a flag. OpenShift Pipelines'
// operator owns its ConfigMap and reverts direct edits, so there the fix goes
// through the TektonConfig.
func flagFix(namespace, flag, value string) string {
	if namespace == "openshift-pipelines" {
		return fmt.Sprintf(`oc patch tektonconfig config --type merge -p '{"spec":{"pipeline":{"%s":"%s"}}}'`, flag, value)
	}
	return fmt.Sprintf(`kubectl patch configmap %s -n %s --type merge -p '{"data":{"%s":"%s"}}'`, featureFlagsName, namespace, flag, value)
}

// pipelinesCondition is PipelinesAvailable.
func pipelinesCondition(served bool, ff featureFlags) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionPipelinesAvailable}
	if !served {
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonTektonNotInstalled
		c.Message = "Tekton Pipelines is not installed: the CRDs pipelineruns.tekton.dev and taskruns.tekton.dev (v1) are not served. Install OpenShift Pipelines or Tekton Pipelines; builds start without restarting the operator."
		return c
	}
	if ff.Err != nil {
		c.Status, c.Reason = metav1.ConditionUnknown, v1alpha1.ReasonFeatureFlagsUnreadable
		c.Message = fmt.Sprintf("Tekton is installed but its feature flags could not be read (%v); assuming the defaults, which work", ff.Err)
		return c
	}
	for _, p := range flagPolicies {
		if reason, msg, failed := p(ff); failed {
			c.Status, c.Reason, c.Message = metav1.ConditionFalse, reason, msg
			return c
		}
	}
	c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonTektonAvailable
	c.Message = "Tekton Pipelines is installed and its feature flags allow per-architecture scheduling"
	return c
}

// storageCondition is StorageReady.
func storageCondition(v storage.Verdict) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionStorageReady, Status: metav1.ConditionFalse, Reason: v.Reason, Message: v.Message}
	if v.Ready {
		c.Status = metav1.ConditionTrue
	}
	return c
}

// capacityCondition is CapacityReady. A nil result means no checker is
// configured: the operator does not gate runs on capacity.
func capacityCondition(res *capacity.Result) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionCapacityReady}
	switch {
	case res == nil:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1alpha1.ReasonNodesAvailable, "capacity is not checked by this operator instance"
	case res.Ready:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, orDefault(res.Reason, v1alpha1.ReasonNodesAvailable), orDefault(res.Message, "every platform has a schedulable node")
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, orDefault(res.Reason, v1alpha1.ReasonNoNodes), orDefault(res.Message, "waiting for nodes")
	}
	return c
}

// runOutcome is what the reconciler knows about the run of the current
// generation and rebuild token.
type runOutcome struct {
	// Run is the PipelineRun, nil when it does not exist.
	Run *tektonv1.PipelineRun
	// Deleted: status.latestRun names the run but it is gone.
	Deleted bool
	// Blocked lists the prerequisites that keep a missing run from starting.
	Blocked []string
	// CreateErr is why the run could not be created (spec or API error).
	CreateErr    error
	CreateReason string
	// Pushed is the TaskRun that pushed the index, once it and every build
	// TaskRun succeeded: the index is in the registry, whatever the finally
	// task (cleanup) still does.
	Pushed *tektonv1.TaskRun
	// FailedTask names the first failed pipeline task and its message.
	FailedTask string
	// FailedTaskName is that pipeline task's name.
	FailedTaskName string
	// FailedOnItsOwn: FailedTask failed, it was not cancelled. A run the
	// operator cancelled for it (failFast) is reported Failed, not
	// Cancelled.
	FailedOnItsOwn bool
}

// succeededCondition is Succeeded: the latest run, in Tekton's words.
func succeededCondition(o runOutcome) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionSucceeded}
	switch {
	case o.CreateErr != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, o.CreateReason, o.CreateErr.Error()
	case o.Deleted:
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonRunDeleted
		c.Message = "the PipelineRun of this generation was deleted by someone else; it is not recreated. Start a new run with: kubectl annotate --overwrite multiarchbuild/NAME build.multiarch.io/rebuild=$(date +%s)"
	case o.Run == nil:
		c.Status, c.Reason = metav1.ConditionUnknown, v1alpha1.ReasonRunPending
		c.Message = "the PipelineRun starts when " + strings.Join(o.Blocked, ", ") + " are True"
		if len(o.Blocked) == 0 {
			c.Message = "the PipelineRun is being created"
		}
	default:
		tc := o.Run.Status.GetCondition(apis.ConditionSucceeded)
		switch {
		case o.Pushed != nil && (tc == nil || tc.Status != corev1.ConditionTrue):
			// The build is done when its index is pushed: the user waits
			// neither for the cleanup of the volume nor for its pod.
			c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonRunSucceeded
			switch {
			case tc != nil && tc.Status == corev1.ConditionFalse:
				c.Message = fmt.Sprintf("PipelineRun %s pushed the index; then %s: the run's directory stays on the volume until the next run's cleanup removes it", o.Run.Name, orDefault(o.FailedTask, tc.Message))
			default:
				c.Message = fmt.Sprintf("PipelineRun %s pushed the index (its cleanup of the volume goes on)", o.Run.Name)
			}
		case tc == nil:
			c.Status, c.Reason, c.Message = metav1.ConditionUnknown, v1alpha1.ReasonRunPending, fmt.Sprintf("PipelineRun %s was created and waits for Tekton", o.Run.Name)
		case tc.Status == corev1.ConditionTrue:
			c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1alpha1.ReasonRunSucceeded, fmt.Sprintf("PipelineRun %s succeeded", o.Run.Name)
		case tc.Status == corev1.ConditionFalse:
			c.Status, c.Reason = metav1.ConditionFalse, failureReason(tc.Reason)
			if c.Reason == v1alpha1.ReasonRunCancelled && o.FailedOnItsOwn && o.FailedTaskName != pipeline.TaskCleanup {
				// Cancelled because a task failed (failFast): the failure
				// is the news.
				c.Reason = v1alpha1.ReasonRunFailed
			}
			if o.FailedTaskName == pipeline.TaskCheckReused && c.Reason == v1alpha1.ReasonRunFailed {
				c.Reason = v1alpha1.ReasonReusedImageMissing
			}
			c.Message = fmt.Sprintf("PipelineRun %s: %s", o.Run.Name, tc.Message)
			if o.FailedTask != "" {
				c.Message = fmt.Sprintf("PipelineRun %s: %s (%s)", o.Run.Name, o.FailedTask, tc.Message)
			}
		default:
			c.Status, c.Reason, c.Message = metav1.ConditionUnknown, v1alpha1.ReasonRunRunning, fmt.Sprintf("PipelineRun %s is running", o.Run.Name)
			if tc.Reason == string(tektonv1.PipelineRunReasonPending) {
				c.Reason = v1alpha1.ReasonRunPending
			}
		}
	}
	return c
}

// failureReason maps Tekton's reason for a failed PipelineRun to ours.
func failureReason(tekton string) string {
	switch tektonv1.PipelineRunReason(tekton) {
	case tektonv1.PipelineRunReasonTimedOut:
		return v1alpha1.ReasonRunTimeout
	case tektonv1.PipelineRunReasonCancelled, tektonv1.PipelineRunReasonCancelledRunningFinally, tektonv1.PipelineRunReasonStoppedRunningFinally:
		return v1alpha1.ReasonRunCancelled
	}
	return v1alpha1.ReasonRunFailed
}

// failedTask names the first failed TaskRun of a run, by pipeline task name.
func failedTask(taskRuns []tektonv1.TaskRun) string {
	s, _, _ := failedTaskOf(taskRuns)
	return s
}

// failedTaskOf is failedTask, the failed pipeline task's name, and whether
// it failed on its own (not cancelled by Tekton or the operator).
func failedTaskOf(taskRuns []tektonv1.TaskRun) (string, string, bool) {
	// A TaskRun Tekton cancelled because another failed is not the cause:
	// the platforms run side by side, and when one fails the others are
	// cancelled.
	var failed, cancelled []string
	msgs := map[string]string{}
	for _, tr := range taskRuns {
		c := tr.Status.GetCondition(apis.ConditionSucceeded)
		if c == nil || c.Status != corev1.ConditionFalse {
			continue
		}
		name := orDefault(tr.Labels["tekton.dev/pipelineTask"], tr.Name)
		if c.Reason == tektonv1.TaskRunReasonCancelled.String() {
			cancelled = append(cancelled, name)
		} else {
			failed = append(failed, name)
		}
		msgs[name] = failureMessage(tr, c)
	}
	cause := len(failed) > 0
	if !cause {
		failed = cancelled
	}
	if len(failed) == 0 {
		return "", "", false
	}
	sort.Strings(failed)
	if m := msgs[failed[0]]; m != "" {
		return fmt.Sprintf("task %s failed: %s", failed[0], m), failed[0], cause
	}
	return fmt.Sprintf("task %s failed", failed[0]), failed[0], cause
}

// platformStatuses reports each requested platform from the run's TaskRuns
// (by the arch label) and results. prev keeps node names already found for
// the same run.
func platformStatuses(build *v1alpha1.MultiArchBuild, run *tektonv1.PipelineRun, taskRuns []tektonv1.TaskRun, waiting map[v1alpha1.Platform]string, nodes map[string]string) []v1alpha1.PlatformStatus {
	byArch := map[string][]tektonv1.TaskRun{}
	for _, tr := range taskRuns {
		if a := tr.Labels[pipeline.LabelArch]; a != "" {
			byArch[a] = append(byArch[a], tr)
		}
	}
	var results map[string]string
	var reused map[v1alpha1.Platform]pipeline.Reuse
	if run != nil {
		results = runResults(run)
		reused = reusedPlatforms(run)
	}
	out := make([]v1alpha1.PlatformStatus, 0, len(build.Spec.Platforms))
	for _, p := range build.Spec.Platforms {
		arch := p.Arch()
		ps := v1alpha1.PlatformStatus{Platform: p, State: v1alpha1.PlatformWaiting, NodeName: nodes[arch]}
		if run == nil {
			ps.Message = waiting[p]
			out = append(out, ps)
			continue
		}
		if u, ok := reused[p]; ok {
			// Listed again by this retry, not rebuilt.
			ps.State, ps.Digest, ps.ReusedFrom, ps.NodeName = v1alpha1.PlatformBuilt, u.Digest, u.Run, ""
			out = append(out, ps)
			continue
		}
		ps.State, ps.Message = archState(byArch[arch])
		ps.Timings = platformTimings(arch, byArch[arch])
		ps.Digest = results[pipeline.ArchDigestResult(arch)]
		if ps.Digest == "" {
			// A failed run may lack pipeline results: the build task's own.
			ps.Digest = builtDigest(arch, byArch[arch])
		}
		if ps.Digest != "" {
			ps.State = v1alpha1.PlatformBuilt
			if rec := reusedRecord(arch, byArch[arch]); rec != "" {
				ps.Message = "not built again: the image of the same commit, build arguments and base images, recorded as " + rec +
					" in the layer cache (spec.output.layerCache), was reused"
			}
		}
		if w := waiting[p]; w != "" && (ps.State == v1alpha1.PlatformWaiting || ps.State == v1alpha1.PlatformCancelled) {
			// Why no node takes its pod (or why the run was cancelled for
			// it) says more than "not scheduled yet" or Tekton's
			// cancellation: the platform's TaskRun exists from the run's
			// start when its task clones for itself.
			ps.Message = w
		}
		out = append(out, ps)
	}
	return out
}

// builtDigest is the IMAGE_DIGEST result of the platform's succeeded build
// TaskRun, "" without one.
func builtDigest(arch string, trs []tektonv1.TaskRun) string {
	tr := buildTaskRun(arch, trs)
	if tr == nil {
		return ""
	}
	if c := tr.Status.GetCondition(apis.ConditionSucceeded); c == nil || c.Status != corev1.ConditionTrue {
		return ""
	}
	if d := taskResult(tr, pipeline.ResultImageDigest); digestRE.MatchString(d) {
		return d
	}
	return ""
}

// buildTaskRun is the platform's build-<arch> TaskRun among trs, nil
// without one.
func buildTaskRun(arch string, trs []tektonv1.TaskRun) *tektonv1.TaskRun {
	for i := range trs {
		if trs[i].Labels["tekton.dev/pipelineTask"] == pipeline.BuildTaskName(arch) {
			return &trs[i]
		}
	}
	return nil
}

// taskResult is a TaskRun's string result name, trimmed; "" without it.
func taskResult(tr *tektonv1.TaskRun, name string) string {
	for _, r := range tr.Status.Results {
		if r.Name == name {
			return strings.TrimSpace(r.Value.StringVal)
		}
	}
	return ""
}

var digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// reusedRecord is the REUSED result of the platform's build TaskRun: the
// layer cache's record of the image it reused instead of building, "" when
// it built.
func reusedRecord(arch string, trs []tektonv1.TaskRun) string {
	if tr := buildTaskRun(arch, trs); tr != nil {
		return taskResult(tr, pipeline.ResultReused)
	}
	return ""
}

// archState folds the TaskRuns of one architecture (a build task, and an
// install task for NodeJS) into one state.
func archState(trs []tektonv1.TaskRun) (v1alpha1.PlatformState, string) {
	if len(trs) == 0 {
		return v1alpha1.PlatformWaiting, ""
	}
	done, running := 0, 0
	cancelled := ""
	for _, tr := range trs {
		c := tr.Status.GetCondition(apis.ConditionSucceeded)
		switch {
		case c == nil:
		case c.Status == corev1.ConditionFalse && c.Reason == tektonv1.TaskRunReasonCancelled.String():
			// Stopped, not failed; a failure of the platform's other task wins.
			cancelled = fmt.Sprintf("%s: %s", orDefault(tr.Labels["tekton.dev/pipelineTask"], tr.Name), failureMessage(tr, c))
		case c.Status == corev1.ConditionFalse:
			return v1alpha1.PlatformFailed, fmt.Sprintf("%s: %s", orDefault(tr.Labels["tekton.dev/pipelineTask"], tr.Name), failureMessage(tr, c))
		case c.Status == corev1.ConditionTrue:
			done++
		case tr.Status.PodName != "" && c.Reason != "Pending":
			running++
		}
	}
	switch {
	case cancelled != "":
		return v1alpha1.PlatformCancelled, cancelled
	case done == len(trs):
		return v1alpha1.PlatformBuilt, ""
	case running > 0 || done > 0:
		return v1alpha1.PlatformBuilding, ""
	}
	return v1alpha1.PlatformWaiting, "the build pod is not scheduled yet"
}

// failureMessage is why a failed TaskRun failed: the failing tool's own
// error, from the task's ERROR result (written by the step scripts, see
// pipeline.ResultError), else Tekton's message ("step-build" exited with
// code 125). The result is data from the build: kept to one line of valid
// UTF-8 and pipeline.MaxErrorLen bytes.
func failureMessage(tr tektonv1.TaskRun, c *apis.Condition) string {
	for _, r := range tr.Status.Results {
		if r.Name != pipeline.ResultError {
			continue
		}
		if m := oneLine(r.Value.StringVal, pipeline.MaxErrorLen); m != "" {
			return m
		}
	}
	return c.Message
}

// oneLine makes s one line of valid UTF-8, control characters blanked,
// trimmed, at most max bytes (cut at a rune boundary).
func oneLine(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	s = strings.TrimSpace(s)
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = strings.TrimSpace(s[:cut])
	}
	return s
}

func runResults(run *tektonv1.PipelineRun) map[string]string {
	m := make(map[string]string, len(run.Status.Results))
	for _, r := range run.Status.Results {
		m[r.Name] = strings.TrimSpace(r.Value.StringVal)
	}
	return m
}

// builtResults are the run's results once its index is pushed: Tekton
// publishes the PipelineRun's only when the finally task is done too, so
// until then they come from the TaskRuns that wrote them: the list's from
// the build task that pushed it (or a retry's push task), the commit from
// clone or, when the build tasks cloned for themselves, any of them (they
// built one commit).
func builtResults(run *tektonv1.PipelineRun, taskRuns []tektonv1.TaskRun) map[string]string {
	m := runResults(run)
	set := func(name, value string) {
		if v := strings.TrimSpace(value); m[name] == "" && v != "" {
			m[name] = v
		}
	}
	if tr := pushedTaskRun(taskRuns); tr != nil {
		digest, url := listResults(tr)
		set(pipeline.ResultImageDigest, digest)
		set(pipeline.ResultImageURL, url)
	}
	set(pipeline.ResultCommit, taskRunsCommit(taskRuns))
	return m
}

// listResults are the digest and repository of the manifest list a TaskRun
// pushed, "" when it pushed none.
func listResults(tr *tektonv1.TaskRun) (digest, url string) {
	digestName, urlName := pipeline.ResultIndexDigest, pipeline.ResultIndexURL
	if tr.Labels["tekton.dev/pipelineTask"] == pipeline.TaskPush {
		digestName, urlName = pipeline.ResultImageDigest, pipeline.ResultImageURL
	}
	for _, r := range tr.Status.Results {
		switch r.Name {
		case digestName:
			digest = strings.TrimSpace(r.Value.StringVal)
		case urlName:
			url = strings.TrimSpace(r.Value.StringVal)
		}
	}
	if !digestRE.MatchString(digest) {
		return "", ""
	}
	return digest, url
}

// taskRunsCommit is the COMMIT result of the run's clone TaskRun or of one
// of its build TaskRuns, "" without one.
func taskRunsCommit(taskRuns []tektonv1.TaskRun) string {
	for _, tr := range taskRuns {
		task := tr.Labels["tekton.dev/pipelineTask"]
		if task != pipeline.TaskClone && !strings.HasPrefix(task, pipeline.BuildTaskName("")) {
			continue
		}
		if v := taskResult(&tr, pipeline.ResultCommit); v != "" {
			return v
		}
	}
	return ""
}

// pushedTaskRun is the succeeded TaskRun that pushed the run's manifest
// list (the build task whose index step pushed it, or a retry's push task),
// once every build task succeeded too (the others published their digests
// first, but their pods may still be ending); nil before.
func pushedTaskRun(taskRuns []tektonv1.TaskRun) *tektonv1.TaskRun {
	var pushed *tektonv1.TaskRun
	for i := range taskRuns {
		tr := &taskRuns[i]
		if c := tr.Status.GetCondition(apis.ConditionSucceeded); c == nil || c.Status != corev1.ConditionTrue {
			if strings.HasPrefix(tr.Labels["tekton.dev/pipelineTask"], pipeline.BuildTaskName("")) {
				return nil
			}
			continue
		}
		if d, _ := listResults(tr); d != "" {
			pushed = tr
		}
	}
	return pushed
}

// repository strips the tag of an image reference: quay.io/a/b:1 -> quay.io/a/b.
func repository(image string) string {
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[:colon]
	}
	return image
}

// readyCondition summarises the others into Ready. Only a Succeeded
// condition of the current generation counts: one left from an older
// generation (a reconcile of the new one failed before observing its run)
// never makes the new generation Ready, nor Failed.
func readyCondition(build *v1alpha1.MultiArchBuild, conds []metav1.Condition) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse}
	succ := meta.FindStatusCondition(conds, v1alpha1.ConditionSucceeded)
	if succ != nil && succ.ObservedGeneration != build.Generation {
		c.Reason = v1alpha1.ReasonBuilding
		c.Message = fmt.Sprintf("generation %d is not built yet (the latest verdict is for generation %d)", build.Generation, succ.ObservedGeneration)
		if build.Status.Image != "" {
			c.Message += "; the last pushed image is " + build.Status.Image
		}
		return c
	}
	switch {
	case succ != nil && succ.Status == metav1.ConditionTrue:
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonBuilt
		c.Message = "generation " + fmt.Sprint(build.Generation) + " was built and pushed"
		if build.Status.Image != "" {
			c.Message += " as " + build.Status.Image
		}
	case succ != nil && succ.Status == metav1.ConditionFalse:
		c.Reason, c.Message = v1alpha1.ReasonBuildFailed, succ.Message
	default:
		var waiting []string
		for _, t := range []string{v1alpha1.ConditionPipelinesAvailable, v1alpha1.ConditionBuilderReady, v1alpha1.ConditionStorageReady, v1alpha1.ConditionCapacityReady} {
			if pc := meta.FindStatusCondition(conds, t); pc != nil && pc.Status == metav1.ConditionFalse {
				waiting = append(waiting, t+": "+pc.Message)
			}
		}
		if len(waiting) > 0 && (succ == nil || succ.Reason == v1alpha1.ReasonRunPending) {
			c.Reason, c.Message = v1alpha1.ReasonWaitingForPrereqs, strings.Join(waiting, "; ")
		} else {
			c.Reason, c.Message = v1alpha1.ReasonBuilding, "the build is running"
			if succ != nil {
				c.Message = succ.Message
			}
		}
	}
	return c
}

// phaseOf summarises the conditions into the phase; runExists says whether
// the run of the current generation and token exists.
func phaseOf(conds []metav1.Condition, generation int64, runExists bool) v1alpha1.Phase {
	succ := meta.FindStatusCondition(conds, v1alpha1.ConditionSucceeded)
	if succ != nil && succ.ObservedGeneration != generation {
		succ = nil // a verdict on an older generation says nothing of this one
	}
	switch {
	case succ != nil && succ.Status == metav1.ConditionTrue:
		return v1alpha1.PhaseSucceeded
	case succ != nil && succ.Status == metav1.ConditionFalse:
		return v1alpha1.PhaseFailed
	case runExists:
		return v1alpha1.PhaseBuilding
	}
	if c := meta.FindStatusCondition(conds, v1alpha1.ConditionPipelinesAvailable); c != nil && c.Status == metav1.ConditionFalse {
		return v1alpha1.PhasePending
	}
	for _, t := range []string{v1alpha1.ConditionBuilderReady, v1alpha1.ConditionStorageReady} {
		if c := meta.FindStatusCondition(conds, t); c != nil && c.Status == metav1.ConditionFalse {
			return v1alpha1.PhasePending
		}
	}
	if c := meta.FindStatusCondition(conds, v1alpha1.ConditionCapacityReady); c != nil && c.Status == metav1.ConditionFalse {
		return v1alpha1.PhaseProvisioning
	}
	return v1alpha1.PhasePending
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

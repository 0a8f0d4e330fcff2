// Package controllers holds the reconcilers of the multiarch-build-operator.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/controllers/capacity"
	plan "github.com/multiarch-build/multiarch-build-operator/internal/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
)

// Least privilege: no wildcards, no Secrets (build pods read them, the
// operator never does), uncached reads narrowed to names where RBAC can.
// Cached kinds get list and watch, not get: reads go through informers. The
// controllers' envtest suite, run as the CSV's ServiceAccount, fails on a
// verb granted here that no code path uses (checkRBACUsage).
// +kubebuilder:rbac:groups=build.multiarch.io,resources=multiarchbuilds,verbs=list;watch
// +kubebuilder:rbac:groups=build.multiarch.io,resources=multiarchbuilds/status,verbs=patch
// The workspace PVC and the PipelineRuns carry a controller reference with
// blockOwnerDeletion: OpenShift's OwnerReferencesPermissionEnforcement
// admission refuses that unless the writer may update the owner's finalizers.
// +kubebuilder:rbac:groups=build.multiarch.io,resources=multiarchbuilds/finalizers,verbs=update
// +kubebuilder:rbac:groups=tekton.dev,resources=pipelineruns,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=tekton.dev,resources=pipelines,verbs=get;list;create;delete
// +kubebuilder:rbac:groups=tekton.dev,resources=taskruns,verbs=list;watch
// PVCs: get reads a claim past the cache when its create says it exists
// (is it ours?).
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;create
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=list;watch;create
// +kubebuilder:rbac:groups="",resources=pods,verbs=get
// The builder ServiceAccount's RoleBinding to the SCC ClusterRole: "bind" on
// exactly that ClusterRole, so the operator never holds the SCC itself.
// delete: the binding goes with the last build of its namespace (releaseBuilder).
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings,verbs=get;create;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=multiarch-build-builder-scc
// +kubebuilder:rbac:groups=storage.k8s.io,resources=storageclasses,verbs=list;watch
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get,resourceNames=pipelineruns.tekton.dev;taskruns.tekton.dev
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// Tekton's feature flags: a cluster-scoped rule narrowed to the ConfigMap's
// name, because OLM grants rights only cluster-wide or in the operator's own
// namespace, and the namespace is a flag (--tekton-namespace).
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get,resourceNames=feature-flags

// MultiArchBuildReconciler turns a MultiArchBuild into a Tekton PipelineRun
// and reports its per-architecture progress and the pushed digest.
type MultiArchBuildReconciler struct {
	Client client.Client
	// APIReader reads without the cache: CRDs, the feature flags, a build
	// pod's node, and a run that the cache does not show.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	Settings  settings.Settings
	// Capacity decides whether nodes of every platform can take the build;
	// nil means runs are not gated on capacity.
	Capacity capacity.Checker
	// CapacityWatches re-queue builds waiting for capacity when nodes or
	// MachineSets change (capacity.Cluster.BuildWatches).
	CapacityWatches []source.Source
	// Namespaces restricts the Tekton cache (and should match the manager
	// cache's DefaultNamespaces); empty means every namespace.
	Namespaces []string
	// TektonPollInterval is how often the operator looks for Tekton's CRDs
	// while they are absent (default 30s).
	TektonPollInterval time.Duration
	// MaxConcurrentReconciles defaults to 16 (measured: more workers only queue at the API server and raise peak memory).
	MaxConcurrentReconciles int

	tekton             *tektonWatch
	clusterCfg         *clusterConfigSource
	expect             expectations
	accounts           knownAccounts
	pipelines          knownPipelines
	skipNameValidation bool
	now                func() time.Time
}

// buildScope is what one reconcile observed and decided. Steps fill it in;
// status is written once, from it, at the end.
type buildScope struct {
	build   *v1alpha1.MultiArchBuild
	before  *v1alpha1.MultiArchBuildStatus
	runName string

	// blocked lists the prerequisite conditions that keep a new run from starting.
	blocked     []string
	capacityRes *capacity.Result
	outcome     runOutcome
	runs        []tektonv1.PipelineRun // every run of this build
	taskRuns    []tektonv1.TaskRun     // TaskRuns of the current run
	nodes       map[string]string      // arch -> node of the build pod
	// retry, when set, makes the run to create a retry of the last run
	// (annotation build.multiarch.io/retry-failed; resolveRetry).
	retry *pipeline.Retry

	stop         bool
	requeueAfter time.Duration
	// completed: every step ran (or stopped on purpose) without an error, so
	// status describes this generation and may say it observed it.
	completed bool
}

func (s *buildScope) requeue(d time.Duration) {
	if d > 0 && (s.requeueAfter == 0 || d < s.requeueAfter) {
		s.requeueAfter = d
	}
}

// Reconcile reads as the build flow: preflight, workspace, capacity, run,
// observe, prune; then one status patch from what was observed.
func (r *MultiArchBuildReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	build := &v1alpha1.MultiArchBuild{}
	if err := r.Client.Get(ctx, req.NamespacedName, build); err != nil {
		if apierrors.IsNotFound(err) {
			// Gone: the last build of a namespace takes the builder's
			// RoleBinding with it.
			return ctrl.Result{}, r.releaseBuilder(ctx, req.Namespace)
		}
		return ctrl.Result{}, err
	}
	if !build.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // owner references delete the PVC and the runs
	}
	s := &buildScope{build: build, before: build.Status.DeepCopy(), runName: pipeline.RunName(build)}
	defer func() {
		if err := r.patchStatus(ctx, s); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, err})
		}
	}()

	for _, step := range []func(context.Context, *buildScope) error{
		r.preflight,
		r.ensureWorkspace,
		r.ensureCapacity,
		r.ensureRun,
		r.observeRun,
		r.pruneRuns,
	} {
		if err := step(ctx, s); err != nil {
			if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				// The namespace, and this build with it, is going away: a
				// child cannot be created and need not be; no retry.
				return ctrl.Result{}, nil
			}
			return ctrl.Result{}, err
		}
		if s.stop {
			break
		}
	}
	s.completed = true
	return ctrl.Result{RequeueAfter: s.requeueAfter}, nil
}

// setCondition records one condition; meta keeps LastTransitionTime when the
// status does not change, so an unchanged condition is no write.
func (s *buildScope) setCondition(c metav1.Condition) {
	c.ObservedGeneration = s.build.Generation
	meta.SetStatusCondition(&s.build.Status.Conditions, c)
	if c.Status == metav1.ConditionFalse && c.Type != v1alpha1.ConditionSucceeded {
		s.blocked = append(s.blocked, c.Type)
	}
}

// patchStatus summarises the conditions and patches status once, only when
// it changed; then it emits events and metrics for the transitions.
// status.observedGeneration moves only when the whole reconcile ran: a
// reconcile that failed half way leaves conditions of the older generation,
// and must not vouch for the new one. The patch carries the resourceVersion
// the reconcile read (optimistic lock): a status written in between by
// another writer is never overwritten with older observations; the conflict
// re-queues the build.
func (r *MultiArchBuildReconciler) patchStatus(ctx context.Context, s *buildScope) error {
	st := &s.build.Status
	if s.completed {
		st.ObservedGeneration = s.build.Generation
	}
	setCond(st, s.build.Generation, readyCondition(s.build, st.Conditions))
	st.Phase = phaseOf(st.Conditions, s.build.Generation, s.outcome.Run != nil)
	if equality.Semantic.DeepEqual(s.before, st) {
		return nil
	}
	base := s.build.DeepCopy()
	base.Status = *s.before
	if err := r.Client.Status().Patch(ctx, s.build, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("patch status of MultiArchBuild %s: %w", klog.KObj(s.build), err)
	}
	r.recordTransitions(s)
	return nil
}

func setCond(st *v1alpha1.MultiArchBuildStatus, gen int64, c metav1.Condition) {
	c.ObservedGeneration = gen
	meta.SetStatusCondition(&st.Conditions, c)
}

// ---- preflight -------------------------------------------------------------

// preflight checks that Tekton is served and its flags allow the pipeline.
func (r *MultiArchBuildReconciler) preflight(ctx context.Context, s *buildScope) error {
	if !r.tekton.Served() {
		s.setCondition(pipelinesCondition(false, featureFlags{}))
		s.stop = true
		// The CRD poll re-queues every build when Tekton appears; this
		// timer, growing with the time spent waiting, is only a safety net.
		s.requeue(backoff(r.clock(), s.build.Status.Conditions, v1alpha1.ConditionPipelinesAvailable))
		return nil
	}
	c := pipelinesCondition(true, r.tekton.FeatureFlags(ctx))
	s.setCondition(c)
	if c.Status == metav1.ConditionFalse {
		// The ConfigMap is not watched (that would cache ConfigMaps): look again later.
		s.requeue(backoff(r.clock(), s.build.Status.Conditions, v1alpha1.ConditionPipelinesAvailable))
	}
	return nil
}

// backoff grows with the time a condition has been False: 5s at first, at
// most 5 minutes, so a waiting build never loops hot.
func backoff(now time.Time, conds []metav1.Condition, condType string) time.Duration {
	d := 5 * time.Second
	if c := meta.FindStatusCondition(conds, condType); c != nil && !c.LastTransitionTime.IsZero() {
		if age := now.Sub(c.LastTransitionTime.Time); age > d {
			d = age
		}
	}
	return min(d, 5*time.Minute)
}

func (r *MultiArchBuildReconciler) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// ---- capacity --------------------------------------------------------------

// ensureCapacity asks the capacity checker while the run of this
// generation does not exist yet, and, once it runs, for the platforms whose
// build pod has not started: a node seen a moment before it went away (a
// stale cache, a node drained at that instant) must not leave a run
// waiting forever for a node no zone can give.
func (r *MultiArchBuildReconciler) ensureCapacity(ctx context.Context, s *buildScope) error {
	run, err := r.currentRun(ctx, s)
	if err != nil {
		return err
	}
	if s.outcome.Deleted {
		return nil
	}
	if r.Capacity == nil {
		if run == nil {
			s.setCondition(capacityCondition(nil))
		}
		return nil
	}
	if c := meta.FindStatusCondition(s.before.Conditions, v1alpha1.ConditionSucceeded); c != nil && c.Status == metav1.ConditionFalse &&
		c.ObservedGeneration == s.build.Generation &&
		(c.Reason == v1alpha1.ReasonProvisioningFailed || c.Reason == v1alpha1.ReasonProvisioningTimeout) &&
		!plan.WaitingSince(s.build, s.runName).IsZero() {
		// This run already failed for want of a node: it stays failed
		// until a new generation or rebuild token asks for another run.
		s.outcome.CreateErr, s.outcome.CreateReason = errors.New(c.Message), c.Reason
		s.blocked = append(s.blocked, v1alpha1.ConditionCapacityReady)
		// The platforms keep saying why (status.platforms[].message).
		res := capacity.Result{Reason: c.Reason, Terminal: true, Failed: true, Waiting: map[v1alpha1.Platform]string{}}
		for _, p := range s.before.Platforms {
			if p.NodeWait != nil && p.NodeWait.Run == s.runName && p.Message != "" {
				res.Waiting[p.Platform] = p.Message
			}
		}
		s.capacityRes = &res
		return nil
	}
	checked := s.build
	if run != nil {
		if runFinished(run) || run.Spec.Status != "" {
			return nil
		}
		waiting := r.platformsWithoutPod(s)
		if len(waiting) == 0 {
			return nil
		}
		checked = s.build.DeepCopy()
		checked.Spec.Platforms = waiting
	}
	res, err := r.Capacity.Check(ctx, checked)
	if err != nil {
		return fmt.Errorf("check capacity for %s: %w", klog.KObj(s.build), err)
	}
	s.capacityRes = &res
	s.setCondition(capacityCondition(&res))
	if run == nil && r.Settings.StartRunsWhileProvisioning && !res.Ready && !res.Terminal && !res.Failed {
		// Overlap the node's boot with the work that needs no node of
		// that architecture: the run starts now (clone, preflight, Maven)
		// and only its architecture tasks wait, Pending, for the node.
		// CapacityReady stays False (ProvisioningNodes) while the node
		// boots; this check goes on while platforms have no pod and
		// cancels the run if provisioning fails.
		s.blocked = slices.DeleteFunc(s.blocked, func(c string) bool { return c == v1alpha1.ConditionCapacityReady })
	}
	if res.Failed {
		s.outcome.CreateErr, s.outcome.CreateReason = errors.New(res.Message), res.Reason
		if run != nil {
			return r.cancelForCapacity(ctx, s, run, res.Reason)
		}
		return nil
	}
	if !res.Ready && !res.Terminal {
		s.requeue(min(backoff(r.clock(), s.build.Status.Conditions, v1alpha1.ConditionCapacityReady), time.Minute))
	}
	return nil
}

// platformsWithoutPod are the platforms of the current run (as the last
// status saw it) that are still Waiting: their build pod has not started.
func (r *MultiArchBuildReconciler) platformsWithoutPod(s *buildScope) []v1alpha1.Platform {
	if lr := s.before.LatestRun; lr == nil || lr.Name != s.runName {
		return nil
	}
	var out []v1alpha1.Platform
	for _, p := range s.before.Platforms {
		if p.State == v1alpha1.PlatformWaiting {
			out = append(out, p.Platform)
		}
	}
	return out
}

// cancelForCapacity cancels the current run (its cleanup still runs) when
// a platform it waits for can get no node.
func (r *MultiArchBuildReconciler) cancelForCapacity(ctx context.Context, s *buildScope, run *tektonv1.PipelineRun, reason string) error {
	base := run.DeepCopy()
	run.Spec.Status = tektonv1.PipelineRunSpecStatusCancelledRunFinally
	if err := r.Client.Patch(ctx, run, client.MergeFrom(base)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("cancel PipelineRun %s: %w", klog.KObj(run), err)
	}
	r.Recorder.Eventf(s.build, run, corev1.EventTypeWarning, "RunCancelled", "Cancel",
		"cancelled PipelineRun %s: %s", run.Name, reason)
	return nil
}

func logger(ctx context.Context) klog.Logger { return log.FromContext(ctx) }

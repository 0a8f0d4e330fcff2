package controllers

import (
	"context"
	"fmt"
	"reflect"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/storage"
)

// CacheOptions narrows the manager's cache: PVCs and ServiceAccounts only
// when the operator made them (managed-by label), and no managedFields in
// memory. Tekton's kinds are not in this cache: they get their own, created
// when Tekton's CRDs are served (see tektonWatch). Callers may add entries to
// ByObject for their own kinds.
func CacheOptions() cache.Options {
	managed := labels.SelectorFromSet(labels.Set{pipeline.LabelManagedBy: pipeline.ManagedBy})
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.PersistentVolumeClaim{}: {Label: managed},
			&corev1.ServiceAccount{}:        {Label: managed},
		},
	}
}

const indexStorageClass = "spec.workspace.storageClassName"

// SetupWithManager registers the controller and its watches. The
// PipelineRun and TaskRun watches start now when Tekton is installed, or
// later, without a restart, when its CRDs appear.
func (r *MultiArchBuildReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Scheme == nil {
		r.Scheme = mgr.GetScheme()
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("multiarchbuild-controller")
	}
	if r.TektonPollInterval <= 0 {
		r.TektonPollInterval = 30 * time.Second
	}
	if r.MaxConcurrentReconciles <= 0 {
		r.MaxConcurrentReconciles = 16
	}
	flagNamespaces := []string{"openshift-pipelines", "tekton-pipelines"}
	if r.Settings.TektonNamespace != "" {
		flagNamespaces = []string{r.Settings.TektonNamespace}
	}
	r.tekton = &tektonWatch{
		mgr: mgr, apiReader: r.APIReader, cfg: mgr.GetConfig(), namespaces: r.Namespaces,
		interval: r.TektonPollInterval, nudge: make(chan event.GenericEvent),
		flagsTTL: 30 * time.Second, flagsNames: flagNamespaces,
	}

	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.MultiArchBuild{}, indexStorageClass, func(o client.Object) []string {
		return []string{storage.StorageClassName(o.(*v1alpha1.MultiArchBuild))}
	}); err != nil {
		return fmt.Errorf("index MultiArchBuilds by StorageClass: %w", err)
	}

	b := ctrl.NewControllerManagedBy(mgr).
		Named("multiarchbuild").
		For(&v1alpha1.MultiArchBuild{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, rebuildTokenChanged()))).
		Owns(&corev1.PersistentVolumeClaim{}, builder.WithPredicates(claimPhaseChanged())).
		Watches(&storagev1.StorageClass{}, handler.EnqueueRequestsFromMapFunc(r.buildsWaitingForClass),
			builder.WithPredicates(classCreated())).
		WatchesRawSource(r.tekton.nudgeSource()).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: r.MaxConcurrentReconciles,
			SkipNameValidation:      &r.skipNameValidation,
		})
	for _, src := range r.CapacityWatches {
		b = b.WatchesRawSource(src)
	}
	c, err := b.Build(r)
	if err != nil {
		return err
	}
	if err := r.setupClusterConfig(mgr, c); err != nil {
		return err
	}
	r.tekton.handler = func(w *tektonWatch) error {
		tc := *w.reader.Load()
		if err := c.Watch(source.Kind(tc, &tektonv1.PipelineRun{},
			handler.TypedEnqueueRequestForOwner[*tektonv1.PipelineRun](mgr.GetScheme(), mgr.GetRESTMapper(), &v1alpha1.MultiArchBuild{}, handler.OnlyControllerOwner()),
			runReportChanged())); err != nil {
			return fmt.Errorf("watch PipelineRuns: %w", err)
		}
		if err := c.Watch(source.Kind(tc, &tektonv1.TaskRun{},
			handler.TypedEnqueueRequestsFromMapFunc(taskRunToBuild), taskRunChanged())); err != nil {
			return fmt.Errorf("watch TaskRuns: %w", err)
		}
		return nil
	}

	served, err := r.tekton.crdsServed(ctx)
	if err != nil {
		return err
	}
	if served {
		if err := r.tekton.enable(ctx); err != nil {
			return err
		}
		r.tekton.served.Store(true) // its cache syncs before the controller starts
	}
	return mgr.Add(r.tekton)
}

// rebuildTokenChanged passes updates that change the rebuild or the
// retry-failed annotation: a new token is a new run of the same generation.
func rebuildTokenChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.GetAnnotations(), e.ObjectNew.GetAnnotations()
			return o[v1alpha1.RebuildAnnotation] != n[v1alpha1.RebuildAnnotation] ||
				o[v1alpha1.RetryFailedAnnotation] != n[v1alpha1.RetryFailedAnnotation]
		},
	}
}

// claimPhaseChanged passes a PVC's phase changes and deletion; not its
// creation, which the reconciler itself made.
func claimPhaseChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*corev1.PersistentVolumeClaim)
			n, ok2 := e.ObjectNew.(*corev1.PersistentVolumeClaim)
			return !ok1 || !ok2 || o.Status.Phase != n.Status.Phase
		},
	}
}

func classCreated() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// buildsWaitingForClass re-queues the builds that wait for a StorageClass
// that was just created.
func (r *MultiArchBuildReconciler) buildsWaitingForClass(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.MultiArchBuildList
	if err := r.Client.List(ctx, &list, client.MatchingFields{indexStorageClass: o.GetName()}); err != nil {
		logger(ctx).Error(err, "listing builds by StorageClass", "storageClass", o.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for _, b := range list.Items {
		if c := meta.FindStatusCondition(b.Status.Conditions, v1alpha1.ConditionStorageReady); c == nil || c.Status != metav1.ConditionTrue {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&b)})
		}
	}
	return reqs
}

// runReportChanged passes what the build reports from a PipelineRun: its
// Succeeded condition, results, start and completion; its deletion; and its
// creation. Not Tekton's other status churn. A create event is not only the
// run the reconciler just made: it is also how a relisting watch (after
// "resourceVersion too old", or Tekton's CRDs removed and reinstalled) brings
// back a run that finished while the watch was down, and how a run created by
// a reconcile of a generation that was superseded in the same second reaches
// the cache, so that it is cancelled. Dropping them left such builds
// Building forever (TestFaultKnownBugs). The cost: one reconcile, without
// writes, per run created.
func runReportChanged() predicate.TypedPredicate[*tektonv1.PipelineRun] {
	return predicate.TypedFuncs[*tektonv1.PipelineRun]{
		CreateFunc: func(event.TypedCreateEvent[*tektonv1.PipelineRun]) bool { return true },
		UpdateFunc: func(e event.TypedUpdateEvent[*tektonv1.PipelineRun]) bool {
			o, n := e.ObjectOld, e.ObjectNew
			return !reflect.DeepEqual(succeededOf(o.Status.GetCondition(apis.ConditionSucceeded)), succeededOf(n.Status.GetCondition(apis.ConditionSucceeded))) ||
				!reflect.DeepEqual(o.Status.Results, n.Status.Results) ||
				!o.Status.StartTime.Equal(n.Status.StartTime) ||
				!o.Status.CompletionTime.Equal(n.Status.CompletionTime)
		},
	}
}

// succeededOf drops a condition's timestamps: only status, reason and
// message matter.
func succeededOf(c *apis.Condition) [3]string {
	if c == nil {
		return [3]string{}
	}
	return [3]string{string(c.Status), c.Reason, c.Message}
}

// taskRunChanged passes a TaskRun's creation and the changes of its
// Succeeded condition, its pod name (the node where the architecture builds)
// and its first failed step (failFast reads it; Tekton may report the steps
// in a later status write than the condition).
func taskRunChanged() predicate.TypedPredicate[*tektonv1.TaskRun] {
	return predicate.TypedFuncs[*tektonv1.TaskRun]{
		CreateFunc: func(e event.TypedCreateEvent[*tektonv1.TaskRun]) bool {
			return e.Object.Labels[pipeline.LabelArch] != "" || e.Object.Status.GetCondition(apis.ConditionSucceeded) != nil
		},
		DeleteFunc: func(event.TypedDeleteEvent[*tektonv1.TaskRun]) bool { return false },
		UpdateFunc: func(e event.TypedUpdateEvent[*tektonv1.TaskRun]) bool {
			o, n := e.ObjectOld, e.ObjectNew
			return succeededOf(o.Status.GetCondition(apis.ConditionSucceeded)) != succeededOf(n.Status.GetCondition(apis.ConditionSucceeded)) ||
				o.Status.PodName != n.Status.PodName ||
				firstFailedStep(o) != firstFailedStep(n)
		},
	}
}

// taskRunToBuild maps a TaskRun to its build by the build label that Tekton
// copied from the PipelineRun.
func taskRunToBuild(_ context.Context, tr *tektonv1.TaskRun) []reconcile.Request {
	name := tr.Labels[pipeline.LabelBuild]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: tr.Namespace, Name: name}}}
}

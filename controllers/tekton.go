package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

// tektonCRDs must be established and serve v1 before the operator watches
// PipelineRuns and TaskRuns.
var tektonCRDs = []string{"pipelineruns.tekton.dev", "taskruns.tekton.dev"}

var crdGVK = schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}

// tektonWatch starts the PipelineRun and TaskRun watches once Tekton's CRDs
// are served: at setup when Tekton is already installed, otherwise from a
// poll of the CRDs, without a manager restart. controller-runtime cannot start
// an informer on a kind the API server does not serve, so the Tekton kinds
// live in their own cache (narrowed to the operator's objects by the
// managed-by label) that is created only when the kinds exist.
type tektonWatch struct {
	mgr        manager.Manager
	apiReader  client.Reader
	cfg        *rest.Config
	namespaces []string
	interval   time.Duration

	handler func(*tektonWatch) error // starts the watches; set by SetupWithManager
	nudge   chan event.GenericEvent  // re-queues every build once Tekton appears

	served atomic.Bool
	reader atomic.Pointer[cache.Cache]
	once   sync.Once
	err    error

	flagsMu    sync.Mutex
	flags      featureFlags
	flagsRead  time.Time
	flagsTTL   time.Duration
	flagsNames []string // namespaces to look in, in order
}

// Served reports whether PipelineRuns and TaskRuns are watched.
func (w *tektonWatch) Served() bool { return w.served.Load() }

// Reader reads PipelineRuns and TaskRuns (only the operator's). Only valid
// when Served.
func (w *tektonWatch) Reader() client.Reader { return *w.reader.Load() }

// crdsServed answers with GETs of the two CRDs (uncached: the manager must
// not cache every CRD of the cluster, which can be hundreds of large objects).
func (w *tektonWatch) crdsServed(ctx context.Context) (bool, error) {
	for _, name := range tektonCRDs {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(crdGVK)
		if err := w.apiReader.Get(ctx, types.NamespacedName{Name: name}, u); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, fmt.Errorf("get CustomResourceDefinition %s: %w", name, err)
		}
		if !crdServesV1(u) {
			return false, nil
		}
	}
	return true, nil
}

func crdServesV1(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	established := false
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			established = true
		}
	}
	versions, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
	for _, v := range versions {
		m, _ := v.(map[string]any)
		if m["name"] == "v1" && m["served"] == true {
			return established
		}
	}
	return false
}

// enable creates the Tekton cache and registers the watches. The caller
// marks Tekton served once the cache is synced (at setup the manager syncs it
// before any controller starts). Idempotent.
func (w *tektonWatch) enable(ctx context.Context) error {
	w.once.Do(func() {
		// The REST mapper learns the new group lazily; wait until it does.
		gvk := tektonv1.SchemeGroupVersion.WithKind("PipelineRun")
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := w.mgr.GetRESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
				break
			} else if time.Now().After(deadline) {
				w.err = fmt.Errorf("Tekton CRDs established but %s not in discovery: %w", gvk, err)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		opts := tektonCacheOptions(w.mgr, w.namespaces)
		c, err := cache.New(w.cfg, opts)
		if err != nil {
			w.err = fmt.Errorf("create the Tekton cache: %w", err)
			return
		}
		if err := w.mgr.Add(cacheRunnable{c}); err != nil {
			w.err = fmt.Errorf("add the Tekton cache: %w", err)
			return
		}
		w.reader.Store(&c)
		if err := w.handler(w); err != nil {
			w.err = err
			return
		}
	})
	return w.err
}

// tektonCacheOptions narrow the Tekton cache to objects the operator made
// (Tekton copies PipelineRun labels to its TaskRuns).
func tektonCacheOptions(mgr manager.Manager, namespaces []string) cache.Options {
	opts := cache.Options{
		Scheme:               mgr.GetScheme(),
		Mapper:               mgr.GetRESTMapper(),
		DefaultLabelSelector: labels.SelectorFromSet(labels.Set{pipeline.LabelManagedBy: pipeline.ManagedBy}),
		DefaultTransform:     slimTektonObject,
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// slimTektonObject drops from cached runs what the controller never reads:
// the inline pipeline and task specs (tens of kilobytes per run, and Tekton
// copies them again into status), managedFields, annotations other than the
// operator's own (a retry run's reused images) and of each step's status
// all but its name and times (status.platforms[].timings). Only spec.status
// is kept, to know whether a run was cancelled. Cached objects are never
// written back whole: cancelling is a merge patch of spec.status alone.
func slimTektonObject(obj any) (any, error) {
	switch o := obj.(type) {
	case *tektonv1.PipelineRun:
		o.ManagedFields = nil
		o.Annotations = ourAnnotations(o.Annotations)
		o.Spec = tektonv1.PipelineRunSpec{Status: o.Spec.Status}
		o.Status.PipelineSpec = nil
		o.Status.Provenance = nil
		o.Status.SpanContext = nil
	case *tektonv1.TaskRun:
		o.ManagedFields = nil
		o.Annotations = nil
		o.Spec = tektonv1.TaskRunSpec{}
		o.Status.TaskSpec = nil
		o.Status.Steps = slimSteps(o.Status.Steps)
		o.Status.Sidecars = nil
		o.Status.Provenance = nil
		o.Status.SpanContext = nil
		o.Status.Artifacts = nil
	}
	return obj, nil
}

// ourAnnotations keeps the build.multiarch.io/ annotations (the operator's,
// set when it created the run); nil without any.
func ourAnnotations(in map[string]string) map[string]string {
	var out map[string]string
	for k, v := range in {
		if strings.HasPrefix(k, "build.multiarch.io/") {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// slimSteps keeps of each step's status its name and container state times.
func slimSteps(in []tektonv1.StepState) []tektonv1.StepState {
	if len(in) == 0 {
		return nil
	}
	out := make([]tektonv1.StepState, len(in))
	for i, st := range in {
		out[i] = tektonv1.StepState{Name: st.Name, Container: st.Container}
		if r := st.Running; r != nil {
			out[i].Running = &corev1.ContainerStateRunning{StartedAt: r.StartedAt}
		}
		if t := st.Terminated; t != nil {
			out[i].Terminated = &corev1.ContainerStateTerminated{ExitCode: t.ExitCode, StartedAt: t.StartedAt, FinishedAt: t.FinishedAt}
		}
	}
	return out
}

// cacheRunnable puts the Tekton cache in the manager's cache group: it
// starts before the controllers, or at once when added to a running manager.
type cacheRunnable struct{ cache.Cache }

func (c cacheRunnable) GetCache() cache.Cache { return c.Cache }

// Start polls for the Tekton CRDs until they are served, then starts the
// watches and re-queues every build. It returns at once when Tekton was
// already found at setup.
func (w *tektonWatch) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("tekton-watch")
	if w.Served() {
		return nil
	}
	ticker := time.NewTicker(w.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		ok, err := w.crdsServed(ctx)
		if err != nil {
			logger.Error(err, "checking for Tekton")
			continue
		}
		if !ok {
			continue
		}
		if err := w.enable(ctx); err != nil {
			return err
		}
		// Wait for the new cache so that no build sees an empty one and
		// creates a run that already exists.
		if !(*w.reader.Load()).WaitForCacheSync(ctx) {
			return nil
		}
		w.served.Store(true)
		logger.Info("Tekton is installed; watching PipelineRuns and TaskRuns")
		w.requeueAll(ctx)
		return nil
	}
}

// NeedLeaderElection is false: the poll only reads and registers watches;
// the controller that consumes them is leader-elected.
func (w *tektonWatch) NeedLeaderElection() bool { return false }

func (w *tektonWatch) requeueAll(ctx context.Context) {
	var list v1alpha1.MultiArchBuildList
	if err := w.mgr.GetCache().List(ctx, &list); err != nil {
		log.FromContext(ctx).Error(err, "listing builds to re-queue after Tekton appeared")
		return
	}
	for i := range list.Items {
		select {
		case w.nudge <- event.GenericEvent{Object: &list.Items[i]}:
		case <-ctx.Done():
			return
		}
	}
}

// nudgeSource re-queues builds sent on the nudge channel.
func (w *tektonWatch) nudgeSource() source.Source {
	return source.Channel(w.nudge, &handler.EnqueueRequestForObject{})
}

// featureFlags is what the preflight needs from Tekton's feature-flags ConfigMap.
type featureFlags struct {
	// Namespace is where the ConfigMap was read; empty when none exists
	// (Tekton's defaults apply).
	Namespace string
	Data      map[string]string
	// Err is set when the ConfigMap could not be read (for example RBAC).
	Err error
}

const featureFlagsName = "feature-flags"

// FeatureFlags reads Tekton's feature flags, at most once per flagsTTL for
// the whole operator: one uncached GET instead of caching ConfigMaps.
func (w *tektonWatch) FeatureFlags(ctx context.Context) featureFlags {
	w.flagsMu.Lock()
	defer w.flagsMu.Unlock()
	if !w.flagsRead.IsZero() && time.Since(w.flagsRead) < w.flagsTTL {
		return w.flags
	}
	w.flags = readFeatureFlags(ctx, w.apiReader, w.flagsNames)
	w.flagsRead = time.Now()
	return w.flags
}

func readFeatureFlags(ctx context.Context, r client.Reader, namespaces []string) featureFlags {
	var firstErr error
	for _, ns := range namespaces {
		cm := &corev1.ConfigMap{}
		err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: featureFlagsName}, cm)
		switch {
		case err == nil:
			return featureFlags{Namespace: ns, Data: cm.Data}
		case apierrors.IsNotFound(err):
			continue
		default:
			if firstErr == nil {
				firstErr = fmt.Errorf("read ConfigMap %s/%s: %w", ns, featureFlagsName, err)
			}
		}
	}
	return featureFlags{Err: firstErr}
}

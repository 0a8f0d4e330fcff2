package controllers

import (
	"context"
	"fmt"
	"sync"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

// knownPipelines are the shared Pipelines (pipeline.GenerateReferenced)
// this process has seen in the cluster: a build of a known shape costs no
// API request for its Pipeline. Pipelines are named after their content, so
// one that exists is the right one; one deleted since is forgotten when a
// run reports it missing (CouldntGetPipeline) or when the namespace's last
// build goes.
type knownPipelines struct {
	mu   sync.Mutex
	seen map[types.NamespacedName]bool
	// create is held while one worker looks for and creates a Pipeline, so
	// that the workers starting the first builds of a shape together make
	// one create, not one each (measured: 10-14 creates, 9-13 refused as
	// AlreadyExists, for 500 builds started at once by 16 workers).
	create sync.Mutex
}

func (k *knownPipelines) has(key types.NamespacedName) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.seen[key]
}

func (k *knownPipelines) add(key types.NamespacedName) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.seen == nil {
		k.seen = map[types.NamespacedName]bool{}
	}
	k.seen[key] = true
}

func (k *knownPipelines) forget(match func(types.NamespacedName) bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key := range k.seen {
		if match(key) {
			delete(k.seen, key)
		}
	}
}

// ensurePipeline makes sure the shared Pipeline a run refers to exists: one
// uncached GET the first time this process needs it, and a create when it
// is missing. Two builds racing to create it both succeed (AlreadyExists).
// It has no owner: it serves every build of its shape in the namespace, and
// goes with the namespace's last build (releaseNamespace).
func (r *MultiArchBuildReconciler) ensurePipeline(ctx context.Context, pl *tektonv1.Pipeline) error {
	key := client.ObjectKeyFromObject(pl)
	if r.pipelines.has(key) {
		return nil
	}
	r.pipelines.create.Lock()
	defer r.pipelines.create.Unlock()
	if r.pipelines.has(key) {
		return nil // another worker made it while this one waited
	}
	err := r.APIReader.Get(ctx, key, &tektonv1.Pipeline{})
	if apierrors.IsNotFound(err) {
		err = r.Client.Create(ctx, pl)
		if err == nil {
			logger(ctx).V(1).Info("created the shared Pipeline", "pipeline", klog.KObj(pl))
		}
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
	}
	if err != nil {
		return err
	}
	r.pipelines.add(key)
	return nil
}

// releasePipelines deletes the namespace's shared Pipelines once it has no
// MultiArchBuild left (the caller checked): the runs that referred to them
// went with their builds.
func (r *MultiArchBuildReconciler) releasePipelines(ctx context.Context, namespace string) error {
	r.pipelines.forget(func(k types.NamespacedName) bool { return k.Namespace == namespace })
	list := &tektonv1.PipelineList{}
	if err := r.APIReader.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{pipeline.LabelManagedBy: pipeline.ManagedBy}); err != nil {
		return fmt.Errorf("list the shared Pipelines of namespace %s: %w", namespace, err)
	}
	for i := range list.Items {
		pl := &list.Items[i]
		if _, ok := pl.Labels[pipeline.LabelPipeline]; !ok {
			continue
		}
		if err := r.Client.Delete(ctx, pl, client.Preconditions{UID: &pl.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete Pipeline %s: %w", klog.KObj(pl), err)
		}
		logger(ctx).V(1).Info("deleted the shared Pipeline: no MultiArchBuild left in the namespace", "pipeline", klog.KObj(pl))
	}
	return nil
}

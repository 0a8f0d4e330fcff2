package controllers

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// releaseBuilder runs when a reconciled MultiArchBuild is gone: once the
// namespace has no MultiArchBuild left, its shared Pipelines go
// (releasePipelines), and the builder RoleBinding (the grant
// of the builder SCC ClusterRole) goes too, so that a namespace that stopped
// building does not keep a ServiceAccount allowed to run pods as root with
// SETFCAP. Only the operator's own binding is deleted (label, role, single
// subject: isBuilderBinding), with UID and resourceVersion preconditions, so
// a binding replaced or edited since it was read is left alone. A build
// created afterwards gets a new binding from ensureBuilder.
//
// The ServiceAccount stays, by decision. The build pods of the last build may
// still be running or being created while the garbage collector deletes its
// PipelineRuns (background deletion): a pod whose ServiceAccount is gone is
// refused by ServiceAccount admission, and OpenShift's token and pull-secret
// controllers tear down the account's Secrets under running pods. Admission
// of already running pods does not depend on the RoleBinding, so removing
// the grant is safe, removing the identity is not. An account without the
// binding holds nothing beyond what every ServiceAccount holds, and keeping
// it needs no delete permission on ServiceAccounts.
//
// Ordering against a build created in the namespace at the same moment:
// under the same lock ensureServiceAccount creates under, the namespace's
// entry in knownAccounts is dropped first, then the cache is listed. A build
// the list does not show yet reconciles after the drop, so it takes the slow
// path, waits for the lock, and reads the binding past the cache after the
// delete: it creates a new one.
func (r *MultiArchBuildReconciler) releaseBuilder(ctx context.Context, namespace string) error {
	role, name := r.Settings.BuilderClusterRole, r.Settings.ServiceAccountName
	manages := role != "" && name != ""
	key := types.NamespacedName{Namespace: namespace, Name: name}
	if manages {
		r.accounts.create.Lock()
		defer r.accounts.create.Unlock()
		r.accounts.forget(key)
	}

	builds := &v1alpha1.MultiArchBuildList{}
	if err := r.Client.List(ctx, builds, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("list MultiArchBuilds of namespace %s: %w", namespace, err)
	}
	if len(builds.Items) > 0 {
		// Including builds being deleted: their pods may still start.
		return nil
	}
	if err := r.releasePipelines(ctx, namespace); err != nil {
		return err
	}
	if !manages {
		return nil // the operator manages no binding
	}
	rb := &rbacv1.RoleBinding{}
	if err := r.APIReader.Get(ctx, key, rb); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("get RoleBinding %s: %w", key, err)
	}
	if !isBuilderBinding(rb, role, key) || rb.DeletionTimestamp != nil {
		return nil // someone else's, or already going
	}
	err := r.Client.Delete(ctx, rb, client.Preconditions{UID: &rb.UID, ResourceVersion: &rb.ResourceVersion})
	switch {
	case err == nil:
		logger(ctx).V(1).Info("deleted the builder RoleBinding: no MultiArchBuild left in the namespace", "roleBinding", klog.KObj(rb))
		return nil
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		// Changed or replaced since it was read: look again.
		return fmt.Errorf("delete RoleBinding %s: changed since read, retrying: %w", key, err)
	default:
		return fmt.Errorf("delete RoleBinding %s: %w", key, err)
	}
}

// forget drops what is known of a namespace's builder account, so that the
// next build of the namespace checks the account and its binding again.
func (k *knownAccounts) forget(key types.NamespacedName) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.seen, key)
}

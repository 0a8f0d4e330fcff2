package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/storage"
)

// ensureWorkspace makes sure the builder ServiceAccount and the workspace
// PVC exist, and reports StorageReady from the PVC and its StorageClass.
func (r *MultiArchBuildReconciler) ensureWorkspace(ctx context.Context, s *buildScope) error {
	if err := r.ensureServiceAccount(ctx, s); err != nil {
		return err
	}
	claim := &corev1.PersistentVolumeClaim{}
	key := types.NamespacedName{Namespace: s.build.Namespace, Name: storage.ClaimName(s.build)}
	switch err := r.Client.Get(ctx, key, claim); {
	case apierrors.IsNotFound(err):
		claim = nil
	case err != nil:
		return fmt.Errorf("get PersistentVolumeClaim %s: %w", key, err)
	}
	className := storage.StorageClassName(s.build)
	if claim != nil && claim.Spec.StorageClassName != nil {
		className = *claim.Spec.StorageClassName
	}
	class := &storagev1.StorageClass{}
	switch err := r.Client.Get(ctx, types.NamespacedName{Name: className}, class); {
	case apierrors.IsNotFound(err):
		class = nil
	case err != nil:
		return fmt.Errorf("get StorageClass %s: %w", className, err)
	}
	if claim == nil && class != nil {
		// Only with an existing class: a claim on a missing class would have
		// to be deleted to pick up the class once it is fixed in the spec.
		created, err := r.createClaim(ctx, s)
		if err != nil {
			return err
		}
		claim = created
	}
	// The StorageClass watch re-queues the build when the class appears,
	// the PVC watch when the claim binds: no timer.
	s.setCondition(storageCondition(storage.Check(claim, className, class)))
	return nil
}

func (r *MultiArchBuildReconciler) createClaim(ctx context.Context, s *buildScope) (*corev1.PersistentVolumeClaim, error) {
	claim := storage.DesiredClaim(s.build)
	if err := controllerutil.SetControllerReference(s.build, claim, r.Scheme); err != nil {
		return nil, fmt.Errorf("own PersistentVolumeClaim %s: %w", claim.Name, err)
	}
	err := r.Client.Create(ctx, claim)
	if apierrors.IsAlreadyExists(err) {
		// Created by an earlier reconcile the cache has not caught up with.
		return claim, nil
	}
	if err != nil {
		return nil, fmt.Errorf("create PersistentVolumeClaim %s: %w", klog.KObj(claim), err)
	}
	logger(ctx).V(1).Info("created workspace", "persistentVolumeClaim", klog.KObj(claim))
	return claim, nil
}

// knownAccounts remembers ServiceAccounts found to exist that the cache does
// not show (created by someone else, so without the managed-by label), so
// that each build does not try to create them again.
type knownAccounts struct {
	mu   sync.Mutex
	seen map[types.NamespacedName]time.Time
	// create serialises the slow path, so that concurrent builds of one
	// namespace create the account once.
	create sync.Mutex
}

func (k *knownAccounts) has(key types.NamespacedName) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.seen[key]
	return ok && time.Since(t) < 10*time.Minute
}

func (k *knownAccounts) add(key types.NamespacedName) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.seen == nil {
		k.seen = map[types.NamespacedName]time.Time{}
	}
	k.seen[key] = time.Now()
}

// ensureServiceAccount creates the operator-managed builder ServiceAccount
// in the build's namespace when the build names none and it is absent. It is
// shared by every build of the namespace, so it is labelled, not owned.
func (r *MultiArchBuildReconciler) ensureServiceAccount(ctx context.Context, s *buildScope) error {
	if s.build.Spec.ServiceAccountName != "" || r.Settings.ServiceAccountName == "" {
		return nil
	}
	key := types.NamespacedName{Namespace: s.build.Namespace, Name: r.Settings.ServiceAccountName}
	if r.accounts.has(key) {
		return nil
	}
	sa := &corev1.ServiceAccount{}
	err := r.Client.Get(ctx, key, sa)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get ServiceAccount %s: %w", key, err)
	}
	r.accounts.create.Lock()
	defer r.accounts.create.Unlock()
	if r.accounts.has(key) {
		return nil
	}
	if apierrors.IsNotFound(err) {
		sa = &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Name: key.Name, Namespace: key.Namespace,
			Labels: map[string]string{pipeline.LabelManagedBy: pipeline.ManagedBy},
		}}
		if err := r.Client.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create ServiceAccount %s: %w", key, err)
		}
	}
	if err := r.ensureBuilderBinding(ctx, key); err != nil {
		return err
	}
	r.accounts.add(key)
	return nil
}

// ensureBuilderBinding binds the builder ServiceAccount to the ClusterRole
// that grants the SecurityContextConstraints buildah needs on OpenShift. Read
// uncached (once per namespace and operator start): caching RoleBindings
// would watch every binding of the cluster. The operator holds "bind" on that
// one ClusterRole, not the SCC itself, so its own pod cannot use it.
func (r *MultiArchBuildReconciler) ensureBuilderBinding(ctx context.Context, account types.NamespacedName) error {
	role := r.Settings.BuilderClusterRole
	if role == "" {
		return nil
	}
	rb := &rbacv1.RoleBinding{}
	err := r.APIReader.Get(ctx, account, rb)
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("get RoleBinding %s: %w", account, err)
	}
	rb = &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{
			Name: account.Name, Namespace: account.Namespace,
			Labels: map[string]string{pipeline.LabelManagedBy: pipeline.ManagedBy},
		},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: account.Name, Namespace: account.Namespace}},
	}
	switch err := r.Client.Create(ctx, rb); {
	case err == nil || apierrors.IsAlreadyExists(err):
		return nil
	case apierrors.IsForbidden(err):
		// Not fatal: on vanilla Kubernetes the SCC role is inert, and the
		// build pods may be admitted without it. Say what is missing.
		logger(ctx).Info("cannot bind the builder ServiceAccount to its ClusterRole; build pods may be refused by OpenShift's SCC admission",
			"roleBinding", klog.KObj(rb), "clusterRole", role, "error", err.Error())
		return nil
	default:
		return fmt.Errorf("create RoleBinding %s: %w", klog.KObj(rb), err)
	}
}

package controllers

import (
	"context"
	"errors"
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
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/storage"
)

// ensureWorkspace makes sure the builder ServiceAccount and the workspace
// PVC exist, and reports BuilderReady and StorageReady. A create the API
// server refuses (RBAC, admission, quota) is reported on the condition that
// owns the object, with the API server's words, and retried with a growing
// delay: never only logged, never a hot loop.
func (r *MultiArchBuildReconciler) ensureWorkspace(ctx context.Context, s *buildScope) error {
	if err := r.ensureBuilder(ctx, s); err != nil {
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
		if c, ok := refusedCondition(v1alpha1.ConditionStorageReady, err); ok {
			r.waitOn(s, c)
			return nil
		}
		if err != nil {
			return err
		}
		claim = created
	}
	if claim != nil && !metav1.IsControlledBy(claim, s.build) {
		// Someone else's claim with our name (or a claim of a deleted build of
		// the same name, still being collected): never adopted.
		r.waitOn(s, conflictCondition(v1alpha1.ConditionStorageReady, "PersistentVolumeClaim", claim))
		return nil
	}
	// The StorageClass watch re-queues the build when the class appears,
	// the PVC watch when the claim binds: no timer.
	s.setCondition(storageCondition(storage.Check(claim, className, class)))
	return nil
}

// waitOn records a prerequisite condition that is False until someone else
// acts (an admin, the owner of a conflicting object) and looks again after a
// delay that grows with the time it has been False: no hot loop.
func (r *MultiArchBuildReconciler) waitOn(s *buildScope, c metav1.Condition) {
	s.setCondition(c)
	s.requeue(backoff(r.clock(), s.build.Status.Conditions, c.Type))
}

// refusedError is a write the API server refused for a reason an admin or
// the user can fix (RBAC, admission, quota, an invalid object): retrying at
// once cannot help.
type refusedError struct {
	what string // "create PersistentVolumeClaim ns/name"
	err  error
}

func (e *refusedError) Error() string { return e.what + ": " + e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// refuse wraps err when the API server refused the write for good
// (Forbidden, Invalid, BadRequest); other errors are returned as they are.
func refuse(what string, err error) error {
	if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		// Not a refusal anyone must fix: the namespace, and the build with
		// it, is going away; Reconcile stops on this error, no retry.
		return fmt.Errorf("%s: %w", what, err)
	}
	if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
		return &refusedError{what: what, err: err}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// refusedCondition is the condition condType set to False with the reason
// Forbidden (or Rejected for an invalid object) and the API server's
// message, when err is a refused write.
func refusedCondition(condType string, err error) (metav1.Condition, bool) {
	var re *refusedError
	if !errors.As(err, &re) {
		return metav1.Condition{}, false
	}
	reason, fix := v1alpha1.ReasonForbidden, "an admin must grant the operator's ServiceAccount this write, or lift the quota or admission rule that refused it (see docs/troubleshooting.md#forbidden); the operator retries with a growing delay"
	if !apierrors.IsForbidden(re.err) {
		reason, fix = v1alpha1.ReasonRejected, "the operator retries with a growing delay"
	}
	return metav1.Condition{
		Type: condType, Status: metav1.ConditionFalse, Reason: reason,
		Message: fmt.Sprintf("the API server refused to %s: %s. Fix: %s", re.what, re.err.Error(), fix),
	}, true
}

// conflictCondition: an object named as the operator names it exists and is
// not the operator's for this build.
func conflictCondition(condType, kind string, o metav1.Object) metav1.Condition {
	owner := "no controller"
	if ref := metav1.GetControllerOfNoCopy(o); ref != nil {
		owner = fmt.Sprintf("controller %s %s (uid %s)", ref.Kind, ref.Name, ref.UID)
	}
	msg := fmt.Sprintf("%s %s/%s exists and was not created by the operator for this build (%s, labels %v); the operator never adopts it. Fix: delete or rename it, or rename the build",
		kind, o.GetNamespace(), o.GetName(), owner, o.GetLabels())
	if o.GetDeletionTimestamp() != nil {
		msg = fmt.Sprintf("%s %s/%s of an earlier object is being deleted; the build waits for it to go", kind, o.GetNamespace(), o.GetName())
	}
	return metav1.Condition{Type: condType, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonConflict, Message: msg}
}

func (r *MultiArchBuildReconciler) createClaim(ctx context.Context, s *buildScope) (*corev1.PersistentVolumeClaim, error) {
	claim := storage.DesiredClaim(s.build)
	if err := controllerutil.SetControllerReference(s.build, claim, r.Scheme); err != nil {
		return nil, fmt.Errorf("own PersistentVolumeClaim %s: %w", claim.Name, err)
	}
	err := r.Client.Create(ctx, claim)
	if apierrors.IsAlreadyExists(err) {
		// Created by an earlier reconcile the cache has not caught up with,
		// or not ours (the cache holds only claims with our label): the API
		// server says whose it is.
		existing := &corev1.PersistentVolumeClaim{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(claim), existing); err != nil {
			return nil, fmt.Errorf("get PersistentVolumeClaim %s: %w", klog.KObj(claim), err)
		}
		return existing, nil
	}
	if err != nil {
		return nil, refuse("create PersistentVolumeClaim "+klog.KObj(claim).String(), err)
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

// ensureBuilder reports BuilderReady: the ServiceAccount the build pods run
// as, created and bound to the builder's SCC ClusterRole when it is the
// operator-managed one.
func (r *MultiArchBuildReconciler) ensureBuilder(ctx context.Context, s *buildScope) error {
	c := metav1.Condition{Type: v1alpha1.ConditionBuilderReady, Status: metav1.ConditionTrue}
	switch {
	case s.build.Spec.ServiceAccountName != "":
		c.Reason = v1alpha1.ReasonServiceAccountFromSpec
		c.Message = fmt.Sprintf("build pods run as ServiceAccount %q (spec.serviceAccountName); its SCC bindings are the namespace admin's", s.build.Spec.ServiceAccountName)
	case r.Settings.ServiceAccountName == "":
		c.Reason = v1alpha1.ReasonServiceAccountFromSpec
		c.Message = "build pods run as the namespace's default ServiceAccount (the operator manages none: --builder-service-account is empty)"
	default:
		err := r.ensureServiceAccount(ctx, s)
		if rc, ok := refusedCondition(v1alpha1.ConditionBuilderReady, err); ok {
			r.waitOn(s, rc)
			return nil
		}
		var conflict *conflictError
		if errors.As(err, &conflict) {
			r.waitOn(s, conflictCondition(v1alpha1.ConditionBuilderReady, conflict.kind, conflict.obj))
			return nil
		}
		if err != nil {
			return err
		}
		c.Reason = v1alpha1.ReasonBuilderBound
		c.Message = fmt.Sprintf("build pods run as ServiceAccount %q", r.Settings.ServiceAccountName)
		if role := r.Settings.BuilderClusterRole; role != "" {
			c.Message += fmt.Sprintf(", bound to ClusterRole %q by RoleBinding %q", role, r.Settings.ServiceAccountName)
		}
	}
	s.setCondition(c)
	return nil
}

// ensureServiceAccount creates the operator-managed builder ServiceAccount
// in the build's namespace when it is absent. It is shared by every build of
// the namespace, so it is labelled, not owned.
func (r *MultiArchBuildReconciler) ensureServiceAccount(ctx context.Context, s *buildScope) error {
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
			return refuse("create ServiceAccount "+key.String(), err)
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
// one ClusterRole, not the SCC itself, so its own pod cannot use it. A
// refused create is reported (BuilderReady=False): without the binding
// OpenShift's SCC admission refuses every build pod.
func (r *MultiArchBuildReconciler) ensureBuilderBinding(ctx context.Context, account types.NamespacedName) error {
	role := r.Settings.BuilderClusterRole
	if role == "" {
		return nil
	}
	rb := &rbacv1.RoleBinding{}
	err := r.APIReader.Get(ctx, account, rb)
	if err == nil {
		if !isBuilderBinding(rb, role, account) {
			return &conflictError{kind: "RoleBinding", obj: rb}
		}
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
	if err := r.Client.Create(ctx, rb); err != nil && !apierrors.IsAlreadyExists(err) {
		return refuse(fmt.Sprintf("create RoleBinding %s to ClusterRole %s", klog.KObj(rb), role), err)
	}
	return nil
}

// isBuilderBinding: the RoleBinding is the one the operator makes: its
// label, the builder ClusterRole, the builder ServiceAccount as its only
// subject. Anything else with that name is someone else's.
func isBuilderBinding(rb *rbacv1.RoleBinding, role string, account types.NamespacedName) bool {
	return rb.Labels[pipeline.LabelManagedBy] == pipeline.ManagedBy &&
		rb.RoleRef.Kind == "ClusterRole" && rb.RoleRef.Name == role &&
		len(rb.Subjects) == 1 && rb.Subjects[0].Kind == rbacv1.ServiceAccountKind &&
		rb.Subjects[0].Name == account.Name && rb.Subjects[0].Namespace == account.Namespace
}

// conflictError: an object with the operator's name is not the operator's.
type conflictError struct {
	kind string
	obj  metav1.Object
}

func (e *conflictError) Error() string {
	return fmt.Sprintf("%s %s/%s is not the operator's", e.kind, e.obj.GetNamespace(), e.obj.GetName())
}

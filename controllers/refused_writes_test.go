package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
	"github.com/multiarch-build/multiarch-build-operator/internal/storage"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// Stories of writes the API server refuses. Each ends with the refusal in
// status, on the condition that owns the object, and no hot loop.

// countCreates counts the operator's POSTs to a resource path suffix.
func countCreates(op *operator, suffix string) int {
	_, calls := op.writes.count()
	n := 0
	for _, c := range calls {
		if strings.HasPrefix(c, "POST ") && strings.HasSuffix(c, suffix) {
			n++
		}
	}
	return n
}

// The first build on OpenShift, as it failed before the finalizers rule:
// OwnerReferencesPermissionEnforcement (on in every envtest API server)
// refuses the PVC whose controller reference sets blockOwnerDeletion, to a
// ServiceAccount with the CSV's rules minus update on
// multiarchbuilds/finalizers. The refusal is in status; granting the rule
// lets the same build go on, without a restart.
func TestOwnerReferencesPermissionEnforcementRefusalIsReported(t *testing.T) {
	env := shared(t)
	csv, err := testenv.CSV()
	if err != nil {
		t.Fatal(err)
	}
	var rules []rbacv1.PolicyRule
	dropped := 0
	for _, r := range csv.Spec.InstallStrategy.StrategySpec.ClusterPermissions[0].Rules {
		if len(r.Resources) == 1 && r.Resources[0] == "multiarchbuilds/finalizers" {
			dropped++
			continue
		}
		rules = append(rules, r)
	}
	if dropped != 1 {
		t.Fatalf("the CSV should grant update on multiarchbuilds/finalizers in a rule of its own; found %d such rules", dropped)
	}
	id, err := env.Identity("no-finalizers", rules)
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, adminClient)
	op := startOperator(t, env, ns, readyCapacity(), asIdentity(id))
	b := newBuild(ns, "orpe")
	if err := adminClient.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	eventually(t, "StorageReady=False/Forbidden naming blockOwnerDeletion", func() (bool, string) {
		if err := adminClient.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			return false, err.Error()
		}
		c := condOf(b, v1alpha1.ConditionStorageReady)
		return c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonForbidden &&
			strings.Contains(c.Message, "blockOwnerDeletion") && strings.Contains(c.Message, "PersistentVolumeClaim"), fmt.Sprintf("%+v", c)
	})
	ready := condOf(b, v1alpha1.ConditionReady)
	if ready.Status != metav1.ConditionFalse || ready.Reason != v1alpha1.ReasonWaitingForPrereqs || !strings.Contains(ready.Message, "StorageReady: the API server refused") {
		t.Errorf("Ready should name the refusal: %+v", ready)
	}
	if b.Status.Phase != v1alpha1.PhasePending {
		t.Errorf("phase %s, want Pending", b.Status.Phase)
	}
	// No hot loop: the refused create is retried after a growing delay.
	before := countCreates(op, "/persistentvolumeclaims")
	time.Sleep(3 * time.Second)
	if n := countCreates(op, "/persistentvolumeclaims") - before; n > 1 {
		t.Errorf("%d PVC creates in 3s after the refusal: a hot loop", n)
	}
	if refused := id.Usage.Refused(); len(refused) == 0 {
		t.Errorf("the API server refused nothing to the identity without the finalizers rule")
	}
	// The admin grants what was missing: the build goes on.
	name := "test-grant-finalizers"
	if err := adminClient.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"multiarchbuilds/finalizers"}, Verbs: []string{"update"}}}}); err != nil {
		t.Fatal(err)
	}
	if err := adminClient.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: id.ServiceAccount, Namespace: id.Namespace}}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(40 * time.Second)
	for {
		run := &tektonv1.PipelineRun{}
		err := adminClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: pipeline.RunName(b)}, run)
		_ = adminClient.Get(ctx, client.ObjectKeyFromObject(b), b)
		if err == nil && condOf(b, v1alpha1.ConditionStorageReady).Status == metav1.ConditionTrue {
			if ref := metav1.GetControllerOf(run); ref == nil || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
				t.Errorf("run's controller reference %+v should block owner deletion", ref)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no run after the grant: %v; %+v", err, b.Status.Conditions)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// setQuota creates a ResourceQuota of hard limits and fills in its status
// as kube-controller-manager's quota controller would (envtest runs none).
func setQuota(t *testing.T, ns string, hard corev1.ResourceList) {
	t.Helper()
	q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tight"}, Spec: corev1.ResourceQuotaSpec{Hard: hard}}
	if err := adminClient.Create(ctx, q); err != nil {
		t.Fatal(err)
	}
	used := corev1.ResourceList{}
	for k := range hard {
		used[k] = resource.MustParse("0")
	}
	q.Status = corev1.ResourceQuotaStatus{Hard: hard, Used: used}
	if err := adminClient.Status().Update(ctx, q); err != nil {
		t.Fatal(err)
	}
}

func TestQuotaRefusalsAreReportedOnTheOwningCondition(t *testing.T) {
	env := shared(t)
	t.Run("pvc-on-storageready", func(t *testing.T) {
		ns := newNamespace(t, adminClient)
		setQuota(t, ns, corev1.ResourceList{corev1.ResourcePersistentVolumeClaims: resource.MustParse("0")})
		startOperator(t, env, ns, readyCapacity())
		b := newBuild(ns, "quota-pvc")
		if err := adminClient.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		eventually(t, "StorageReady=False/Forbidden naming the quota", func() (bool, string) {
			if err := adminClient.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
				return false, err.Error()
			}
			c := condOf(b, v1alpha1.ConditionStorageReady)
			return c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonForbidden && strings.Contains(c.Message, "exceeded quota"), fmt.Sprintf("%+v", c)
		})
		run := &tektonv1.PipelineRun{}
		if err := adminClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: pipeline.RunName(b)}, run); !apierrors.IsNotFound(err) {
			t.Errorf("a run was created without its workspace: %v", err)
		}
	})
	t.Run("run-on-succeeded", func(t *testing.T) {
		ns := newNamespace(t, adminClient)
		setQuota(t, ns, corev1.ResourceList{"count/pipelineruns.tekton.dev": resource.MustParse("0")})
		op := startOperator(t, env, ns, readyCapacity())
		b := newBuild(ns, "quota-run")
		if err := adminClient.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		eventually(t, "Succeeded=False/Forbidden naming the quota", func() (bool, string) {
			if err := adminClient.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
				return false, err.Error()
			}
			c := condOf(b, v1alpha1.ConditionSucceeded)
			return c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonForbidden &&
				strings.Contains(c.Message, "PipelineRun") && strings.Contains(c.Message, "exceeded quota"), fmt.Sprintf("%+v", c)
		})
		claim := &corev1.PersistentVolumeClaim{}
		if err := adminClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: storage.ClaimName(b)}, claim); err != nil {
			t.Errorf("the workspace should exist: %v", err)
		}
		before := countCreates(op, "/pipelineruns")
		time.Sleep(3 * time.Second)
		if n := countCreates(op, "/pipelineruns") - before; n > 1 {
			t.Errorf("%d PipelineRun creates in 3s after the refusal: a hot loop", n)
		}
	})
}

// The builder RoleBinding, refused because the operator may not bind the
// ClusterRole its flag names, shows on BuilderReady and blocks the run (on
// OpenShift, SCC admission would refuse every build pod without it).
func TestRefusedBuilderBindingIsReported(t *testing.T) {
	env := shared(t)
	ns := newNamespace(t, adminClient)
	// A ClusterRole the operator neither may bind (the CSV grants bind only on
	// the builder SCC role) nor holds the rules of (it never reads Secrets).
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "test-reads-secrets"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}}
	if err := adminClient.Create(ctx, role); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	startOperator(t, env, ns, readyCapacity(), withSettings(func(s *settings.Settings) {
		s.BuilderClusterRole = role.Name
	}))
	b := newBuild(ns, "binding")
	if err := adminClient.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	eventually(t, "BuilderReady=False/Forbidden naming the RoleBinding", func() (bool, string) {
		if err := adminClient.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			return false, err.Error()
		}
		c := condOf(b, v1alpha1.ConditionBuilderReady)
		return c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonForbidden &&
			strings.Contains(c.Message, "RoleBinding") && strings.Contains(c.Message, "to ClusterRole test-reads-secrets"), fmt.Sprintf("%+v", c)
	})
	consistently(t, "no run without the builder's binding", 2*time.Second, func() (bool, string) {
		run := &tektonv1.PipelineRun{}
		err := adminClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: pipeline.RunName(b)}, run)
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

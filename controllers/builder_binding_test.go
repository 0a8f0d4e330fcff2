package controllers

import (
	"fmt"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
)

// The builder RoleBinding (the grant of the builder SCC ClusterRole) lives
// as long as the namespace has a MultiArchBuild: deleting one of two builds
// keeps it, deleting the last removes it, a new build brings it back. The
// ServiceAccount stays (a pod of the last build may still use it). A
// RoleBinding of the same name that is not the operator's is never deleted.
func TestBuilderBindingGoesWithTheLastBuild(t *testing.T) {
	env := shared(t)
	s := settings.Default()

	bindingKey := func(ns string) types.NamespacedName {
		return types.NamespacedName{Namespace: ns, Name: s.ServiceAccountName}
	}
	builderReady := func(t *testing.T, b *v1alpha1.MultiArchBuild) {
		t.Helper()
		eventually(t, "BuilderReady=True on "+b.Name, func() (bool, string) {
			cur := &v1alpha1.MultiArchBuild{}
			if err := adminClient.Get(ctx, client.ObjectKeyFromObject(b), cur); err != nil {
				return false, err.Error()
			}
			c := condOf(cur, v1alpha1.ConditionBuilderReady)
			return c.Status == metav1.ConditionTrue && c.Reason == v1alpha1.ReasonBuilderBound, fmt.Sprintf("%+v", c)
		})
	}
	deleteBuild := func(t *testing.T, b *v1alpha1.MultiArchBuild) {
		t.Helper()
		if err := adminClient.Delete(ctx, b); err != nil {
			t.Fatal(err)
		}
		eventually(t, b.Name+" gone", func() (bool, string) {
			err := adminClient.Get(ctx, client.ObjectKeyFromObject(b), &v1alpha1.MultiArchBuild{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	}
	bindingExists := func(ns string) func() (bool, string) {
		return func() (bool, string) {
			rb := &rbacv1.RoleBinding{}
			err := adminClient.Get(ctx, bindingKey(ns), rb)
			return err == nil && rb.DeletionTimestamp == nil, fmt.Sprint(err)
		}
	}

	t.Run("two-builds-then-one-then-none", func(t *testing.T) {
		ns := newNamespace(t, adminClient)
		startOperator(t, env, ns, readyCapacity())
		first, second := newBuild(ns, "first"), newBuild(ns, "second")
		for _, b := range []*v1alpha1.MultiArchBuild{first, second} {
			if err := adminClient.Create(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		builderReady(t, first)
		builderReady(t, second)
		rb := &rbacv1.RoleBinding{}
		if err := adminClient.Get(ctx, bindingKey(ns), rb); err != nil {
			t.Fatalf("builder RoleBinding: %v", err)
		}
		if !isBuilderBinding(rb, s.BuilderClusterRole, bindingKey(ns)) {
			t.Fatalf("the RoleBinding is not the operator's: %+v", rb)
		}

		// A shared Pipeline of the operator's (as GenerateReferenced makes
		// them) and a user's Pipeline carrying only the managed-by label.
		shared, _, err := pipeline.GenerateReferenced(pipeline.Input{Build: first, Settings: s, WorkspaceClaim: "w"})
		if err != nil {
			t.Fatal(err)
		}
		users := &tektonv1.Pipeline{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "users-own",
			Labels: map[string]string{pipeline.LabelManagedBy: pipeline.ManagedBy}}, Spec: shared.Spec}
		for _, pl := range []*tektonv1.Pipeline{shared, users} {
			// The builds' runs may have made the shared one already.
			if err := adminClient.Create(ctx, pl); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		pipelineExists := func(name string) bool {
			return adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &tektonv1.Pipeline{}) == nil
		}

		deleteBuild(t, first)
		consistently(t, "the RoleBinding kept while a build is left", 3*time.Second, bindingExists(ns))
		if !pipelineExists(shared.Name) {
			t.Errorf("the shared Pipeline went while a build is left")
		}

		deleteBuild(t, second)
		eventually(t, "the RoleBinding deleted with the last build", func() (bool, string) {
			err := adminClient.Get(ctx, bindingKey(ns), &rbacv1.RoleBinding{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
		eventually(t, "the shared Pipeline deleted with the last build", func() (bool, string) {
			return !pipelineExists(shared.Name), ""
		})
		if !pipelineExists(users.Name) {
			t.Errorf("a Pipeline the operator did not make (no %s label) was deleted", pipeline.LabelPipeline)
		}
		sa := &corev1.ServiceAccount{}
		if err := adminClient.Get(ctx, bindingKey(ns), sa); err != nil {
			t.Errorf("the builder ServiceAccount must stay (a pod of the last build may still use it): %v", err)
		}

		// A new build binds the account again at once (the operator forgot
		// that the binding existed).
		third := newBuild(ns, "third")
		if err := adminClient.Create(ctx, third); err != nil {
			t.Fatal(err)
		}
		builderReady(t, third)
		eventually(t, "the RoleBinding back for a new build", bindingExists(ns))
	})

	foreign := []struct {
		name   string
		labels map[string]string
		role   string
	}{
		// The same name, role and subject: the operator's in every way but
		// the label.
		{"no-label", nil, s.BuilderClusterRole},
		// The label, but another role.
		{"another-role", map[string]string{pipeline.LabelManagedBy: pipeline.ManagedBy}, "view"},
	}
	for _, f := range foreign {
		t.Run(f.name, func(t *testing.T) {
			ns := newNamespace(t, adminClient)
			rb := &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: s.ServiceAccountName, Labels: f.labels},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: f.role},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: s.ServiceAccountName, Namespace: ns}},
			}
			if err := adminClient.Create(ctx, rb); err != nil {
				t.Fatal(err)
			}
			startOperator(t, env, ns, readyCapacity())
			b := newBuild(ns, "only")
			if err := adminClient.Create(ctx, b); err != nil {
				t.Fatal(err)
			}
			eventually(t, "BuilderReady=False/Conflict", func() (bool, string) {
				cur := &v1alpha1.MultiArchBuild{}
				if err := adminClient.Get(ctx, client.ObjectKeyFromObject(b), cur); err != nil {
					return false, err.Error()
				}
				c := condOf(cur, v1alpha1.ConditionBuilderReady)
				return c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonConflict, fmt.Sprintf("%+v", c)
			})
			deleteBuild(t, b)
			consistently(t, "the foreign RoleBinding kept after the last build", 3*time.Second, bindingExists(ns))
			got := &rbacv1.RoleBinding{}
			if err := adminClient.Get(ctx, bindingKey(ns), got); err != nil {
				t.Fatal(err)
			}
			if got.UID != rb.UID {
				t.Errorf("the foreign RoleBinding was replaced: uid %s, want %s", got.UID, rb.UID)
			}
		})
	}
}

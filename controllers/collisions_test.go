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
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
	"github.com/multiarch-build/multiarch-build-operator/internal/storage"
)

// Objects with the names the operator uses, made by someone else, are never
// adopted: the owning condition says Conflict and names them, and no run
// starts on them.
func TestForeignObjectsWithOurNamesAreNotAdopted(t *testing.T) {
	env := shared(t)
	noRun := func(t *testing.T, b *v1alpha1.MultiArchBuild) {
		t.Helper()
		consistently(t, "no run", 2*time.Second, func() (bool, string) {
			err := adminClient.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: pipeline.RunName(b)}, &tektonv1.PipelineRun{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	}
	waitConflict := func(t *testing.T, b *v1alpha1.MultiArchBuild, condType, name string) {
		t.Helper()
		eventually(t, condType+"=False/Conflict", func() (bool, string) {
			if err := adminClient.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
				return false, err.Error()
			}
			c := condOf(b, condType)
			return c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonConflict && strings.Contains(c.Message, name), fmt.Sprintf("%+v", c)
		})
	}

	t.Run("workspace-claim", func(t *testing.T) {
		ns := newNamespace(t, adminClient)
		b := newBuild(ns, "taken")
		foreign := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: storage.ClaimName(b), Labels: map[string]string{"app": "someone-elses"}},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
				StorageClassName: ptr.To(defaultClass),
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}
		if err := adminClient.Create(ctx, foreign); err != nil {
			t.Fatal(err)
		}
		startOperator(t, env, ns, readyCapacity())
		if err := adminClient.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		waitConflict(t, b, v1alpha1.ConditionStorageReady, ns+"/"+foreign.Name)
		noRun(t, b)
		if err := adminClient.Get(ctx, client.ObjectKeyFromObject(foreign), foreign); err != nil {
			t.Fatal(err)
		}
		if len(foreign.OwnerReferences) != 0 {
			t.Errorf("the foreign claim was adopted: %+v", foreign.OwnerReferences)
		}
	})

	t.Run("builder-rolebinding", func(t *testing.T) {
		ns := newNamespace(t, adminClient)
		name := settings.Default().ServiceAccountName
		foreign := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "someone", Namespace: ns}},
		}
		if err := adminClient.Create(ctx, foreign); err != nil {
			t.Fatal(err)
		}
		startOperator(t, env, ns, readyCapacity())
		b := newBuild(ns, "bound")
		if err := adminClient.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		waitConflict(t, b, v1alpha1.ConditionBuilderReady, "RoleBinding "+ns+"/"+name)
		noRun(t, b)
		if err := adminClient.Get(ctx, client.ObjectKeyFromObject(foreign), foreign); err != nil {
			t.Fatal(err)
		}
		if foreign.RoleRef.Name != "view" || len(foreign.Subjects) != 1 || foreign.Subjects[0].Name != "someone" {
			t.Errorf("the foreign RoleBinding was changed: %+v", foreign)
		}
	})
}

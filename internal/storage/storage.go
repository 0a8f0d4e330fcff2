// Package storage builds the workspace volume of a MultiArchBuild and judges
// whether it can serve a run. It is pure: values in, objects and verdicts out.
package storage

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

// Defaults applied when the API server did not default spec.workspace (for
// example objects created before the defaults existed).
const (
	DefaultStorageClass = "efs-csi"
	DefaultSize         = "10Gi"
	claimSuffix         = "-workspace"
)

// ClaimName is the deterministic name of the build's workspace PVC.
func ClaimName(build *v1alpha1.MultiArchBuild) string {
	return build.Name + claimSuffix
}

// StorageClassName is the StorageClass the build asks for.
func StorageClassName(build *v1alpha1.MultiArchBuild) string {
	if sc := build.Spec.Workspace.StorageClassName; sc != "" {
		return sc
	}
	return DefaultStorageClass
}

// Labels are the labels of every object the operator creates for build; the
// managed-by label is what the operator's cache selects on.
func Labels(build *v1alpha1.MultiArchBuild) map[string]string {
	l := map[string]string{pipeline.LabelManagedBy: pipeline.ManagedBy}
	if len(build.Name) <= 63 { // a label value; the owner reference links longer names
		l[pipeline.LabelBuild] = build.Name
	}
	return l
}

// DesiredClaim is the ReadWriteMany PVC the build's tasks share. The caller
// sets the owner reference.
func DesiredClaim(build *v1alpha1.MultiArchBuild) *corev1.PersistentVolumeClaim {
	size := resource.MustParse(DefaultSize)
	if build.Spec.Workspace.Size != nil && !build.Spec.Workspace.Size.IsZero() {
		size = build.Spec.Workspace.Size.DeepCopy()
	}
	sc := StorageClassName(build)
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:      ClaimName(build),
			Namespace: build.Namespace,
			Labels:    Labels(build),
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			StorageClassName: &sc,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: size},
			},
		},
	}
}

// Verdict is whether the workspace can serve a run, as the StorageReady
// condition reports it.
type Verdict struct {
	// Ready is true when a run may start: the claim is Bound, or Pending on a
	// WaitForFirstConsumer class (the run's pods are the first consumer).
	Ready   bool
	Reason  string
	Message string
}

// Check judges the claim against its StorageClass. class is nil when the
// StorageClass named by the claim (or className, before the claim exists)
// does not exist.
func Check(claim *corev1.PersistentVolumeClaim, className string, class *storagev1.StorageClass) Verdict {
	if claim != nil && claim.Spec.StorageClassName != nil {
		className = *claim.Spec.StorageClassName
	}
	if claim != nil && claim.Status.Phase == corev1.ClaimBound {
		return Verdict{Ready: true, Reason: v1alpha1.ReasonVolumeBound,
			Message: fmt.Sprintf("PersistentVolumeClaim %s is Bound", claim.Name)}
	}
	if claim != nil && claim.Status.Phase == corev1.ClaimLost {
		return Verdict{Reason: v1alpha1.ReasonVolumeLost,
			Message: fmt.Sprintf("PersistentVolumeClaim %s lost its volume; delete the claim so that the operator creates a new one", claim.Name)}
	}
	if class == nil {
		return Verdict{Reason: v1alpha1.ReasonStorageClassNotFound,
			Message: fmt.Sprintf("StorageClass %q does not exist: create it (it must provide ReadWriteMany volumes, for example EFS) or set spec.workspace.storageClassName", className)}
	}
	if class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
		return Verdict{Ready: true, Reason: v1alpha1.ReasonWaitingForFirstConsumer,
			Message: fmt.Sprintf("StorageClass %q binds on first use; the build pods are the first consumer", className)}
	}
	name := "(not created yet)"
	if claim != nil {
		name = claim.Name
	}
	return Verdict{Reason: v1alpha1.ReasonVolumePending,
		Message: fmt.Sprintf("PersistentVolumeClaim %s is waiting for StorageClass %q (provisioner %s) to provision a volume", name, className, class.Provisioner)}
}

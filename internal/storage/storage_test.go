package storage

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

func build(sc string, size string) *v1alpha1.MultiArchBuild {
	b := &v1alpha1.MultiArchBuild{ObjectMeta: metav1.ObjectMeta{Name: "htop", Namespace: "ns"}}
	b.Spec.Workspace.StorageClassName = sc
	if size != "" {
		q := resource.MustParse(size)
		b.Spec.Workspace.Size = &q
	}
	return b
}

func TestDesiredClaimIsReadWriteManyWithClassSizeAndLabels(t *testing.T) {
	tests := []struct {
		name      string
		build     *v1alpha1.MultiArchBuild
		wantClass string
		wantSize  string
	}{
		{"spec values", build("nfs", "5Gi"), "nfs", "5Gi"},
		{"defaults when the server did not default", build("", ""), "efs-csi", "10Gi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DesiredClaim(tt.build)
			want := &corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Name: "htop-workspace", Namespace: "ns", Labels: map[string]string{
					"app.kubernetes.io/managed-by": "multiarch-build-operator",
					"build.multiarch.io/build":     "htop",
				}},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
					StorageClassName: ptr.To(tt.wantClass),
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceStorage: resource.MustParse(tt.wantSize)}},
				},
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("DesiredClaim (-want +got):\n%s", d)
			}
		})
	}
}

func TestCheckJudgesClaimAgainstStorageClass(t *testing.T) {
	wffc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "efs-csi"}, Provisioner: "efs.csi.aws.com",
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)}
	immediate := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "efs-csi"}, Provisioner: "efs.csi.aws.com",
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate)}
	claim := func(phase corev1.PersistentVolumeClaimPhase) *corev1.PersistentVolumeClaim {
		c := DesiredClaim(build("efs-csi", ""))
		c.Status.Phase = phase
		return c
	}
	tests := []struct {
		name       string
		claim      *corev1.PersistentVolumeClaim
		class      *storagev1.StorageClass
		wantReady  bool
		wantReason string
	}{
		{"bound", claim(corev1.ClaimBound), immediate, true, v1alpha1.ReasonVolumeBound},
		{"bound even if the class is gone", claim(corev1.ClaimBound), nil, true, v1alpha1.ReasonVolumeBound},
		{"lost", claim(corev1.ClaimLost), immediate, false, v1alpha1.ReasonVolumeLost},
		{"missing class", claim(corev1.ClaimPending), nil, false, v1alpha1.ReasonStorageClassNotFound},
		{"missing class before the claim exists", nil, nil, false, v1alpha1.ReasonStorageClassNotFound},
		{"pending on WaitForFirstConsumer does not block the run", claim(corev1.ClaimPending), wffc, true, v1alpha1.ReasonWaitingForFirstConsumer},
		{"pending on Immediate waits", claim(corev1.ClaimPending), immediate, false, v1alpha1.ReasonVolumePending},
		{"class without a binding mode is Immediate", claim(corev1.ClaimPending), &storagev1.StorageClass{Provisioner: "x"}, false, v1alpha1.ReasonVolumePending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check(tt.claim, "efs-csi", tt.class)
			if got.Ready != tt.wantReady || got.Reason != tt.wantReason {
				t.Errorf("Check = %+v, want ready=%v reason=%s", got, tt.wantReady, tt.wantReason)
			}
			if got.Reason == v1alpha1.ReasonStorageClassNotFound && !contains(got.Message, `"efs-csi"`) {
				t.Errorf("message %q does not name the StorageClass", got.Message)
			}
		})
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

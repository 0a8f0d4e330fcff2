package capacity

import (
	"encoding/json"
	"testing"

	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

func capNode(arch string, ready bool, heartbeat int64, taints ...corev1.Taint) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"kubernetes.io/arch": arch}},
		Spec:       corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: st, LastHeartbeatTime: metav1.Unix(heartbeat, 0)}}},
	}
}

func TestNodeEventsPassOnlyWhenUsabilityChanges(t *testing.T) {
	p := nodeUsabilityChanged(func() map[string][]corev1.Toleration { return nil })
	notReady := corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}
	tests := []struct {
		name     string
		old, new *corev1.Node
		want     bool
	}{
		{"kubelet heartbeat", capNode("arm64", true, 1), capNode("arm64", true, 2), false},
		{"becomes Ready but still tainted not-ready", capNode("arm64", false, 1, notReady), capNode("arm64", true, 2, notReady), false},
		{"not-ready taint lifted", capNode("arm64", true, 1, notReady), capNode("arm64", true, 1), true},
		{"goes NotReady", capNode("arm64", true, 1), capNode("arm64", false, 2), true},
		{"arch relabelled", capNode("arm64", true, 1), capNode("amd64", true, 1), true},
	}
	for _, tt := range tests {
		if got := p.Update(event.UpdateEvent{ObjectOld: tt.old, ObjectNew: tt.new}); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	if p.Create(event.CreateEvent{Object: capNode("arm64", false, 1, notReady)}) {
		t.Errorf("a new node that cannot take pods yet passed")
	}
	if !p.Create(event.CreateEvent{Object: capNode("arm64", true, 1)}) || !p.Delete(event.DeleteEvent{Object: capNode("arm64", true, 1)}) {
		t.Errorf("usable node create or any delete filtered out")
	}
}

func TestBuildArchsMapsEveryRequestedArchitecture(t *testing.T) {
	b := &v1alpha1.MultiArchBuild{}
	got := buildArchs(nil, b)
	if len(got) != 2 || got[0].Name != "amd64" || got[1].Name != "arm64" || got[0].Namespace != "" {
		t.Errorf("default platforms: %v", got)
	}
	b.Spec.Platforms = []v1alpha1.Platform{v1alpha1.PlatformLinuxS390X}
	if got := buildArchs(nil, b); len(got) != 1 || got[0].Name != "s390x" {
		t.Errorf("s390x: %v", got)
	}
}

func TestMachineEventsPassWhenALaunchFails(t *testing.T) {
	p := machineChanged()
	m := func(phase string, creation metav1.ConditionStatus) *machinev1beta1.Machine {
		st := machinev1beta1.AWSMachineProviderStatus{Conditions: []metav1.Condition{{Type: string(machinev1beta1.MachineCreation), Status: creation,
			Reason: machinev1beta1.MachineCreationFailedConditionReason, Message: "InsufficientInstanceCapacity"}}}
		raw, _ := json.Marshal(st)
		return &machinev1beta1.Machine{Status: machinev1beta1.MachineStatus{Phase: &phase, ProviderStatus: &runtime.RawExtension{Raw: raw}}}
	}
	if !p.Update(event.UpdateEvent{ObjectOld: m("Provisioning", metav1.ConditionTrue), ObjectNew: m("Provisioning", metav1.ConditionFalse)}) {
		t.Errorf("a launch that failed (MachineCreation False, phase unchanged) was filtered out")
	}
	if p.Update(event.UpdateEvent{ObjectOld: m("Provisioning", metav1.ConditionFalse), ObjectNew: m("Provisioning", metav1.ConditionFalse)}) {
		t.Errorf("a retry with the same outcome passed")
	}
}

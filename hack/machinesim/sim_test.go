package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/multiarch-build/multiarch-build-operator/internal/capacity"
)

func TestParseConfig(t *testing.T) {
	c, errs := ParseConfig(nil)
	if c.BootDelay != DefaultBootDelay || len(errs) != 0 {
		t.Fatalf("defaults: %+v %v", c, errs)
	}
	c, errs = ParseConfig(map[string]string{
		KeyBootDelay:            "5s",
		KeyUnsupported:          "m6g.xlarge@eu-west-3c, c7g.2xlarge",
		KeyInsufficientCapacity: "m6g.2xlarge@eu-west-3a\nm7g.xlarge",
		KeyNoNode:               "t4g.xlarge",
		"bootdelay":             "1s",
	})
	if c.BootDelay != 5*time.Second {
		t.Errorf("bootDelay %s", c.BootDelay)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "bootdelay") {
		t.Errorf("errors %v, want the unknown key", errs)
	}
	for _, tc := range []struct {
		typ, zone string
		want      Outcome
	}{
		{"m6g.xlarge", "eu-west-3c", Unsupported},
		{"m6g.xlarge", "eu-west-3a", Launches},
		{"c7g.2xlarge", "eu-west-3b", Unsupported},
		{"m6g.2xlarge", "eu-west-3a", InsufficientCapacity},
		{"m6g.2xlarge", "eu-west-3b", Launches},
		{"m7g.xlarge", "eu-west-3b", InsufficientCapacity},
		{"t4g.xlarge", "eu-west-3a", NeverJoins},
		{"m6i.xlarge", "eu-west-3a", Launches},
	} {
		if got := c.Launch(tc.typ, tc.zone); got != tc.want {
			t.Errorf("Launch(%s, %s) = %d, want %d", tc.typ, tc.zone, got, tc.want)
		}
	}
	if c, errs := ParseConfig(map[string]string{KeyBootDelay: "soon"}); c.BootDelay != DefaultBootDelay || len(errs) != 1 {
		t.Errorf("a bad bootDelay: %s %v, want the default and an error", c.BootDelay, errs)
	}
}

func TestAWSMessages(t *testing.T) {
	zones := OtherZones("eu-west-3", "eu-west-3a")
	if strings.Join(zones, ",") != "eu-west-3b,eu-west-3c" {
		t.Fatalf("other zones %v", zones)
	}
	got := UnsupportedMessage("m6g.xlarge", "eu-west-3a", zones)
	want := "error launching instance: Your requested instance type (m6g.xlarge) is not supported in your requested Availability Zone (eu-west-3a). " +
		"Please retry your request by not specifying an Availability Zone or choosing eu-west-3b, eu-west-3c."
	if got != want {
		t.Errorf("unsupported:\n got %s\nwant %s", got, want)
	}
	got = InsufficientCapacityMessage("m6i.xlarge", "us-east-1b", []string{"us-east-1a", "us-east-1c"}, "6f8f3bc9-19f9-460c-a127-847a8493109a")
	// the text of openshift/release#34246 (an OpenShift CI Machine), other zones aside
	want = "error creating EC2 instance: InsufficientInstanceCapacity: We currently do not have sufficient m6i.xlarge capacity in the Availability Zone you requested (us-east-1b). " +
		"Our system will be working on provisioning additional capacity. You can currently get m6i.xlarge capacity by not specifying an Availability Zone in your request or choosing us-east-1a, us-east-1c.\n" +
		"\tstatus code: 500, request id: 6f8f3bc9-19f9-460c-a127-847a8493109a"
	if got != want {
		t.Errorf("insufficient capacity:\n got %q\nwant %q", got, want)
	}
}

func machineSet(instanceType string, ann map[string]string) *machinev1beta1.MachineSet {
	raw, _ := json.Marshal(machinev1beta1.AWSMachineProviderConfig{InstanceType: instanceType})
	return &machinev1beta1.MachineSet{
		ObjectMeta: metav1.ObjectMeta{Annotations: ann},
		Spec: machinev1beta1.MachineSetSpec{Template: machinev1beta1.MachineTemplateSpec{Spec: machinev1beta1.MachineSpec{
			ProviderSpec: machinev1beta1.ProviderSpec{Value: &runtime.RawExtension{Raw: raw}}}}},
	}
}

func TestMachineSetArch(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		ann  map[string]string
		want string
	}{
		{"m6g.xlarge", nil, "arm64"},
		{"m6i.xlarge", nil, "amd64"},
		{"a1.large", nil, "arm64"},
		// the annotation wins over the instance type (as the real controllers read it)
		{"m6i.xlarge", map[string]string{capacity.AnnotationAutoscalerLabels: "kubernetes.io/arch=arm64"}, "arm64"},
		{"m6g.xlarge", map[string]string{capacity.AnnotationAutoscalerLabels: "foo=bar,kubernetes.io/arch=amd64"}, "amd64"},
		{"", nil, "amd64"},
	} {
		if got := MachineSetArch(machineSet(tc.typ, tc.ann)); got != tc.want {
			t.Errorf("%s %v: %s, want %s", tc.typ, tc.ann, got, tc.want)
		}
	}
}

func TestMachineSetAnnotations(t *testing.T) {
	got := MachineSetAnnotations(nil, "m6g.xlarge", "arm64")
	want := map[string]string{capacity.AnnotationVCPU: "4", capacity.AnnotationMemoryMb: "16384", capacity.AnnotationGPU: "0",
		capacity.AnnotationAutoscalerLabels: "kubernetes.io/arch=arm64"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
	if again := MachineSetAnnotations(got, "m6g.xlarge", "arm64"); again != nil {
		t.Errorf("second pass changes %v", again)
	}
	// an existing arch entry is kept; an unknown type gets no shape
	got = MachineSetAnnotations(map[string]string{capacity.AnnotationAutoscalerLabels: "kubernetes.io/arch=amd64"}, "z9.huge", "arm64")
	if got != nil {
		t.Errorf("unknown type with arch set: %v, want no change", got)
	}
}

func TestToDelete(t *testing.T) {
	at := func(min int) metav1.Time { return metav1.NewTime(time.Date(2026, 1, 1, 0, min, 0, 0, time.UTC)) }
	node := &corev1.ObjectReference{Name: "n"}
	del := metav1.Now()
	ms := []machinev1beta1.Machine{
		{ObjectMeta: metav1.ObjectMeta{Name: "old", CreationTimestamp: at(1)}, Status: machinev1beta1.MachineStatus{NodeRef: node}},
		{ObjectMeta: metav1.ObjectMeta{Name: "new", CreationTimestamp: at(5)}, Status: machinev1beta1.MachineStatus{NodeRef: node}},
		{ObjectMeta: metav1.ObjectMeta{Name: "mid", CreationTimestamp: at(3)}, Status: machinev1beta1.MachineStatus{NodeRef: node}},
		{ObjectMeta: metav1.ObjectMeta{Name: "going", CreationTimestamp: at(6), DeletionTimestamp: &del}},
	}
	names := func(ms []machinev1beta1.Machine) string {
		var s []string
		for _, m := range ms {
			s = append(s, m.Name)
		}
		return strings.Join(s, ",")
	}
	if got := names(ToDelete(ms, 2, "")); got != "new,mid" {
		t.Errorf("newest first: %s", got)
	}
	if got := names(ToDelete(ms, 1, "Oldest")); got != "old" {
		t.Errorf("Oldest policy: %s", got)
	}
	ms[0].Annotations = map[string]string{AnnotationDeleteMachine: "true"}
	if got := names(ToDelete(ms, 1, "")); got != "old" {
		t.Errorf("annotated first: %s", got)
	}
	ms[0].Annotations = nil
	ms[2].Status.NodeRef = nil // never got a node
	if got := names(ToDelete(ms, 1, "")); got != "mid" {
		t.Errorf("nodeless first: %s", got)
	}
	if got := names(ToDelete(ms, 9, "")); got != "mid,new,old" {
		t.Errorf("all but the one being deleted: %s", got)
	}
}

func TestNamesAndAddresses(t *testing.T) {
	for i := 0; i < 200; i++ {
		ip := PrivateIP("eu-west-3b")
		var a, b, c, d int
		if _, err := fmt.Sscanf(ip, "%d.%d.%d.%d", &a, &b, &c, &d); err != nil || a != 10 || b != 0 || c < 144 || c >= 160 || (c == 144 && d < 4) {
			t.Fatalf("PrivateIP(eu-west-3b) = %s, want in 10.0.144.0/20 past the reserved addresses", ip)
		}
		dns := PrivateDNSName(ip, "eu-west-3")
		if ipOfDNSName(dns) != ip || !strings.HasSuffix(dns, ".eu-west-3.compute.internal") {
			t.Fatalf("%s <-> %s", ip, dns)
		}
	}
	id := InstanceID()
	if len(id) != 19 || !strings.HasPrefix(id, "i-") {
		t.Errorf("instance id %q", id)
	}
	if got := ProviderID("eu-west-3a", "i-0123"); got != "aws:///eu-west-3a/i-0123" {
		t.Errorf("providerID %s", got)
	}
}

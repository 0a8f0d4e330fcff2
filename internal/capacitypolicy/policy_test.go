package capacitypolicy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
)

var armTaint = corev1.Toleration{Key: "arch", Operator: corev1.TolerationOpEqual, Value: "arm64", Effect: corev1.TaintEffectNoSchedule}

// flags are the defaults plus the flags an admin sets today.
func flags() settings.Settings {
	s := settings.Default()
	s.MachineSetZones = []string{"us-east-1a", "us-east-1b"}
	s.Tolerations["arm64"] = []corev1.Toleration{armTaint}
	return s
}

func policy(spec v1alpha1.BuildCapacityPolicySpec) *v1alpha1.BuildCapacityPolicy {
	return &v1alpha1.BuildCapacityPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.BuildCapacityPolicyName, Generation: 4},
		Spec:       spec,
	}
}

// TestNoPolicyIsTodaysBehaviour: without the object, everything comes from
// the flags, and a tenant may ask for any instance type.
func TestNoPolicyIsTodaysBehaviour(t *testing.T) {
	for name, f := range map[string]settings.Settings{"defaults": settings.Default(), "flags set": flags()} {
		t.Run(name, func(t *testing.T) {
			eff := Effective(f, nil)
			if eff.FromObject || eff.Generation != 0 || len(eff.Problems) > 0 {
				t.Errorf("FromObject %v, generation %d, problems %v", eff.FromObject, eff.Generation, eff.Problems)
			}
			if !eff.ManagedCapacity {
				t.Error("managed capacity is off without a policy")
			}
			if !NamespaceSelected(eff, nil) || !NamespaceSelected(eff, map[string]string{"any": "label"}) {
				t.Error("a namespace is not selected without a policy")
			}
			if eff.IdleTimeout != f.MachineSetIdleTimeout || eff.ProvisioningTimeout != 0 {
				t.Errorf("idle %s provisioning %s", eff.IdleTimeout, eff.ProvisioningTimeout)
			}
			if !slices.Equal(eff.Zones, f.MachineSetZones) {
				t.Errorf("zones %v, want %v", eff.Zones, f.MachineSetZones)
			}
			for arch, typ := range f.InstanceTypes {
				a := eff.Arch(arch)
				if !slices.Equal(a.InstanceTypes, []string{typ}) || a.DefaultInstanceType() != typ || a.Restricted ||
					a.MaxReplicas != f.MachineSetReplicas || !slices.Equal(a.Zones, f.MachineSetZones) ||
					!cmp.Equal(a.Tolerations, f.Tolerations[arch]) {
					t.Errorf("%s: %+v", arch, a)
				}
				ok, allowed := AllowedInstanceType(eff, arch, "x1e.32xlarge")
				if !ok || allowed != nil {
					t.Errorf("%s: any type must be allowed without a policy, got %v %v", arch, ok, allowed)
				}
				if got, err := InstanceTypes(eff, arch, map[string]string{arch: "c7g.large"}); err != nil || !slices.Equal(got, []string{"c7g.large"}) {
					t.Errorf("%s: the build's override must be used as today's InstanceTypeFor does, got %v %v", arch, got, err)
				}
				if got, _ := InstanceTypes(eff, arch, nil); !slices.Equal(got, []string{f.InstanceTypeFor(arch, nil)}) {
					t.Errorf("%s: default %v, InstanceTypeFor says %s", arch, got, f.InstanceTypeFor(arch, nil))
				}
				if ok, why := ManagedAllowed(eff, nil, arch); !ok {
					t.Errorf("%s: managed refused: %s", arch, why)
				}
			}
			if got := eff.ArchNames(); !slices.Equal(got, []string{"amd64", "arm64"}) {
				t.Errorf("architectures %v", got)
			}
		})
	}
}

// TestAnEmptyPolicyChangesNothing: an object with no field set (or only the
// CRD's default managedCapacity Enabled) is the flags.
func TestAnEmptyPolicyChangesNothing(t *testing.T) {
	f := flags()
	want := Effective(f, nil)
	for _, spec := range []v1alpha1.BuildCapacityPolicySpec{{}, {ManagedCapacity: v1alpha1.ManagedCapacityEnabled}} {
		got := Effective(f, policy(spec))
		if !got.FromObject || got.Generation != 4 {
			t.Errorf("FromObject %v generation %d", got.FromObject, got.Generation)
		}
		got.FromObject, got.Generation = false, 0
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b labels.Selector) bool { return a.String() == b.String() })); diff != "" {
			t.Errorf("empty policy %+v differs from the flags (-flags +policy):\n%s", spec, diff)
		}
	}
}

func TestManagedCapacityDisabled(t *testing.T) {
	eff := Effective(flags(), policy(v1alpha1.BuildCapacityPolicySpec{ManagedCapacity: v1alpha1.ManagedCapacityDisabled}))
	if eff.ManagedCapacity {
		t.Fatal("Disabled left managed capacity on")
	}
	ok, why := ManagedAllowed(eff, nil, "arm64")
	if ok || !strings.Contains(why, "managedCapacity Disabled") {
		t.Errorf("ManagedAllowed %v %q", ok, why)
	}
}

func TestNamespaceSelector(t *testing.T) {
	for _, c := range []struct {
		name     string
		selector *metav1.LabelSelector
		labels   map[string]string
		want     bool
	}{
		{"no selector", nil, nil, true},
		{"empty selector selects all", &metav1.LabelSelector{}, map[string]string{"a": "b"}, true},
		{"matchLabels match", &metav1.LabelSelector{MatchLabels: map[string]string{"builds": "managed"}}, map[string]string{"builds": "managed", "x": "y"}, true},
		{"matchLabels other value", &metav1.LabelSelector{MatchLabels: map[string]string{"builds": "managed"}}, map[string]string{"builds": "no"}, false},
		{"matchLabels no labels", &metav1.LabelSelector{MatchLabels: map[string]string{"builds": "managed"}}, nil, false},
		{"In", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}}, map[string]string{"team": "b"}, true},
		{"NotIn with the key absent", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"free"}}}}, nil, true},
		{"NotIn excluded", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"free"}}}}, map[string]string{"tier": "free"}, false},
		{"Exists", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "builds", Operator: metav1.LabelSelectorOpExists}}}, map[string]string{"builds": ""}, true},
		{"DoesNotExist", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "sandbox", Operator: metav1.LabelSelectorOpDoesNotExist}}}, map[string]string{"sandbox": "1"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			eff := Effective(flags(), policy(v1alpha1.BuildCapacityPolicySpec{NamespaceSelector: c.selector}))
			if got := NamespaceSelected(eff, c.labels); got != c.want {
				t.Errorf("NamespaceSelected(%v) = %v, want %v", c.labels, got, c.want)
			}
			ok, why := ManagedAllowed(eff, c.labels, "amd64")
			if ok != c.want || (!ok && !strings.Contains(why, "namespaceSelector")) {
				t.Errorf("ManagedAllowed %v %q", ok, why)
			}
			if len(eff.Problems) > 0 {
				t.Errorf("problems %v", eff.Problems)
			}
		})
	}
	t.Run("an invalid selector selects nothing and says so", func(t *testing.T) {
		eff := Effective(flags(), policy(v1alpha1.BuildCapacityPolicySpec{NamespaceSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: metav1.LabelSelectorOpIn}},
		}}))
		if NamespaceSelected(eff, map[string]string{"a": "b"}) || NamespaceSelected(eff, nil) {
			t.Error("an invalid selector selected a namespace")
		}
		if len(eff.Problems) != 1 || !strings.Contains(eff.Problems[0], "spec.namespaceSelector") {
			t.Errorf("problems %v", eff.Problems)
		}
	})
}

func TestArchitecturePolicyWinsFieldByField(t *testing.T) {
	f := flags()
	p := policy(v1alpha1.BuildCapacityPolicySpec{
		Zones: []string{"us-east-1c", "us-east-1a"},
		Architectures: []v1alpha1.ArchitectureCapacityPolicy{
			{Arch: v1alpha1.ArchARM64, InstanceTypes: []string{"m7g.2xlarge", "m6g.2xlarge"}, MaxReplicas: ptr.To[int32](3), Zones: []string{"us-east-1b"}},
			// Only maxReplicas: the flags' type stays and is not a restriction.
			{Arch: v1alpha1.ArchAMD64, MaxReplicas: ptr.To[int32](0)},
			// An architecture no flag names.
			{Arch: v1alpha1.ArchPPC64LE, InstanceTypes: []string{"bx2.4x16"}, Tolerations: []corev1.Toleration{{Key: "ppc", Operator: corev1.TolerationOpExists}}},
		},
	})
	eff := Effective(f, p)

	arm := eff.Arch("arm64")
	if !slices.Equal(arm.InstanceTypes, []string{"m7g.2xlarge", "m6g.2xlarge"}) || arm.DefaultInstanceType() != "m7g.2xlarge" || !arm.Restricted {
		t.Errorf("arm64 instance types %v restricted %v", arm.InstanceTypes, arm.Restricted)
	}
	if arm.MaxReplicas != 3 || !slices.Equal(arm.Zones, []string{"us-east-1b"}) {
		t.Errorf("arm64 replicas %d zones %v", arm.MaxReplicas, arm.Zones)
	}
	if !cmp.Equal(arm.Tolerations, []corev1.Toleration{armTaint}) {
		t.Errorf("arm64 tolerations %v: unset in the policy, the flag's must stay", arm.Tolerations)
	}

	amd := eff.Arch("amd64")
	if !slices.Equal(amd.InstanceTypes, []string{"m5a.2xlarge"}) || amd.Restricted || amd.MaxReplicas != 0 {
		t.Errorf("amd64 %+v", amd)
	}
	if !slices.Equal(amd.Zones, []string{"us-east-1c", "us-east-1a"}) {
		t.Errorf("amd64 zones %v: the policy's global zones replace the flag's", amd.Zones)
	}
	if ok, why := ManagedAllowed(eff, nil, "amd64"); ok || !strings.Contains(why, "maxReplicas 0 for amd64") {
		t.Errorf("ManagedAllowed amd64 %v %q", ok, why)
	}
	if ok, _ := ManagedAllowed(eff, nil, "arm64"); !ok {
		t.Error("arm64 managed refused")
	}

	ppc := eff.Arch("ppc64le")
	if !slices.Equal(ppc.InstanceTypes, []string{"bx2.4x16"}) || !ppc.Restricted || ppc.MaxReplicas != f.MachineSetReplicas ||
		len(ppc.Tolerations) != 1 || ppc.Tolerations[0].Key != "ppc" {
		t.Errorf("ppc64le %+v", ppc)
	}

	s390 := eff.Arch("s390x")
	if len(s390.InstanceTypes) != 0 || s390.Restricted || s390.MaxReplicas != f.MachineSetReplicas || !slices.Equal(s390.Zones, eff.Zones) {
		t.Errorf("s390x, configured nowhere: %+v", s390)
	}
	if got := eff.ArchNames(); !slices.Equal(got, []string{"amd64", "arm64", "ppc64le"}) {
		t.Errorf("architectures %v", got)
	}
}

func TestTolerationsOfThePolicyReplaceTheFlags(t *testing.T) {
	own := corev1.Toleration{Key: "builds", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	for _, c := range []struct {
		name string
		set  []corev1.Toleration
		want []corev1.Toleration
	}{
		{"unset keeps the flag's", nil, []corev1.Toleration{armTaint}},
		{"set replaces", []corev1.Toleration{own}, []corev1.Toleration{own}},
		{"an empty list clears", []corev1.Toleration{}, []corev1.Toleration{}},
	} {
		eff := Effective(flags(), policy(v1alpha1.BuildCapacityPolicySpec{Architectures: []v1alpha1.ArchitectureCapacityPolicy{{Arch: "arm64", Tolerations: c.set}}}))
		if got := eff.Arch("arm64").Tolerations; !cmp.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestZones(t *testing.T) {
	f := flags()
	for _, c := range []struct {
		name           string
		spec           v1alpha1.BuildCapacityPolicySpec
		global, arm64  []string
		amd64WantEqual []string
	}{
		{"unset: the flag's", v1alpha1.BuildCapacityPolicySpec{}, f.MachineSetZones, f.MachineSetZones, f.MachineSetZones},
		{"global replaces the flag, in order", v1alpha1.BuildCapacityPolicySpec{Zones: []string{"us-east-1d", "us-east-1a"}},
			[]string{"us-east-1d", "us-east-1a"}, []string{"us-east-1d", "us-east-1a"}, []string{"us-east-1d", "us-east-1a"}},
		{"per arch replaces the global for that arch only", v1alpha1.BuildCapacityPolicySpec{
			Zones:         []string{"us-east-1d"},
			Architectures: []v1alpha1.ArchitectureCapacityPolicy{{Arch: "arm64", Zones: []string{"us-east-1f", "us-east-1a"}}},
		}, []string{"us-east-1d"}, []string{"us-east-1f", "us-east-1a"}, []string{"us-east-1d"}},
		{"per arch over the flag's global", v1alpha1.BuildCapacityPolicySpec{
			Architectures: []v1alpha1.ArchitectureCapacityPolicy{{Arch: "arm64", Zones: []string{"us-east-1f"}}},
		}, f.MachineSetZones, []string{"us-east-1f"}, f.MachineSetZones},
	} {
		eff := Effective(f, policy(c.spec))
		if !slices.Equal(eff.Zones, c.global) || !slices.Equal(eff.Arch("arm64").Zones, c.arm64) || !slices.Equal(eff.Arch("amd64").Zones, c.amd64WantEqual) {
			t.Errorf("%s: global %v arm64 %v amd64 %v", c.name, eff.Zones, eff.Arch("arm64").Zones, eff.Arch("amd64").Zones)
		}
	}
	// No zones anywhere: empty, meaning the template MachineSet's zone.
	eff := Effective(settings.Default(), policy(v1alpha1.BuildCapacityPolicySpec{}))
	if len(eff.Zones) != 0 || len(eff.Arch("arm64").Zones) != 0 {
		t.Errorf("zones %v %v", eff.Zones, eff.Arch("arm64").Zones)
	}
}

func TestTimeouts(t *testing.T) {
	f := flags()
	for _, c := range []struct {
		name               string
		idle, provisioning string
		wantIdle, wantProv time.Duration
		problems           int
	}{
		{"unset: the flag, no provisioning limit", "", "", f.MachineSetIdleTimeout, 0, 0},
		{"set", "1h30m", "20m", 90 * time.Minute, 20 * time.Minute, 0},
		{"unparsable: the flag's, reported", "soon", "0s", f.MachineSetIdleTimeout, 0, 2},
	} {
		eff := Effective(f, policy(v1alpha1.BuildCapacityPolicySpec{IdleTimeout: c.idle, ProvisioningTimeout: c.provisioning}))
		if eff.IdleTimeout != c.wantIdle || eff.ProvisioningTimeout != c.wantProv || len(eff.Problems) != c.problems {
			t.Errorf("%s: idle %s provisioning %s problems %v", c.name, eff.IdleTimeout, eff.ProvisioningTimeout, eff.Problems)
		}
	}
}

func TestAllowedInstanceType(t *testing.T) {
	eff := Effective(flags(), policy(v1alpha1.BuildCapacityPolicySpec{Architectures: []v1alpha1.ArchitectureCapacityPolicy{
		{Arch: "arm64", InstanceTypes: []string{"m6g.2xlarge", "m7g.2xlarge"}},
		{Arch: "amd64", MaxReplicas: ptr.To[int32](2)},
	}}))
	restricted := []string{"m6g.2xlarge", "m7g.2xlarge"}
	for _, c := range []struct {
		arch, typ   string
		ok          bool
		allowed     []string
		instanceTys []string
	}{
		{"arm64", "", true, restricted, restricted},
		{"arm64", "m6g.2xlarge", true, restricted, []string{"m6g.2xlarge"}},
		{"arm64", "m7g.2xlarge", true, restricted, []string{"m7g.2xlarge"}},
		{"arm64", "m6g.16xlarge", false, restricted, nil},
		{"arm64", "m6g.2xlarge2", false, restricted, nil},
		// Listed without instance types: unrestricted.
		{"amd64", "m5.48xlarge", true, nil, []string{"m5.48xlarge"}},
		// Not listed at all: unrestricted.
		{"s390x", "bz2.8x32", true, nil, []string{"bz2.8x32"}},
	} {
		ok, allowed := AllowedInstanceType(eff, c.arch, c.typ)
		if ok != c.ok || !slices.Equal(allowed, c.allowed) {
			t.Errorf("AllowedInstanceType(%s, %q) = %v %v, want %v %v", c.arch, c.typ, ok, allowed, c.ok, c.allowed)
		}
		var override map[string]string
		if c.typ != "" {
			override = map[string]string{c.arch: c.typ}
		}
		got, err := InstanceTypes(eff, c.arch, override)
		if c.ok != (err == nil) || !slices.Equal(got, c.instanceTys) {
			t.Errorf("InstanceTypes(%s, %q) = %v %v", c.arch, c.typ, got, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "spec.capacity.instanceTypes."+c.arch) || !strings.Contains(err.Error(), "m7g.2xlarge")) {
			t.Errorf("the error must name the field and the allowed types: %v", err)
		}
	}
	// The caller may not change the policy through the returned list.
	_, allowed := AllowedInstanceType(eff, "arm64", "x")
	allowed[0] = "changed"
	if eff.Arch("arm64").InstanceTypes[0] != "m6g.2xlarge" {
		t.Error("AllowedInstanceType returned the policy's own slice")
	}
}

// TestEffectiveCopies: the result shares no slice with the flags or the
// object, so a caller (or an informer's cached object) is never changed.
func TestEffectiveCopies(t *testing.T) {
	f := flags()
	p := policy(v1alpha1.BuildCapacityPolicySpec{
		Zones:         []string{"z1"},
		Architectures: []v1alpha1.ArchitectureCapacityPolicy{{Arch: "arm64", InstanceTypes: []string{"m6g.large"}, Zones: []string{"z2"}}},
	})
	eff := Effective(f, p)
	eff.Zones[0] = "x"
	a := eff.Architectures["arm64"]
	a.InstanceTypes[0], a.Zones[0] = "x", "x"
	if p.Spec.Zones[0] != "z1" || p.Spec.Architectures[0].InstanceTypes[0] != "m6g.large" || p.Spec.Architectures[0].Zones[0] != "z2" {
		t.Errorf("Effective shares slices with the object: %+v", p.Spec)
	}
	eff2 := Effective(f, nil)
	eff2.Zones[0] = "x"
	eff2.Architectures["arm64"].Tolerations[0].Key = "x"
	if f.MachineSetZones[0] != "us-east-1a" || f.Tolerations["arm64"][0].Key != "arch" {
		t.Error("Effective shares slices with the flags")
	}
}

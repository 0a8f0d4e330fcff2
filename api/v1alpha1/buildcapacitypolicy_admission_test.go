package v1alpha1_test

import (
	"context"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// validPolicy is a BuildCapacityPolicy the API server accepts, with every
// field set. Each case starts from a fresh copy and breaks one thing.
func validPolicy() map[string]any {
	return map[string]any{
		"apiVersion": "build.multiarch.io/v1alpha1",
		"kind":       "BuildCapacityPolicy",
		"metadata":   map[string]any{"name": "cluster"},
		"spec": map[string]any{
			"managedCapacity":     "Enabled",
			"namespaceSelector":   map[string]any{"matchLabels": map[string]any{"builds": "managed"}},
			"zones":               []any{"us-east-1a", "us-east-1b"},
			"idleTimeout":         "20m",
			"provisioningTimeout": "15m",
			"architectures": []any{
				map[string]any{
					"arch":          "arm64",
					"instanceTypes": []any{"m6g.2xlarge", "m7g.2xlarge"},
					"maxReplicas":   int64(3),
					"tolerations":   []any{map[string]any{"key": "arch", "value": "arm64", "operator": "Equal", "effect": "NoSchedule"}},
					"zones":         []any{"us-east-1b"},
				},
				map[string]any{"arch": "amd64", "instanceTypes": []any{"m5a.2xlarge"}},
			},
		},
	}
}

func arch0(path string, v any) func(map[string]any) {
	return func(o map[string]any) {
		archs := o["spec"].(map[string]any)["architectures"].([]any)
		archs[0].(map[string]any)[path] = v
	}
}

var invalidPolicyCases = []admissionCase{
	{"name other than cluster", setTo("metadata.name", "default"), "metadata.name must be cluster"},
	{"managedCapacity unknown", setTo("spec.managedCapacity", "Sometimes"), "spec.managedCapacity"},
	{"instance types duplicate", arch0("instanceTypes", []any{"m6g.2xlarge", "m7g.2xlarge", "m6g.2xlarge"}), "spec.architectures[].instanceTypes must not list an instance type twice"},
	{"instance type empty", arch0("instanceTypes", []any{""}), "spec.architectures[].instanceTypes entries must be instance types"},
	{"instance types empty list", arch0("instanceTypes", []any{}), "instanceTypes"},
	{"instance type malformed", arch0("instanceTypes", []any{"m6g 2xlarge"}), "spec.architectures[].instanceTypes entries must be instance types"},
	{"instance type with shell", arch0("instanceTypes", []any{"m6g.2xlarge;id"}), "spec.architectures[].instanceTypes"},
	{"arch unknown", arch0("arch", "mips"), "spec.architectures[0].arch"},
	{"arch listed twice", func(o map[string]any) {
		o["spec"].(map[string]any)["architectures"] = []any{
			map[string]any{"arch": "arm64", "instanceTypes": []any{"m6g.2xlarge"}},
			map[string]any{"arch": "arm64", "instanceTypes": []any{"m7g.2xlarge"}},
		}
	}, "spec.architectures[1]"},
	{"maxReplicas negative", arch0("maxReplicas", int64(-1)), "spec.architectures[0].maxReplicas"},
	{"maxReplicas too large", arch0("maxReplicas", int64(101)), "spec.architectures[0].maxReplicas"},
	{"zones duplicate", setTo("spec.zones", []any{"us-east-1a", "us-east-1b", "us-east-1a"}), "spec.zones must not list a zone twice"},
	{"zone malformed", setTo("spec.zones", []any{"us east"}), "spec.zones entries must be zone names"},
	{"arch zones duplicate", arch0("zones", []any{"us-east-1b", "us-east-1b"}), "spec.architectures[].zones must not list a zone twice"},
	{"idleTimeout not a duration", setTo("spec.idleTimeout", "soon"), "spec.idleTimeout must be a positive duration"},
	{"idleTimeout zero", setTo("spec.idleTimeout", "0s"), "spec.idleTimeout must be a positive duration"},
	{"idleTimeout negative", setTo("spec.idleTimeout", "-5m"), "spec.idleTimeout"},
	{"idleTimeout in days", setTo("spec.idleTimeout", "1d"), "spec.idleTimeout"},
	{"provisioningTimeout bad", setTo("spec.provisioningTimeout", "10 minutes"), "spec.provisioningTimeout must be a positive duration"},
	{"provisioningTimeout zero", setTo("spec.provisioningTimeout", "0m"), "spec.provisioningTimeout"},
	{"selector unknown operator", setTo("spec.namespaceSelector", map[string]any{"matchExpressions": []any{map[string]any{"key": "a", "operator": "Like"}}}), "spec.namespaceSelector.matchExpressions[].operator must be In, NotIn, Exists or DoesNotExist"},
	{"selector In without values", setTo("spec.namespaceSelector", map[string]any{"matchExpressions": []any{map[string]any{"key": "a", "operator": "In"}}}), "spec.namespaceSelector.matchExpressions[].values must not be empty"},
	{"selector Exists with values", setTo("spec.namespaceSelector", map[string]any{"matchExpressions": []any{map[string]any{"key": "a", "operator": "Exists", "values": []any{"x"}}}}), "spec.namespaceSelector.matchExpressions[].values must be empty"},
}

// TestBuildCapacityPolicyAdmission creates each broken policy and requires an
// Invalid error that names the field and the fix.
func TestBuildCapacityPolicyAdmission(t *testing.T) {
	ctx := context.Background()
	for _, tc := range invalidPolicyCases {
		t.Run(tc.name, func(t *testing.T) {
			o := validPolicy()
			tc.mutate(o)
			err := k8s.Create(ctx, &unstructured.Unstructured{Object: o}, client.DryRunAll)
			if err == nil {
				t.Fatalf("accepted an invalid BuildCapacityPolicy: %v", o["spec"])
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error does not say %q: %v", tc.field, err)
			}
			t.Logf("rejected: %v", err)
		})
	}
}

func TestBuildCapacityPolicyAcceptsValidPolicies(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		mutate func(map[string]any)
	}{
		{"every field", func(map[string]any) {}},
		{"empty spec", setTo("spec", map[string]any{})},
		{"no spec", func(o map[string]any) { delete(o, "spec") }},
		{"disabled", setTo("spec.managedCapacity", "Disabled")},
		{"arch with only maxReplicas 0", arch0("maxReplicas", int64(0))},
		{"arch without instance types", func(o map[string]any) {
			o["spec"].(map[string]any)["architectures"] = []any{map[string]any{"arch": "s390x", "maxReplicas": int64(0)}}
		}},
		{"composite durations", func(o map[string]any) {
			set(o, "spec.idleTimeout", "1h30m")
			set(o, "spec.provisioningTimeout", "90s")
		}},
		{"empty selector", setTo("spec.namespaceSelector", map[string]any{})},
		{"selector with every operator", setTo("spec.namespaceSelector", map[string]any{"matchExpressions": []any{
			map[string]any{"key": "a", "operator": "In", "values": []any{"x"}},
			map[string]any{"key": "b", "operator": "NotIn", "values": []any{"y"}},
			map[string]any{"key": "c", "operator": "Exists"},
			map[string]any{"key": "d", "operator": "DoesNotExist", "values": []any{}},
		}})},
		{"azure-style zones", setTo("spec.zones", []any{"1", "2", "3"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := validPolicy()
			tc.mutate(o)
			if err := k8s.Create(ctx, &unstructured.Unstructured{Object: o}, client.DryRunAll); err != nil {
				t.Fatalf("rejected a valid BuildCapacityPolicy: %v", err)
			}
		})
	}
}

// TestBuildCapacityPolicyRoundTrip: the object is cluster-scoped, named
// cluster, defaults managedCapacity to Enabled and nothing else, and a typed
// read-modify-write keeps the durations as written (no generation bump that
// a GitOps tool would see as drift).
func TestBuildCapacityPolicyRoundTrip(t *testing.T) {
	ctx := context.Background()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "build.multiarch.io/v1alpha1",
		"kind":       "BuildCapacityPolicy",
		"metadata":   map[string]any{"name": "cluster"},
		"spec":       map[string]any{"idleTimeout": "30m"},
	}}
	if err := k8s.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = k8s.Delete(ctx, u) }()
	p := &v1alpha1.BuildCapacityPolicy{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: v1alpha1.BuildCapacityPolicyName}, p); err != nil {
		t.Fatal(err)
	}
	if p.Namespace != "" {
		t.Errorf("namespace %q: the policy must be cluster-scoped", p.Namespace)
	}
	if p.Spec.ManagedCapacity != v1alpha1.ManagedCapacityEnabled {
		t.Errorf("managedCapacity default %q, want Enabled", p.Spec.ManagedCapacity)
	}
	if p.Spec.ProvisioningTimeout != "" || p.Spec.Zones != nil || p.Spec.Architectures != nil || p.Spec.NamespaceSelector != nil {
		t.Errorf("the CRD defaulted a field whose default is an operator flag: %+v", p.Spec)
	}
	gen := p.Generation
	if err := k8s.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Name: v1alpha1.BuildCapacityPolicyName}, p); err != nil {
		t.Fatal(err)
	}
	if p.Generation != gen || p.Spec.IdleTimeout != "30m" {
		t.Errorf("typed round trip changed the spec: generation %d -> %d, idleTimeout %q", gen, p.Generation, p.Spec.IdleTimeout)
	}
	// The status is a subresource: a spec update does not write it.
	p.Status.ObservedGeneration = 7
	if err := k8s.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Name: v1alpha1.BuildCapacityPolicyName}, p); err != nil {
		t.Fatal(err)
	}
	if p.Status.ObservedGeneration != 0 {
		t.Error("an update of the main resource wrote the status: the status subresource is missing")
	}
}

// TestBuildCapacityPolicyIsExplained: every field has a description for
// kubectl explain, and the short name, scope and printer columns are as
// documented.
func TestBuildCapacityPolicyIsExplained(t *testing.T) {
	crds, err := testenv.LoadCRDs(testenv.Ours)
	if err != nil {
		t.Fatal(err)
	}
	var crd *apiextensionsv1.CustomResourceDefinition
	for _, c := range crds {
		if c.Name == "buildcapacitypolicies.build.multiarch.io" {
			crd = c
		}
	}
	if crd == nil {
		t.Fatal("BuildCapacityPolicy CRD not found in config/crd/bases")
	}
	if crd.Spec.Scope != apiextensionsv1.ClusterScoped || len(crd.Spec.Names.ShortNames) == 0 || crd.Spec.Names.ShortNames[0] != "bcp" {
		t.Errorf("scope %s, short names %v", crd.Spec.Scope, crd.Spec.Names.ShortNames)
	}
	v := crd.Spec.Versions[0]
	if v.Subresources == nil || v.Subresources.Status == nil {
		t.Error("status subresource missing")
	}
	var cols []string
	for _, c := range v.AdditionalPrinterColumns {
		cols = append(cols, c.Name)
	}
	if got := strings.Join(cols, ","); got != "Managed,Architectures,Idle Timeout,Age" {
		t.Errorf("printer columns: %s", got)
	}
	count := 0
	var walk func(path string, s apiextensionsv1.JSONSchemaProps)
	walk = func(path string, s apiextensionsv1.JSONSchemaProps) {
		for name, p := range s.Properties {
			fp := path + "." + name
			if strings.HasPrefix(fp, ".metadata") || strings.HasPrefix(fp, ".apiVersion") || strings.HasPrefix(fp, ".kind") {
				continue
			}
			count++
			if strings.TrimSpace(p.Description) == "" {
				t.Errorf("%s has no description for kubectl explain", fp)
			}
			walk(fp, p)
			if p.Items != nil && p.Items.Schema != nil {
				walk(fp+"[]", *p.Items.Schema)
			}
		}
	}
	walk("", *v.Schema.OpenAPIV3Schema)
	if count < 20 {
		t.Errorf("walked only %d fields; the schema looks truncated", count)
	}
}

package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// The capacity policy of config/policy: a MultiArchBuild may ask only for
// the instance types, and get Managed capacity only in the namespaces, that
// the cluster admin's BuildCapacityPolicy cluster allows.

func isCapacityDenial(err error) bool {
	return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+capacityPolicyName+"'")
}

func withInstanceTypes(kv ...string) mutation {
	return func(b *v1alpha1.MultiArchBuild) {
		b.Spec.Capacity.InstanceTypes = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			b.Spec.Capacity.InstanceTypes[kv[i]] = kv[i+1]
		}
	}
}

func withCapacityPolicy(p v1alpha1.CapacityPolicy) mutation {
	return func(b *v1alpha1.MultiArchBuild) { b.Spec.Capacity.Policy = p }
}

func chain(ms ...mutation) mutation {
	return func(b *v1alpha1.MultiArchBuild) {
		for _, m := range ms {
			m(b)
		}
	}
}

// setCapacityPolicy creates or replaces the spec of the BuildCapacityPolicy
// cluster, as an admin's GitOps sync does.
func (g *guardRails) setCapacityPolicy(t *testing.T, spec v1alpha1.BuildCapacityPolicySpec) {
	t.Helper()
	ctx := context.Background()
	p := &v1alpha1.BuildCapacityPolicy{}
	err := g.c.Get(ctx, client.ObjectKey{Name: v1alpha1.BuildCapacityPolicyName}, p)
	switch {
	case apierrors.IsNotFound(err):
		p = &v1alpha1.BuildCapacityPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.BuildCapacityPolicyName}, Spec: spec}
		if err := g.c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	case err != nil:
		t.Fatal(err)
	default:
		p.Spec = spec
		if err := g.c.Update(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
}

func (g *guardRails) deleteCapacityPolicy(t *testing.T) {
	t.Helper()
	p := &v1alpha1.BuildCapacityPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.BuildCapacityPolicyName}}
	if err := g.c.Delete(context.Background(), p); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

// expectCapacityRefused requires a denial by the capacity policy whose
// message says every string of want.
func (g *guardRails) expectCapacityRefused(t *testing.T, name, ns string, m mutation, want ...string) {
	t.Helper()
	err := g.create(t, ns, m, client.DryRunAll)
	if err == nil {
		t.Errorf("%s: accepted", name)
		return
	}
	if !isCapacityDenial(err) {
		t.Errorf("%s: want a Forbidden from ValidatingAdmissionPolicy %s, got %v", name, capacityPolicyName, err)
		return
	}
	t.Logf("%s: refused: %v", name, err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: the message does not say %q: %v", name, w, err)
		}
	}
}

func (g *guardRails) expectCapacityAccepted(t *testing.T, name, ns string, m mutation) {
	t.Helper()
	if err := g.create(t, ns, m, client.DryRunAll); err != nil {
		t.Errorf("%s: refused: %v", name, err)
	}
}

func TestCapacityPolicyOnTheAPIServer(t *testing.T) {
	g := startWithPolicy(t)
	ctx := context.Background()
	// tenant-a is selected by the selectors below, team-b is not.
	ns := &corev1.Namespace{}
	if err := g.c.Get(ctx, client.ObjectKey{Name: "tenant-a"}, ns); err != nil {
		t.Fatal(err)
	}
	ns.Labels = map[string]string{"builds.example.com/capacity": "managed", "tier": "paid"}
	if err := g.c.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}

	t.Run("the binding reads the BuildCapacityPolicy cluster, and allows without it", func(t *testing.T) {
		b := g.policy.capacityBinding
		ref := b.Spec.ParamRef
		if ref == nil || ref.Name != v1alpha1.BuildCapacityPolicyName || ref.Namespace != "" || ref.Selector != nil {
			t.Fatalf("paramRef %+v: want name %s, no namespace (cluster-scoped), no selector", ref, v1alpha1.BuildCapacityPolicyName)
		}
		if ref.ParameterNotFoundAction == nil || *ref.ParameterNotFoundAction != admissionregistrationv1.AllowAction {
			t.Errorf("parameterNotFoundAction %v: want Allow (no policy = the operator's flags)", ref.ParameterNotFoundAction)
		}
		if pk := g.policy.capacityPolicy.Spec.ParamKind; pk == nil || pk.APIVersion != v1alpha1.GroupVersion.String() || pk.Kind != "BuildCapacityPolicy" {
			t.Errorf("paramKind %+v", pk)
		}
		if b.Spec.PolicyName != g.policy.capacityPolicy.Name {
			t.Errorf("the binding binds %q, the policy is %q", b.Spec.PolicyName, g.policy.capacityPolicy.Name)
		}
	})

	t.Run("the policy type-checks without warnings", func(t *testing.T) {
		g.typeCheck(t, capacityPolicyName)
	})

	t.Run("without a BuildCapacityPolicy everything is allowed", func(t *testing.T) {
		g.expectCapacityAccepted(t, "any instance type", "team-b", withInstanceTypes("arm64", "m6g.16xlarge", "amd64", "m5.48xlarge"))
		g.expectCapacityAccepted(t, "Managed in any namespace", "team-b", withCapacityPolicy(v1alpha1.CapacityManaged))
	})

	g.setCapacityPolicy(t, v1alpha1.BuildCapacityPolicySpec{
		Architectures: []v1alpha1.ArchitectureCapacityPolicy{
			{Arch: v1alpha1.ArchARM64, InstanceTypes: []string{"m6g.2xlarge", "m7g.2xlarge"}},
			// Listed without instance types: any type.
			{Arch: v1alpha1.ArchAMD64, MaxReplicas: ptr.To[int32](2)},
		},
	})
	g.eventually(t, "the BuildCapacityPolicy to be enforced", func() (bool, string) {
		err := g.create(t, "tenant-a", withInstanceTypes("arm64", "m6g.16xlarge"), client.DryRunAll)
		return isCapacityDenial(err), fmt.Sprint(err)
	})

	t.Run("instance types", func(t *testing.T) {
		g.expectCapacityAccepted(t, "the default type", "tenant-a", withInstanceTypes("arm64", "m6g.2xlarge"))
		g.expectCapacityAccepted(t, "a fallback type", "tenant-a", withInstanceTypes("arm64", "m7g.2xlarge"))
		g.expectCapacityAccepted(t, "no type asked", "tenant-a", nil)
		g.expectCapacityAccepted(t, "an arch the policy lists no types for", "tenant-a", withInstanceTypes("amd64", "m5.48xlarge", "arm64", "m6g.2xlarge"))
		g.expectCapacityAccepted(t, "an arch the policy does not list", "tenant-a", withInstanceTypes("s390x", "bz2.8x32"))
		g.expectCapacityRefused(t, "a type not listed", "tenant-a", withInstanceTypes("arm64", "m6g.16xlarge"),
			`spec.capacity.instanceTypes.arm64 "m6g.16xlarge" is not allowed`, "m6g.2xlarge, m7g.2xlarge", "BuildCapacityPolicy cluster",
			"to use the default, m6g.2xlarge")
		g.expectCapacityRefused(t, "a look-alike of a listed type", "tenant-a", withInstanceTypes("arm64", "m6g.2xlarge2", "amd64", "m5a.large"),
			`spec.capacity.instanceTypes.arm64 "m6g.2xlarge2"`, "m6g.2xlarge, m7g.2xlarge")
	})

	t.Run("an update to a disallowed type is refused, deletion is not", func(t *testing.T) {
		b := newBuild("tenant-a", withInstanceTypes("arm64", "m7g.2xlarge"))
		if err := g.c.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		cur := &v1alpha1.MultiArchBuild{}
		if err := g.c.Get(ctx, client.ObjectKeyFromObject(b), cur); err != nil {
			t.Fatal(err)
		}
		cur.Spec.Capacity.InstanceTypes["arm64"] = "x2gd.metal"
		if err := g.c.Update(ctx, cur); !isCapacityDenial(err) || !strings.Contains(err.Error(), "x2gd.metal") {
			t.Errorf("update to a disallowed type: want a denial naming it, got %v", err)
		}
		if err := g.c.Delete(ctx, b); err != nil {
			t.Errorf("delete: %v", err)
		}
	})

	t.Run("Managed only in the namespaces the selector selects", func(t *testing.T) {
		for _, sel := range []struct {
			name     string
			selector *metav1.LabelSelector
			text     string
		}{
			{"matchLabels", &metav1.LabelSelector{MatchLabels: map[string]string{"builds.example.com/capacity": "managed"}}, "builds.example.com/capacity=managed"},
			{"matchExpressions", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"paid", "internal"}},
				{Key: "sandbox", Operator: metav1.LabelSelectorOpDoesNotExist},
			}}, "tier In (paid, internal), sandbox DoesNotExist"},
		} {
			t.Run(sel.name, func(t *testing.T) {
				g.setCapacityPolicy(t, v1alpha1.BuildCapacityPolicySpec{NamespaceSelector: sel.selector})
				g.eventually(t, "the selector to be enforced", func() (bool, string) {
					err := g.create(t, "team-b", nil, client.DryRunAll)
					return isCapacityDenial(err), fmt.Sprint(err)
				})
				g.expectCapacityAccepted(t, "Managed in a selected namespace", "tenant-a", withCapacityPolicy(v1alpha1.CapacityManaged))
				g.expectCapacityAccepted(t, "Unmanaged in another namespace", "team-b", withCapacityPolicy(v1alpha1.CapacityUnmanaged))
				g.expectCapacityRefused(t, "Managed in another namespace", "team-b", withCapacityPolicy(v1alpha1.CapacityManaged),
					"spec.capacity.policy Managed is not allowed in namespace team-b", sel.text, "Set spec.capacity.policy to Unmanaged")
				g.expectCapacityRefused(t, "the default policy (Managed) in another namespace", "team-b", nil, "spec.capacity.policy Managed")
			})
		}
		t.Run("NotIn selects a namespace without the label", func(t *testing.T) {
			g.setCapacityPolicy(t, v1alpha1.BuildCapacityPolicySpec{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"paid"}},
			}}})
			g.eventually(t, "the selector to be enforced", func() (bool, string) {
				err := g.create(t, "tenant-a", nil, client.DryRunAll)
				return isCapacityDenial(err), fmt.Sprint(err)
			})
			g.expectCapacityAccepted(t, "Managed without the label", "team-b", withCapacityPolicy(v1alpha1.CapacityManaged))
		})
		t.Run("managedCapacity Disabled refuses no build", func(t *testing.T) {
			g.setCapacityPolicy(t, v1alpha1.BuildCapacityPolicySpec{
				ManagedCapacity:   v1alpha1.ManagedCapacityDisabled,
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"nobody": "x"}},
			})
			g.eventually(t, "Disabled to be seen", func() (bool, string) {
				err := g.create(t, "team-b", nil, client.DryRunAll)
				return err == nil, fmt.Sprint(err)
			})
		})
		t.Run("an empty selector selects every namespace", func(t *testing.T) {
			g.setCapacityPolicy(t, v1alpha1.BuildCapacityPolicySpec{NamespaceSelector: &metav1.LabelSelector{}})
			g.eventually(t, "the empty selector to be seen", func() (bool, string) {
				err := g.create(t, "team-b", nil, client.DryRunAll)
				return err == nil, fmt.Sprint(err)
			})
		})
	})

	t.Run("deleting the BuildCapacityPolicy allows everything again", func(t *testing.T) {
		g.setCapacityPolicy(t, v1alpha1.BuildCapacityPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"nobody": "x"}},
			Architectures:     []v1alpha1.ArchitectureCapacityPolicy{{Arch: v1alpha1.ArchARM64, InstanceTypes: []string{"m6g.large"}}},
		})
		g.eventually(t, "the policy to refuse", func() (bool, string) {
			err := g.create(t, "tenant-a", nil, client.DryRunAll)
			return isCapacityDenial(err), fmt.Sprint(err)
		})
		g.deleteCapacityPolicy(t)
		g.eventually(t, "builds to be accepted without the policy", func() (bool, string) {
			err := g.create(t, "team-b", withInstanceTypes("arm64", "m6g.16xlarge"), client.DryRunAll)
			return err == nil, fmt.Sprint(err)
		})
	})
}

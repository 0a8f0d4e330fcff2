// Package policy tests the admin guard rails of config/policy: the
// ValidatingAdmissionPolicy that refuses MultiArchBuilds whose images or
// ServiceAccount are not on the cluster admin's allow-list, rendered with
// the kustomize Go API (as `kubectl apply -k config/policy` and `make
// deploy` render it) and enforced by a real kube-apiserver (envtest).
package policy

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

const (
	operatorNamespace = "multiarch-build-system"
	// policyName names the policy, its binding and the allow-list ConfigMap.
	policyName = "multiarch-build-image-policy"
	// capacityPolicyName names the capacity policy and its binding.
	capacityPolicyName = "multiarch-build-capacity-policy"
	// componentLabel marks the guard-rail objects (hack/bundlegen leaves
	// them out of the OLM bundle).
	componentLabel = "app.kubernetes.io/component"
	component      = "admission-policy"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
}

// render runs kustomize on dir (relative to the repository root) the way
// `kubectl apply -k` does.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), testenv.RepoRoot()+"/"+dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out
}

// rendered is config/policy's objects, typed: the image allow-list policy
// (policy, binding, params) and the capacity policy (capacityPolicy,
// capacityBinding), whose parameters are the cluster admin's
// BuildCapacityPolicy, not installed with it.
type rendered struct {
	policy          *admissionregistrationv1.ValidatingAdmissionPolicy
	binding         *admissionregistrationv1.ValidatingAdmissionPolicyBinding
	params          *corev1.ConfigMap
	capacityPolicy  *admissionregistrationv1.ValidatingAdmissionPolicy
	capacityBinding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
	objs            []*unstructured.Unstructured
}

func renderPolicy(t *testing.T) rendered {
	t.Helper()
	r := rendered{objs: render(t, "config/policy")}
	for _, u := range r.objs {
		var into any
		switch key := u.GetKind() + "/" + u.GetName(); key {
		case "ValidatingAdmissionPolicy/" + policyName:
			r.policy = &admissionregistrationv1.ValidatingAdmissionPolicy{}
			into = r.policy
		case "ValidatingAdmissionPolicyBinding/" + policyName:
			r.binding = &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
			into = r.binding
		case "ConfigMap/" + policyName:
			r.params = &corev1.ConfigMap{}
			into = r.params
		case "ValidatingAdmissionPolicy/" + capacityPolicyName:
			r.capacityPolicy = &admissionregistrationv1.ValidatingAdmissionPolicy{}
			into = r.capacityPolicy
		case "ValidatingAdmissionPolicyBinding/" + capacityPolicyName:
			r.capacityBinding = &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
			into = r.capacityBinding
		default:
			t.Fatalf("config/policy renders an unexpected %s", key)
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
			t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	if r.policy == nil || r.binding == nil || r.params == nil {
		t.Fatalf("config/policy must render the image policy, its binding and its ConfigMap; got %d objects", len(r.objs))
	}
	if r.capacityPolicy == nil || r.capacityBinding == nil {
		t.Fatalf("config/policy must render the capacity policy and its binding; got %d objects", len(r.objs))
	}
	return r
}

// allowList parses a key of the ConfigMap as the policy does: entries one
// per line or comma-separated, blank lines and # comments ignored.
func allowList(v string) []string {
	var out []string
	for _, line := range strings.Split(v, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, e := range strings.Split(line, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

// TestTheDefaultAllowListIsTheOperatorsDefaults: out of the box only the
// images the operator itself would use are allowed, and no ServiceAccount
// but the operator-managed one.
func TestTheDefaultAllowListIsTheOperatorsDefaults(t *testing.T) {
	r := renderPolicy(t)
	s := settings.Default()
	for key, want := range map[string][]string{
		"builderImages":   {s.BuilderImage},
		"nodejsImages":    {s.NodeJSImage},
		"mavenImages":     {s.MavenImage},
		"serviceAccounts": nil,
	} {
		v, ok := r.params.Data[key]
		if !ok {
			t.Errorf("ConfigMap %s has no key %s", r.params.Name, key)
			continue
		}
		if got := allowList(v); !slices.Equal(got, want) {
			t.Errorf("ConfigMap %s key %s allows %q, want the operator's default %q", r.params.Name, key, got, want)
		}
	}
	if got := slices.Sorted(maps.Keys(r.params.Data)); !slices.Equal(got, []string{"builderImages", "mavenImages", "nodejsImages", "serviceAccounts"}) {
		t.Errorf("ConfigMap keys %v", got)
	}
	// The builder account the policy always allows is the operator's.
	found := false
	for _, v := range r.policy.Spec.Validations {
		if strings.Contains(v.Expression, "variables.serviceAccount == '"+s.ServiceAccountName+"'") {
			found = true
		}
	}
	if !found {
		t.Errorf("no validation of the policy allows the operator-managed ServiceAccount %q", s.ServiceAccountName)
	}
	if r.params.Namespace != operatorNamespace || r.params.Name != policyName {
		t.Errorf("ConfigMap is %s/%s, want %s/%s", r.params.Namespace, r.params.Name, operatorNamespace, policyName)
	}
	ref := r.binding.Spec.ParamRef
	switch {
	case ref == nil:
		t.Fatal("the binding has no paramRef")
	case ref.Name != r.params.Name || ref.Namespace != r.params.Namespace:
		t.Errorf("the binding reads ConfigMap %s/%s, config/policy installs %s/%s", ref.Namespace, ref.Name, r.params.Namespace, r.params.Name)
	case ref.ParameterNotFoundAction == nil || *ref.ParameterNotFoundAction != admissionregistrationv1.DenyAction:
		t.Errorf("parameterNotFoundAction %v: want Deny (a missing allow-list must not allow everything)", ref.ParameterNotFoundAction)
	}
	if r.binding.Spec.PolicyName != r.policy.Name {
		t.Errorf("the binding binds %q, the policy is %q", r.binding.Spec.PolicyName, r.policy.Name)
	}
	if !slices.Equal(r.binding.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}) {
		t.Errorf("validationActions %v: want [Deny]", r.binding.Spec.ValidationActions)
	}
}

// TestConfigDefaultInstallsThePolicyAsConfigPolicyDoes: `make deploy`
// (config/default) and `kubectl apply -k config/policy` (OLM installs)
// create the same objects, with the same names.
func TestConfigDefaultInstallsThePolicyAsConfigPolicyDoes(t *testing.T) {
	want := map[string]*unstructured.Unstructured{}
	for _, u := range render(t, "config/policy") {
		if u.GetLabels()[componentLabel] != component {
			t.Errorf("%s %s lacks the label %s=%s that keeps it out of the OLM bundle", u.GetKind(), u.GetName(), componentLabel, component)
		}
		want[u.GetKind()+"/"+u.GetName()] = u
	}
	got := map[string]*unstructured.Unstructured{}
	for _, u := range render(t, "config/default") {
		if u.GetLabels()[componentLabel] == component {
			got[u.GetKind()+"/"+u.GetName()] = u
		}
	}
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
		t.Fatalf("config/default installs %v, config/policy %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	for k, w := range want {
		if !equalObjects(w.Object, got[k].Object) {
			t.Errorf("%s differs between config/default and config/policy:\n%v\n%v", k, got[k].Object, w.Object)
		}
	}
}

func equalObjects(a, b map[string]any) bool {
	return fmt.Sprint(a) == fmt.Sprint(b) // fmt prints maps sorted by key
}

// guardRails is the API server with config/policy installed.
type guardRails struct {
	c      client.Client
	cfg    *rest.Config
	policy rendered
}

func startWithPolicy(t *testing.T) *guardRails {
	t.Helper()
	env := testenv.Start(t, testenv.Ours)
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	g := &guardRails{c: c, cfg: env.Config, policy: renderPolicy(t)}
	ctx := context.Background()
	for _, ns := range []string{operatorNamespace, "tenant-a", "team-b"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range g.policy.objs {
		if err := c.Create(ctx, u.DeepCopy()); err != nil {
			t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	// The policy is enforced asynchronously (the API server's policy,
	// binding and parameter informers): wait until a hostile build is
	// refused by it.
	g.eventually(t, "the policy to be enforced", func() (bool, string) {
		err := g.create(t, "tenant-a", withBuilderImage("evil.example.com/buildah/stable:v1.41"), client.DryRunAll)
		return isPolicyDenial(err), fmt.Sprint(err)
	})
	return g
}

func (g *guardRails) eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var why string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, why = cond(); ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %s", what, why)
}

func isPolicyDenial(err error) bool {
	return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+policyName+"'")
}

type mutation func(*v1alpha1.MultiArchBuild)

func withBuilderImage(img string) mutation {
	return func(b *v1alpha1.MultiArchBuild) { b.Spec.BuilderImage = img }
}

func withNodeJSImage(img string) mutation {
	return func(b *v1alpha1.MultiArchBuild) {
		b.Spec.Strategy.Type = v1alpha1.StrategyNodeJS
		b.Spec.Strategy.NodeJS = &v1alpha1.NodeJSStrategy{Image: img}
	}
}

func withMavenImage(img string) mutation {
	return func(b *v1alpha1.MultiArchBuild) {
		b.Spec.Strategy.Type = v1alpha1.StrategyMaven
		b.Spec.Strategy.Maven = &v1alpha1.MavenStrategy{Image: img}
	}
}

func withServiceAccount(sa string) mutation {
	return func(b *v1alpha1.MultiArchBuild) { b.Spec.ServiceAccountName = sa }
}

func newBuild(ns string, muts ...mutation) *v1alpha1.MultiArchBuild {
	b := &v1alpha1.MultiArchBuild{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "guard-", Namespace: ns},
		Spec: v1alpha1.MultiArchBuildSpec{
			Source: v1alpha1.SourceSpec{Git: v1alpha1.GitSource{URL: "https://github.com/example/app.git"}},
			Output: v1alpha1.OutputSpec{Image: "quay.io/example/app:1"},
		},
	}
	for _, m := range muts {
		m(b)
	}
	return b
}

func (g *guardRails) create(t *testing.T, ns string, m mutation, opts ...client.CreateOption) error {
	t.Helper()
	var muts []mutation
	if m != nil {
		muts = append(muts, m)
	}
	return g.c.Create(context.Background(), newBuild(ns, muts...), opts...)
}

// refusal is a hostile build and what its refusal must say.
type refusal struct {
	name string
	ns   string
	mut  mutation
	// field and allowed must appear in the message: what to fix, and what
	// is allowed instead.
	field   string
	allowed []string
}

func (g *guardRails) expectRefused(t *testing.T, rc refusal) {
	t.Helper()
	err := g.create(t, rc.ns, rc.mut)
	if err == nil {
		t.Fatalf("%s: accepted", rc.name)
	}
	if !isPolicyDenial(err) {
		t.Fatalf("%s: want a Forbidden from ValidatingAdmissionPolicy %s, got %v", rc.name, policyName, err)
	}
	msg := err.Error()
	t.Logf("%s: refused: %s", rc.name, msg)
	for _, want := range append([]string{rc.field, operatorNamespace + "/" + policyName}, rc.allowed...) {
		if !strings.Contains(msg, want) {
			t.Errorf("%s: the message does not say %q: %s", rc.name, want, msg)
		}
	}
}

func (g *guardRails) expectAccepted(t *testing.T, name, ns string, m mutation) {
	t.Helper()
	if err := g.create(t, ns, m); err != nil {
		t.Errorf("%s: refused: %v", name, err)
	}
}

// setAllowList replaces the ConfigMap's data, as an admin's
// `kubectl edit` does.
func (g *guardRails) setAllowList(t *testing.T, data map[string]string) {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := g.c.Get(context.Background(), client.ObjectKey{Namespace: operatorNamespace, Name: policyName}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data = data
	if err := g.c.Update(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
}

func TestGuardRailsOnTheAPIServer(t *testing.T) {
	g := startWithPolicy(t)
	s := settings.Default()
	ctx := context.Background()

	t.Run("the policy type-checks without warnings", func(t *testing.T) {
		g.typeCheck(t, policyName)
	})

	t.Run("defaults and empty fields are accepted", func(t *testing.T) {
		for _, c := range []struct {
			name string
			mut  mutation
		}{
			{"nothing set", nil},
			{"builderImage empty", withBuilderImage("")},
			{"builderImage the operator's", withBuilderImage(s.BuilderImage)},
			{"nodejs image the operator's", withNodeJSImage(s.NodeJSImage)},
			{"nodejs image defaulted by the CRD", withNodeJSImage("")},
			{"maven image the operator's", withMavenImage(s.MavenImage)},
			{"maven image defaulted by the CRD", withMavenImage("")},
			{"serviceAccountName empty", withServiceAccount("")},
			{"serviceAccountName the operator-managed builder", withServiceAccount(s.ServiceAccountName)},
		} {
			g.expectAccepted(t, c.name, "tenant-a", c.mut)
		}
	})

	t.Run("the samples are accepted", func(t *testing.T) {
		for _, u := range render(t, "config/samples") {
			u.SetNamespace("tenant-a")
			if err := g.c.Create(ctx, u, client.DryRunAll); err != nil {
				t.Errorf("sample %s: %v", u.GetName(), err)
			}
		}
	})

	defaultBuilder := []string{s.BuilderImage}
	t.Run("hostile builds are refused naming the field and the allowed values", func(t *testing.T) {
		for _, rc := range []refusal{
			{name: "builderImage from another registry", mut: withBuilderImage("evil.example.com/buildah/stable:v1.41"), field: `spec.builderImage "evil.example.com/buildah/stable:v1.41"`, allowed: defaultBuilder},
			{name: "builderImage another tag of the allowed repository", mut: withBuilderImage("quay.io/buildah/stable:latest"), field: "spec.builderImage", allowed: defaultBuilder},
			{name: "builderImage the allowed tag with a suffix", mut: withBuilderImage(s.BuilderImage + "-evil"), field: "spec.builderImage", allowed: defaultBuilder},
			{name: "builderImage the allowed tag pinned to another digest", mut: withBuilderImage(s.BuilderImage + "@sha256:" + strings.Repeat("a", 64)), field: "spec.builderImage", allowed: defaultBuilder},
			{name: "nodejs image not listed", mut: withNodeJSImage("docker.io/library/node:20"), field: `spec.strategy.nodejs.image "docker.io/library/node:20"`, allowed: []string{s.NodeJSImage}},
			{name: "maven image not listed", mut: withMavenImage("docker.io/library/maven:3"), field: `spec.strategy.maven.image "docker.io/library/maven:3"`, allowed: []string{s.MavenImage}},
			{name: "serviceAccountName of another account", mut: withServiceAccount("deployer"), field: `spec.serviceAccountName "deployer"`, allowed: []string{"serviceAccounts", "multiarch-builder"}},
			{name: "serviceAccountName default", mut: withServiceAccount("default"), field: "spec.serviceAccountName", allowed: []string{"serviceAccounts"}},
			{name: "serviceAccountName with the builder's name as prefix", mut: withServiceAccount(s.ServiceAccountName + "-admin"), field: "spec.serviceAccountName", allowed: []string{"serviceAccounts"}},
		} {
			rc.ns = "tenant-a"
			g.expectRefused(t, rc)
		}
	})

	t.Run("a tenant's own ConfigMap of the same name is never read", func(t *testing.T) {
		own := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "tenant-a", Name: policyName},
			Data:       map[string]string{"builderImages": "*", "nodejsImages": "*", "mavenImages": "*", "serviceAccounts": "*"},
		}
		if err := g.c.Create(ctx, own); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = g.c.Delete(ctx, own) }()
		// Give the API server's parameter informer the time to see it.
		time.Sleep(2 * time.Second)
		g.expectRefused(t, refusal{name: "builderImage with a tenant allow-list", ns: "tenant-a", mut: withBuilderImage("evil.example.com/buildah/stable:v1.41"), field: "spec.builderImage", allowed: defaultBuilder})
		g.expectRefused(t, refusal{name: "serviceAccountName with a tenant allow-list", ns: "tenant-a", mut: withServiceAccount("deployer"), field: "spec.serviceAccountName"})
	})

	t.Run("an update to a disallowed image is refused", func(t *testing.T) {
		b := newBuild("tenant-a", withBuilderImage(s.BuilderImage))
		if err := g.c.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		for _, m := range []struct {
			field string
			mut   mutation
		}{
			{"spec.builderImage", withBuilderImage("evil.example.com/buildah/stable:v1.41")},
			{"spec.strategy.nodejs.image", withNodeJSImage("docker.io/library/node:20")},
			{"spec.serviceAccountName", withServiceAccount("deployer")},
		} {
			cur := &v1alpha1.MultiArchBuild{}
			if err := g.c.Get(ctx, client.ObjectKeyFromObject(b), cur); err != nil {
				t.Fatal(err)
			}
			m.mut(cur)
			err := g.c.Update(ctx, cur)
			if !isPolicyDenial(err) || !strings.Contains(err.Error(), m.field) {
				t.Errorf("update of %s: want a denial naming it, got %v", m.field, err)
			}
		}
		// An allowed update goes through.
		cur := &v1alpha1.MultiArchBuild{}
		if err := g.c.Get(ctx, client.ObjectKeyFromObject(b), cur); err != nil {
			t.Fatal(err)
		}
		cur.Spec.BuilderImage = ""
		if err := g.c.Update(ctx, cur); err != nil {
			t.Errorf("update back to the default image: %v", err)
		}
	})

	t.Run("an admin's edit of the ConfigMap takes effect", func(t *testing.T) {
		g.setAllowList(t, map[string]string{
			"builderImages": s.BuilderImage + "\n# the mirror's tools, any tag\nregistry.example.com/tools/*\n",
			"nodejsImages":  s.NodeJSImage + ", registry.example.com/node:20,registry.example.com/node:22",
			"mavenImages":   s.MavenImage + "\n\n  registry.example.com/maven:3  \n",
			"serviceAccounts": "deployer\n" +
				"team-b/special\n" +
				"ci-*\n",
		})
		g.eventually(t, "the prefix entry to allow an image", func() (bool, string) {
			err := g.create(t, "tenant-a", withBuilderImage("registry.example.com/tools/buildah:v1.41"), client.DryRunAll)
			return err == nil, fmt.Sprint(err)
		})
		for _, c := range []struct {
			name, ns string
			mut      mutation
		}{
			{"prefix wildcard, deeper path", "tenant-a", withBuilderImage("registry.example.com/tools/team/buildah:1")},
			{"the default still listed", "tenant-a", withBuilderImage(s.BuilderImage)},
			{"comma-separated entry", "tenant-a", withNodeJSImage("registry.example.com/node:22")},
			{"entry with blanks around it", "tenant-a", withMavenImage("registry.example.com/maven:3")},
			{"ServiceAccount by name, any namespace", "tenant-a", withServiceAccount("deployer")},
			{"ServiceAccount by namespace/name", "team-b", withServiceAccount("special")},
			{"ServiceAccount by prefix", "tenant-a", withServiceAccount("ci-robot")},
		} {
			g.expectAccepted(t, c.name, c.ns, c.mut)
		}
		allowedBuilder := []string{s.BuilderImage, "registry.example.com/tools/*"}
		for _, rc := range []refusal{
			{name: "a look-alike of the prefix", ns: "tenant-a", mut: withBuilderImage("registry.example.com/toolsevil/buildah:1"), field: "spec.builderImage", allowed: allowedBuilder},
			{name: "another path of the same registry", ns: "tenant-a", mut: withBuilderImage("registry.example.com/other/buildah:1"), field: "spec.builderImage", allowed: allowedBuilder},
			{name: "a comment is not an entry", ns: "tenant-a", mut: withBuilderImage("registry.example.com/any/image:1"), field: "spec.builderImage"},
			{name: "nodejs tag not listed", ns: "tenant-a", mut: withNodeJSImage("registry.example.com/node:18"), field: "spec.strategy.nodejs.image", allowed: []string{"registry.example.com/node:20", "registry.example.com/node:22"}},
			{name: "namespace/name entry in another namespace", ns: "tenant-a", mut: withServiceAccount("special"), field: "spec.serviceAccountName", allowed: []string{"team-b/special", "ci-*"}},
			{name: "ServiceAccount not listed", ns: "team-b", mut: withServiceAccount("admin"), field: "spec.serviceAccountName"},
		} {
			g.expectRefused(t, rc)
		}
	})

	t.Run("an image taken off the list blocks the next update, not deletion or status", func(t *testing.T) {
		// Allowed now (the previous step's list).
		b := newBuild("tenant-a", withBuilderImage("registry.example.com/tools/buildah:v1.41"))
		b.Finalizers = []string{"example.com/hold"}
		if err := g.c.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		g.setAllowList(t, map[string]string{"builderImages": s.BuilderImage})
		g.eventually(t, "the prefix entry to be gone", func() (bool, string) {
			err := g.create(t, "tenant-a", withBuilderImage("registry.example.com/tools/buildah:v1.41"), client.DryRunAll)
			return isPolicyDenial(err), fmt.Sprint(err)
		})
		// A rebuild (annotation) would start a run with the banned image.
		cur := &v1alpha1.MultiArchBuild{}
		if err := g.c.Get(ctx, client.ObjectKeyFromObject(b), cur); err != nil {
			t.Fatal(err)
		}
		cur.Annotations = map[string]string{v1alpha1.RebuildAnnotation: "1"}
		if err := g.c.Update(ctx, cur); !isPolicyDenial(err) || !strings.Contains(err.Error(), "spec.builderImage") {
			t.Errorf("rebuild of a build with a banned image: want a denial naming spec.builderImage, got %v", err)
		}
		// The operator's writes are status patches: not matched.
		if err := g.c.Get(ctx, client.ObjectKeyFromObject(b), cur); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Status.Phase = v1alpha1.PhasePending
		if err := g.c.Status().Patch(ctx, cur, patch); err != nil {
			t.Errorf("status patch of a build with a banned image: %v", err)
		}
		// Deletion works, and so does removing a finalizer from a build
		// being deleted (the garbage collector's foreground deletion does
		// that with an update).
		if err := g.c.Delete(ctx, cur); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if err := g.c.Get(ctx, client.ObjectKeyFromObject(b), cur); err != nil {
			t.Fatal(err)
		}
		cur.Finalizers = nil
		if err := g.c.Update(ctx, cur); err != nil {
			t.Errorf("removing the finalizer of a build being deleted: %v", err)
		}
		g.eventually(t, "the build to be gone", func() (bool, string) {
			err := g.c.Get(ctx, client.ObjectKeyFromObject(b), &v1alpha1.MultiArchBuild{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	})

	t.Run("without the ConfigMap every create is refused (parameterNotFoundAction Deny)", func(t *testing.T) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: policyName}}
		if err := g.c.Delete(ctx, cm); err != nil {
			t.Fatal(err)
		}
		g.eventually(t, "a default build to be refused", func() (bool, string) {
			err := g.create(t, "tenant-a", nil, client.DryRunAll)
			return err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+policyName+"'") &&
				strings.Contains(err.Error(), "no params found"), fmt.Sprint(err)
		})
		// Restored by the admin: builds are accepted again.
		for _, u := range g.policy.objs {
			if u.GetKind() == "ConfigMap" {
				if err := g.c.Create(ctx, u.DeepCopy()); err != nil {
					t.Fatal(err)
				}
			}
		}
		g.eventually(t, "a default build to be accepted", func() (bool, string) {
			err := g.create(t, "tenant-a", nil, client.DryRunAll)
			return err == nil, fmt.Sprint(err)
		})
	})
}

// typeCheck runs the type checker kube-controller-manager's
// ValidatingAdmissionPolicy status controller runs to fill
// status.typeChecking (envtest runs no controller manager), with the
// schemas the API server publishes (the CRD's and the ConfigMap's), and
// requires no warning. The installed policy's status is checked too, in case
// a controller manager filled it.
func (g *guardRails) typeCheck(t *testing.T, name string) {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(g.cfg)
	if err != nil {
		t.Fatal(err)
	}
	httpClient, err := rest.HTTPClientFor(g.cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper, err := apiutil.NewDynamicRESTMapper(g.cfg, httpClient)
	if err != nil {
		t.Fatal(err)
	}
	checker := &validating.TypeChecker{
		SchemaResolver: &resolver.ClientDiscoveryResolver{Discovery: dc},
		RestMapper:     mapper,
	}
	installed := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	if err := g.c.Get(context.Background(), client.ObjectKey{Name: name}, installed); err != nil {
		t.Fatal(err)
	}
	warnings := check(checker, installed)
	for _, w := range warnings {
		t.Errorf("type checking %s: %s", w.FieldRef, w.Warning)
	}
	t.Logf("type checked %d validations, %d variables and %d match conditions: %d warnings",
		len(installed.Spec.Validations), len(installed.Spec.Variables), len(installed.Spec.MatchConditions), len(warnings))
	if tc := installed.Status.TypeChecking; tc != nil && len(tc.ExpressionWarnings) > 0 {
		t.Errorf("status.typeChecking of the installed policy: %+v", tc.ExpressionWarnings)
	}
	// The check is not vacuous: the schemas were found, and a misspelt
	// field, a misspelt ConfigMap field and a wrong type are reported.
	for _, bad := range []struct {
		what    string
		breakIt func(*admissionregistrationv1.ValidatingAdmissionPolicySpec)
	}{
		{"a misspelt field of the build", func(s *admissionregistrationv1.ValidatingAdmissionPolicySpec) {
			s.Validations[0].Expression = "object.spec.builderImag == ''"
		}},
		{"a wrong type", func(s *admissionregistrationv1.ValidatingAdmissionPolicySpec) {
			s.Validations[0].Expression = "object.spec.runHistoryLimit == 'three'"
		}},
		{"a misspelt field of the ConfigMap in a variable", func(s *admissionregistrationv1.ValidatingAdmissionPolicySpec) {
			s.Variables[0].Expression = "params.dta.builderImages.split(',')"
		}},
		{"a misspelt field in a match condition", func(s *admissionregistrationv1.ValidatingAdmissionPolicySpec) {
			s.MatchConditions[0].Expression = "!has(object.metadata.deletionTimestam)"
		}},
	} {
		broken := installed.DeepCopy()
		bad.breakIt(&broken.Spec)
		if warnings := check(checker, broken); len(warnings) == 0 {
			t.Errorf("the type checker finds nothing wrong with %s: it did not resolve the schemas or skipped the policy", bad.what)
		}
	}
}

// check is what the status controller checks (validations and their
// message expressions), plus the variables and match conditions it leaves
// to run time, each against the same schemas.
func check(checker *validating.TypeChecker, p *admissionregistrationv1.ValidatingAdmissionPolicy) []admissionregistrationv1.ExpressionWarning {
	warnings := checker.Check(p)
	ctx := checker.CreateContext(p)
	for i, v := range p.Spec.Variables {
		if res := checker.CheckExpression(ctx, v.Expression); len(res) > 0 {
			warnings = append(warnings, admissionregistrationv1.ExpressionWarning{FieldRef: fmt.Sprintf("spec.variables[%d].expression", i), Warning: res.String()})
		}
	}
	for i, m := range p.Spec.MatchConditions {
		if res := checker.CheckExpression(ctx, m.Expression); len(res) > 0 {
			warnings = append(warnings, admissionregistrationv1.ExpressionWarning{FieldRef: fmt.Sprintf("spec.matchConditions[%d].expression", i), Warning: res.String()})
		}
	}
	return warnings
}

// TestAnOverlayMovesTheAllowListAndTheBindingFollows: an OLM install in
// another namespace applies config/policy through an overlay with its own
// namespace; the binding must then read the ConfigMap there.
func TestAnOverlayMovesTheAllowListAndTheBindingFollows(t *testing.T) {
	dir := t.TempDir()
	base, err := filepath.Rel(dir, filepath.Join(testenv.RepoRoot(), "config", "policy"))
	if err != nil {
		t.Fatal(err)
	}
	k := "namespace: openshift-operators\nresources:\n- " + base + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var cmNamespace, refNamespace, refName string
	for _, r := range resMap.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		switch u.GetKind() {
		case "ConfigMap":
			cmNamespace = u.GetNamespace()
		case "ValidatingAdmissionPolicyBinding":
			ns, _, _ := unstructured.NestedString(m, "spec", "paramRef", "namespace")
			name, _, _ := unstructured.NestedString(m, "spec", "paramRef", "name")
			if u.GetName() == policyName {
				refNamespace, refName = ns, name
			} else if ns != "" {
				// A cluster-scoped paramKind: the API server refuses to
				// evaluate a binding whose paramRef names a namespace.
				t.Errorf("the overlay gives binding %s (paramRef %s) the paramRef namespace %q", u.GetName(), name, ns)
			}
		}
	}
	if cmNamespace != "openshift-operators" || refNamespace != cmNamespace || refName != policyName {
		t.Errorf("the overlay puts the ConfigMap in %q, the binding reads %s/%s", cmNamespace, refNamespace, refName)
	}
}

// Package manifests tests what `make deploy` installs (config/default,
// rendered with the kustomize Go API exactly as `kustomize build` does) and
// the user documentation in docs/.
package manifests

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const (
	repoRoot          = "../.."
	operatorNamespace = "multiarch-build-system"
	namePrefix        = "multiarch-build-"
	// builderSCCRole is the ClusterRole the build ServiceAccount is bound to.
	builderSCCRole = namePrefix + "builder-scc"
)

type rendered struct {
	objs []map[string]interface{}
}

func render(t *testing.T, dir string) rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), repoRoot+"/"+dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v%s", dir, err, renderHint(err))
	}
	var r rendered
	for _, res := range resMap.Resources() {
		m, err := res.Map()
		if err != nil {
			t.Fatal(err)
		}
		r.objs = append(r.objs, m)
	}
	return r
}

// renderHint explains the two ways config/default fails to render that come
// from outside config/: a missing generated role.yaml, and Roles generated
// from namespaced RBAC markers.
func renderHint(err error) string {
	switch msg := err.Error(); {
	case strings.Contains(msg, "role.yaml"):
		return " (config/rbac/role.yaml is written by `make manifests`)"
	case strings.Contains(msg, "ID conflict"):
		return " (a +kubebuilder:rbac marker with namespace=... generates a Role per namespace; config/default's" +
			" namespace: moves them all into " + operatorNamespace + ", where they collide, and OLM cannot grant rights in" +
			" other namespaces either: use cluster-scoped markers, narrowed with resourceNames=...)"
	}
	return ""
}

// all converts every rendered object of kind into T.
func all[T any](t *testing.T, r rendered, kind string) []*T {
	t.Helper()
	var out []*T
	for _, o := range r.objs {
		if o["kind"] != kind {
			continue
		}
		v := new(T)
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o, v, true); err != nil {
			t.Fatalf("%s %v: %v", kind, o["metadata"], err)
		}
		out = append(out, v)
	}
	return out
}

func TestDefaultRendersOneDeploymentRunningRestricted(t *testing.T) {
	r := render(t, "config/default")
	deps := all[appsv1.Deployment](t, r, "Deployment")
	if len(deps) != 1 {
		t.Fatalf("want one Deployment, got %d", len(deps))
	}
	d := deps[0]
	if d.Name != namePrefix+"controller-manager" || d.Namespace != operatorNamespace {
		t.Errorf("Deployment is %s/%s, want %s/%scontroller-manager", d.Namespace, d.Name, operatorNamespace, namePrefix)
	}
	pod := d.Spec.Template.Spec
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and seccompProfile RuntimeDefault", psc)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Error("the manager must not use host namespaces")
	}
	if pod.ServiceAccountName != namePrefix+"controller-manager" {
		t.Errorf("serviceAccountName %q", pod.ServiceAccountName)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("manager container has no securityContext")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation must be false")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem must be true")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("the manager must not be privileged")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities %+v: want drop [ALL] and nothing added", sc.Capabilities)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("runAsNonRoot must be true on the container too")
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("no %s request", res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			t.Errorf("no %s limit", res)
		}
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.IntValue() != 8081 {
			t.Errorf("%s probe %+v: want GET %s on 8081", p.name, p.probe, p.path)
		}
	}
	for _, arg := range []string{"--leader-elect", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8443"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}
	if strings.HasPrefix(c.Image, "controller") {
		t.Errorf("image %q: config/manager's images: entry was not applied", c.Image)
	}
}

func TestDefaultPutsEverythingNamespacedInTheOperatorNamespace(t *testing.T) {
	r := render(t, "config/default")
	for _, o := range r.objs {
		meta, _ := o["metadata"].(map[string]interface{})
		ns, _ := meta["namespace"].(string)
		name, _ := meta["name"].(string)
		if o["kind"] == "Namespace" {
			if name != operatorNamespace {
				t.Errorf("Namespace %s, want %s", name, operatorNamespace)
			}
			continue
		}
		if ns != "" && ns != operatorNamespace {
			t.Errorf("%s %s/%s is outside %s", o["kind"], ns, name, operatorNamespace)
		}
		if o["kind"] != "CustomResourceDefinition" && !strings.HasPrefix(name, namePrefix) {
			t.Errorf("%s %s lacks the %q prefix", o["kind"], name, namePrefix)
		}
	}
}

type roleRules struct {
	kind, namespace, name string
	rules                 []rbacv1.PolicyRule
}

func roles(t *testing.T, r rendered) map[string]roleRules {
	out := map[string]roleRules{}
	for _, cr := range all[rbacv1.ClusterRole](t, r, "ClusterRole") {
		out["ClusterRole/"+cr.Name] = roleRules{"ClusterRole", "", cr.Name, cr.Rules}
	}
	for _, ro := range all[rbacv1.Role](t, r, "Role") {
		out["Role/"+ro.Namespace+"/"+ro.Name] = roleRules{"Role", ro.Namespace, ro.Name, ro.Rules}
	}
	return out
}

func TestNoRBACRuleHasAWildcardVerbOrResource(t *testing.T) {
	r := render(t, "config/default")
	for key, role := range roles(t, r) {
		for _, rule := range role.rules {
			for _, v := range rule.Verbs {
				if v == rbacv1.VerbAll {
					t.Errorf("%s grants every verb: %+v", key, rule)
				}
			}
			for _, res := range rule.Resources {
				if res == rbacv1.ResourceAll || strings.HasSuffix(res, "/*") {
					t.Errorf("%s grants every resource: %+v", key, rule)
				}
			}
			for _, u := range rule.NonResourceURLs {
				if strings.Contains(u, "*") {
					t.Errorf("%s grants a wildcard URL: %+v", key, rule)
				}
			}
		}
	}
}

// allows reports whether the rules of role allow verb on group/resource.
func allows(role roleRules, group, resource, verb string) bool {
	for _, rule := range role.rules {
		if slices.Contains(rule.APIGroups, group) && slices.Contains(rule.Resources, resource) && slices.Contains(rule.Verbs, verb) {
			return true
		}
	}
	return false
}

// operatorRoles returns the roles bound to the manager's ServiceAccount.
func operatorRoles(t *testing.T, r rendered) []roleRules {
	t.Helper()
	sa := namePrefix + "controller-manager"
	all2 := roles(t, r)
	var out []roleRules
	binds := func(subjects []rbacv1.Subject) bool {
		for _, s := range subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == operatorNamespace {
				return true
			}
		}
		return false
	}
	for _, b := range all[rbacv1.ClusterRoleBinding](t, r, "ClusterRoleBinding") {
		if binds(b.Subjects) {
			out = append(out, all2["ClusterRole/"+b.RoleRef.Name])
		}
	}
	for _, b := range all[rbacv1.RoleBinding](t, r, "RoleBinding") {
		if !binds(b.Subjects) {
			continue
		}
		if b.RoleRef.Kind == "ClusterRole" {
			out = append(out, all2["ClusterRole/"+b.RoleRef.Name])
		} else {
			out = append(out, all2["Role/"+b.Namespace+"/"+b.RoleRef.Name])
		}
	}
	return out
}

func TestEveryBindingReferencesARenderedRoleAndServiceAccount(t *testing.T) {
	r := render(t, "config/default")
	rs := roles(t, r)
	sas := map[string]bool{}
	for _, sa := range all[corev1.ServiceAccount](t, r, "ServiceAccount") {
		sas[sa.Namespace+"/"+sa.Name] = true
	}
	bound := map[string]bool{}
	check := func(kind, ns, name string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
		key := "ClusterRole/" + ref.Name
		if ref.Kind == "Role" {
			key = "Role/" + ns + "/" + ref.Name
		}
		if _, ok := rs[key]; !ok {
			t.Errorf("%s %s references %s, which is not rendered", kind, name, key)
		}
		bound[key] = true
		for _, s := range subjects {
			if s.Kind == "ServiceAccount" && !sas[s.Namespace+"/"+s.Name] {
				t.Errorf("%s %s binds ServiceAccount %s/%s, which is not rendered", kind, name, s.Namespace, s.Name)
			}
		}
	}
	for _, b := range all[rbacv1.ClusterRoleBinding](t, r, "ClusterRoleBinding") {
		check("ClusterRoleBinding", "", b.Name, b.RoleRef, b.Subjects)
	}
	for _, b := range all[rbacv1.RoleBinding](t, r, "RoleBinding") {
		check("RoleBinding", b.Namespace, b.Name, b.RoleRef, b.Subjects)
	}
	// A Role nobody binds grants nothing: typically a +kubebuilder:rbac marker
	// with namespace=..., whose Role kustomize moves into the operator's
	// namespace and for which no RoleBinding exists.
	for key, role := range rs {
		if role.kind == "Role" && !bound[key] {
			t.Errorf("%s is bound by no RoleBinding", key)
		}
	}
}

func TestOperatorHoldsWhatItsFlagsNeed(t *testing.T) {
	r := render(t, "config/default")
	ops := operatorRoles(t, r)
	can := func(group, resource, verb string) bool {
		for _, role := range ops {
			if allows(role, group, resource, verb) {
				return true
			}
		}
		return false
	}
	for _, need := range []struct{ why, group, resource, verb string }{
		{"--leader-elect", "coordination.k8s.io", "leases", "create"},
		{"--leader-elect", "coordination.k8s.io", "leases", "update"},
		{"--metrics-bind-address=:8443 (authenticated)", "authentication.k8s.io", "tokenreviews", "create"},
		{"--metrics-bind-address=:8443 (authorized)", "authorization.k8s.io", "subjectaccessreviews", "create"},
		{"reconciling MultiArchBuilds", "build.multiarch.io", "multiarchbuilds", "watch"},
		{"reporting status", "build.multiarch.io", "multiarchbuilds/status", "patch"},
	} {
		if !can(need.group, need.resource, need.verb) {
			t.Errorf("%s needs %s on %s.%s, which no role bound to the manager grants", need.why, need.verb, need.resource, need.group)
		}
	}
}

// TestBuilderSCCRoleIsBindableByTheOperator checks the builder side: the
// ClusterRole that lets build pods use pipelines-scc exists, and when the
// operator holds "bind" on a ClusterRole by name (to create the RoleBinding
// of the builder ServiceAccount), that name is one that is installed.
func TestBuilderSCCRoleIsBindableByTheOperator(t *testing.T) {
	r := render(t, "config/default")
	rs := roles(t, r)
	builder, ok := rs["ClusterRole/"+builderSCCRole]
	if !ok {
		t.Fatalf("ClusterRole %s is not rendered", builderSCCRole)
	}
	found := false
	for _, rule := range builder.rules {
		if slices.Contains(rule.APIGroups, "security.openshift.io") && slices.Contains(rule.Resources, "securitycontextconstraints") &&
			slices.Equal(rule.Verbs, []string{"use"}) && slices.Contains(rule.ResourceNames, "pipelines-scc") {
			found = true
		}
	}
	if !found {
		t.Errorf("%s does not grant only use on pipelines-scc: %+v", builderSCCRole, builder.rules)
	}
	for _, role := range operatorRoles(t, r) {
		for _, rule := range role.rules {
			if slices.Contains(rule.APIGroups, "rbac.authorization.k8s.io") && slices.Contains(rule.Resources, "clusterroles") && slices.Contains(rule.Verbs, "bind") {
				if len(rule.ResourceNames) == 0 {
					t.Errorf("%s may bind any ClusterRole: restrict it with resourceNames", role.name)
				}
				for _, n := range rule.ResourceNames {
					if _, ok := rs["ClusterRole/"+n]; !ok {
						t.Errorf("%s may bind ClusterRole %s, which is not installed (the rendered builder role is %s)", role.name, n, builderSCCRole)
					}
				}
			}
		}
	}
}

func TestSamplesRender(t *testing.T) {
	r := render(t, "config/samples")
	if len(r.objs) == 0 {
		t.Fatal("config/samples renders nothing")
	}
	policies := 0
	for _, o := range r.objs {
		if o["apiVersion"] != "build.multiarch.io/v1alpha1" {
			t.Errorf("sample %v is not of build.multiarch.io/v1alpha1", fmt.Sprint(o["apiVersion"], " ", o["kind"]))
		}
		switch o["kind"] {
		case "MultiArchBuild":
		case "BuildCapacityPolicy":
			// A singleton: the API server refuses any other name.
			policies++
			if meta, _ := o["metadata"].(map[string]interface{}); meta["name"] != "cluster" || meta["namespace"] != nil {
				t.Errorf("the BuildCapacityPolicy sample is %v, want the cluster-scoped name cluster", meta)
			}
		default:
			t.Errorf("sample %v is neither a MultiArchBuild nor a BuildCapacityPolicy", o["kind"])
		}
	}
	if policies != 1 {
		t.Errorf("%d BuildCapacityPolicy samples, want 1", policies)
	}
}

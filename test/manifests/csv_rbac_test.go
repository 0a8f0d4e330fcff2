package manifests

import (
	"sort"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	rbacvalidation "k8s.io/component-helpers/auth/rbac/validation"

	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// atoms breaks rules down into single (group, resource, verb, name) grants.
func atoms(rules []rbacv1.PolicyRule) map[string]bool {
	out := map[string]bool{}
	for _, r := range rules {
		for _, a := range rbacvalidation.BreakdownRule(r) {
			out[testenv.AtomString(a)] = true
		}
	}
	return out
}

func missing(from, in map[string]bool) []string {
	var out []string
	for k := range from {
		if !in[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// What `make deploy` grants the manager (config/default) and what OLM grants
// it from the bundle's CSV are the same rules, compared grant by grant both
// ways, cluster-wide and in the operator's namespace: the e2e tier runs the
// former, the envtest suites the latter.
func TestConfigDefaultAndTheCSVGrantTheSame(t *testing.T) {
	r := render(t, "config/default")
	var cluster, namespaced []rbacv1.PolicyRule
	for _, role := range operatorRoles(t, r) {
		if role.kind == "Role" {
			namespaced = append(namespaced, role.rules...)
		} else {
			cluster = append(cluster, role.rules...)
		}
	}
	csv, err := testenv.CSV()
	if err != nil {
		t.Fatal(err)
	}
	spec := csv.Spec.InstallStrategy.StrategySpec
	var csvCluster, csvNamespaced []rbacv1.PolicyRule
	for _, p := range spec.ClusterPermissions {
		csvCluster = append(csvCluster, p.Rules...)
	}
	for _, p := range spec.Permissions {
		csvNamespaced = append(csvNamespaced, p.Rules...)
	}
	for _, c := range []struct {
		scope          string
		config, bundle []rbacv1.PolicyRule
	}{{"cluster-wide", cluster, csvCluster}, {"in the operator namespace", namespaced, csvNamespaced}} {
		cfg, csvA := atoms(c.config), atoms(c.bundle)
		if m := missing(cfg, csvA); len(m) > 0 {
			t.Errorf("%s, config/default grants what the CSV does not (run make bundle): %v", c.scope, m)
		}
		if m := missing(csvA, cfg); len(m) > 0 {
			t.Errorf("%s, the CSV grants what config/default does not (run make bundle): %v", c.scope, m)
		}
		if len(cfg) == 0 {
			t.Errorf("%s: no grants rendered", c.scope)
		}
		t.Logf("%s: %d grants in both", c.scope, len(cfg))
	}
}

package testenv

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	rbacvalidation "k8s.io/component-helpers/auth/rbac/validation"
)

// MarkerGrants reads the +kubebuilder:rbac markers of the non-test Go files
// of dir (the markers controller-gen turns into the ClusterRole the CSV
// carries) and returns them broken down into atoms, keyed by AtomString.
// Each package's test binary checks the grants its own markers declare:
// a package cannot see the requests another test binary made.
func MarkerGrants(dir string) (map[string]rbacv1.PolicyRule, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	out := map[string]rbacv1.PolicyRule{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		if err := markerGrantsOf(f, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func markerGrantsOf(file string, out map[string]rbacv1.PolicyRule) error {
	fh, err := os.Open(file)
	if err != nil {
		return err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, "// +kubebuilder:rbac:")
		if !ok {
			continue
		}
		var rule rbacv1.PolicyRule
		for _, kv := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("%s: marker %q: %q has no value", file, line, kv)
			}
			vals := strings.Split(strings.Trim(v, `"`), ";")
			switch k {
			case "groups":
				rule.APIGroups = vals
			case "resources":
				rule.Resources = vals
			case "verbs":
				rule.Verbs = vals
			case "resourceNames":
				rule.ResourceNames = vals
			case "urls", "namespace":
				return fmt.Errorf("%s: marker %q: %s is not supported here", file, line, k)
			}
		}
		for _, atom := range rbacvalidation.BreakdownRule(rule) {
			out[AtomString(atom)] = atom
		}
	}
	return sc.Err()
}

// OwnGrants is what one package's test binary must show used: the CSV's
// grants, broken down, that its markers (mine) declare and no other
// package's do, plus, when unmarked is true, the grants no marker declares
// (installed from config/rbac, such as leader election's). A grant two
// packages declare is checked by the one called with unmarked true.
func OwnGrants(csv []rbacv1.PolicyRule, mine map[string]rbacv1.PolicyRule, unmarked bool, others ...map[string]rbacv1.PolicyRule) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	seen := map[string]bool{}
	for _, rule := range csv {
		for _, atom := range rbacvalidation.BreakdownRule(rule) {
			key := AtomString(atom)
			if seen[key] {
				continue
			}
			seen[key] = true
			_, inMine := mine[key]
			inOthers := false
			for _, o := range others {
				if _, ok := o[key]; ok {
					inOthers = true
				}
			}
			switch {
			case inMine && !inOthers, inMine && unmarked, !inMine && !inOthers && unmarked:
				out = append(out, atom)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return AtomString(out[i]) < AtomString(out[j]) })
	return out
}

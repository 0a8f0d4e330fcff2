package argocd

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const gitopsDoc = "../../docs/gitops.md"

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// docObjects returns every YAML document of the ```yaml blocks of docs/gitops.md.
func docObjects(t *testing.T) []map[string]interface{} {
	t.Helper()
	b, err := os.ReadFile(gitopsDoc)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]interface{}
	for _, m := range yamlBlock.FindAllStringSubmatch(string(b), -1) {
		for _, doc := range strings.Split(m[1], "\n---\n") {
			obj := map[string]interface{}{}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatalf("docs/gitops.md: a yaml block does not parse: %v\n%s", err, doc)
			}
			out = append(out, obj)
		}
	}
	return out
}

func field(obj map[string]interface{}, path ...string) interface{} {
	var cur interface{} = obj
	for _, p := range path {
		m, ok := cur.(map[string]interface{})
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// TestGitOpsDocsCarryExactlyTheTestedHealthCheck keeps the argocd-cm and
// ArgoCD snippets of docs/gitops.md identical to hack/argocd/health.lua, the
// script TestHealth runs.
func TestGitOpsDocsCarryExactlyTheTestedHealthCheck(t *testing.T) {
	want := readScript(t)
	var fromCM, fromCR []string
	for _, obj := range docObjects(t) {
		switch {
		case obj["kind"] == "ConfigMap" && field(obj, "metadata", "name") == "argocd-cm":
			if s, ok := field(obj, "data", "resource.customizations.health.build.multiarch.io_MultiArchBuild").(string); ok {
				fromCM = append(fromCM, s)
			}
		case obj["kind"] == "ArgoCD":
			checks, _ := field(obj, "spec", "resourceHealthChecks").([]interface{})
			for _, c := range checks {
				c, _ := c.(map[string]interface{})
				if c["group"] == "build.multiarch.io" && c["kind"] == "MultiArchBuild" {
					s, _ := c["check"].(string)
					fromCR = append(fromCR, s)
				}
			}
		}
	}
	for name, got := range map[string][]string{"argocd-cm ConfigMap": fromCM, "OpenShift GitOps ArgoCD resource": fromCR} {
		if len(got) != 1 {
			t.Errorf("docs/gitops.md: want exactly one %s health check for MultiArchBuild, found %d", name, len(got))
			continue
		}
		if got[0] != want {
			t.Errorf("docs/gitops.md: the %s snippet differs from hack/argocd/health.lua; copy the script again", name)
		}
	}
}

func TestGitOpsDocsApplicationSyncsBeforeTheCRDExists(t *testing.T) {
	found := false
	for _, obj := range docObjects(t) {
		if obj["kind"] != "Application" {
			continue
		}
		found = true
		var opts []string
		raw, _ := field(obj, "spec", "syncPolicy", "syncOptions").([]interface{})
		for _, o := range raw {
			s, _ := o.(string)
			opts = append(opts, s)
		}
		for _, want := range []string{"SkipDryRunOnMissingResource=true", "ServerSideApply=true"} {
			if !slices.Contains(opts, want) {
				t.Errorf("the example Application's syncOptions %v lack %s", opts, want)
			}
		}
	}
	if !found {
		t.Error("docs/gitops.md has no example Application")
	}
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// writeConfig writes a small kustomization with one object of every kind
// Build sorts, and returns its directory.
func writeConfig(t *testing.T) (dir, icon string) {
	t.Helper()
	dir = t.TempDir()
	files := map[string]string{
		"kustomization.yaml": `
namespace: op-system
namePrefix: op-
resources: [csv.yaml, crd.yaml, ns.yaml, deploy.yaml, sa.yaml, rbac.yaml, svc.yaml]
`,
		"csv.yaml": `
apiVersion: operators.coreos.com/v1alpha1
kind: ClusterServiceVersion
metadata:
  name: x.v0.0.0
  annotations: {capabilities: Basic Install}
spec:
  install: {strategy: deployment, spec: {deployments: []}}
`,
		"crd.yaml": `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: things.example.io}
spec:
  group: example.io
  names: {kind: Thing, plural: things}
  scope: Namespaced
  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]
`,
		"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: system}\n",
		"deploy.yaml": `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: controller-manager
  namespace: system
  labels: {app: op, app.kubernetes.io/managed-by: kustomize}
spec:
  selector: {matchLabels: {app: op}}
  template:
    metadata: {labels: {app: op}}
    spec:
      serviceAccountName: controller-manager
      containers: [{name: manager, image: "controller:latest"}]
`,
		"sa.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: controller-manager, namespace: system}\n",
		"rbac.yaml": `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: manager-role}
rules: [{apiGroups: [example.io], resources: [things], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: manager-rolebinding}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: manager-role}
subjects: [{kind: ServiceAccount, name: controller-manager, namespace: system}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: leader-election-role, namespace: system}
rules: [{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leader-election-rolebinding, namespace: system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: leader-election-role}
subjects: [{kind: ServiceAccount, name: controller-manager, namespace: system}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: thing-viewer, labels: {app.kubernetes.io/managed-by: kustomize}}
rules: [{apiGroups: [example.io], resources: [things], verbs: [list]}]
`,
		"svc.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: metrics, namespace: system}\nspec: {selector: {app: op}, ports: [{port: 8443}]}\n",
		"icon.svg": "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, filepath.Join(dir, "icon.svg")
}

func TestBuildTurnsTheOperatorsRBACIntoPermissionsAndShipsTheRest(t *testing.T) {
	dir, icon := writeConfig(t)
	o := DefaultOptions()
	o.ConfigDir, o.IconFile, o.Version, o.Image = dir, icon, "1.2.3", "quay.io/x/op:v1.2.3"
	b, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := nameOf(b.CSV); got != PackageName+".v1.2.3" {
		t.Errorf("CSV name %q", got)
	}
	install := nested(b.CSV, "spec", "install", "spec")
	dep := list(install, "deployments")[0].(object)
	if dep["name"] != "op-controller-manager" {
		t.Errorf("deployment name %v", dep["name"])
	}
	if _, ok := nested(dep, "label")["app.kubernetes.io/managed-by"]; ok {
		t.Error("kustomize's managed-by label leaked into the CSV deployment")
	}
	c := list(nested(dep, "spec", "template", "spec"), "containers")[0].(object)
	if c["image"] != o.Image || nested(b.CSV, "metadata", "annotations")["containerImage"] != o.Image {
		t.Errorf("image %v, containerImage %v: want %s", c["image"], nested(b.CSV, "metadata", "annotations")["containerImage"], o.Image)
	}
	perm := func(kind string) (sa string, resources []string) {
		p := list(install, kind)
		if len(p) != 1 {
			t.Fatalf("%s: want one entry, got %v", kind, p)
		}
		for _, r := range list(p[0].(object), "rules") {
			for _, res := range list(r.(object), "resources") {
				resources = append(resources, res.(string))
			}
		}
		return p[0].(object)["serviceAccountName"].(string), resources
	}
	if sa, res := perm("clusterPermissions"); sa != "op-controller-manager" || !cmp.Equal(res, []string{"things"}) {
		t.Errorf("clusterPermissions for %s: %v", sa, res)
	}
	if sa, res := perm("permissions"); sa != "op-controller-manager" || !cmp.Equal(res, []string{"leases"}) {
		t.Errorf("permissions for %s: %v", sa, res)
	}
	var others []string
	for _, obj := range b.Others {
		others = append(others, fileName(obj))
		if _, ok := nested(obj, "metadata")["namespace"]; ok {
			t.Errorf("%s keeps a namespace; OLM installs it in the operator's namespace", fileName(obj))
		}
	}
	sort.Strings(others)
	want := []string{"op-metrics_v1_service.yaml", "op-thing-viewer_rbac.authorization.k8s.io_v1_clusterrole.yaml"}
	if diff := cmp.Diff(want, others); diff != "" {
		t.Errorf("extra bundle manifests (-want +got):\n%s", diff)
	}
	if len(b.CRDs) != 1 || fileName(b.CRDs[0]) != "example.io_things.yaml" {
		t.Errorf("CRDs %v", b.CRDs)
	}
	if b.Annotations["operators.operatorframework.io.bundle.package.v1"] != PackageName {
		t.Errorf("annotations %v", b.Annotations)
	}
	if !strings.Contains(Dockerfile(b.Annotations, "bundle"), "COPY bundle/manifests /manifests/") {
		t.Error("Dockerfile does not copy the manifests")
	}
}

func TestBuildRejectsAVersionWithAV(t *testing.T) {
	o := DefaultOptions()
	o.Version = "v1.0.0"
	if _, err := Build(o); err == nil {
		t.Error("want an error for version v1.0.0")
	}
}

// TestBuildLeavesTheGuardRailsToTheAdminAndRefusesKindsOLMCannotInstall:
// objects labelled as admin-applied (config/policy) stay out of the bundle;
// any other kind OLM does not install fails the build instead of producing a
// bundle OLM refuses to unpack.
func TestBuildLeavesTheGuardRailsToTheAdminAndRefusesKindsOLMCannotInstall(t *testing.T) {
	policy := `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: image-policy%s}
spec: {}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: image-policy, namespace: system%s}
data: {builderImages: quay.io/x/y}
`
	labels := ", labels: {" + AdminAppliedLabel + ": " + AdminAppliedValue + "}"
	for _, c := range []struct {
		name    string
		labels  string
		wantErr string
	}{
		{"labelled: left out", labels, ""},
		{"unlabelled: refused", "", "an OLM bundle cannot carry a ValidatingAdmissionPolicy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, icon := writeConfig(t)
			if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(fmt.Sprintf(policy, c.labels, c.labels)), 0o644); err != nil {
				t.Fatal(err)
			}
			k, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			k = []byte(strings.Replace(string(k), "svc.yaml]", "svc.yaml, policy.yaml]", 1))
			if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), k, 0o644); err != nil {
				t.Fatal(err)
			}
			o := DefaultOptions()
			o.ConfigDir, o.IconFile, o.Version = dir, icon, "1.2.3"
			b, err := Build(o)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("want an error saying %q, got %v", c.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, obj := range b.Others {
				if strings.Contains(nameOf(obj), "image-policy") {
					t.Errorf("%s is in the bundle", fileName(obj))
				}
			}
		})
	}
}

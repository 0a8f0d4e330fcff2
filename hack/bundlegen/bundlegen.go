package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
)

// PackageName is the OLM package of the operator.
const PackageName = "multiarch-build-operator"

// managerContainer is the name of the operator's container in config/manager.
const managerContainer = "manager"

// Options says what to read and what to write. Paths are relative to the
// working directory (the repository root for `make bundle`).
type Options struct {
	ConfigDir         string
	IconFile          string
	OutputDir         string
	Dockerfile        string
	Version           string
	Image             string
	Channels          string
	DefaultChannel    string
	Replaces          string
	OpenShiftVersions string
}

// DefaultOptions are the values `make bundle` starts from.
func DefaultOptions() Options {
	return Options{
		ConfigDir:         "config/manifests",
		IconFile:          "config/manifests/icon.svg",
		OutputDir:         "bundle",
		Dockerfile:        "bundle.Dockerfile",
		Version:           "0.1.0",
		Channels:          "candidate",
		DefaultChannel:    "candidate",
		OpenShiftVersions: "v4.16",
	}
}

type object = map[string]interface{}

// AdminAppliedLabel, with the value AdminAppliedValue, marks objects of
// config/default that the bundle leaves out: the guard-rail
// ValidatingAdmissionPolicy and its binding, a kind OLM cannot install, and
// the allow-list ConfigMap they read (an admin's, which OLM would reset on
// every upgrade and would put in whatever namespace the operator is
// installed in). On OLM installs a cluster admin applies config/policy.
const (
	AdminAppliedLabel = "app.kubernetes.io/component"
	AdminAppliedValue = "admission-policy"
)

// olmSupportedKinds are the kinds OLM creates from a registry+v1 bundle
// (operator-registry, pkg/lib/bundle/supported_resources.go); the bundle
// validators of operator-framework/api do not check this, OLM refuses the
// bundle when it unpacks it.
var olmSupportedKinds = map[string]bool{
	"ClusterServiceVersion": true, "CustomResourceDefinition": true, "Secret": true,
	"ClusterRole": true, "ClusterRoleBinding": true, "ConfigMap": true, "ServiceAccount": true,
	"Service": true, "Role": true, "RoleBinding": true, "PrometheusRule": true,
	"ServiceMonitor": true, "PodDisruptionBudget": true, "PriorityClass": true,
	"VerticalPodAutoscaler": true, "ConsoleYAMLSample": true,
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Bundle is the generated bundle before it is written.
type Bundle struct {
	// CSV is the ClusterServiceVersion.
	CSV object
	// CRDs are the owned CustomResourceDefinitions.
	CRDs []object
	// Others are the extra manifests OLM creates as they are (Services and
	// ClusterRoles that are not the operator's own permissions).
	Others []object
	// Annotations is bundle/metadata/annotations.yaml's annotations map.
	Annotations map[string]string
}

// Generate renders opts.ConfigDir and writes the bundle.
func Generate(o Options) error {
	b, err := Build(o)
	if err != nil {
		return err
	}
	return Write(b, o)
}

// Build renders opts.ConfigDir with kustomize and assembles the bundle.
func Build(o Options) (*Bundle, error) {
	if o.Version == "" || strings.HasPrefix(o.Version, "v") {
		return nil, fmt.Errorf("version %q must be a semver without the leading v, such as 0.1.0", o.Version)
	}
	objs, err := render(o.ConfigDir)
	if err != nil {
		return nil, err
	}
	icon, err := os.ReadFile(o.IconFile)
	if err != nil {
		return nil, fmt.Errorf("read icon: %w", err)
	}

	var (
		csv                    object
		deployment             object
		examples               []object
		b                      = &Bundle{}
		roles                  = map[string]object{} // Role and ClusterRole by kind/name
		roleBindings, serviceA []object
		rest                   []object
	)
	for _, obj := range objs {
		switch kindOf(obj) {
		case "ClusterServiceVersion":
			csv = obj
		case "CustomResourceDefinition":
			b.CRDs = append(b.CRDs, obj)
		case "Deployment":
			if deployment != nil {
				return nil, errors.New("more than one Deployment in the rendered config; the CSV installs exactly one")
			}
			deployment = obj
		case "Namespace":
			// OLM installs into the namespace the user picks (suggested-namespace).
		case "ServiceAccount":
			serviceA = append(serviceA, obj)
		case "Role", "ClusterRole":
			roles[kindOf(obj)+"/"+nameOf(obj)] = obj
		case "RoleBinding", "ClusterRoleBinding":
			roleBindings = append(roleBindings, obj)
		default:
			if apiVersionOf(obj) == "build.multiarch.io/v1alpha1" {
				examples = append(examples, obj)
				continue
			}
			if labels, _ := nested(obj, "metadata")["labels"].(object); labels[AdminAppliedLabel] == AdminAppliedValue {
				// The guard rails (config/policy): a cluster admin applies them.
				continue
			}
			rest = append(rest, obj)
		}
	}
	switch {
	case csv == nil:
		return nil, fmt.Errorf("no ClusterServiceVersion base in %s", o.ConfigDir)
	case deployment == nil:
		return nil, fmt.Errorf("no Deployment in %s", o.ConfigDir)
	case len(b.CRDs) == 0:
		return nil, fmt.Errorf("no CustomResourceDefinition in %s", o.ConfigDir)
	}

	podSpec := nested(deployment, "spec", "template", "spec")
	sa, _ := podSpec["serviceAccountName"].(string)
	if sa == "" {
		return nil, errors.New("the manager Deployment names no serviceAccountName")
	}
	var managerImage string
	for _, c := range list(podSpec, "containers") {
		c := c.(object)
		if c["name"] == managerContainer {
			if o.Image != "" {
				c["image"] = o.Image
			}
			managerImage, _ = c["image"].(string)
		}
	}
	if managerImage == "" {
		return nil, fmt.Errorf("the manager Deployment has no container %q with an image", managerContainer)
	}

	// The operator's own RBAC becomes permissions/clusterPermissions of its
	// ServiceAccount; OLM creates the roles and bindings. Roles nobody binds
	// to the operator (aggregated user roles, metrics-reader, the builder's
	// SCC role) ship as plain manifests.
	perms, clusterPerms := map[string][]interface{}{}, map[string][]interface{}{}
	used := map[string]bool{}
	for _, rb := range roleBindings {
		ref := nested(rb, "roleRef")
		key := fmt.Sprint(ref["kind"], "/", ref["name"])
		role, ok := roles[key]
		if !ok || !bindsServiceAccount(rb, sa) {
			rest = append(rest, rb)
			continue
		}
		rules := list(role, "rules")
		if kindOf(rb) == "ClusterRoleBinding" {
			clusterPerms[sa] = append(clusterPerms[sa], rules...)
		} else {
			perms[sa] = append(perms[sa], rules...)
		}
		used[key] = true
	}
	if len(perms) == 0 && len(clusterPerms) == 0 {
		return nil, fmt.Errorf("no Role or ClusterRole is bound to the manager's ServiceAccount %s (check the subjects' name and namespace)", sa)
	}
	for key, role := range roles {
		if !used[key] {
			rest = append(rest, role)
		}
	}
	for _, s := range serviceA {
		if nameOf(s) != sa {
			rest = append(rest, s)
		}
	}

	for _, obj := range rest {
		if !olmSupportedKinds[kindOf(obj)] {
			return nil, fmt.Errorf("%s %s: an OLM bundle cannot carry a %s (operator-registry's supported kinds: %s);"+
				" label it %s=%s and document that a cluster admin applies it, as config/policy is",
				kindOf(obj), nameOf(obj), kindOf(obj), strings.Join(sortedKeys(olmSupportedKinds), ", "), AdminAppliedLabel, AdminAppliedValue)
		}
		dropKustomizeLabels(obj)
		delete(nested(obj, "metadata"), "namespace")
		b.Others = append(b.Others, obj)
	}
	sort.Slice(b.Others, func(i, j int) bool { return fileName(b.Others[i]) < fileName(b.Others[j]) })
	for _, crd := range b.CRDs {
		dropKustomizeLabels(crd)
	}
	sort.Slice(b.CRDs, func(i, j int) bool { return nameOf(b.CRDs[i]) < nameOf(b.CRDs[j]) })
	dropKustomizeLabels(deployment)

	// The CSV.
	meta := nested(csv, "metadata")
	meta["name"] = PackageName + ".v" + o.Version
	annotations := nested(meta, "annotations")
	annotations["containerImage"] = managerImage
	for _, ex := range examples {
		delete(nested(ex, "metadata"), "namespace")
	}
	almExamples, err := json.MarshalIndent(examples, "", "  ")
	if err != nil {
		return nil, err
	}
	annotations["alm-examples"] = string(almExamples)
	spec := nested(csv, "spec")
	spec["version"] = o.Version
	if o.Replaces != "" {
		spec["replaces"] = o.Replaces
	}
	spec["icon"] = []interface{}{object{
		"base64data": base64.StdEncoding.EncodeToString(icon),
		"mediatype":  "image/svg+xml",
	}}
	depLabels := nested(deployment, "metadata", "labels")
	spec["install"] = object{
		"strategy": "deployment",
		"spec": object{
			"deployments": []interface{}{object{
				"name":  nameOf(deployment),
				"label": depLabels,
				"spec":  deployment["spec"],
			}},
			"permissions":        permissionList(perms),
			"clusterPermissions": permissionList(clusterPerms),
		},
	}
	spec["relatedImages"] = relatedImages(managerImage)
	b.CSV = csv

	b.Annotations = map[string]string{
		"operators.operatorframework.io.bundle.mediatype.v1":       "registry+v1",
		"operators.operatorframework.io.bundle.manifests.v1":       "manifests/",
		"operators.operatorframework.io.bundle.metadata.v1":        "metadata/",
		"operators.operatorframework.io.bundle.package.v1":         PackageName,
		"operators.operatorframework.io.bundle.channels.v1":        o.Channels,
		"operators.operatorframework.io.bundle.channel.default.v1": o.DefaultChannel,
		"operators.operatorframework.io.metrics.builder":           "hack/bundlegen",
		"operators.operatorframework.io.metrics.mediatype.v1":      "metrics+v1",
		"operators.operatorframework.io.metrics.project_layout":    "go.kubebuilder.io/v4",
	}
	if o.OpenShiftVersions != "" {
		b.Annotations["com.redhat.openshift.versions"] = o.OpenShiftVersions
	}
	return b, nil
}

// relatedImages lists every image the operator runs or makes build pods run,
// so that a mirror for a disconnected cluster can find them.
func relatedImages(manager string) []interface{} {
	s := settings.Default()
	imgs := []struct{ name, image string }{
		{"manager", manager},
		{"buildah", s.BuilderImage},
		{"git", s.GitImage},
		{"nodejs", s.NodeJSImage},
		{"maven", s.MavenImage},
	}
	out := make([]interface{}, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, object{"name": i.name, "image": i.image})
	}
	return out
}

func permissionList(m map[string][]interface{}) []interface{} {
	out := []interface{}{}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, object{"serviceAccountName": n, "rules": m[n]})
	}
	return out
}

func bindsServiceAccount(binding object, sa string) bool {
	for _, s := range list(binding, "subjects") {
		s, _ := s.(object)
		if s["kind"] == "ServiceAccount" && s["name"] == sa {
			return true
		}
	}
	return false
}

func dropKustomizeLabels(obj object) {
	labels, ok := nested(obj, "metadata")["labels"].(object)
	if !ok {
		return
	}
	if labels["app.kubernetes.io/managed-by"] == "kustomize" {
		delete(labels, "app.kubernetes.io/managed-by")
	}
	if len(labels) == 0 {
		delete(nested(obj, "metadata"), "labels")
	}
}

// Write replaces OutputDir/manifests and OutputDir/metadata, and writes the
// bundle Dockerfile.
func Write(b *Bundle, o Options) error {
	manifestsDir := filepath.Join(o.OutputDir, "manifests")
	metadataDir := filepath.Join(o.OutputDir, "metadata")
	for _, d := range []string{manifestsDir, metadataDir} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	files := map[string]object{PackageName + ".clusterserviceversion.yaml": b.CSV}
	for _, crd := range b.CRDs {
		files[fileName(crd)] = crd
	}
	for _, obj := range b.Others {
		files[fileName(obj)] = obj
	}
	for name, obj := range files {
		if err := writeYAML(filepath.Join(manifestsDir, name), obj); err != nil {
			return err
		}
	}
	if err := writeYAML(filepath.Join(metadataDir, "annotations.yaml"), object{"annotations": b.Annotations}); err != nil {
		return err
	}
	if o.Dockerfile != "" {
		if err := os.WriteFile(o.Dockerfile, []byte(Dockerfile(b.Annotations, o.OutputDir)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Dockerfile is the bundle image's Dockerfile: the metadata annotations as
// labels, and the manifests and metadata directories.
func Dockerfile(annotations map[string]string, bundleDir string) string {
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	sb.WriteString("# Generated by hack/bundlegen (make bundle). DO NOT EDIT.\nFROM scratch\n\n")
	for _, k := range keys {
		fmt.Fprintf(&sb, "LABEL %s=%s\n", k, annotations[k])
	}
	fmt.Fprintf(&sb, "\nCOPY %s/manifests /manifests/\nCOPY %s/metadata /metadata/\n", bundleDir, bundleDir)
	return sb.String()
}

func writeYAML(path string, obj object) error {
	out, err := yaml.Marshal(obj)
	if err != nil {
		return fmt.Errorf("marshal %s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

// fileName follows operator-sdk's naming of bundle manifests.
func fileName(obj object) string {
	if kindOf(obj) == "CustomResourceDefinition" {
		group, _ := nested(obj, "spec")["group"].(string)
		plural, _ := nested(obj, "spec", "names")["plural"].(string)
		return group + "_" + plural + ".yaml"
	}
	gv := strings.ReplaceAll(apiVersionOf(obj), "/", "_")
	return nameOf(obj) + "_" + gv + "_" + strings.ToLower(kindOf(obj)) + ".yaml"
}

// render runs kustomize on dir, the way `kustomize build dir` does.
func render(dir string) ([]object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		if strings.Contains(err.Error(), "ID conflict") {
			return nil, fmt.Errorf("kustomize build %s: %w (namespaced +kubebuilder:rbac markers generate Roles that collide in the"+
				" operator's namespace and that OLM cannot grant: use cluster-scoped markers narrowed with resourceNames)", dir, err)
		}
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var objs []object
	for _, r := range resMap.Resources() {
		m, err := r.Map()
		if err != nil {
			return nil, err
		}
		objs = append(objs, m)
	}
	return objs, nil
}

func kindOf(obj object) string       { s, _ := obj["kind"].(string); return s }
func apiVersionOf(obj object) string { s, _ := obj["apiVersion"].(string); return s }
func nameOf(obj object) string       { s, _ := nested(obj, "metadata")["name"].(string); return s }

// nested returns the map at path, creating empty maps on the way.
func nested(obj object, path ...string) object {
	cur := obj
	for _, p := range path {
		next, ok := cur[p].(object)
		if !ok {
			next = object{}
			cur[p] = next
		}
		cur = next
	}
	return cur
}

func list(obj object, key string) []interface{} {
	l, _ := obj[key].([]interface{})
	return l
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"
	"github.com/operator-framework/api/pkg/validation/errors"
	"sigs.k8s.io/yaml"
)

const (
	repoRoot  = "../.."
	bundleDir = repoRoot + "/bundle"
)

// optionsOfCommittedBundle returns the options `make bundle` used for the
// committed bundle: version, image and channels are read back from it.
func optionsOfCommittedBundle(t *testing.T) Options {
	t.Helper()
	csv := readObject(t, filepath.Join(bundleDir, "manifests", PackageName+".clusterserviceversion.yaml"))
	ann := map[string]map[string]string{}
	b, err := os.ReadFile(filepath.Join(bundleDir, "metadata", "annotations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ann); err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.ConfigDir = filepath.Join(repoRoot, o.ConfigDir)
	o.IconFile = filepath.Join(repoRoot, o.IconFile)
	o.Version, _ = nested(csv, "spec")["version"].(string)
	o.Image, _ = nested(csv, "metadata", "annotations")["containerImage"].(string)
	o.Replaces, _ = nested(csv, "spec")["replaces"].(string)
	o.Channels = ann["annotations"]["operators.operatorframework.io.bundle.channels.v1"]
	o.DefaultChannel = ann["annotations"]["operators.operatorframework.io.bundle.channel.default.v1"]
	o.OpenShiftVersions = ann["annotations"]["com.redhat.openshift.versions"]
	return o
}

func readObject(t *testing.T, path string) object {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	obj := object{}
	if err := yaml.Unmarshal(b, &obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return obj
}

// TestBundlePassesOperatorFrameworkValidators runs the validators that
// `operator-sdk bundle validate --select-optional suite=operatorframework`
// runs, plus the object validator, and requires no error and no warning.
func TestBundlePassesOperatorFrameworkValidators(t *testing.T) {
	bundle, err := manifests.GetBundleFromDir(bundleDir)
	if err != nil {
		t.Fatalf("load bundle: %v", err)
	}
	validators := validation.DefaultBundleValidators.WithValidators(
		validation.OperatorHubV2Validator,
		validation.StandardCapabilitiesValidator,
		validation.StandardCategoriesValidator,
		validation.GoodPracticesValidator,
		validation.AlphaDeprecatedAPIsValidator,
		validation.ObjectValidator,
	)
	objs := append(bundle.ObjectsToValidate(), map[string]string{"k8s-version": "1.34"})
	var nErr, nWarn int
	for _, result := range validators.Validate(objs...) {
		for _, e := range result.Errors {
			nErr++
			t.Errorf("validator error (%s): %s", result.Name, describe(e))
		}
		for _, w := range result.Warnings {
			nWarn++
			t.Errorf("validator warning (%s): %s", result.Name, describe(w))
		}
	}
	t.Logf("bundle %s: %d validators, %d errors, %d warnings", bundle.Name, len(validators), nErr, nWarn)
}

func describe(e errors.Error) string {
	return e.Error()
}

// TestBundleIsUpToDate fails when config/ (the CSV base, the manager, the
// RBAC generated from the controllers' markers, the CRD, the samples) changed
// without `make bundle`.
func TestBundleIsUpToDate(t *testing.T) {
	o := optionsOfCommittedBundle(t)
	o.OutputDir = t.TempDir()
	o.Dockerfile = filepath.Join(t.TempDir(), "bundle.Dockerfile")
	if err := Generate(o); err != nil {
		t.Fatal(err)
	}
	want := listFiles(t, o.OutputDir)
	got := listFiles(t, bundleDir)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("bundle/ files differ from what `make bundle` writes (-want +got):\n%s", diff)
	}
	for _, f := range want {
		w, _ := os.ReadFile(filepath.Join(o.OutputDir, f))
		g, _ := os.ReadFile(filepath.Join(bundleDir, f))
		if !bytes.Equal(w, g) {
			t.Errorf("bundle/%s is stale; run `make bundle`:\n%s", f, cmp.Diff(string(w), string(g)))
		}
	}
	w, _ := os.ReadFile(o.Dockerfile)
	g, err := os.ReadFile(filepath.Join(repoRoot, "bundle.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// The committed Dockerfile copies from bundle/, the temporary one from the temp dir.
	if strings.ReplaceAll(string(w), o.OutputDir, "bundle") != string(g) {
		t.Errorf("bundle.Dockerfile is stale; run `make bundle`")
	}
}

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestDescriptorsDescribeEveryField walks the CRD's schema and requires a
// spec or status descriptor for every field, and a field for every
// descriptor, so the console form and details page follow the API.
func TestDescriptorsDescribeEveryField(t *testing.T) {
	csv := readObject(t, filepath.Join(bundleDir, "manifests", PackageName+".clusterserviceversion.yaml"))
	owned := list(nested(csv, "spec", "customresourcedefinitions"), "owned")
	// Every CRD of the bundle is owned, and described.
	var crdFiles []string
	for _, f := range listFiles(t, filepath.Join(bundleDir, "manifests")) {
		if obj := readObject(t, filepath.Join(bundleDir, "manifests", f)); kindOf(obj) == "CustomResourceDefinition" {
			crdFiles = append(crdFiles, f)
		}
	}
	if len(owned) != len(crdFiles) || len(owned) < 2 {
		t.Fatalf("the CSV owns %d CRDs, the bundle ships %v", len(owned), crdFiles)
	}
	for _, o := range owned {
		o := o.(object)
		name, _ := o["name"].(string)
		t.Run(name, func(t *testing.T) {
			plural, group, _ := strings.Cut(name, ".")
			crd := readObject(t, filepath.Join(bundleDir, "manifests", group+"_"+plural+".yaml"))
			if k := nested(crd, "spec", "names")["kind"]; k != o["kind"] {
				t.Errorf("owned %s has kind %v, the CRD %v", name, o["kind"], k)
			}
			if o["displayName"] == nil || o["description"] == nil {
				t.Errorf("owned %s needs a displayName and a description", name)
			}
			describesEveryField(t, crd, o)
		})
	}
}

func describesEveryField(t *testing.T, crd, owned object) {
	var schema object
	for _, v := range list(nested(crd, "spec"), "versions") {
		v := v.(object)
		if v["name"] == "v1alpha1" {
			schema = nested(v, "schema", "openAPIV3Schema")
		}
	}
	if schema == nil {
		t.Fatal("no v1alpha1 schema in the CRD")
	}
	for _, part := range []string{"spec", "status"} {
		t.Run(part, func(t *testing.T) {
			described := map[string][]string{}
			for _, d := range list(owned, part+"Descriptors") {
				d := d.(object)
				var xs []string
				for _, x := range list(d, "x-descriptors") {
					xs = append(xs, x.(string))
				}
				path := d["path"].(string)
				if _, dup := described[path]; dup {
					t.Errorf("%s descriptor %q is listed twice", part, path)
				}
				described[path] = xs
				if d["displayName"] == nil || d["description"] == nil {
					t.Errorf("%s descriptor %q needs a displayName and a description", part, path)
				}
			}
			fields := schemaPaths(nested(schema, "properties", part), "", described)
			for _, f := range fields {
				if _, ok := described[f]; !ok {
					t.Errorf("field %s.%s has no %sDescriptor in config/manifests/bases", part, f, part)
				}
			}
			inSchema := map[string]bool{}
			for _, f := range fields {
				inSchema[f] = true
			}
			for p := range described {
				if !inSchema[p] {
					t.Errorf("%sDescriptor %q names no field of the CRD", part, p)
				}
			}
		})
	}
}

// schemaPaths lists the descriptor paths of the properties under s. It does
// not descend into fields a descriptor shows as a whole: references to
// other resources, conditions, maps and arrays of scalars.
func schemaPaths(s object, prefix string, described map[string][]string) []string {
	props, _ := s["properties"].(object)
	var out []string
	for name, sub := range props {
		sub := sub.(object)
		path := prefix + name
		out = append(out, path)
		if opaque(described[path]) {
			continue
		}
		switch sub["type"] {
		case "object":
			out = append(out, schemaPaths(sub, path+".", described)...)
		case "array":
			if items, ok := sub["items"].(object); ok && items["type"] == "object" {
				out = append(out, schemaPaths(items, path+"[0].", described)...)
			}
		}
	}
	sort.Strings(out)
	return out
}

func opaque(xDescriptors []string) bool {
	for _, x := range xDescriptors {
		if strings.HasPrefix(x, "urn:alm:descriptor:io.kubernetes:") || x == "urn:alm:descriptor:io.kubernetes.conditions" {
			return true
		}
	}
	return false
}

// TestCSVInstallsTheOperatorAsConfigured checks the parts of the CSV that
// come from config/: one Deployment running restricted, its ServiceAccount's
// permissions, and the operator image among relatedImages.
func TestCSVInstallsTheOperatorAsConfigured(t *testing.T) {
	csv := readObject(t, filepath.Join(bundleDir, "manifests", PackageName+".clusterserviceversion.yaml"))
	install := nested(csv, "spec", "install", "spec")
	deps := list(install, "deployments")
	if len(deps) != 1 {
		t.Fatalf("want 1 deployment in the CSV, got %d", len(deps))
	}
	podSpec := nested(deps[0].(object), "spec", "template", "spec")
	sa := podSpec["serviceAccountName"]
	for _, kind := range []string{"permissions", "clusterPermissions"} {
		for _, p := range list(install, kind) {
			if got := p.(object)["serviceAccountName"]; got != sa {
				t.Errorf("%s for ServiceAccount %v, the Deployment runs as %v", kind, got, sa)
			}
			for _, r := range list(p.(object), "rules") {
				for _, field := range []string{"verbs", "resources", "apiGroups"} {
					for _, v := range list(r.(object), field) {
						if v == "*" && field != "apiGroups" {
							t.Errorf("%s rule %v has a wildcard %s", kind, r, field)
						}
					}
				}
			}
		}
	}
	if len(list(install, "clusterPermissions")) == 0 {
		t.Error("the CSV grants the operator no cluster permissions; config/rbac/role.yaml missing?")
	}
	image := nested(csv, "metadata", "annotations")["containerImage"]
	found := false
	for _, ri := range list(nested(csv, "spec"), "relatedImages") {
		if ri.(object)["image"] == image {
			found = true
		}
	}
	if !found {
		t.Errorf("containerImage %v is not among relatedImages", image)
	}
	sc := nested(list(podSpec, "containers")[0].(object), "securityContext")
	if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false {
		t.Errorf("manager securityContext %v is not restricted", sc)
	}
}

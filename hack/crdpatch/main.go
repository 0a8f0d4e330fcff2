// Command crdpatch adds to the generated MultiArchBuild CRD what
// controller-gen cannot write: controller-gen resets the schema of a custom
// resource's metadata to {type: object}, and the CRD has a CEL rule on
// metadata.name (v1alpha1.NameValidationRule). make manifests runs it after
// controller-gen; running it again changes nothing.
//
//	go run ./hack/crdpatch config/crd/bases/build.multiarch.io_multiarchbuilds.yaml
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// generated is the root metadata schema as controller-gen writes it, under
// spec.versions[].schema.openAPIV3Schema.properties.
const generated = "          metadata:\n            type: object\n"

func metadataSchema() apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"name": {
				Type: "string",
				XValidations: apiextensionsv1.ValidationRules{{
					Rule:    v1alpha1.NameValidationRule,
					Message: v1alpha1.NameValidationMessage,
				}},
			},
		},
	}
}

func patch(data []byte) ([]byte, error) {
	want := metadataSchema()
	y, err := yaml.Marshal(want)
	if err != nil {
		return nil, err
	}
	block := "          metadata:\n"
	for _, l := range strings.SplitAfter(strings.TrimSuffix(string(y), "\n"), "\n") {
		block += "            " + l
	}
	block += "\n"
	out := data
	if !bytes.Contains(data, []byte(block)) {
		if n := bytes.Count(data, []byte(generated)); n != 1 {
			return nil, fmt.Errorf("want the root metadata schema controller-gen writes (%q) once, found it %d times", generated, n)
		}
		out = bytes.Replace(data, []byte(generated), []byte(block), 1)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(out, crd); err != nil {
		return nil, fmt.Errorf("patched CRD: %w", err)
	}
	if len(crd.Spec.Versions) == 0 {
		return nil, fmt.Errorf("patched CRD %s has no versions", crd.Name)
	}
	wantJSON, _ := json.Marshal(want)
	for _, v := range crd.Spec.Versions {
		if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			return nil, fmt.Errorf("patched CRD %s: version %s has no schema", crd.Name, v.Name)
		}
		got, _ := json.Marshal(v.Schema.OpenAPIV3Schema.Properties["metadata"])
		if !bytes.Equal(got, wantJSON) {
			return nil, fmt.Errorf("patched CRD %s: version %s: metadata schema is %s, want %s", crd.Name, v.Name, got, wantJSON)
		}
	}
	return out, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: crdpatch CRD-FILE")
		os.Exit(2)
	}
	data, err := os.ReadFile(os.Args[1])
	if err == nil {
		data, err = patch(data)
	}
	if err == nil {
		err = os.WriteFile(os.Args[1], data, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "crdpatch %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

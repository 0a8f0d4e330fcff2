package main

import (
	"bytes"
	"os"
	"testing"
)

const crdFile = "../../config/crd/bases/build.multiarch.io_multiarchbuilds.yaml"

// The CRD in config/crd/bases is what controller-gen wrote, patched; patching
// it again changes nothing.
func TestTheCRDIsPatchedAndPatchingIsIdempotent(t *testing.T) {
	data, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	again, err := patch(data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Errorf("%s is not patched (run make manifests), or patching it again changed it", crdFile)
	}
	if bytes.Contains(data, []byte(generated)) {
		t.Errorf("%s still has the metadata schema controller-gen writes", crdFile)
	}
}

// Patching controller-gen's output gives the CRD in config/crd/bases.
func TestPatchingControllerGensOutput(t *testing.T) {
	data, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("          metadata:\n            properties:\n"))
	end := bytes.Index(data[i:], []byte("            type: object\n"))
	if i < 0 || end < 0 {
		t.Fatalf("no patched metadata schema in %s", crdFile)
	}
	unpatched := append(append(append([]byte{}, data[:i]...), generated...), data[i+end+len("            type: object\n"):]...)
	got, err := patch(unpatched)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("patching controller-gen's output does not give %s", crdFile)
	}
	if _, err := patch([]byte("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n")); err == nil {
		t.Error("patched a CRD without the metadata schema controller-gen writes")
	}
}

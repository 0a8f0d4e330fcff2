package manifests

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// The images the operator uses are the same three ways: its built-in
// defaults, the RELATED_IMAGE_* variables of the manager Deployment (what a
// mirror or OLM rewrites), and the CSV's relatedImages (what a mirror tool
// copies); and the operator reads those variables.
func TestRelatedImagesAreTheDefaultsTheDeploymentAndTheCSV(t *testing.T) {
	defaults := settings.Default()
	want := map[string]string{}
	for name, field := range defaults.RelatedImages() {
		want[name] = *field
	}
	deps := all[appsv1.Deployment](t, render(t, "config/default"), "Deployment")
	if len(deps) != 1 {
		t.Fatalf("%d Deployments rendered", len(deps))
	}
	env := map[string]string{}
	for _, e := range deps[0].Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	csv, err := testenv.CSV()
	if err != nil {
		t.Fatal(err)
	}
	related := map[string]string{}
	for _, ri := range csv.Spec.RelatedImages {
		related[ri.Name] = ri.Image
	}
	for name, image := range want {
		if got := env[settings.RelatedImageEnv[name]]; got != image {
			t.Errorf("Deployment env %s = %q, the default is %q", settings.RelatedImageEnv[name], got, image)
		}
		if got := related[name]; got != image {
			t.Errorf("CSV relatedImages %s = %q, the default is %q", name, got, image)
		}
	}
	s := settings.Default()
	s.ApplyEnvironment(func(k string) (string, bool) {
		if k == settings.RelatedImageEnv["buildah"] {
			return "mirror.example.com/buildah@sha256:0000", true
		}
		return "", false
	})
	if s.BuilderImage != "mirror.example.com/buildah@sha256:0000" || s.GitImage != defaults.GitImage {
		t.Errorf("ApplyEnvironment: builder %q git %q", s.BuilderImage, s.GitImage)
	}
}

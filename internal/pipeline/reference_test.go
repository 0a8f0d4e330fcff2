package pipeline

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// Builds of one shape share one Pipeline, named after its content; each run
// refers to it and carries only what is its own, and is a fraction of the
// inline run's size. Everything passes Tekton's own validation.
func TestBuildsOfOneShapeShareOnePipeline(t *testing.T) {
	ctxs := tektonContexts(t)
	for strategy, sample := range sampleBuilds {
		t.Run(string(strategy), func(t *testing.T) {
			a := sample()
			a.Spec.Output.PushSecretRef = &corev1.LocalObjectReference{Name: "push-a"}
			a.Spec.Source.Git.SecretRef = &corev1.LocalObjectReference{Name: "git-a"}
			b := a.DeepCopy()
			b.Name, b.UID, b.Generation = "other", "99999999-2222-3333-4444-555555555555", 7
			b.Spec.Source.Git.URL = "https://example.com/other.git"
			b.Spec.Output.Image = "quay.io/other/image:2"
			b.Spec.Output.PushSecretRef.Name = "push-b"
			b.Spec.Source.Git.SecretRef.Name = "git-b"
			inA, inB := input(a), input(b)
			inA.Cluster = &ClusterConfig{HTTPSProxy: "http://proxy:3128", ConfigMap: "cfg-a", CABundle: true, RegistriesConf: true}
			inB.Cluster = &ClusterConfig{HTTPSProxy: "http://proxy:3128", ConfigMap: "cfg-b", CABundle: true, RegistriesConf: true}
			pa, ra, err := GenerateReferenced(inA)
			if err != nil {
				t.Fatal(err)
			}
			pb, rb, err := GenerateReferenced(inB)
			if err != nil {
				t.Fatal(err)
			}
			if pa.Name != pb.Name || !cmp.Equal(pa.Spec, pb.Spec) {
				t.Errorf("two builds of one shape: Pipelines %s and %s differ:\n%s", pa.Name, pb.Name, cmp.Diff(pa.Spec, pb.Spec))
			}
			if ra.Spec.PipelineRef == nil || ra.Spec.PipelineRef.Name != pa.Name || ra.Spec.PipelineSpec != nil {
				t.Errorf("run refers to %+v, want Pipeline %s and no inline spec", ra.Spec.PipelineRef, pa.Name)
			}
			if pa.Namespace != a.Namespace || pa.Labels[LabelManagedBy] != ManagedBy {
				t.Errorf("Pipeline %s/%s labels %v", pa.Namespace, pa.Name, pa.Labels)
			}
			// Nothing of a run in the shared spec: not its name, claim,
			// Secrets or ConfigMap, not its build's name or image.
			raw, _ := json.Marshal(pa.Spec)
			for _, own := range []string{ra.Name, "htop-workspace", "push-a", "git-a", "cfg-a", a.Spec.Output.Image, a.Name + "-"} {
				if strings.Contains(string(raw), own) {
					t.Errorf("the shared spec holds %q, a value of one run", own)
				}
			}
			params := map[string]string{}
			for _, p := range rb.Spec.Params {
				params[p.Name] = p.Value.StringVal
			}
			for name, want := range map[string]string{paramClaim: inB.WorkspaceClaim, paramPushSecret: "push-b", paramClusterConfig: "cfg-b", paramImage: b.Spec.Output.Image} {
				if params[name] != want {
					t.Errorf("run param %s = %q, want %q", name, params[name], want)
				}
			}
			if strategy != v1alpha1.StrategyContainerfile || a.Spec.Source.Git.SecretRef != nil {
				if params[paramGitSecret] != "git-b" {
					t.Errorf("run param %s = %q", paramGitSecret, params[paramGitSecret])
				}
			}
			// A different shape gets another Pipeline.
			c := a.DeepCopy()
			c.Spec.Platforms = []v1alpha1.Platform{v1alpha1.PlatformLinuxARM64}
			pc, _, err := GenerateReferenced(input(c))
			if err != nil {
				t.Fatal(err)
			}
			if pc.Name == pa.Name {
				t.Errorf("a single-platform build shares %s with a two-platform one", pc.Name)
			}
			// Size, as the API server stores it.
			inline, err := Generate(inA)
			if err != nil {
				t.Fatal(err)
			}
			small, _ := json.Marshal(ra)
			big, _ := json.Marshal(inline)
			t.Logf("%s: run %d bytes referring to Pipeline %s, inline run %d bytes", strategy, len(small), pa.Name, len(big))
			if len(small)*5 > len(big) {
				t.Errorf("the referring run is %d bytes, more than a fifth of the inline run's %d", len(small), len(big))
			}
			for ctxName, ctx := range ctxs {
				if err := pa.Validate(ctx); err != nil {
					t.Errorf("Tekton validation of the Pipeline with %s flags: %v", ctxName, err)
				}
				if err := ra.Validate(ctx); err != nil {
					t.Errorf("Tekton validation of the run with %s flags: %v", ctxName, err)
				}
			}
			// Every parameter a task reads is declared and passed.
			for _, pt := range append(append([]tektonv1.PipelineTask{}, pa.Spec.Tasks...), pa.Spec.Finally...) {
				passed := map[string]bool{}
				for _, p := range pt.Params {
					passed[p.Name] = true
				}
				for _, ps := range pt.TaskSpec.Params {
					if !passed[ps.Name] {
						t.Errorf("task %s declares %s, which the pipeline does not pass", pt.Name, ps.Name)
					}
				}
			}
		})
	}
}

// A retry that reuses images names their digests: it stays inline.
func TestARetryThatReusesImagesStaysInline(t *testing.T) {
	pl, pr, err := GenerateReferenced(retryInput(htopBuild(), map[v1alpha1.Platform]Reuse{v1alpha1.PlatformLinuxAMD64: {Digest: retryDigestA, Run: "htop-1-abcde"}}))
	if err != nil {
		t.Fatal(err)
	}
	if pl != nil || pr.Spec.PipelineSpec == nil || pr.Spec.PipelineRef != nil {
		t.Errorf("Pipeline %v, inline spec %v: want no Pipeline and an inline run", pl, pr.Spec.PipelineSpec != nil)
	}
}

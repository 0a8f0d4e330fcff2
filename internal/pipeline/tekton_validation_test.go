package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/tektoncd/pipeline/pkg/apis/config"
	corev1 "k8s.io/api/core/v1"
)

// tektonContexts are the Tekton configurations the generated run must be
// valid under: the defaults, and explicit feature flags as an admin may set
// them (inline specs allowed, each API-fields level, each coschedule mode the
// preflight accepts).
func tektonContexts(t *testing.T) map[string]context.Context {
	t.Helper()
	ctxs := map[string]context.Context{"defaults": context.Background()}
	for name, flags := range map[string]map[string]string{
		"inline-specs-allowed": {"disable-inline-spec": ""},
		"api-fields-stable":    {"enable-api-fields": "stable"},
		"api-fields-beta":      {"enable-api-fields": "beta"},
		"api-fields-alpha":     {"enable-api-fields": "alpha"},
		"coschedule-disabled":  {"coschedule": "disabled", "disable-affinity-assistant": "true"},
		"coschedule-workspace": {"coschedule": "workspaces"},
		"inline-only-taskrun":  {"disable-inline-spec": "taskrun"},
	} {
		ff, err := config.NewFeatureFlagsFromMap(flags)
		if err != nil {
			t.Fatalf("feature flags %s: %v", name, err)
		}
		cfg := config.FromContextOrDefaults(context.Background())
		cfg.FeatureFlags = ff
		ctxs[name] = config.ToContext(context.Background(), cfg)
	}
	return ctxs
}

func TestGeneratedRunPassesTektonValidationForEveryStrategyAndPlatformSubset(t *testing.T) {
	ctxs := tektonContexts(t)
	for strategy, sample := range sampleBuilds {
		for _, platforms := range platformSubsets() {
			for _, secrets := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/secrets=%v", strategy, platformsName(platforms), secrets)
				t.Run(name, func(t *testing.T) {
					b := sample()
					b.Spec.Platforms = platforms
					b.Spec.Strategy.BuildArgs = []v1alpha1.BuildArg{{Name: "VERSION", Value: "1.2"}, {Name: "EMPTY"}}
					if secrets {
						b.Spec.Source.Git.SecretRef = &corev1.LocalObjectReference{Name: "git-auth"}
						if b.Spec.Strategy.Maven != nil {
							b.Spec.Strategy.Maven.SettingsSecretRef = &corev1.LocalObjectReference{Name: "m2"}
						}
					} else {
						b.Spec.Output.PushSecretRef = nil
						b.Spec.Strategy.BuildArgs = nil
					}
					pr, err := Generate(input(b))
					if err != nil {
						t.Fatalf("Generate: %v", err)
					}
					for ctxName, ctx := range ctxs {
						if err := pr.Validate(ctx); err != nil {
							t.Errorf("Tekton validation with %s flags: %v", ctxName, err)
						}
						// As Tekton's admission webhook does: defaults, then validation.
						defaulted := pr.DeepCopy()
						defaulted.SetDefaults(ctx)
						if err := defaulted.Validate(ctx); err != nil {
							t.Errorf("Tekton validation after Tekton's defaults with %s flags: %v", ctxName, err)
						}
					}
				})
			}
		}
	}
}

// A cluster with inline pipeline specs disabled cannot run our pipeline; the
// controller's PipelinesAvailable preflight reports it. Tekton's validation
// agrees, which proves the run really depends on inline specs.
func TestGeneratedRunIsRejectedWhenInlinePipelineSpecsAreDisabled(t *testing.T) {
	ff, err := config.NewFeatureFlagsFromMap(map[string]string{"disable-inline-spec": "pipelinerun,pipeline"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.FromContextOrDefaults(context.Background())
	cfg.FeatureFlags = ff
	pr, err := Generate(input(htopBuild()))
	if err != nil {
		t.Fatal(err)
	}
	verr := pr.Validate(config.ToContext(context.Background(), cfg))
	if verr == nil || !strings.Contains(verr.Error(), "pipelineSpec") {
		t.Fatalf("want a pipelineSpec error with disable-inline-spec=pipelinerun, got %v", verr)
	}
}

func platformsName(ps []v1alpha1.Platform) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Arch())
	}
	return strings.Join(s, "+")
}

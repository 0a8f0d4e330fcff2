package pipeline

import (
	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The three use cases of the seed article (github.com/nmasse-itix/tekton-pipeline-multiarch),
// as MultiArchBuilds that went through the API server: defaults applied, a UID
// and a generation set.

const sampleRepo = "https://github.com/nmasse-itix/tekton-pipeline-multiarch.git"

func sampleMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:       name,
		Namespace:  "build-multiarch",
		UID:        "11111111-2222-3333-4444-555555555555",
		Generation: 2,
	}
}

func htopBuild() *v1alpha1.MultiArchBuild {
	return &v1alpha1.MultiArchBuild{
		ObjectMeta: sampleMeta("htop"),
		Spec: v1alpha1.MultiArchBuildSpec{
			Source: v1alpha1.SourceSpec{
				Git:        v1alpha1.GitSource{URL: sampleRepo, Revision: "main"},
				ContextDir: "examples/htop/src",
			},
			Strategy:  v1alpha1.StrategySpec{Type: v1alpha1.StrategyContainerfile, Containerfile: "Containerfile"},
			Platforms: []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64},
			Output: v1alpha1.OutputSpec{
				Image:         "quay.io/nmasse_itix/htop-multiarch",
				PushSecretRef: &corev1.LocalObjectReference{Name: "quay-authentication"},
			},
			Timeout: "1h",
		},
	}
}

func nodejsBuild() *v1alpha1.MultiArchBuild {
	return &v1alpha1.MultiArchBuild{
		ObjectMeta: sampleMeta("nodejs-hello-world"),
		Spec: v1alpha1.MultiArchBuildSpec{
			Source: v1alpha1.SourceSpec{
				Git:        v1alpha1.GitSource{URL: sampleRepo, Revision: "main"},
				ContextDir: "examples/nodejs/src",
			},
			Strategy: v1alpha1.StrategySpec{
				Type:          v1alpha1.StrategyNodeJS,
				Containerfile: "Containerfile",
				NodeJS:        &v1alpha1.NodeJSStrategy{Image: "registry.access.redhat.com/ubi9/nodejs-20"},
			},
			Platforms: []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64},
			Output: v1alpha1.OutputSpec{
				Image:         "quay.io/nmasse_itix/nodejs-hello-world-multiarch",
				PushSecretRef: &corev1.LocalObjectReference{Name: "quay-authentication"},
			},
			Timeout: "1h",
		},
	}
}

func quarkusBuild() *v1alpha1.MultiArchBuild {
	return &v1alpha1.MultiArchBuild{
		ObjectMeta: sampleMeta("quarkus-getting-started"),
		Spec: v1alpha1.MultiArchBuildSpec{
			Source: v1alpha1.SourceSpec{
				Git:        v1alpha1.GitSource{URL: sampleRepo, Revision: "main"},
				ContextDir: "examples/quarkus/src",
			},
			Strategy: v1alpha1.StrategySpec{
				Type:          v1alpha1.StrategyMaven,
				Containerfile: "src/main/docker/Dockerfile.jvm",
				Maven: &v1alpha1.MavenStrategy{
					Image: "registry.access.redhat.com/ubi9/openjdk-21",
					Goals: []string{"package", "-DskipTests"},
				},
			},
			Platforms: []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64},
			Output: v1alpha1.OutputSpec{
				Image:         "quay.io/nmasse_itix/quarkus-getting-started-multiarch",
				PushSecretRef: &corev1.LocalObjectReference{Name: "quay-authentication"},
			},
			Timeout: "1h",
		},
	}
}

// testSettings are the operator defaults plus a toleration for arm64 nodes,
// as a cluster with tainted Graviton nodes would configure.
func testSettings() settings.Settings {
	s := settings.Default()
	s.Tolerations = map[string][]corev1.Toleration{
		"arm64": {{Key: "arch", Operator: corev1.TolerationOpEqual, Value: "arm64", Effect: corev1.TaintEffectNoSchedule}},
	}
	return s
}

func input(b *v1alpha1.MultiArchBuild) Input {
	return Input{Build: b, Settings: testSettings(), WorkspaceClaim: b.Name + "-workspace"}
}

var allPlatforms = []v1alpha1.Platform{
	v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64, v1alpha1.PlatformLinuxPPC64LE, v1alpha1.PlatformLinuxS390X,
}

// platformSubsets returns every non-empty subset of the four platforms, in
// their canonical order.
func platformSubsets() [][]v1alpha1.Platform {
	var out [][]v1alpha1.Platform
	for mask := 1; mask < 1<<len(allPlatforms); mask++ {
		var s []v1alpha1.Platform
		for i, p := range allPlatforms {
			if mask&(1<<i) != 0 {
				s = append(s, p)
			}
		}
		out = append(out, s)
	}
	return out
}

var sampleBuilds = map[v1alpha1.StrategyType]func() *v1alpha1.MultiArchBuild{
	v1alpha1.StrategyContainerfile: htopBuild,
	v1alpha1.StrategyNodeJS:        nodejsBuild,
	v1alpha1.StrategyMaven:         quarkusBuild,
}

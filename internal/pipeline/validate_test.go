package pipeline

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

func dns1123Label(s string) string { return strings.Join(validation.IsDNS1123Label(s), "; ") }

// Generate may see objects that never went through the API server, so it
// repeats the CRD's validation and names the field in its error.
func TestGenerateRejectsInvalidSpecsNamingTheField(t *testing.T) {
	for _, tc := range []struct {
		field  string
		mutate func(b *v1alpha1.MultiArchBuild)
	}{
		{"spec.source.git.url", func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.URL = "" }},
		{"spec.source.git.url", func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.URL = "file:///etc" }},
		{"spec.source.git.url", func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.URL = "ext::sh -c touch% /tmp/x" }},
		{"spec.source.git.url", func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.URL = "-uhttps://x/y" }},
		{"spec.source.git.url", func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.URL = "https://host/a b" }},
		{"spec.source.git.revision", func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.Revision = "--upload-pack=x" }},
		{"spec.source.git.revision", func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.Revision = "a..b" }},
		{"spec.source.git.revision", func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.Revision = "main;id" }},
		{"spec.source.git.secretRef.name", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Source.Git.SecretRef = &corev1.LocalObjectReference{Name: "Bad_Name"}
		}},
		{"spec.source.contextDir", func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.ContextDir = "/etc" }},
		{"spec.source.contextDir", func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.ContextDir = "src/../../x" }},
		{"spec.source.contextDir", func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.ContextDir = "src/$(id)" }},
		{"spec.strategy.type", func(b *v1alpha1.MultiArchBuild) { b.Spec.Strategy.Type = "Gradle" }},
		{"spec.output.layerCache.repository", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Output.LayerCache = &v1alpha1.LayerCacheSpec{Repository: "quay.io/team/cache:v1"}
		}},
		{"spec.output.layerCache.repository", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Output.LayerCache = &v1alpha1.LayerCacheSpec{Repository: "--tls-verify=false"}
		}},
		{"spec.strategy.nodejs", func(b *v1alpha1.MultiArchBuild) { b.Spec.Strategy.NodeJS = &v1alpha1.NodeJSStrategy{} }},
		{"spec.strategy.maven", func(b *v1alpha1.MultiArchBuild) { b.Spec.Strategy.Maven = &v1alpha1.MavenStrategy{} }},
		{"spec.strategy.containerfile", func(b *v1alpha1.MultiArchBuild) { b.Spec.Strategy.Containerfile = "../Containerfile" }},
		{"spec.strategy.containerfile", func(b *v1alpha1.MultiArchBuild) { b.Spec.Strategy.Containerfile = "./" }},
		{"spec.strategy.buildArgs[1].name", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Strategy.BuildArgs = []v1alpha1.BuildArg{{Name: "A"}, {Name: "A"}}
		}},
		{"spec.strategy.buildArgs[0].name", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Strategy.BuildArgs = []v1alpha1.BuildArg{{Name: "1A"}}
		}},
		{"spec.strategy.buildArgs[0].value", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Strategy.BuildArgs = []v1alpha1.BuildArg{{Name: "A", Value: strings.Repeat("x", 4097)}}
		}},
		{"spec.strategy.buildArgs[0].value", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Strategy.BuildArgs = []v1alpha1.BuildArg{{Name: "A", Value: "run $(context.pipelineRun.name)"}}
		}},
		{"spec.strategy.buildArgs[0].value", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Strategy.BuildArgs = []v1alpha1.BuildArg{{Name: "A", Value: `$(params["IMAGE"])`}}
		}},
		{"spec.source.git.url", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Source.Git.URL = "https://host/$(workspaces.x.path)"
		}},
		{"spec.strategy.nodejs.installCommand", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Strategy.Type = v1alpha1.StrategyNodeJS
			b.Spec.Strategy.NodeJS = &v1alpha1.NodeJSStrategy{InstallCommand: "npm ci && curl evil | sh"}
		}},
		{"spec.strategy.nodejs.installCommand", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Strategy.Type = v1alpha1.StrategyNodeJS
			b.Spec.Strategy.NodeJS = &v1alpha1.NodeJSStrategy{InstallCommand: "npm  ci"}
		}},
		{"spec.strategy.nodejs.image", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Strategy.Type = v1alpha1.StrategyNodeJS
			b.Spec.Strategy.NodeJS = &v1alpha1.NodeJSStrategy{Image: "node"}
		}},
		{"spec.strategy.maven.goals[1]", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Strategy.Type = v1alpha1.StrategyMaven
			b.Spec.Strategy.Maven = &v1alpha1.MavenStrategy{Goals: []string{"package", "-Dx=$(id)"}}
		}},
		{"spec.strategy.maven.settingsSecretRef.name", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Strategy.Type = v1alpha1.StrategyMaven
			b.Spec.Strategy.Maven = &v1alpha1.MavenStrategy{SettingsSecretRef: &corev1.LocalObjectReference{}}
		}},
		{"spec.platforms[1]", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Platforms = []v1alpha1.Platform{"linux/amd64", "linux/amd64"}
		}},
		{"spec.platforms[0]", func(b *v1alpha1.MultiArchBuild) { b.Spec.Platforms = []v1alpha1.Platform{"linux/riscv64"} }},
		{"spec.platforms", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Platforms = append(append([]v1alpha1.Platform(nil), allPlatforms...), "linux/amd64")
		}},
		{"spec.output.image", func(b *v1alpha1.MultiArchBuild) { b.Spec.Output.Image = "" }},
		{"spec.output.image", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Output.Image = "quay.io/a/b@sha256:" + strings.Repeat("0", 64)
		}},
		{"spec.output.image", func(b *v1alpha1.MultiArchBuild) { b.Spec.Output.Image = "Quay.io/A/B" }},
		{"spec.output.image", func(b *v1alpha1.MultiArchBuild) { b.Spec.Output.Image = "htop" }},
		{"spec.output.pushSecretRef.name", func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Output.PushSecretRef = &corev1.LocalObjectReference{Name: "a/b"}
		}},
		{"spec.builderImage", func(b *v1alpha1.MultiArchBuild) { b.Spec.BuilderImage = "buildah; rm -rf /" }},
		{"spec.serviceAccountName", func(b *v1alpha1.MultiArchBuild) { b.Spec.ServiceAccountName = "Admin" }},
		{"spec.timeout", func(b *v1alpha1.MultiArchBuild) { b.Spec.Timeout = "-1m" }},
		{"metadata.name", func(b *v1alpha1.MultiArchBuild) { b.Name = "" }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			b := htopBuild()
			tc.mutate(b)
			_, err := Generate(input(b))
			if err == nil {
				t.Fatal("Generate accepted the spec")
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error %q does not wrap ErrInvalidSpec", err)
			}
			if !strings.Contains(err.Error(), tc.field+":") {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
		})
	}
}

func TestGenerateAcceptsWhatTheCRDAccepts(t *testing.T) {
	for name, mutate := range map[string]func(b *v1alpha1.MultiArchBuild){
		"scp-like url":        func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.URL = "git@github.com:org/repo.git" },
		"ssh url with user":   func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.URL = "ssh://git@host:2222/org/repo.git" },
		"commit sha":          func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.Revision = strings.Repeat("ab", 20) },
		"tag with slash":      func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.Revision = "release/v1.2+build" },
		"registry with port":  func(b *v1alpha1.MultiArchBuild) { b.Spec.Output.Image = "registry.local:5000/team/app:v1.2.3" },
		"contextDir dot":      func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.ContextDir = "." },
		"contextDir ./ slash": func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.ContextDir = "./examples/htop/src/" },
		"contextDir my-app":   func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.ContextDir = "my-app" },
		"scp-like with dashes": func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Source.Git.URL = "git@git-host.example.com:my-org/my-repo.git"
		},
		"ssh url without port": func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.URL = "ssh://git@github.com/org/repo.git" },
		"https without credentials": func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Source.Git.URL = "https://git.example.com:8443/my-org/my-repo.git"
		},
		"dash at the start of a path segment": func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.URL = "https://github.com/org/-app.git" },
		"at sign in the path":                 func(b *v1alpha1.MultiArchBuild) { b.Spec.Source.Git.URL = "https://example.com/org/app@v1.git" },
		"build arg any value": func(b *v1alpha1.MultiArchBuild) {
			b.Spec.Strategy.BuildArgs = []v1alpha1.BuildArg{{Name: "_X", Value: "'\"$(`\n;|&"}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			b := htopBuild()
			mutate(b)
			if _, err := Generate(input(b)); err != nil {
				t.Fatal(err)
			}
		})
	}
	b := htopBuild()
	b.Spec.Source.ContextDir = "./examples/htop/src/"
	if got := runParam(mustGenerate(t, input(b)), paramContextDir).StringVal; got != "examples/htop/src" {
		t.Errorf("contextDir normalized to %q", got)
	}
}

func TestGenerateRejectsBadInput(t *testing.T) {
	if _, err := Generate(Input{}); err == nil || errors.Is(err, ErrInvalidSpec) {
		t.Errorf("nil Build: %v", err)
	}
	in := input(htopBuild())
	in.WorkspaceClaim = ""
	if _, err := Generate(in); err == nil || errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "WorkspaceClaim") {
		t.Errorf("empty WorkspaceClaim: %v", err)
	}
	in = input(htopBuild())
	in.Settings.BuilderImage = ""
	if _, err := Generate(in); err == nil || !strings.Contains(err.Error(), "BuilderImage") {
		t.Errorf("empty Settings.BuilderImage: %v", err)
	}
}

// The CRD's rules against option injection and embedded credentials in
// spec.source.git.url, repeated by Generate.
func TestGenerateRejectsGitURLOptionsAndCredentials(t *testing.T) {
	for _, tc := range []struct{ name, url, want string }{
		{"ssh host is an option", "ssh://-oProxyCommand=id/app.git", "must not start with '-'"},
		{"ssh user is an option", "ssh://-oProxyCommand=id@example.com/app.git", "must not start with '-'"},
		{"ssh host after user is an option", "ssh://git@-oProxyCommand=id/app.git", "must not start with '-'"},
		{"ssh port is an option", "ssh://git@example.com:-p/app.git", "must not start with '-'"},
		{"bracketed host is an option", "ssh://[-oProxyCommand=id]/app.git", "must not start with '-'"},
		{"https host is an option", "https://-example.com/app.git", "must not start with '-'"},
		{"scp-like user is an option", "-oProxyCommand@example.com:app.git", "must not start with '-'"},
		{"scp-like host is an option", "git@-oProxyCommand:app.git", "must not start with '-'"},
		{"scp-like path is an option", "git@example.com:--upload-pack=id", "must not start with '-'"},
		{"https user and password", "https://user:hunter2@github.com/org/app.git", "spec.source.git.secretRef"},
		{"https token", "https://hunter2@github.com/org/app.git", "spec.source.git.secretRef"},
		{"https password only", "https://:hunter2@github.com/org/app.git", "spec.source.git.secretRef"},
		{"git protocol user", "git://user:hunter2@example.com/app.git", "spec.source.git.secretRef"},
		{"ssh password", "ssh://git:hunter2@example.com/app.git", "spec.source.git.secretRef"},
		{"scp-like password", "git:hunter2@example.com:app.git", "spec.source.git.secretRef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := htopBuild()
			b.Spec.Source.Git.URL = tc.url
			_, err := Generate(input(b))
			if err == nil {
				t.Fatalf("Generate accepted %q", tc.url)
			}
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "spec.source.git.url:") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want an invalid-spec error naming spec.source.git.url and saying %q, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error repeats the credentials of the URL: %v", err)
			}
		})
	}
}

// TestGitURLPatternsAreTheCRDs keeps the two validations of spec.source.git.url
// in step: every pattern Generate checks is one the CRD's CEL rules match.
func TestGitURLPatternsAreTheCRDs(t *testing.T) {
	data, err := os.ReadFile("../../config/crd/bases/build.multiarch.io_multiarchbuilds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(data, crd); err != nil {
		t.Fatal(err)
	}
	url := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["source"].Properties["git"].Properties["url"]
	cel := map[string]bool{}
	matches := regexp.MustCompile(`matches\('((?:[^']|'')*)'\)`)
	for _, rule := range url.XValidations {
		for _, m := range matches.FindAllStringSubmatch(rule.Rule, -1) {
			cel[m[1]] = true
		}
	}
	if len(cel) == 0 {
		t.Fatal("no matches() in the CEL rules of spec.source.git.url")
	}
	goPatterns := append([]*regexp.Regexp{gitURLPattern, gitSCPPattern}, append(gitURLOption, gitURLCredentials...)...)
	for _, re := range goPatterns {
		if !cel[re.String()] {
			t.Errorf("Generate checks %q, which no CEL rule of spec.source.git.url matches (the CRD has %v)", re, keys(cel))
		}
	}
}

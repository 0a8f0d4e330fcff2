package pipeline

import (
	"context"
	"strings"
	"testing"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzGenerate feeds arbitrary spec strings to Generate: it must never panic,
// and whatever it accepts must (1) keep every step script byte-for-byte one of
// the embedded files, so no spec byte ever lands in script text, (2) pass
// Tekton's own validation, and (3) have a valid run name.
//
//	go test -fuzz=FuzzGenerate ./internal/pipeline
func FuzzGenerate(f *testing.F) {
	f.Add("https://github.com/nmasse-itix/tekton-pipeline-multiarch.git", "main", "examples/htop/src", "Containerfile", "1.2", "quay.io/nmasse_itix/htop-multiarch", "npm ci", "package", uint8(0))
	f.Add("git@github.com:org/repo.git", "v1.0", ".", "src/main/docker/Dockerfile.jvm", "$(params.IMAGE)", "registry.local:5000/a/b:c", "npm install --omit=dev", "-DskipTests", uint8(1))
	f.Add("ssh://git@host/x", "0123456789abcdef0123456789abcdef01234567", "a/b", "Dockerfile", "'; rm -rf / #", "quay.io/a/b", "yarn install", "-Dq=$(x)", uint8(2))
	f.Add("https://h/$(context.pipelineRun.name)", "$(params.GIT_URL)", "$(params.X)", "$(results.COMMIT.path)", "`id`\n$HOME", "a.b/c", "sh -c id", "$(tasks.clone.results.COMMIT)", uint8(5))

	ctx := context.Background()
	embedded := []string{scriptPrepare, scriptClone, scriptInstall, scriptMaven, scriptBuild, scriptPush, scriptCleanup, scriptPreflight}
	f.Fuzz(func(t *testing.T, url, revision, contextDir, containerfile, argValue, image, installCommand, goal string, choice uint8) {
		b := htopBuild()
		b.Spec.Source.Git.URL = url
		b.Spec.Source.Git.Revision = revision
		b.Spec.Source.ContextDir = contextDir
		b.Spec.Strategy.Containerfile = containerfile
		b.Spec.Strategy.BuildArgs = []v1alpha1.BuildArg{{Name: "ARG", Value: argValue}}
		b.Spec.Output.Image = image
		switch choice % 3 {
		case 1:
			b.Spec.Strategy.Type = v1alpha1.StrategyNodeJS
			b.Spec.Strategy.NodeJS = &v1alpha1.NodeJSStrategy{InstallCommand: installCommand}
		case 2:
			b.Spec.Strategy.Type = v1alpha1.StrategyMaven
			b.Spec.Strategy.Maven = &v1alpha1.MavenStrategy{Goals: []string{"package", goal}, Image: image}
		}
		b.Spec.Platforms = platformSubsets()[int(choice/3)%15]

		pr, err := Generate(input(b))
		if err != nil {
			return
		}
		fuzzed := []string{url, revision, contextDir, containerfile, argValue, image, installCommand, goal}
		for _, pt := range allTasks(pr) {
			for _, step := range pt.TaskSpec.Steps {
				known := false
				for _, e := range embedded {
					known = known || step.Script == e
				}
				if !known {
					t.Fatalf("task %s step %s: script is not an embedded file", pt.Name, step.Name)
				}
				for _, s := range fuzzed {
					if len(s) < 4 || inAny(embedded, s) {
						continue // too short to mean anything, or part of the constant text
					}
					if strings.Contains(step.Script, s) {
						t.Fatalf("task %s step %s: spec value %q appears in the script", pt.Name, step.Name, s)
					}
				}
			}
		}
		if verr := pr.Validate(ctx); verr != nil {
			t.Fatalf("Generate accepted a spec Tekton rejects: %v", verr)
		}
		if errs := validation.IsDNS1123Label(pr.Name); len(errs) > 0 {
			t.Fatalf("run name %q: %v", pr.Name, errs)
		}
	})
}

func inAny(haystacks []string, s string) bool {
	for _, h := range haystacks {
		if strings.Contains(h, s) {
			return true
		}
	}
	return false
}

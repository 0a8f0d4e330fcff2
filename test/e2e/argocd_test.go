//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// Argo CD's own code judges the live builds: hack/argocd/healthtool runs
// Argo CD v2's health evaluation (its settings manager over the argocd-cm
// snippet of docs/gitops.md, its Lua VM, gitops-engine's health package) on
// each state of every e2e build that runBuild observes.

var (
	argoOnce sync.Once
	argoBin  string
	argoErr  error
)

func argoHealthTool() (string, error) {
	argoOnce.Do(func() {
		cmd := exec.Command(filepath.Join(repoRoot, "hack/argocd/build-healthtool.sh"))
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			argoErr = fmt.Errorf("build-healthtool.sh: %v: %s", err, stderr.String())
			return
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		argoBin = lines[len(lines)-1]
	})
	return argoBin, argoErr
}

// argoHealth is Argo CD's verdict on b as the API server returned it.
func argoHealth(t *testing.T, b *v1alpha1.MultiArchBuild) (status, message string) {
	t.Helper()
	bin, err := argoHealthTool()
	if err != nil {
		t.Fatal(err)
	}
	obj := b.DeepCopy()
	obj.APIVersion, obj.Kind = v1alpha1.GroupVersion.String(), "MultiArchBuild"
	obj.ManagedFields = nil
	data, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--docs", filepath.Join(repoRoot, "docs/gitops.md"))
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("argocd-health: %v: %s", err, out)
	}
	status, message, _ = strings.Cut(strings.TrimSpace(string(out)), "\t")
	return status, message
}

// wantArgo is the verdict Argo CD must give a build in a phase, for the
// current generation.
func wantArgo(b *v1alpha1.MultiArchBuild) string {
	if b.Status.ObservedGeneration != b.Generation {
		return "Progressing"
	}
	switch b.Status.Phase {
	case v1alpha1.PhaseSucceeded:
		return "Healthy"
	case v1alpha1.PhaseFailed:
		return "Degraded"
	}
	return "Progressing"
}

// checkArgo asserts Argo CD's verdict on b and logs it.
func checkArgo(t *testing.T, b *v1alpha1.MultiArchBuild, when string) {
	t.Helper()
	status, msg := argoHealth(t, b)
	if want := wantArgo(b); status != want {
		t.Errorf("Argo CD says %s (%q) %s (phase %s, generation %d observed %d), want %s", status, msg, when, b.Status.Phase, b.Generation, b.Status.ObservedGeneration, want)
		return
	}
	if status == "Healthy" && !strings.Contains(msg, b.Status.Digest) {
		t.Errorf("Argo CD's Healthy message %q does not carry the pushed digest %s", msg, b.Status.Digest)
	}
	t.Logf("Argo CD health %s: %s (%s)", when, status, msg)
}

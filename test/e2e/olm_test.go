//go:build e2e && olm

package e2e

// The OLM pass of the e2e tier (make test-e2e-olm): the operator installed
// from the bundle as OLM installs it for an AllNamespaces OperatorGroup
// (hack/olminstall through hack/cluster/operator.sh, MAB_OPERATOR_MODE=olm),
// building a sample, then upgraded to a second bundle version while a build
// runs.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// olmShape checks what OLM puts on the Deployment it makes for csv.
func olmShape(t *testing.T, csv string) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := kc.Get(context.Background(), client.ObjectKey{Namespace: operatorNS, Name: operatorDeploy}, d); err != nil {
		t.Fatal(err)
	}
	ann := d.Spec.Template.Annotations
	if v, ok := ann["olm.targetNamespaces"]; !ok || v != "" {
		t.Errorf("pod template olm.targetNamespaces = %q (present %v), want \"\" (AllNamespaces)", v, ok)
	}
	if ann["olm.operatorNamespace"] != operatorNS || ann["olm.operatorGroup"] == "" || ann["alm-examples"] == "" {
		t.Errorf("pod template lacks the OperatorGroup's or the CSV's annotations: %v", keys(ann))
	}
	if d.Labels["olm.managed"] != "true" || d.Labels["olm.owner"] != csv || d.Labels["olm.owner.kind"] != "ClusterServiceVersion" {
		t.Errorf("Deployment labels %v, want olm.managed and olm.owner=%s", d.Labels, csv)
	}
	env := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["OPERATOR_CONDITION_NAME"] != csv {
		t.Errorf("OPERATOR_CONDITION_NAME = %q, want %s", env["OPERATOR_CONDITION_NAME"], csv)
	}
	img := d.Spec.Template.Spec.Containers[0].Image
	if !strings.HasPrefix(img, cfg.Registry+"/") || !strings.HasPrefix(env["RELATED_IMAGE_BUILDAH"], cfg.Registry+"/") {
		t.Errorf("relatedImages not resolved to the local registry: image %s, RELATED_IMAGE_BUILDAH %s", img, env["RELATED_IMAGE_BUILDAH"])
	}
	return d
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// ownedRBAC lists the ClusterRoles OLM made for csv.
func ownedRBAC(t *testing.T, csv string) []string {
	t.Helper()
	l := &rbacv1.ClusterRoleList{}
	if err := kc.List(context.Background(), l, client.MatchingLabels{"olm.owner": csv}); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, cr := range l.Items {
		if cr.Labels["olm.permissions.hash"] != "" {
			out = append(out, cr.Name)
		}
	}
	return out
}

func TestOLMInstallBuildsAndUpgradesMidBuild(t *testing.T) {
	ctx := context.Background()
	csv, err := testenv.CSV()
	if err != nil {
		t.Fatal(err)
	}
	first := csv.Name
	olmShape(t, first)
	roles := ownedRBAC(t, first)
	// <csv>-<serviceaccount>-<hash>, the prefix cut to fit 63 characters.
	if want := (first + "-" + operatorDeploy)[:40]; len(roles) != 1 || !strings.HasPrefix(roles[0], want) || len(roles[0]) > 63 {
		t.Errorf("ClusterRoles of %s: %v, want one named <csv>-<serviceaccount>-<hash> (starting %s)", first, roles, want)
	}
	t.Logf("installed as OLM would: CSV %s, ClusterRole %v, Deployment %s/%s", first, roles, operatorNS, operatorDeploy)

	url := gitRepo(t, "e2e-olm", map[string]string{
		"Containerfile": "FROM " + cfg.BaseImage + "\nRUN sleep 10 && uname -m > /built-on\n",
	})
	ns := namespace(t, "e2e-olm")
	b := newBuild(ns, "olm", url, "e2e/olm")
	upgraded := make(chan string, 1)
	go func() {
		defer close(upgraded)
		deadline := time.Now().Add(10 * time.Minute)
		for time.Now().Before(deadline) {
			trs := &tektonv1.TaskRunList{}
			if err := kc.List(ctx, trs, client.InNamespace(ns)); err == nil {
				for _, tr := range trs.Items {
					if tr.Labels[pipeline.LabelArch] == "" || tr.Status.PodName == "" {
						continue
					}
					// A second bundle version, installed over the first
					// while the architectures build.
					dir := t.TempDir()
					gen := exec.Command("go", "run", "./hack/bundlegen", "-version", "0.1.1", "-replaces", first,
						"-output-dir", dir, "-dockerfile", "", "-image", csv.Spec.RelatedImages[0].Image)
					gen.Dir = repoRoot
					if out, err := gen.CombinedOutput(); err != nil {
						t.Errorf("bundlegen 0.1.1: %v\n%s", err, out)
						return
					}
					cmd := exec.Command(filepath.Join(repoRoot, "hack/cluster/operator.sh"), "start")
					cmd.Env = append(os.Environ(), "MAB_OPERATOR_MODE=olm", "MAB_OLM_BUNDLE="+dir)
					cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
					start := time.Now()
					if err := cmd.Run(); err != nil {
						t.Errorf("upgrade to 0.1.1: %v", err)
						return
					}
					t.Logf("upgraded to 0.1.1 while TaskRun %s ran, in %s", tr.Name, time.Since(start).Round(time.Second))
					upgraded <- "multiarch-build-operator.v0.1.1"
					return
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Errorf("no architecture TaskRun got a pod in time")
	}()
	res := runBuild(t, b, v1alpha1.PhaseSucceeded)
	second, ok := <-upgraded
	if !ok {
		t.Fatal("the upgrade did not happen during the build")
	}
	olmShape(t, second)
	if old := ownedRBAC(t, first); len(old) != 0 {
		t.Errorf("RBAC of the replaced CSV %s is left: %v", first, old)
	}
	if cur := ownedRBAC(t, second); len(cur) != 1 {
		t.Errorf("ClusterRoles of %s: %v", second, cur)
	}
	runs := &tektonv1.PipelineRunList{}
	if err := kc.List(ctx, runs, client.InNamespace(ns), client.MatchingLabels{pipeline.LabelBuild: b.Name}); err != nil {
		t.Fatal(err)
	}
	if len(runs.Items) != 1 {
		t.Errorf("%d PipelineRuns across the upgrade, want 1", len(runs.Items))
	}
	checkPushed(t, res)
	t.Logf("the build ran across the upgrade %s -> %s: %s with %d PipelineRun, digest %s", first, second, res.build.Status.Phase, len(runs.Items), res.build.Status.Digest)
}

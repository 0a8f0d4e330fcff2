//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

// TestRetryFailed: a two-architecture build whose arm64 RUN is flaky fails;
// build.multiarch.io/retry-failed then rebuilds arm64 only, from the same
// commit, and pushes an index whose amd64 entry is the first run's digest.
//
// The flakiness is outside the commit (which must not change): on arm64 the
// RUN fetches a marker manifest from the cluster's registry, which the test
// pushes only after the first run failed. amd64 never fetches it.
func TestRetryFailed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t, "e2e-retry")
	// The repository's tag list: 404 (NAME_UNKNOWN) until the marker is
	// pushed. (A manifest GET without an OCI Accept header is 404 even then.)
	marker := "e2e/flaky-marker-" + ns
	url := gitRepo(t, "e2e-retry-"+ns, map[string]string{
		"Containerfile": "FROM " + cfg.BaseImage + "\n" +
			`RUN if [ "$(uname -m)" = aarch64 ]; then wget -q -O /dev/null "http://` + cfg.Registry + `/v2/` + marker + `/tags/list` +
			`" || { echo "flaky: marker ` + ns + ` not in the registry yet" >&2; exit 1; }; fi` + "\n",
	})
	b := newBuild(ns, "flaky", url, "e2e/retry")
	res := runBuild(t, b, v1alpha1.PhaseFailed)
	first := res.build.Status
	if first.LatestRun == nil || first.LatestRun.Revision == "" {
		t.Fatalf("latestRun %+v: want the commit of the failed run", first.LatestRun)
	}
	var amd string
	for _, p := range first.Platforms {
		t.Logf("first run: %s %s %s %s", p.Platform, p.State, p.Digest, p.Message)
		if p.Platform == v1alpha1.PlatformLinuxAMD64 {
			amd = p.Digest
		}
	}
	if amd == "" {
		t.Fatalf("amd64 has no digest after the first run: %+v", first.Platforms)
	}

	pushMarker(t, marker, ns)

	cur := &v1alpha1.MultiArchBuild{}
	if err := kc.Get(ctx, client.ObjectKeyFromObject(b), cur); err != nil {
		t.Fatal(err)
	}
	base := cur.DeepCopy()
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	cur.Annotations[v1alpha1.RetryFailedAnnotation] = fmt.Sprint(time.Now().Unix())
	if err := kc.Patch(ctx, cur, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deadline := start.Add(15 * time.Minute)
	for {
		if err := kc.Get(ctx, client.ObjectKeyFromObject(b), cur); err != nil {
			t.Fatal(err)
		}
		lr := cur.Status.LatestRun
		if lr != nil && lr.Name != first.LatestRun.Name && (cur.Status.Phase == v1alpha1.PhaseSucceeded || cur.Status.Phase == v1alpha1.PhaseFailed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retry did not finish: %+v", cur.Status)
		}
		time.Sleep(3 * time.Second)
	}
	st := cur.Status
	t.Logf("retry run %s (retryOf %s) ended %s in %s; buildSeconds %q", st.LatestRun.Name, st.LatestRun.RetryOf, st.Phase, time.Since(start).Round(time.Second), st.BuildSeconds)
	if c := apimeta.FindStatusCondition(st.Conditions, v1alpha1.ConditionRetry); c != nil {
		t.Logf("Retry=%s %s: %s", c.Status, c.Reason, c.Message)
	}
	if ready := apimeta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); ready == nil || ready.Status != metav1.ConditionTrue {
		t.Fatalf("Ready = %+v after the retry", ready)
	}
	if st.LatestRun.RetryOf != first.LatestRun.Name || st.Revision != first.LatestRun.Revision {
		t.Errorf("latestRun %+v revision %s: want a retry of %s at commit %s", st.LatestRun, st.Revision, first.LatestRun.Name, first.LatestRun.Revision)
	}
	for _, p := range st.Platforms {
		t.Logf("retry: %s %s %s reusedFrom=%q timings=%s", p.Platform, p.State, p.Digest, p.ReusedFrom, timingsLine(p.Timings))
		switch p.Platform {
		case v1alpha1.PlatformLinuxAMD64:
			if p.Digest != amd || p.ReusedFrom != first.LatestRun.Name {
				t.Errorf("amd64 digest %s reusedFrom %q, want the first run's %s from %s", p.Digest, p.ReusedFrom, amd, first.LatestRun.Name)
			}
		case v1alpha1.PlatformLinuxARM64:
			if p.State != v1alpha1.PlatformBuilt || p.ReusedFrom != "" || p.Timings == nil || p.Timings.Building == nil {
				t.Errorf("arm64 %+v: want rebuilt, with timings", p)
			}
		}
	}
	// No amd64 TaskRun (so no amd64 pod) in the retry run.
	var trs tektonv1.TaskRunList
	if err := kc.List(ctx, &trs, client.InNamespace(ns), client.MatchingLabels{"tekton.dev/pipelineRun": st.LatestRun.Name}); err != nil {
		t.Fatal(err)
	}
	var tasks []string
	for _, tr := range trs.Items {
		tasks = append(tasks, tr.Labels["tekton.dev/pipelineTask"])
		if tr.Labels[pipeline.LabelArch] == "amd64" {
			t.Errorf("TaskRun %s is amd64: the retry must not rebuild amd64", tr.Name)
		}
	}
	t.Logf("retry TaskRuns: %s", strings.Join(tasks, ", "))
	// The pushed index lists the old amd64 digest.
	idx, err := getManifest(ctx, repoOf(cur), st.Digest)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range idx.Manifests {
		if m.Platform != nil && m.Platform.Architecture == "amd64" {
			found = m.Digest == amd
			t.Logf("index %s: amd64 -> %s", st.Digest, m.Digest)
		}
	}
	if !found {
		t.Errorf("index %s does not list amd64 as %s: %+v", st.Digest, amd, idx.Manifests)
	}
}

func timingsLine(t *v1alpha1.PlatformTimings) string {
	if t == nil {
		return "-"
	}
	s := func(p *v1alpha1.PhaseTiming) string {
		if p == nil || p.Seconds == nil {
			return "-"
		}
		return fmt.Sprintf("%ds", *p.Seconds)
	}
	return fmt.Sprintf("waiting %s installing %s building %s pushing %s", s(t.Waiting), s(t.Installing), s(t.Building), s(t.Pushing))
}

// pushMarker pushes a minimal OCI image manifest (an empty config, no
// layers) as repo:tag, through the registry's HTTP API.
func pushMarker(t *testing.T, repo, tag string) {
	t.Helper()
	config := []byte("{}")
	sum := sha256.Sum256(config)
	cdigest := "sha256:" + hex.EncodeToString(sum[:])
	do := func(method, url, ctype string, body []byte) *http.Response {
		req, err := http.NewRequest(method, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode >= 300 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s %s: %s %s", method, url, resp.Status, b)
		}
		return resp
	}
	resp := do(http.MethodPost, fmt.Sprintf("http://%s/v2/%s/blobs/uploads/", cfg.Registry, repo), "", nil)
	loc := resp.Header.Get("Location")
	resp.Body.Close()
	if !strings.HasPrefix(loc, "http") {
		loc = "http://" + cfg.Registry + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	do(http.MethodPut, loc+sep+"digest="+cdigest, "application/octet-stream", config).Body.Close()
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`, cdigest, len(config))
	do(http.MethodPut, fmt.Sprintf("http://%s/v2/%s/manifests/%s", cfg.Registry, repo, tag), "application/vnd.oci.image.manifest.v1+json", []byte(m)).Body.Close()
	t.Logf("pushed marker %s:%s", repo, tag)
}

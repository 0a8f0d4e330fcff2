//go:build e2e && chains

package e2e

// The Chains pass of the e2e tier (make test-e2e-chains): the cluster runs
// Tekton Chains (MAB_CHAINS=1, hack/cluster/chains.sh) with a cosign key, the
// slsa/v1 format, OCI storage in the local registry and deep inspection of
// PipelineRuns. A two-architecture build must end signed, and the cosign
// binary (not this test's own code) must verify, with the public key only:
// the signature of the pushed index and of each per-architecture image, the
// SLSA provenance of the index and, through deep inspection, the
// PipelineRun's provenance attached to each per-architecture image too.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

const (
	chainsSigned    = "chains.tekton.dev/signed"
	slsaV02         = "https://slsa.dev/provenance/v0.2"
	pipelineRunType = "tekton.dev/v1/PipelineRun"
	taskRunType     = "tekton.dev/v1/TaskRun"
)

// chainsEnv is what up.sh wrote for Chains to ${STATE}/env.
type chainsEnv struct{ cosign, pubKey string }

func readChainsEnv(t *testing.T) chainsEnv {
	t.Helper()
	state := os.Getenv("MAB_STATE")
	if state == "" {
		state = "/var/tmp/mab-cluster"
	}
	f, err := os.Open(filepath.Join(state, "env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok {
			vals[k] = v
		}
	}
	if vals["MAB_CHAINS_RUNNING"] != "1" {
		t.Fatalf("the cluster runs without Tekton Chains (MAB_CHAINS_RUNNING=%q in %s): start it with MAB_CHAINS=1 hack/cluster/up.sh (make test-e2e-chains does)", vals["MAB_CHAINS_RUNNING"], f.Name())
	}
	e := chainsEnv{cosign: vals["MAB_COSIGN"], pubKey: vals["MAB_CHAINS_PUBKEY"]}
	for _, p := range []string{e.cosign, e.pubKey} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v (built by hack/cluster/build-chains.sh, key written by hack/cluster/chains.sh)", err)
		}
	}
	return e
}

func TestChainsSignsTheIndex(t *testing.T) {
	ce := readChainsEnv(t)
	url := gitRepo(t, "e2e-chains", map[string]string{
		"Containerfile": "FROM " + cfg.BaseImage + "\nRUN uname -m > /built-on\n",
	})
	ns := namespace(t, "e2e-chains")
	b := newBuild(ns, "signed", url, "e2e/chains")
	res := runBuild(t, b, v1alpha1.PhaseSucceeded)
	images := checkPushed(t, res)
	repo := cfg.Registry + "/" + repoOf(res.build)
	index := repo + "@" + res.build.Status.Digest

	// Chains marks each TaskRun it signed, then the PipelineRun.
	run := res.build.Status.LatestRun.Name
	waitChainsSigned(t, ns, run)

	// The index: its signature (the build TaskRun that pushed it, its
	// INDEX_IMAGE_URL/INDEX_IMAGE_DIGEST pair) and its provenance (that
	// TaskRun and the PipelineRun).
	t.Logf("cosign %s, key %s; index %s:", ce.cosign, ce.pubKey, index)
	verifySignature(t, ce, index)
	prov := verifyProvenance(t, ce, index)
	runProv := provenanceOf(prov, pipelineRunType)
	if runProv == nil {
		t.Errorf("%s: no PipelineRun provenance among %d attestations (build types %v)", index, len(prov), buildTypes(prov))
	} else {
		// the PipelineRun's provenance names the index and, deep inspection,
		// every per-architecture image as its subjects
		want := []string{index}
		for _, img := range images {
			want = append(want, repo+"@"+img.digest)
		}
		sort.Strings(want)
		if got := runProv.subjects(); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("PipelineRun provenance subjects:\n  got  %v\n  want %v", got, want)
		} else {
			t.Logf("PipelineRun provenance subjects (deep inspection): the index and %d images: %v", len(images), got)
		}
	}
	if provenanceOf(prov, taskRunType) == nil {
		t.Errorf("%s: no TaskRun (the build task that pushed the index) provenance among %d attestations (build types %v)", index, len(prov), buildTypes(prov))
	}

	// Each architecture's image: signed by its build-<arch> TaskRun, and
	// the PipelineRun's provenance attached to it by deep inspection.
	archs := make([]string, 0, len(images))
	for arch := range images {
		archs = append(archs, arch)
	}
	sort.Strings(archs)
	for _, arch := range archs {
		ref := repo + "@" + images[arch].digest
		t.Logf("linux/%s image %s:", arch, ref)
		verifySignature(t, ce, ref)
		p := verifyProvenance(t, ce, ref)
		if provenanceOf(p, pipelineRunType) == nil {
			t.Errorf("%s image %s: no PipelineRun provenance (deep inspection) among build types %v", arch, ref, buildTypes(p))
		}
		if provenanceOf(p, taskRunType) == nil {
			t.Errorf("%s image %s: no TaskRun (build-%s) provenance among build types %v", arch, ref, arch, buildTypes(p))
		}
	}

	// The check fails when a signature is missing: the base image was pushed
	// by the cluster scripts, not by a signed run.
	base := baseImageByDigest(t)
	if out, err := cosign(ce, "verify", base); err == nil {
		t.Errorf("cosign verify of the unsigned %s succeeded:\n%s", base, out)
	} else {
		t.Logf("negative control: cosign verify %s fails as it must: %s", base, lastLine(out))
	}
}

// waitChainsSigned waits until Chains marks the TaskRuns producing images
// (build-<arch>, push) and then the PipelineRun signed=true; "failed" ends
// the test at once.
func waitChainsSigned(t *testing.T, ns, run string) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	deadline := start.Add(5 * time.Minute)
	reported := map[string]bool{}
	for {
		pending := []string{}
		trs := &tektonv1.TaskRunList{}
		if err := kc.List(ctx, trs, client.InNamespace(ns), client.MatchingLabels{"tekton.dev/pipelineRun": run}); err != nil {
			t.Fatal(err)
		}
		objs := []client.Object{}
		for i := range trs.Items {
			task := trs.Items[i].Labels["tekton.dev/pipelineTask"]
			if task == pipeline.TaskPush || strings.HasPrefix(task, "build-") {
				objs = append(objs, &trs.Items[i])
			}
		}
		pr := &tektonv1.PipelineRun{}
		if err := kc.Get(ctx, client.ObjectKey{Namespace: ns, Name: run}, pr); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, pr)
		for _, o := range objs {
			kind := "TaskRun " + o.GetLabels()["tekton.dev/pipelineTask"]
			if _, ok := o.(*tektonv1.PipelineRun); ok {
				kind = "PipelineRun"
			}
			switch v := o.GetAnnotations()[chainsSigned]; v {
			case "true":
				if !reported[o.GetName()] {
					t.Logf("%6.1fs Chains signed %s %s (%s=true)", time.Since(start).Seconds(), kind, o.GetName(), chainsSigned)
					reported[o.GetName()] = true
				}
			case "failed":
				t.Fatalf("Chains failed to sign %s %s: annotations %v (log: ${STATE}/logs/chains-controller.log)", kind, o.GetName(), o.GetAnnotations())
			default:
				pending = append(pending, kind+" "+o.GetName())
			}
		}
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not signed by Chains after %s: %v (log: ${STATE}/logs/chains-controller.log)", time.Since(start).Round(time.Second), pending)
		}
		time.Sleep(2 * time.Second)
	}
}

// cosign runs the cosign binary against the local registry (plain HTTP, no
// transparency log here) with the Chains public key; stdout and stderr.
func cosign(ce chainsEnv, args ...string) (string, error) {
	args = append([]string{args[0], "--key", ce.pubKey, "--insecure-ignore-tlog", "--allow-insecure-registry"}, args[1:]...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ce.cosign, args...)
	// no Sigstore public-good instance to reach: TUF cache in a scratch HOME
	cmd.Env = append(os.Environ(), "HOME="+os.TempDir()+"/mab-e2e-cosign-home", "COSIGN_EXPERIMENTAL=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := stdout.String()
	if stderr.Len() > 0 {
		out += "\n" + stderr.String()
	}
	if err != nil {
		return strings.TrimSpace(out), fmt.Errorf("cosign %s: %w", strings.Join(args, " "), err)
	}
	return stdout.String() + "\x00" + stderr.String(), nil
}

// verifySignature: cosign verify succeeds and every verified simplesigning
// payload names exactly ref's digest.
func verifySignature(t *testing.T, ce chainsEnv, ref string) {
	t.Helper()
	out, err := cosign(ce, "verify", ref)
	if err != nil {
		t.Errorf("signature of %s: %v\n%s", ref, err, out)
		return
	}
	stdout, stderr, _ := strings.Cut(out, "\x00")
	var payloads []struct {
		Critical struct {
			Identity struct {
				DockerReference string `json:"docker-reference"`
			} `json:"identity"`
			Image struct {
				DockerManifestDigest string `json:"docker-manifest-digest"`
			} `json:"image"`
			Type string `json:"type"`
		} `json:"critical"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &payloads); err != nil {
		t.Errorf("cosign verify %s: output is not the JSON list of payloads: %v\n%s", ref, err, stdout)
		return
	}
	digest := ref[strings.LastIndex(ref, "@")+1:]
	for _, p := range payloads {
		if p.Critical.Image.DockerManifestDigest != digest {
			t.Errorf("cosign verify %s: a verified signature is for %s", ref, p.Critical.Image.DockerManifestDigest)
		}
	}
	if len(payloads) == 0 {
		t.Errorf("cosign verify %s: no signature", ref)
		return
	}
	t.Logf("cosign verify %s: %d signature(s) verified, %s for %s@%s; %s", ref, len(payloads),
		payloads[0].Critical.Type, payloads[0].Critical.Identity.DockerReference, payloads[0].Critical.Image.DockerManifestDigest,
		cosignSummary(stderr))
}

// provenance is one verified in-toto statement.
type provenance struct {
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate struct {
		BuildType string `json:"buildType"`
		Builder   struct {
			ID string `json:"id"`
		} `json:"builder"`
	} `json:"predicate"`
}

func (p *provenance) subjects() []string {
	var s []string
	for _, sub := range p.Subject {
		s = append(s, sub.Name+"@sha256:"+sub.Digest["sha256"])
	}
	sort.Strings(s)
	return s
}

// verifyProvenance: cosign verify-attestation --type slsaprovenance succeeds;
// returns the verified statements, each naming ref among its subjects.
func verifyProvenance(t *testing.T, ce chainsEnv, ref string) []*provenance {
	t.Helper()
	out, err := cosign(ce, "verify-attestation", "--type", "slsaprovenance", ref)
	if err != nil {
		t.Errorf("SLSA provenance of %s: %v\n%s", ref, err, out)
		return nil
	}
	stdout, stderr, _ := strings.Cut(out, "\x00")
	var provs []*provenance
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var env struct {
			PayloadType string `json:"payloadType"`
			Payload     string `json:"payload"`
		}
		if err := json.Unmarshal([]byte(line), &env); err != nil {
			t.Errorf("cosign verify-attestation %s: not a DSSE envelope: %v\n%s", ref, err, line)
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			t.Errorf("cosign verify-attestation %s: payload: %v", ref, err)
			continue
		}
		p := &provenance{}
		if err := json.Unmarshal(raw, p); err != nil {
			t.Errorf("cosign verify-attestation %s: statement: %v", ref, err)
			continue
		}
		if p.PredicateType != slsaV02 {
			t.Errorf("cosign verify-attestation %s: predicateType %s, want %s", ref, p.PredicateType, slsaV02)
		}
		named := false
		for _, s := range p.subjects() {
			named = named || s == ref
		}
		if !named {
			t.Errorf("cosign verify-attestation %s: a %s statement does not name it among its subjects %v", ref, p.Predicate.BuildType, p.subjects())
		}
		provs = append(provs, p)
	}
	if len(provs) == 0 {
		t.Errorf("cosign verify-attestation %s: no attestation", ref)
		return nil
	}
	t.Logf("cosign verify-attestation --type slsaprovenance %s: %d attestation(s) verified, %s, build types %v, builder %s; %s",
		ref, len(provs), provs[0].PredicateType, buildTypes(provs), provs[0].Predicate.Builder.ID,
		cosignSummary(stderr))
	return provs
}

func provenanceOf(provs []*provenance, buildType string) *provenance {
	for _, p := range provs {
		if p.Predicate.BuildType == buildType {
			return p
		}
	}
	return nil
}

func buildTypes(provs []*provenance) []string {
	var s []string
	for _, p := range provs {
		s = append(s, p.Predicate.BuildType)
	}
	sort.Strings(s)
	return s
}

// baseImageByDigest is the base image (pushed by hack/images, never signed)
// by the digest the registry serves for its tag.
func baseImageByDigest(t *testing.T) string {
	t.Helper()
	ref := strings.TrimPrefix(cfg.BaseImage, cfg.Registry+"/")
	i := strings.LastIndex(ref, ":")
	m, err := getManifest(context.Background(), ref[:i], ref[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Registry + "/" + ref[:i] + "@" + m.digest
}

// cosignSummary is cosign's report on stderr ("Verification for ... --",
// the checks performed), on one line.
func cosignSummary(stderr string) string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		// (the warnings: no transparency log, no TUF repository to reach)
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "WARNING:") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, " / ")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

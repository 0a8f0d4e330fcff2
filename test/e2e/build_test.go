//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
)

var bothPlatforms = []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}

// TestTektonDefaults: the builds below run with Tekton's default feature
// flags, in particular coschedule=workspaces (the affinity assistant).
func TestTektonDefaults(t *testing.T) {
	cm := &corev1.ConfigMap{}
	if err := kc.Get(context.Background(), client.ObjectKey{Namespace: "tekton-pipelines", Name: "feature-flags"}, cm); err != nil {
		t.Fatal(err)
	}
	if c := cm.Data["coschedule"]; c != "" && c != "workspaces" {
		t.Fatalf("feature-flags coschedule = %q, want the default (workspaces)", c)
	}
	t.Logf("Tekton feature-flags coschedule=%q (default: workspaces)", cm.Data["coschedule"])
}

// TestNodes: two Ready nodes, one per architecture.
func TestNodes(t *testing.T) {
	nodes := &corev1.NodeList{}
	if err := kc.List(context.Background(), nodes); err != nil {
		t.Fatal(err)
	}
	ready := map[string]string{}
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready[n.Labels[corev1.LabelArchStable]] = n.Name
			}
		}
	}
	for _, arch := range []string{"amd64", "arm64"} {
		if ready[arch] == "" {
			t.Errorf("no Ready node with kubernetes.io/arch=%s (Ready nodes by arch: %v)", arch, ready)
		}
	}
}

func TestContainerfile(t *testing.T) {
	t.Parallel()
	url := gitRepo(t, "e2e-containerfile", map[string]string{
		"Containerfile": "FROM " + cfg.BaseImage + "\n" +
			"RUN uname -m > /built-on && cp /bin/busybox /busybox-copy\n",
	})
	ns := namespace(t, "e2e-containerfile")
	b := newBuild(ns, "hello", url, "e2e/containerfile")
	res := runBuild(t, b, v1alpha1.PhaseSucceeded)
	index := checkPushed(t, res)
	for arch, img := range index {
		files, err := imageFiles(context.Background(), repoOf(b), img, "busybox-copy", "built-on")
		if err != nil {
			t.Fatal(err)
		}
		if got := elfMachine(files["busybox-copy"]); got != elfFor[arch] {
			t.Errorf("%s image: /busybox-copy (made by RUN) is %s, want %s", arch, got, elfFor[arch])
		}
		want := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
		if got := strings.TrimSpace(string(files["built-on"])); got != want {
			t.Errorf("%s image: RUN uname -m wrote %q, want %q", arch, got, want)
		}
		t.Logf("%s image: /busybox-copy is %s, RUN ran on %s", arch, elfMachine(files["busybox-copy"]), strings.TrimSpace(string(files["built-on"])))
	}
}

func TestNodeJS(t *testing.T) {
	t.Parallel()
	url := gitRepo(t, "e2e-nodejs", map[string]string{
		"package.json": `{"name": "e2e-nodejs", "version": "1.0.0", "private": true, "main": "index.js",` +
			` "dependencies": {"ms": "2.1.3"}}` + "\n",
		"index.js": "const ms = require('ms');\nconsole.log(process.arch, ms('2 days'));\n",
		"Containerfile": "FROM " + cfg.NodeJSImage + "\n" +
			"WORKDIR /app\nCOPY . /app\n" +
			"RUN node -e \"require('fs').writeFileSync('/app/arch.txt', process.arch)\" && node index.js\n" +
			"CMD [\"node\", \"/app/index.js\"]\n",
	})
	ns := namespace(t, "e2e-nodejs")
	b := newBuild(ns, "nodejs", url, "e2e/nodejs")
	b.Spec.Strategy.Type = v1alpha1.StrategyNodeJS
	res := runBuild(t, b, v1alpha1.PhaseSucceeded)
	// the install step ran a node of the node's own architecture (the arm64
	// node runs the arm64 variant of the NodeJS image, emulated)
	for _, tr := range res.taskRuns {
		arch := tr.Labels[pipeline.LabelArch]
		if !strings.HasPrefix(tr.Labels["tekton.dev/pipelineTask"], "install-") || arch == "" {
			continue
		}
		logs := podLogs(t, tr.Namespace, tr.Status.PodName)
		if strings.Contains(logs, "WARNING: node reports architecture") || !strings.Contains(logs, "dependencies installed") {
			t.Errorf("install step of %s:\n%s", arch, logs)
		}
	}
	index := checkPushed(t, res)
	for arch, img := range index {
		files, err := imageFiles(context.Background(), repoOf(b), img, "usr/bin/node", "app/arch.txt", "app/node_modules/ms/package.json")
		if err != nil {
			t.Fatal(err)
		}
		if got := elfMachine(files["usr/bin/node"]); got != elfFor[arch] {
			t.Errorf("%s image: /usr/bin/node is %s, want %s", arch, got, elfFor[arch])
		}
		want := map[string]string{"amd64": "x64", "arm64": "arm64"}[arch]
		if got := string(files["app/arch.txt"]); got != want {
			t.Errorf("%s image: node's process.arch in RUN was %q, want %q", arch, got, want)
		}
		if files["app/node_modules/ms/package.json"] == nil {
			t.Errorf("%s image: /app/node_modules/ms is missing: the per-arch npm install did not reach the image", arch)
		}
		t.Logf("%s image: /usr/bin/node is %s, process.arch=%s, node_modules/ms present=%v", arch,
			elfMachine(files["usr/bin/node"]), files["app/arch.txt"], files["app/node_modules/ms/package.json"] != nil)
	}
}

// TestFailsOnOneArch: a RUN that fails on arm64 only ends the build Failed,
// naming the failed task and Tekton's reason.
func TestFailsOnOneArch(t *testing.T) {
	t.Parallel()
	url := gitRepo(t, "e2e-fail-arm64", map[string]string{
		"Containerfile": "FROM " + cfg.BaseImage + "\n" + `RUN [ "$(uname -m)" != aarch64 ]` + "\n",
	})
	ns := namespace(t, "e2e-fail")
	b := newBuild(ns, "fails-on-arm64", url, "e2e/fail")
	res := runBuild(t, b, v1alpha1.PhaseFailed)
	st := res.build.Status
	ready := apimeta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionFalse {
		t.Errorf("Ready = %+v, want False", ready)
	}
	succ := apimeta.FindStatusCondition(st.Conditions, v1alpha1.ConditionSucceeded)
	if succ == nil || succ.Status != metav1.ConditionFalse || succ.Reason == "" {
		t.Fatalf("Succeeded = %+v, want False with a reason", succ)
	}
	if !strings.Contains(succ.Message, "build-arm64") {
		t.Errorf("Succeeded message %q does not name the failed task build-arm64", succ.Message)
	}
	t.Logf("Succeeded=False reason=%s message=%q", succ.Reason, succ.Message)
	// A failed run cleaned up too: nothing of it is left on the volume.
	if root, runs := volumeEntries(t, res.build); len(runs) != 0 {
		t.Errorf("runs/ holds %v after the failed run (volume root %v)", runs, root)
	}
	for _, p := range st.Platforms {
		t.Logf("platform %s: %s %s", p.Platform, p.State, p.Message)
		if p.Platform == v1alpha1.PlatformLinuxARM64 && p.State != v1alpha1.PlatformFailed {
			t.Errorf("linux/arm64 state = %s, want Failed", p.State)
		}
		// amd64 does not fail: it is Built if it finished first, else
		// Cancelled when the operator stopped the run (failFast).
		if p.Platform == v1alpha1.PlatformLinuxAMD64 && p.State != v1alpha1.PlatformBuilt && p.State != v1alpha1.PlatformCancelled {
			t.Errorf("linux/amd64 state = %s, want Built or Cancelled (the RUN passes on amd64; arm64's failure stops it)", p.State)
		}
	}
	if st.Digest != "" {
		t.Errorf("status.digest = %q on a failed build, want empty", st.Digest)
	}
}

// podLogs returns the logs of every container of a pod.
func podLogs(t *testing.T, ns, pod string) string {
	t.Helper()
	p, err := cs.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("pod %s/%s: %v", ns, pod, err)
	}
	var out strings.Builder
	for _, c := range p.Spec.Containers {
		b, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: c.Name}).DoRaw(context.Background())
		if err != nil {
			t.Fatalf("logs of %s/%s %s: %v", ns, pod, c.Name, err)
		}
		fmt.Fprintf(&out, "[%s]\n%s", c.Name, b)
	}
	return out.String()
}

func newBuild(ns, name, gitURL, repo string) *v1alpha1.MultiArchBuild {
	size := resource.MustParse("1Gi")
	return &v1alpha1.MultiArchBuild{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.MultiArchBuildSpec{
			Source:    v1alpha1.SourceSpec{Git: v1alpha1.GitSource{URL: gitURL, Revision: "main"}},
			Platforms: bothPlatforms,
			Output:    v1alpha1.OutputSpec{Image: fmt.Sprintf("%s/%s:%s", cfg.Registry, repo, ns)},
			Workspace: v1alpha1.WorkspaceSpec{StorageClassName: cfg.StorageClass, Size: &size},
			Timeout:   "20m",
		},
	}
}

// repoOf is the output repository without the registry and tag.
func repoOf(b *v1alpha1.MultiArchBuild) string {
	r := strings.TrimPrefix(b.Spec.Output.Image, cfg.Registry+"/")
	return r[:strings.LastIndex(r, ":")]
}

type result struct {
	build    *v1alpha1.MultiArchBuild
	wall     time.Duration
	taskRuns []tektonv1.TaskRun
}

// runBuild creates b and waits until its phase is Succeeded or Failed, logging
// each change of phase and per-platform state, then checks where every
// architecture's task ran and records the timings.
func runBuild(t *testing.T, b *v1alpha1.MultiArchBuild, want v1alpha1.Phase) result {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	if err := kc.Create(ctx, b); err != nil {
		t.Fatalf("create MultiArchBuild: %v", err)
	}
	key := client.ObjectKeyFromObject(b)
	last := ""
	deadline := start.Add(25 * time.Minute)
	for {
		cur := &v1alpha1.MultiArchBuild{}
		if err := kc.Get(ctx, key, cur); err != nil {
			t.Fatal(err)
		}
		line := string(cur.Status.Phase)
		for _, p := range cur.Status.Platforms {
			line += fmt.Sprintf(" %s=%s", p.Platform, p.State)
		}
		if line != last {
			t.Logf("%6.1fs %s: %s", time.Since(start).Seconds(), key, line)
			last = line
			checkArgo(t, cur, "at "+string(cur.Status.Phase))
		}
		if cur.Status.ObservedGeneration == cur.Generation &&
			(cur.Status.Phase == v1alpha1.PhaseSucceeded || cur.Status.Phase == v1alpha1.PhaseFailed) {
			b = cur
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %s after %s; conditions: %+v", key, cur.Status.Phase, time.Since(start), cur.Status.Conditions)
		}
		time.Sleep(time.Second)
	}
	res := result{build: b, wall: time.Since(start)}
	if b.Status.Phase != want {
		t.Fatalf("%s ended %s, want %s; conditions: %+v", key, b.Status.Phase, want, b.Status.Conditions)
	}
	if b.Status.LatestRun == nil {
		t.Fatalf("status.latestRun is empty")
	}
	// capacity policy Managed (the default) on a cluster without the Machine
	// API: the operator only checks that each architecture has a Ready node.
	if c := apimeta.FindStatusCondition(b.Status.Conditions, v1alpha1.ConditionCapacityReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("CapacityReady = %+v, want True (both nodes are Ready)", c)
	} else {
		t.Logf("CapacityReady: %s", c.Message)
	}
	trs := &tektonv1.TaskRunList{}
	if err := kc.List(ctx, trs, client.InNamespace(b.Namespace), client.MatchingLabels{"tekton.dev/pipelineRun": b.Status.LatestRun.Name}); err != nil {
		t.Fatal(err)
	}
	res.taskRuns = trs.Items
	checkPlacement(t, res)
	recordTimings(t, res)
	return res
}

// checkPlacement: every TaskRun bound to an architecture ran its pod on a
// node of that architecture, and each platform built ran on one.
func checkPlacement(t *testing.T, res result) {
	t.Helper()
	ctx := context.Background()
	seen := map[string]bool{}
	for _, tr := range res.taskRuns {
		arch := tr.Labels[pipeline.LabelArch]
		if arch == "" || tr.Status.PodName == "" {
			continue
		}
		pod := &corev1.Pod{}
		if err := kc.Get(ctx, client.ObjectKey{Namespace: tr.Namespace, Name: tr.Status.PodName}, pod); err != nil {
			t.Errorf("pod of %s: %v", tr.Name, err)
			continue
		}
		node := &corev1.Node{}
		if err := kc.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, node); err != nil {
			t.Errorf("node %q of %s: %v", pod.Spec.NodeName, pod.Name, err)
			continue
		}
		if got := node.Labels[corev1.LabelArchStable]; got != arch {
			t.Errorf("TaskRun %s (arch %s) ran on node %s with kubernetes.io/arch=%s", tr.Name, arch, node.Name, got)
		}
		t.Logf("TaskRun %s (arch %s) ran on node %s (kubernetes.io/arch=%s)", tr.Labels["tekton.dev/pipelineTask"], arch, node.Name, node.Labels[corev1.LabelArchStable])
		seen[arch] = true
	}
	for _, p := range res.build.Spec.Platforms {
		if !seen[p.Arch()] {
			t.Errorf("no TaskRun labelled %s=%s with a pod", pipeline.LabelArch, p.Arch())
		}
	}
	for _, ps := range res.build.Status.Platforms {
		if ps.State != v1alpha1.PlatformBuilt || ps.NodeName == "" {
			continue
		}
		node := &corev1.Node{}
		if err := kc.Get(ctx, client.ObjectKey{Name: ps.NodeName}, node); err != nil {
			t.Errorf("status node %q of %s: %v", ps.NodeName, ps.Platform, err)
		} else if got := node.Labels[corev1.LabelArchStable]; got != ps.Platform.Arch() {
			t.Errorf("status says %s was built on %s, whose kubernetes.io/arch is %s", ps.Platform, ps.NodeName, got)
		}
	}
}

// checkPushed: status.digest is the digest of the index the registry serves,
// the index holds exactly linux/amd64 and linux/arm64, and the per-platform
// digests in status match it. Returns each architecture's image manifest.
func checkPushed(t *testing.T, res result) map[string]*manifest {
	t.Helper()
	ctx := context.Background()
	b := res.build
	repo := repoOf(b)
	tag := b.Spec.Output.Image[strings.LastIndex(b.Spec.Output.Image, ":")+1:]
	idx, err := getManifest(ctx, repo, tag)
	if err != nil {
		t.Fatal(err)
	}
	if b.Status.Digest == "" || b.Status.Digest != idx.digest || (idx.headerDigest != "" && idx.headerDigest != idx.digest) {
		t.Errorf("status.digest = %q; the registry serves %s:%s with digest %s (header %s)", b.Status.Digest, repo, tag, idx.digest, idx.headerDigest)
	}
	if want := cfg.Registry + "/" + repo + "@" + idx.digest; b.Status.Image != want {
		t.Errorf("status.image = %q, want %q", b.Status.Image, want)
	}
	if len(idx.Manifests) == 0 {
		t.Fatalf("%s:%s is not an index (media type %s)", repo, tag, idx.MediaType)
	}
	var plats []string
	images := map[string]*manifest{}
	statusDigest := map[string]string{}
	for _, p := range b.Status.Platforms {
		statusDigest[p.Platform.Arch()] = p.Digest
	}
	for _, d := range idx.Manifests {
		if d.Platform == nil {
			t.Errorf("index entry %s has no platform", d.Digest)
			continue
		}
		plats = append(plats, d.Platform.OS+"/"+d.Platform.Architecture)
		img, err := getManifest(ctx, repo, d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		images[d.Platform.Architecture] = img
		if statusDigest[d.Platform.Architecture] != d.Digest {
			t.Errorf("status digest of %s = %q, index has %s", d.Platform.Architecture, statusDigest[d.Platform.Architecture], d.Digest)
		}
		// the config agrees with the index
		resp, err := regGet(ctx, repo, "blobs", img.Config.Digest)
		if err != nil {
			t.Fatal(err)
		}
		var conf struct{ Architecture, OS string }
		err = jsonDecode(resp, &conf)
		if err != nil {
			t.Fatal(err)
		}
		if conf.Architecture != d.Platform.Architecture {
			t.Errorf("index says %s, image config says %s", d.Platform.Architecture, conf.Architecture)
		}
	}
	sort.Strings(plats)
	if strings.Join(plats, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("index platforms = %v, want exactly [linux/amd64 linux/arm64]", plats)
	}
	t.Logf("pushed %s (%s) platforms %v", b.Status.Image, idx.MediaType, plats)
	return images
}

var timingsMu sync.Mutex

// recordTimings logs the wall time and each task's duration, and appends them
// to ${MAB_STATE}/e2e-timings.txt (figures for the README).
func recordTimings(t *testing.T, res result) {
	t.Helper()
	var first, lastEnd time.Time
	for _, tr := range res.taskRuns {
		if tr.Status.StartTime == nil || tr.Status.CompletionTime == nil {
			continue
		}
		if s := tr.Status.StartTime.Time; first.IsZero() || s.Before(first) {
			first = s
		}
		if e := tr.Status.CompletionTime.Time; e.After(lastEnd) {
			lastEnd = e
		}
	}
	var lines []string
	sort.Slice(res.taskRuns, func(i, j int) bool {
		a, b := res.taskRuns[i].Status.StartTime, res.taskRuns[j].Status.StartTime
		return a != nil && b != nil && a.Before(b)
	})
	for _, tr := range res.taskRuns {
		if tr.Status.StartTime == nil || tr.Status.CompletionTime == nil {
			continue
		}
		s, e := tr.Status.StartTime.Time, tr.Status.CompletionTime.Time
		lines = append(lines, fmt.Sprintf("  %-16s %4.0fs  (from +%.0fs to +%.0fs)%s", tr.Labels["tekton.dev/pipelineTask"],
			e.Sub(s).Seconds(), s.Sub(first).Seconds(), e.Sub(first).Seconds(), stepTimes(tr)))
	}
	// overhead: what the user waits for beyond the slowest architecture's
	// build task (clone, preflight, push, pod starts, reconciles).
	head := fmt.Sprintf("%s %s/%s: %s, wall %.0fs (create -> %s), tasks %.0fs, slowest architecture task %.0fs, overhead %.0fs",
		time.Now().UTC().Format(time.RFC3339), res.build.Namespace, res.build.Name, res.build.Spec.Strategy.Type,
		res.wall.Seconds(), res.build.Status.Phase, lastEnd.Sub(first).Seconds(),
		slowestArchTask(res).Seconds(), (res.wall - slowestArchTask(res)).Seconds())
	t.Logf("%s\n%s", head, strings.Join(lines, "\n"))
	state := os.Getenv("MAB_STATE")
	if state == "" {
		state = "/var/tmp/mab-cluster"
	}
	timingsMu.Lock()
	defer timingsMu.Unlock()
	f, err := os.OpenFile(filepath.Join(state, "e2e-timings.txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("timings file: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s\n%s\n", head, strings.Join(lines, "\n"))
}

// stepTimes is where a TaskRun's time went: until its first step started
// (the pod: scheduling, image pulls, Tekton's init containers), then each
// step, in whole seconds as the kubelet reports container times.
func stepTimes(tr tektonv1.TaskRun) string {
	var parts []string
	for i, st := range tr.Status.Steps {
		t := st.Terminated
		if t == nil {
			continue
		}
		if i == 0 && tr.Status.StartTime != nil {
			parts = append(parts, fmt.Sprintf("pod %.0fs", t.StartedAt.Sub(tr.Status.StartTime.Time).Seconds()))
		}
		parts = append(parts, fmt.Sprintf("%s %.0fs", st.Name, t.FinishedAt.Sub(t.StartedAt.Time).Seconds()))
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, ", ")
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	gitopsDoc = "../../../docs/gitops.md"
	cmKey     = "resource.customizations.health.build.multiarch.io_MultiArchBuild"
)

// obj is an unstructured object, as the API server returns it.
type obj = map[string]interface{}

// build returns a MultiArchBuild at generation gen, shaped like
// hack/argocd/health_test.go's build() after runtime.DefaultUnstructuredConverter:
// status is left out when nil (a new object of a kind with a status
// subresource) and kept when empty.
func build(gen int64, status obj) obj {
	b := obj{
		"apiVersion": "build.multiarch.io/v1alpha1",
		"kind":       "MultiArchBuild",
		"metadata": obj{
			"name": "htop", "namespace": "build-multiarch", "generation": gen,
			"creationTimestamp": "2026-11-26T10:00:00Z",
		},
		"spec": obj{
			"source": obj{
				"git":        obj{"url": "https://github.com/nmasse-itix/tekton-pipeline-multiarch.git", "revision": "main"},
				"contextDir": "examples/htop/src",
			},
			"strategy":        obj{"type": "Containerfile", "containerfile": "Containerfile"},
			"platforms":       []interface{}{"linux/amd64", "linux/arm64"},
			"output":          obj{"image": "quay.io/nmasse_itix/htop-multiarch"},
			"runHistoryLimit": int64(3),
		},
	}
	if status != nil {
		b["status"] = status
	}
	return b
}

func cond(typ, status, reason, message string, gen int64) obj {
	return obj{
		"type": typ, "status": status, "reason": reason, "message": message,
		"observedGeneration": gen, "lastTransitionTime": "2026-11-26T10:01:00Z",
	}
}

func conds(c ...obj) []interface{} {
	out := make([]interface{}, len(c))
	for i := range c {
		out[i] = c[i]
	}
	return out
}

func platforms(state string) []interface{} {
	return []interface{}{
		obj{"platform": "linux/amd64", "state": state, "nodeName": "ip-10-0-1-2"},
		obj{"platform": "linux/arm64", "state": state, "nodeName": "ip-10-0-2-3"},
	}
}

const (
	digest     = "sha256:3b5f4a2cbd1e0f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c"
	pushed     = "quay.io/nmasse_itix/htop-multiarch@" + digest
	runName    = "htop-2-4f7c"
	timeoutMsg = "PipelineRun htop-2-4f7c timed out after 1h0m0s in task build-arm64"
	started    = "2026-11-26T10:02:00Z"
	finished   = "2026-11-26T10:09:00Z"
)

type verdict struct{ status, message string }

// cases are hack/argocd/health_test.go's TestHealth cases, same objects and
// same expected verdicts, which gopher-lua gives there.
var cases = []struct {
	name  string
	build obj
	want  verdict
}{{
	name:  "a build the operator has not seen yet is Progressing",
	build: build(1, nil),
	want:  verdict{"Progressing", "Waiting for the operator to report status"},
}, {
	name:  "an empty status is Progressing until the operator observes the generation",
	build: build(1, obj{}),
	want:  verdict{"Progressing", "Waiting for the operator to observe generation 1"},
}, {
	name: "a new spec generation not yet observed is Progressing even though the previous one is Ready",
	build: build(3, obj{
		"observedGeneration": int64(2), "phase": "Succeeded",
		"conditions": conds(cond("Ready", "True", "Built", "Pushed "+pushed, 2)),
		"digest":     digest, "image": pushed,
	}),
	want: verdict{"Progressing", "Waiting for the operator to observe generation 3"},
}, {
	name: "an observed generation whose Ready verdict is of an older generation is Progressing, not Healthy",
	build: build(3, obj{
		"observedGeneration": int64(3), "phase": "Succeeded",
		"conditions": conds(
			cond("Ready", "True", "Built", "Pushed "+pushed, 2),
			cond("Succeeded", "True", "Succeeded", "PipelineRun htop-2-4f7c succeeded", 2),
		),
		"digest": digest, "image": pushed,
	}),
	want: verdict{"Progressing", "Waiting for the build of generation 3"},
}, {
	name: "waiting for nodes of an architecture is Progressing with the Ready message",
	build: build(2, obj{
		"observedGeneration": int64(2), "phase": "Provisioning",
		"conditions": conds(
			cond("Ready", "False", "WaitingForPrerequisites", "Waiting for capacity: MachineSet build-multiarch-tw9w9-aarch64-worker-eu-west-3b is scaling up", 2),
			cond("PipelinesAvailable", "True", "TektonAvailable", "Tekton Pipelines is installed", 2),
			cond("StorageReady", "True", "VolumeBound", "PVC htop-workspace is Bound", 2),
			cond("CapacityReady", "False", "ProvisioningNodes", "MachineSet build-multiarch-tw9w9-aarch64-worker-eu-west-3b is scaling up", 2),
		),
		"platforms": platforms("Waiting"),
	}),
	want: verdict{"Progressing", "Waiting for capacity: MachineSet build-multiarch-tw9w9-aarch64-worker-eu-west-3b is scaling up"},
}, {
	name: "a missing Tekton install keeps the build Progressing, not Degraded: it starts once Tekton is there",
	build: build(1, obj{
		"observedGeneration": int64(1), "phase": "Pending",
		"conditions": conds(
			cond("Ready", "False", "WaitingForPrerequisites", "Tekton Pipelines is not installed: install OpenShift Pipelines", 1),
			cond("PipelinesAvailable", "False", "TektonNotInstalled", "Tekton Pipelines is not installed: install OpenShift Pipelines", 1),
		),
	}),
	want: verdict{"Progressing", "Tekton Pipelines is not installed: install OpenShift Pipelines"},
}, {
	name: "a running build is Progressing",
	build: build(2, obj{
		"observedGeneration": int64(2), "phase": "Building",
		"conditions": conds(
			cond("Ready", "False", "Building", "PipelineRun htop-2-4f7c is running", 2),
			cond("Succeeded", "Unknown", "Running", "Tasks Completed: 1 (Failed: 0, Cancelled 0), Incomplete: 3, Skipped: 0", 2),
		),
		"latestRun": obj{"name": runName, "generation": int64(2), "startTime": started},
		"platforms": platforms("Building"),
	}),
	want: verdict{"Progressing", "PipelineRun htop-2-4f7c is running"},
}, {
	name:  "a status with a phase but no conditions yet is Progressing with the phase",
	build: build(1, obj{"observedGeneration": int64(1), "phase": "Pending"}),
	want:  verdict{"Progressing", "Pending"},
}, {
	name: "the current generation built and pushed is Healthy and names the pushed image",
	build: build(2, obj{
		"observedGeneration": int64(2), "phase": "Succeeded",
		"conditions": conds(
			cond("Ready", "True", "Built", "Generation 2 built and pushed", 2),
			cond("Succeeded", "True", "Succeeded", "All Tasks have completed executing", 2),
		),
		"latestRun": obj{"name": runName, "generation": int64(2), "startTime": started, "completionTime": finished},
		"platforms": []interface{}{
			obj{"platform": "linux/amd64", "state": "Built", "nodeName": "ip-10-0-1-2", "digest": "sha256:" + strings.Repeat("1", 64)},
			obj{"platform": "linux/arm64", "state": "Built", "nodeName": "ip-10-0-2-3", "digest": "sha256:" + strings.Repeat("2", 64)},
		},
		"revision": "3b11df8c0f4e7a6d5b2c1e0f9a8b7c6d5e4f3a2b",
		"digest":   digest, "image": pushed,
	}),
	want: verdict{"Healthy", "Pushed " + pushed},
}, {
	name: "Ready without a reported image is Healthy with the Ready message",
	build: build(1, obj{
		"observedGeneration": int64(1), "phase": "Succeeded",
		"conditions": conds(cond("Ready", "True", "Built", "Generation 1 built and pushed", 1)),
	}),
	want: verdict{"Healthy", "Generation 1 built and pushed"},
}, {
	name: "a timed-out run is Degraded with the Succeeded message that names the failing task",
	build: build(2, obj{
		"observedGeneration": int64(2), "phase": "Failed",
		"conditions": conds(
			cond("Ready", "False", "BuildFailed", "The build of generation 2 failed", 2),
			cond("Succeeded", "False", "PipelineRunTimeout", timeoutMsg, 2),
		),
		"latestRun": obj{"name": runName, "generation": int64(2), "startTime": started, "completionTime": finished},
		"platforms": []interface{}{
			obj{"platform": "linux/amd64", "state": "Built", "digest": "sha256:" + strings.Repeat("1", 64)},
			obj{"platform": "linux/arm64", "state": "Failed", "message": "timed out"},
		},
	}),
	want: verdict{"Degraded", timeoutMsg},
}, {
	name: "Ready=False with reason BuildFailed is Degraded with the Ready message when Succeeded is absent",
	build: build(4, obj{
		"observedGeneration": int64(4), "phase": "Failed",
		"conditions": conds(cond("Ready", "False", "BuildFailed", "PipelineRun htop-4-0a1b was deleted", 4)),
	}),
	want: verdict{"Degraded", "PipelineRun htop-4-0a1b was deleted"},
}, {
	name:  "phase Failed without any condition message is Degraded with a generic message",
	build: build(1, obj{"observedGeneration": int64(1), "phase": "Failed"}),
	want:  verdict{"Degraded", "The build failed"},
}}

// runTool runs the CLI in-process and returns its exit code, stdout and stderr.
func runTool(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, bytes.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustJSON(t *testing.T, v interface{}) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestArgoCDJudgesLikeGopherLua feeds each object as JSON on stdin and wants
// Argo CD's verdict, through the argocd-cm snippet of docs/gitops.md, to be
// the one health_test.go gets from gopher-lua.
func TestArgoCDJudgesLikeGopherLua(t *testing.T) {
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runTool(t, mustJSON(t, tt.build), "--docs", gitopsDoc)
			if code != 0 {
				t.Fatalf("exit %d, stderr: %s", code, errOut)
			}
			if want := tt.want.status + "\t" + tt.want.message + "\n"; out != want {
				t.Errorf("Argo CD says %q, gopher-lua said %q", out, want)
			}
		})
	}
}

// TestFilesAndYAML gives every object as a YAML file in one run: one line
// per file, in order.
func TestFilesAndYAML(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--docs", gitopsDoc}
	var want strings.Builder
	for i, tt := range cases {
		b, err := yaml.Marshal(tt.build)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, string(rune('a'+i))+".yaml")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
		want.WriteString(tt.want.status + "\t" + tt.want.message + "\n")
	}
	code, out, errOut := runTool(t, nil, args...)
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	if out != want.String() {
		t.Errorf("got\n%s\nwant\n%s", out, want.String())
	}
}

// TestArgoCDOwnRules shows the verdict is Argo CD's and not only the
// script's: gitops-engine says Progressing "Pending deletion" for an object
// being deleted before any health check runs.
func TestArgoCDOwnRules(t *testing.T) {
	b := obj{}
	if err := json.Unmarshal(mustJSON(t, cases[8].build), &b); err != nil { // Healthy otherwise
		t.Fatal(err)
	}
	b["metadata"].(obj)["deletionTimestamp"] = "2026-11-26T11:00:00Z"
	code, out, errOut := runTool(t, mustJSON(t, b), "--docs", gitopsDoc)
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	if want := "Progressing\tPending deletion\n"; out != want {
		t.Errorf("got %q, want %q", out, want)
	}
}

// docsCopy writes docs/gitops.md with the argocd-cm ConfigMap's block edited
// by edit, and returns its path.
func docsCopy(t *testing.T, edit func(block string) string) string {
	t.Helper()
	b, err := os.ReadFile(gitopsDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "```yaml\napiVersion: v1\nkind: ConfigMap\n")
	if start < 0 {
		t.Fatal("docs/gitops.md: no argocd-cm ConfigMap block")
	}
	end := start + len("```yaml\n") + strings.Index(doc[start+len("```yaml\n"):], "```")
	edited := doc[:start] + edit(doc[start:end]) + doc[end:]
	if edited == doc {
		t.Fatal("the edit changed nothing")
	}
	p := filepath.Join(t.TempDir(), "gitops.md")
	if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMalformedDocsFail: a docs copy whose key or script Argo CD would not
// use for MultiArchBuild makes the tool fail, saying why, with nothing on stdout.
func TestMalformedDocsFail(t *testing.T) {
	replaceKey := func(key string) func(string) string {
		return func(block string) string { return strings.Replace(block, cmKey+":", key+":", 1) }
	}
	tests := []struct {
		name    string
		edit    func(string) string
		wantErr string
	}{{
		name:    "a dot instead of the underscore between group and kind",
		edit:    replaceKey("resource.customizations.health.build.multiarch.io.MultiArchBuild"),
		wantErr: "no health override for build.multiarch.io/MultiArchBuild",
	}, {
		name:    "the kind in lower case",
		edit:    replaceKey("resource.customizations.health.build.multiarch.io_multiarchbuild"),
		wantErr: "no health override for build.multiarch.io/MultiArchBuild",
	}, {
		name:    "the singular customization",
		edit:    replaceKey("resource.customization.health.build.multiarch.io_MultiArchBuild"),
		wantErr: "no health override for build.multiarch.io/MultiArchBuild",
	}, {
		name:    "two underscores, which Argo CD's key parser refuses",
		edit:    replaceKey("resource.customizations.health.build_multiarch.io_MultiArchBuild"),
		wantErr: "group kind should be in format",
	}, {
		name:    "an unknown customization type",
		edit:    replaceKey("resource.customizations.healthcheck.build.multiarch.io_MultiArchBuild"),
		wantErr: "resource customization type healthcheck not supported",
	}, {
		name:    "a slash between group and kind, which is no valid ConfigMap key",
		edit:    replaceKey("resource.customizations.health.build.multiarch.io/MultiArchBuild"),
		wantErr: "not a valid ConfigMap key",
	}, {
		name: "without the app.kubernetes.io/part-of label Argo CD's settings manager does not see the ConfigMap",
		edit: func(block string) string {
			return strings.Replace(block, "    app.kubernetes.io/part-of: argocd\n", "", 1)
		},
		wantErr: `configmap "argocd-cm" not found`,
	}, {
		name: "a script that fails in Lua",
		edit: func(block string) string {
			return strings.Replace(block, "    local hs = {}\n", "    local hs = nil\n", 1)
		},
		wantErr: "the build.multiarch.io/MultiArchBuild health check fails",
	}, {
		name:    "no argocd-cm block at all",
		edit:    func(block string) string { return strings.Replace(block, "name: argocd-cm", "name: argocd-rbac-cm", 1) },
		wantErr: "want exactly one ```yaml block holding the argocd-cm ConfigMap, found 0",
	}}
	healthy := mustJSON(t, cases[8].build)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runTool(t, healthy, "--docs", docsCopy(t, tt.edit))
			if code == 0 {
				t.Fatalf("exit 0, stdout %q; want a failure", out)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q, want it to contain %q", errOut, tt.wantErr)
			}
		})
	}
}

// TestUsage: --help prints the usage and succeeds, an unknown flag fails.
func TestUsage(t *testing.T) {
	if code, out, errOut := runTool(t, nil, "--help"); code != 0 || out != "" || !strings.Contains(errOut, "usage: argocd-health") {
		t.Errorf("--help: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, _ := runTool(t, nil, "--no-such-flag"); code != 2 {
		t.Errorf("--no-such-flag: exit %d, want 2", code)
	}
}

// TestNotAKubernetesObject: input that is no object is refused.
func TestNotAKubernetesObject(t *testing.T) {
	code, _, errOut := runTool(t, []byte("- a\n- list\n"), "--docs", gitopsDoc)
	if code == 0 || !strings.Contains(errOut, "stdin") {
		t.Errorf("exit %d, stderr %q; want a failure naming stdin", code, errOut)
	}
}

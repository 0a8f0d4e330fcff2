package pipeline

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/multiarch-build/multiarch-build-operator/internal/testutil/images"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
)

// localRunner executes a generated PipelineRun on this machine the way Tekton
// and the kubelet would, as far as our scripts can tell: tasks in order, each
// step's embedded script run with exactly the env and args the step
// declares, after Tekton's variable substitution ($(params.x),
// $(params.x[*]), $(results.x.path), $(tasks.t.results.r) in task params and
// pipeline results) and with every volume mount replaced by a host directory:
//
//   - the shared PVC is one host directory, subPath mounts are its
//     subdirectories, created on demand as the kubelet does;
//   - an emptyDir is a fresh directory per task; /var/lib/containers, buildah's
//     emptyDir, becomes a private buildah storage per task (images.Storage), so
//     images travel between tasks only through the registry, as in a cluster;
//   - a Secret is a directory holding the test's keys.
//
// Env values and args that are paths under a mount are rewritten to the host
// path; nothing else is changed. Only the variables a test adds on purpose
// (buildah storage, trust of the test registry's CA, PATH, HOME, TMPDIR)
// come on top.
type localRunner struct {
	t             *testing.T
	shared        string                       // host directory standing for the PVC
	clientEnv     []string                     // added to steps using buildah: trust the test registry
	secrets       map[string]map[string]string // Secret name -> key -> content
	extraPath     string                       // prepended to PATH (test stubs)
	afterTask     func(task string)            // called after each task succeeds
	taskDurations map[string]time.Duration
	taskResults   map[string]map[string]string // task -> result -> value, of the last run
	storageDirs   map[string]string            // task -> host directory of its storage volume (mountStorage)
	stepDurations map[string]time.Duration     // "task/step"
	// allowFailure: a failing step does not fail the test; the run stops as
	// Tekton's would (later steps and tasks skipped, finally tasks run) and
	// failure says what failed.
	allowFailure bool
	failure      *runFailure
	runName      string // $(context.pipelineRun.name)
}

// resolved is pr as Tekton runs it when it refers to pl: pl's spec, pr's
// params (what Tekton's pipelineRef resolution does).
func resolved(pr *tektonv1.PipelineRun, pl *tektonv1.Pipeline) *tektonv1.PipelineRun {
	out := pr.DeepCopy()
	if pl != nil {
		out.Spec.PipelineRef = nil
		out.Spec.PipelineSpec = pl.Spec.DeepCopy()
	}
	return out
}

// runFailure is the first step that failed, with its task's results as
// Tekton would report them on the failed TaskRun.
type runFailure struct {
	task, step string
	results    map[string]string
}

var (
	paramRef   = regexp.MustCompile(`\$\(params\.([A-Za-z0-9_-]+)\)`)
	arrayRef   = regexp.MustCompile(`^\$\(params\.([A-Za-z0-9_-]+)\[\*\]\)$`)
	resultPath = regexp.MustCompile(`\$\(results\.([A-Za-z0-9_.-]+)\.path\)`)
	taskResult = regexp.MustCompile(`^\$\(tasks\.([a-z0-9-]+)\.results\.([A-Za-z0-9_]+)\)$`)
	// taskResults2 finds every task result reference in a string.
	taskResults2 = regexp.MustCompile(`\$\(tasks\.([a-z0-9-]+)\.results\.([A-Za-z0-9_]+)\)`)
	anyRef       = regexp.MustCompile(`\$\((params|results|tasks|context|workspaces|steps)\.`)
)

// run executes pr and returns the PipelineRun results.
func (r *localRunner) run(pr *tektonv1.PipelineRun) map[string]string {
	t := r.t
	t.Helper()
	r.taskDurations = map[string]time.Duration{}
	r.stepDurations = map[string]time.Duration{}
	r.failure = nil
	r.runName = pr.Name
	if pr.Spec.PipelineSpec == nil {
		t.Fatalf("run %s has no pipeline spec: resolve its pipelineRef first (resolved)", pr.Name)
	}
	runParams := map[string]tektonv1.ParamValue{}
	for _, p := range pr.Spec.Params {
		runParams[p.Name] = p.Value
	}
	taskResults := map[string]map[string]string{}
	r.taskResults = taskResults
	spec := pr.Spec.PipelineSpec
	finally := map[string]bool{}
	for _, pt := range spec.Finally {
		finally[pt.Name] = true
	}
	for _, pt := range append(append([]tektonv1.PipelineTask(nil), spec.Tasks...), spec.Finally...) {
		if r.failure != nil && !finally[pt.Name] {
			continue
		}
		for _, dep := range pt.RunAfter {
			if _, ok := taskResults[dep]; !ok {
				t.Fatalf("task %s runs after %s, which has not run: tasks out of order", pt.Name, dep)
			}
		}
		start := time.Now()
		taskResults[pt.Name] = r.runTask(pt, runParams, taskResults)
		r.taskDurations[pt.Name] = time.Since(start)
		if r.failure != nil && r.failure.task == pt.Name {
			continue
		}
		if r.afterTask != nil {
			r.afterTask(pt.Name)
		}
	}
	if r.failure != nil {
		return nil
	}
	results := map[string]string{}
	for _, res := range spec.Results {
		// One task result, or several concatenated (the list's digest: one
		// build task wrote it, the others "").
		val := res.Value.StringVal
		if val == "" || taskResults2.ReplaceAllString(val, "") != "" {
			t.Fatalf("pipeline result %s: unsupported value %q", res.Name, val)
		}
		results[res.Name] = taskResults2.ReplaceAllStringFunc(val, func(ref string) string {
			m := taskResults2.FindStringSubmatch(ref)
			v, ok := taskResults[m[1]][m[2]]
			if !ok {
				t.Fatalf("pipeline result %s: task %s wrote no result %s", res.Name, m[1], m[2])
			}
			return v
		})
	}
	return results
}

func (r *localRunner) runTask(pt tektonv1.PipelineTask, runParams map[string]tektonv1.ParamValue, taskResults map[string]map[string]string) map[string]string {
	t := r.t
	t.Helper()
	// Pipeline task params, resolved against the run's params and the
	// results of the tasks that ran.
	strs, arrays := map[string]string{}, map[string][]string{}
	for _, p := range pt.Params {
		switch p.Value.Type {
		case tektonv1.ParamTypeArray:
			var out []string
			for _, v := range p.Value.ArrayVal {
				if m := arrayRef.FindStringSubmatch(v); m != nil {
					out = append(out, runParams[m[1]].ArrayVal...)
				} else {
					out = append(out, substituteParams(t, v, runParamStrings(runParams)))
				}
			}
			arrays[p.Name] = out
		default:
			if m := taskResult.FindStringSubmatch(p.Value.StringVal); m != nil {
				v, ok := taskResults[m[1]][m[2]]
				if !ok {
					t.Fatalf("task %s param %s: task %s has no result %s (did it run before?)", pt.Name, p.Name, m[1], m[2])
				}
				strs[p.Name] = v
				continue
			}
			v := strings.ReplaceAll(p.Value.StringVal, "$(context.pipelineRun.name)", r.runName)
			strs[p.Name] = substituteParams(t, v, runParamStrings(runParams))
		}
	}
	ts := pt.TaskSpec.TaskSpec
	for _, ps := range ts.Params {
		_, s := strs[ps.Name]
		_, a := arrays[ps.Name]
		if !s && !a {
			t.Fatalf("task %s: param %s declared but not passed", pt.Name, ps.Name)
		}
	}

	taskDir := t.TempDir()
	resultsDir := filepath.Join(taskDir, "results")
	mustMkdir(t, resultsDir)

	// Volumes.
	volumeHost := map[string]string{}
	var storage *images.Storage
	for _, v := range ts.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			volumeHost[v.Name] = r.shared
		case v.EmptyDir != nil:
			volumeHost[v.Name] = filepath.Join(taskDir, "emptydir-"+v.Name)
			mustMkdir(t, volumeHost[v.Name])
		case v.Secret != nil:
			secret := substituteParams(t, v.Secret.SecretName, strs)
			data, ok := r.secrets[secret]
			if !ok {
				t.Fatalf("task %s mounts Secret %s, which the test does not provide", pt.Name, secret)
			}
			dir := filepath.Join(taskDir, "secret-"+v.Name)
			mustMkdir(t, dir)
			for k, content := range data {
				if err := os.WriteFile(filepath.Join(dir, k), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			volumeHost[v.Name] = dir
		default:
			t.Fatalf("task %s: unsupported volume %s", pt.Name, v.Name)
		}
	}

	for _, step := range ts.Steps {
		type mount struct{ container, host string }
		var mounts []mount
		for _, vm := range step.VolumeMounts {
			if vm.MountPath == mountStorage {
				// buildah's emptyDir: a private storage for this task, shared
				// by its steps as an emptyDir is; paths under it (scratch
				// directories) go to the storage's directory.
				if storage == nil {
					storage = images.NewStorage(t, r.clientEnv...)
					if r.storageDirs == nil {
						r.storageDirs = map[string]string{}
					}
					r.storageDirs[pt.Name] = filepath.Join(storage.Dir, "volume")
				}
				mounts = append(mounts, mount{mountStorage, filepath.Join(storage.Dir, "volume")})
				mustMkdir(t, filepath.Join(storage.Dir, "volume"))
				continue
			}
			host, ok := volumeHost[vm.Name]
			if !ok {
				t.Fatalf("task %s step %s mounts unknown volume %s", pt.Name, step.Name, vm.Name)
			}
			if sub := substituteParams(t, vm.SubPath, strs); sub != "" {
				if anyRef.MatchString(sub) {
					t.Fatalf("task %s step %s: unresolved Tekton variable in subPath %q", pt.Name, step.Name, sub)
				}
				host = filepath.Join(host, filepath.FromSlash(sub))
				mustMkdir(t, host) // the kubelet creates missing subPath directories
			}
			mounts = append(mounts, mount{vm.MountPath, host})
		}
		// Longest mount path first, so /workspace/cache/npm wins over /workspace.
		sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].container) > len(mounts[j].container) })
		translate := func(v string) string {
			for _, m := range mounts {
				if v == m.container || strings.HasPrefix(v, m.container+"/") {
					return m.host + strings.TrimPrefix(v, m.container)
				}
			}
			if strings.HasPrefix(v, "/workspace") || strings.HasPrefix(v, "/tekton") {
				t.Fatalf("task %s step %s refers to %s, which no volume mount provides", pt.Name, step.Name, v)
			}
			return v
		}
		subst := func(v string) string {
			v = resultPath.ReplaceAllStringFunc(v, func(s string) string {
				return filepath.Join(resultsDir, resultPath.FindStringSubmatch(s)[1])
			})
			v = substituteParams(t, v, strs)
			if anyRef.MatchString(v) {
				t.Fatalf("task %s step %s: unresolved Tekton variable in %q", pt.Name, step.Name, v)
			}
			return v
		}

		var args []string
		for _, a := range step.Args {
			if m := arrayRef.FindStringSubmatch(a); m != nil {
				args = append(args, arrays[m[1]]...)
				continue
			}
			args = append(args, translate(subst(a)))
		}
		home := filepath.Join(taskDir, "home")
		tmp := filepath.Join(taskDir, "tmp")
		mustMkdir(t, home)
		mustMkdir(t, tmp)
		path := os.Getenv("PATH")
		if r.extraPath != "" {
			path = r.extraPath + ":" + path
		}
		env := []string{"PATH=" + path, "HOME=" + home, "TMPDIR=" + tmp, "LANG=C.UTF-8"}
		if storage != nil {
			env = append(env, storage.Env()...)
		}
		for _, e := range step.Env {
			if e.ValueFrom != nil {
				t.Fatalf("task %s step %s: env %s uses valueFrom, which the runner does not support", pt.Name, step.Name, e.Name)
			}
			env = append(env, e.Name+"="+translate(subst(e.Value)))
		}

		script := filepath.Join(taskDir, step.Name+".sh")
		if err := os.WriteFile(script, []byte(step.Script), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(script, args...)
		cmd.Env = env
		cmd.Dir = tmp
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		err := cmd.Run()
		r.stepDurations[pt.Name+"/"+step.Name] = time.Since(start)
		t.Logf("task %s step %s (%s):\n%s", pt.Name, step.Name, time.Since(start).Round(time.Millisecond), indent(out.String()))
		if err != nil {
			if !r.allowFailure {
				t.Fatalf("task %s step %s failed: %v", pt.Name, step.Name, err)
			}
			// As Tekton: the results written so far, the later steps skipped.
			r.failure = &runFailure{task: pt.Name, step: step.Name, results: map[string]string{}}
			for _, res := range ts.Results {
				if b, err := os.ReadFile(filepath.Join(resultsDir, res.Name)); err == nil {
					r.failure.results[res.Name] = string(b)
				}
			}
			return r.failure.results
		}
	}

	results := map[string]string{}
	for _, res := range ts.Results {
		b, err := os.ReadFile(filepath.Join(resultsDir, res.Name))
		if res.Name == ResultError {
			// Written only on failure.
			if err == nil {
				t.Errorf("task %s succeeded but wrote an %s result: %q", pt.Name, ResultError, b)
			}
			continue
		}
		if err != nil {
			t.Fatalf("task %s did not write its result %s: %v", pt.Name, res.Name, err)
		}
		results[res.Name] = string(b)
	}
	return results
}

func runParamStrings(params map[string]tektonv1.ParamValue) map[string]string {
	out := map[string]string{}
	for k, v := range params {
		if v.Type == tektonv1.ParamTypeString {
			out[k] = v.StringVal
		}
	}
	return out
}

// substituteParams replaces $(params.x) in one pass, like Tekton's
// strings.Replacer-based substitution.
func substituteParams(t *testing.T, v string, params map[string]string) string {
	return paramRef.ReplaceAllStringFunc(v, func(s string) string {
		name := paramRef.FindStringSubmatch(s)[1]
		val, ok := params[name]
		if !ok {
			t.Fatalf("unknown param %s in %q", name, v)
		}
		return val
	})
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// volumeOf returns the volume a mount refers to, for structure tests.
func volumeOf(ts tektonv1.TaskSpec, name string) *corev1.Volume {
	for i := range ts.Volumes {
		if ts.Volumes[i].Name == name {
			return &ts.Volumes[i]
		}
	}
	return nil
}

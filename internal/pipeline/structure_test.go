package pipeline

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
)

func mustGenerate(t *testing.T, in Input) *tektonv1.PipelineRun {
	t.Helper()
	pr, err := Generate(in)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return pr
}

func withPlatforms(b *v1alpha1.MultiArchBuild, ps ...v1alpha1.Platform) *v1alpha1.MultiArchBuild {
	b.Spec.Platforms = ps
	return b
}

// allTasks returns the tasks and finally tasks.
func allTasks(pr *tektonv1.PipelineRun) []tektonv1.PipelineTask {
	return append(append([]tektonv1.PipelineTask(nil), pr.Spec.PipelineSpec.Tasks...), pr.Spec.PipelineSpec.Finally...)
}

func TestTasksAndTheirOrderForEachStrategy(t *testing.T) {
	two := []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}
	buildSteps := []string{"build", StepIndex}
	// With the layer cache (the default) every platform's task reads its own
	// base images by digest (preflight), the key of the image reuse.
	cloneAndBuild := []string{"prepare", "clone", StepPreflight, "build", StepIndex}
	noCache := func(b *v1alpha1.MultiArchBuild) *v1alpha1.MultiArchBuild {
		b.Spec.Output.LayerCache = &v1alpha1.LayerCacheSpec{Mode: v1alpha1.LayerCacheDisabled}
		return b
	}
	for _, tc := range []struct {
		name     string
		build    *v1alpha1.MultiArchBuild
		runAfter map[string][]string // task -> runAfter, in pipeline order
		steps    map[string][]string // task -> its steps
	}{
		{
			name:  "Containerfile: arch builds in parallel at once, each cloning for itself, the first checking every base image, each keying its own, the last pushing the list",
			build: withPlatforms(htopBuild(), two...),
			runAfter: map[string][]string{
				"build-amd64": nil,
				"build-arm64": nil,
			},
			steps: map[string][]string{
				"build-amd64": {"prepare", "clone", StepPreflight, "build", StepIndex},
				"build-arm64": cloneAndBuild,
			},
		},
		{
			name:  "Containerfile without the layer cache: only the first platform's task runs preflight (no image reuse to key)",
			build: noCache(withPlatforms(htopBuild(), two...)),
			runAfter: map[string][]string{
				"build-amd64": nil,
				"build-arm64": nil,
			},
			steps: map[string][]string{
				"build-amd64": {"prepare", "clone", StepPreflight, "build", StepIndex},
				"build-arm64": {"prepare", "clone", "build", StepIndex},
			},
		},
		{
			name:  "NodeJS: one install per arch after clone, each arch's build after its own install",
			build: withPlatforms(nodejsBuild(), two...),
			runAfter: map[string][]string{
				"clone":         nil,
				"install-amd64": {"clone"},
				"build-amd64":   {"install-amd64"},
				"install-arm64": {"clone"},
				"build-arm64":   {"install-arm64"},
			},
			steps: map[string][]string{
				"clone":         {"prepare", "clone", StepPreflight},
				"install-amd64": {"install"},
				"build-amd64":   buildSteps,
				"install-arm64": {"install"},
				"build-arm64":   buildSteps,
			},
		},
		{
			name:  "Maven: mvn once after clone, every arch build after it",
			build: withPlatforms(quarkusBuild(), two...),
			runAfter: map[string][]string{
				"clone":       nil,
				"maven":       {"clone"},
				"build-amd64": {"maven"},
				"build-arm64": {"maven"},
			},
			steps: map[string][]string{
				"clone":       {"prepare", "clone", StepPreflight},
				"maven":       {"maven"},
				"build-amd64": buildSteps,
				"build-arm64": buildSteps,
			},
		},
		{
			name:  "Containerfile with all four platforms",
			build: withPlatforms(htopBuild(), allPlatforms...),
			runAfter: map[string][]string{
				"build-amd64":   nil,
				"build-arm64":   nil,
				"build-ppc64le": nil,
				"build-s390x":   nil,
			},
			steps: map[string][]string{
				"build-amd64":   {"prepare", "clone", StepPreflight, "build", StepIndex},
				"build-arm64":   cloneAndBuild,
				"build-ppc64le": cloneAndBuild,
				"build-s390x":   cloneAndBuild,
			},
		},
		{
			name:  "a single platform still gets a manifest list",
			build: withPlatforms(htopBuild(), v1alpha1.PlatformLinuxARM64),
			runAfter: map[string][]string{
				"build-arm64": nil,
			},
			steps: map[string][]string{
				"build-arm64": {"prepare", "clone", StepPreflight, "build", StepIndex},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr := mustGenerate(t, input(tc.build))
			got := map[string][]string{}
			gotSteps := map[string][]string{}
			for _, pt := range pr.Spec.PipelineSpec.Tasks {
				got[pt.Name] = pt.RunAfter
				for _, st := range pt.TaskSpec.Steps {
					gotSteps[pt.Name] = append(gotSteps[pt.Name], st.Name)
				}
			}
			if diff := cmp.Diff(tc.runAfter, got); diff != "" {
				t.Errorf("tasks and runAfter (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.steps, gotSteps); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
			var finally []string
			for _, pt := range pr.Spec.PipelineSpec.Finally {
				finally = append(finally, pt.Name)
			}
			if diff := cmp.Diff([]string{"cleanup"}, finally); diff != "" {
				t.Errorf("finally (-want +got):\n%s", diff)
			}
		})
	}
}

// mountOf is where a step's path lives on the shared volume: the subPath of
// the mount holding it plus the rest of the path.
func sharedPath(step tektonv1.Step, p string) (string, bool) {
	best := ""
	var rel string
	for _, vm := range step.VolumeMounts {
		if vm.Name != volShared {
			continue
		}
		if (p == vm.MountPath || strings.HasPrefix(p, vm.MountPath+"/")) && len(vm.MountPath) > len(best) {
			best = vm.MountPath
			rel = path.Join(vm.SubPath, strings.TrimPrefix(p, vm.MountPath))
		}
	}
	return rel, best != ""
}

// The seed's x86_64 build packaged the aarch64 copy of the NodeJS sources.
// Here every arch-bound task mounts only its own arch directory of the run
// (and the shared clone read-only, and caches), so the mistake cannot be made:
// build-<arch> of NodeJS does not even see the shared clone.
func TestEachArchReadsAndWritesOnlyItsOwnDirectories(t *testing.T) {
	for strategy, sample := range sampleBuilds {
		t.Run(string(strategy), func(t *testing.T) {
			pr := mustGenerate(t, input(withPlatforms(sample(), allPlatforms...)))
			run := RunDir(pr.Name)
			for _, pt := range allTasks(pr) {
				arch := pt.TaskSpec.Metadata.Labels[LabelArch]
				for _, step := range pt.TaskSpec.Steps {
					for _, vm := range step.VolumeMounts {
						if vm.Name != volShared {
							continue
						}
						if vm.SubPath == "" {
							t.Errorf("%s mounts the whole shared volume at %s: every mount needs a subPath", pt.Name, vm.MountPath)
						}
						if arch == "" {
							continue
						}
						own := run + "/arch/" + arch
						switch {
						case vm.SubPath == own:
						case vm.SubPath == run+"/source":
							if !vm.ReadOnly {
								t.Errorf("%s mounts the shared clone read-write: an arch task must not change what other arches read", pt.Name)
							}
							if strategy == v1alpha1.StrategyNodeJS && strings.HasPrefix(pt.Name, "build-") {
								t.Errorf("%s (NodeJS) mounts the shared clone: it must build from its own copy only", pt.Name)
							}
						case strings.HasPrefix(vm.SubPath, "cache/"):
						case vm.SubPath == run && (step.Name == StepIndex || step.Name == "clone" && strategy == v1alpha1.StrategyContainerfile):
							// The run's directory itself: where the platforms
							// agree on the commit and publish their digests,
							// never sources.
						case step.Name == "prepare" && strategy == v1alpha1.StrategyContainerfile && (vm.SubPath == runsDir || vm.SubPath == "cache"):
							// Creates the run's directory and the caches.
						default:
							t.Errorf("%s (arch %s) step %s mounts %s, outside its own directory %s", pt.Name, arch, step.Name, vm.SubPath, own)
						}
					}
					// Every path the step is told about resolves inside its mounts.
					for _, e := range step.Env {
						if !strings.HasPrefix(e.Value, "/workspace/") {
							continue
						}
						rel, ok := sharedPath(step, e.Value)
						if !ok {
							continue // a secret or another volume
						}
						switch {
						case arch == "":
						case strings.HasPrefix(rel, run+"/arch/"+arch), rel == run+"/source", strings.HasPrefix(rel, "cache/"):
						case step.Name == StepIndex && rel == run+"/index":
						case step.Name == "clone" && rel == run:
						case step.Name == "prepare" && (rel == runsDir || rel == "cache"):
						default:
							t.Errorf("%s env %s=%s resolves to %s, outside arch %s's directory", pt.Name, e.Name, e.Value, rel, arch)
						}
					}
				}
			}

			// What each build reads and writes, spelled out.
			for _, pl := range allPlatforms {
				arch := pl.Arch()
				bt := taskNamed(t, pr, BuildTaskName(arch))
				step := stepNamed(t, bt, "build")
				src, shared := sharedPath(step, envOf(step, "SOURCE_DIR"))
				switch strategy {
				case v1alpha1.StrategyContainerfile:
					// Its own clone, in the pod: nothing of it on the volume.
					clone := stepNamed(t, bt, "clone")
					if shared || envOf(clone, "SOURCE_DIR") != envOf(step, "SOURCE_DIR") {
						t.Errorf("build-%s reads sources from %s (shared: %v), clone writes %s", arch, envOf(step, "SOURCE_DIR"), shared, envOf(clone, "SOURCE_DIR"))
					}
					for _, vm := range step.VolumeMounts {
						if vm.MountPath == mountSource && (vm.Name != volSource || !vm.ReadOnly) {
							t.Errorf("build-%s mounts its sources from %s (read-only %v), want the pod's own %s volume read-only", arch, vm.Name, vm.ReadOnly, volSource)
						}
					}
					if v := volumeOf(bt.TaskSpec.TaskSpec, volSource); v == nil || v.EmptyDir == nil {
						t.Errorf("build-%s: volume %s is %+v, want an emptyDir", arch, volSource, v)
					}
				default:
					wantSrc := run + "/source"
					if strategy == v1alpha1.StrategyNodeJS {
						wantSrc = run + "/arch/" + arch + "/source"
					}
					if src != wantSrc {
						t.Errorf("build-%s reads sources from %q, want %q", arch, src, wantSrc)
					}
					if strategy == v1alpha1.StrategyNodeJS {
						inst := taskNamed(t, pr, InstallTaskName(arch)).TaskSpec.Steps[0]
						work, _ := sharedPath(inst, envOf(inst, "WORK_DIR"))
						if work != wantSrc {
							t.Errorf("install-%s installs into %q but build-%s reads %q", arch, work, arch, wantSrc)
						}
					}
				}
				// The image goes to the registry, never to the shared volume:
				// the build writes nothing there.
				for _, vm := range step.VolumeMounts {
					if vm.Name == volShared && !vm.ReadOnly && strategy != v1alpha1.StrategyNodeJS {
						t.Errorf("build-%s mounts %s of the shared volume read-write", arch, vm.SubPath)
					}
				}
				if got := envOf(step, "OCI_DIR"); !strings.HasPrefix(got, mountStorage+"/") {
					t.Errorf("build-%s OCI_DIR = %q, want a directory on buildah's node-local volume", arch, got)
				}
				// The index step publishes exactly the digest the build step
				// pushed, in the run's own index directory, and lists every
				// platform of the run, in spec order.
				index := stepNamed(t, bt, StepIndex)
				if got, want := envOf(index, "OWN_DIGEST_FILE"), envOf(step, "RESULT_IMAGE_DIGEST"); got != want {
					t.Errorf("build-%s index OWN_DIGEST_FILE = %q, the build step writes %q", arch, got, want)
				}
				if rel, _ := sharedPath(index, envOf(index, "INDEX_DIR")); rel != run+"/index" {
					t.Errorf("build-%s index INDEX_DIR resolves to %q, want %q", arch, rel, run+"/index")
				}
				var wantArgs []string
				for _, p := range allPlatforms {
					wantArgs = append(wantArgs, string(p))
				}
				if diff := cmp.Diff(wantArgs, index.Args); diff != "" {
					t.Errorf("build-%s index args (-want +got):\n%s", arch, diff)
				}
			}
			if _, ok := findTask(pr, TaskPush); ok {
				t.Errorf("a run that builds has a push task: its last build task pushes the list")
			}
		})
	}
}

// Tekton's affinity assistant pins all tasks sharing a PVC workspace to one
// node; a multi-arch build can never satisfy that. The PVC must be a task
// volume, never a workspace binding.
func TestSharedVolumeIsATaskVolumeNeverAPVCWorkspace(t *testing.T) {
	for strategy, sample := range sampleBuilds {
		t.Run(string(strategy), func(t *testing.T) {
			in := input(withPlatforms(sample(), allPlatforms...))
			pr := mustGenerate(t, in)
			for _, ws := range pr.Spec.Workspaces {
				t.Errorf("PipelineRun binds workspace %q (PVC %v, template %v)", ws.Name, ws.PersistentVolumeClaim, ws.VolumeClaimTemplate)
			}
			if n := len(pr.Spec.PipelineSpec.Workspaces); n != 0 {
				t.Errorf("pipelineSpec declares %d workspaces", n)
			}
			for _, pt := range allTasks(pr) {
				if len(pt.Workspaces) != 0 || len(pt.TaskSpec.Workspaces) != 0 {
					t.Errorf("task %s uses workspaces", pt.Name)
				}
				v := volumeOf(pt.TaskSpec.TaskSpec, volShared)
				if pt.Name == TaskPush {
					// The push task only assembles the list from digests.
					if v != nil {
						t.Errorf("task push mounts the shared volume: %+v", v)
					}
					continue
				}
				if v == nil || v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != in.WorkspaceClaim {
					t.Errorf("task %s: want volume %q = PVC %q, got %+v", pt.Name, volShared, in.WorkspaceClaim, v)
				}
				for _, vol := range pt.TaskSpec.Volumes {
					if vol.PersistentVolumeClaim != nil && vol.Name != volShared {
						t.Errorf("task %s has another PVC volume %s", pt.Name, vol.Name)
					}
				}
			}
		})
	}
}

func TestArchTasksArePinnedToTheirArchitecture(t *testing.T) {
	s := testSettings()
	s.Tolerations["s390x"] = []corev1.Toleration{{Key: "ibm", Operator: corev1.TolerationOpExists}}
	for strategy, sample := range sampleBuilds {
		t.Run(string(strategy), func(t *testing.T) {
			pr := mustGenerate(t, Input{Build: withPlatforms(sample(), allPlatforms...), Settings: s, WorkspaceClaim: "ws"})
			specs := map[string]tektonv1.PipelineTaskRunSpec{}
			for _, trs := range pr.Spec.TaskRunSpecs {
				if _, dup := specs[trs.PipelineTaskName]; dup {
					t.Errorf("two taskRunSpecs for %s", trs.PipelineTaskName)
				}
				specs[trs.PipelineTaskName] = trs
			}
			for _, pt := range allTasks(pr) {
				arch := pt.TaskSpec.Metadata.Labels[LabelArch]
				trs, pinned := specs[pt.Name]
				bound := strings.HasPrefix(pt.Name, "build-") || strings.HasPrefix(pt.Name, "install-")
				if bound != (arch != "") {
					t.Errorf("task %s: label %s=%q", pt.Name, LabelArch, arch)
				}
				if !bound {
					if pinned {
						t.Errorf("task %s is not arch-bound but has a taskRunSpec", pt.Name)
					}
					continue
				}
				if !strings.HasSuffix(pt.Name, "-"+arch) {
					t.Errorf("task %s labelled arch %s", pt.Name, arch)
				}
				if !pinned || trs.PodTemplate == nil {
					t.Fatalf("arch task %s has no podTemplate", pt.Name)
				}
				if diff := cmp.Diff(map[string]string{"kubernetes.io/arch": arch}, trs.PodTemplate.NodeSelector); diff != "" {
					t.Errorf("%s nodeSelector (-want +got):\n%s", pt.Name, diff)
				}
				if diff := cmp.Diff(s.Tolerations[arch], trs.PodTemplate.Tolerations); diff != "" {
					t.Errorf("%s tolerations (-want +got):\n%s", pt.Name, diff)
				}
				// The platform comes from the task, never from the node (uname -m).
				if got, want := envOf(mainStep(pt), "PLATFORM"), "linux/"+arch; got != want {
					t.Errorf("%s PLATFORM = %q, want %q", pt.Name, got, want)
				}
			}
			if len(specs) != len(allPlatforms)*map[bool]int{true: 2, false: 1}[strategy == v1alpha1.StrategyNodeJS] {
				t.Errorf("unexpected taskRunSpecs: %v", keys(specs))
			}
		})
	}
}

func TestScriptsNeverAskTheNodeForThePlatform(t *testing.T) {
	askNode := regexp.MustCompile(`\buname\b|\$\(arch\)|\barch\s*$|--print-architecture|\bGOARCH\b`)
	for name, script := range map[string]string{"build": scriptBuild, "install": scriptInstall, "push": scriptPush} {
		for i, line := range strings.Split(script, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			if askNode.MatchString(line) {
				t.Errorf("%s.sh line %d asks the node for its architecture: %q; the platform must come from PLATFORM", name, i+1, line)
			}
		}
	}
	if !strings.Contains(scriptBuild, `--platform "$PLATFORM"`) {
		t.Error(`build.sh must run buildah build --platform "$PLATFORM"`)
	}
}

func TestBuildahStepsRunWithVFSChrootEmptyDirAndSETFCAP(t *testing.T) {
	pr := mustGenerate(t, input(withPlatforms(nodejsBuild(), allPlatforms...)))
	n := 0
	for _, pt := range allTasks(pr) {
		for _, step := range pt.TaskSpec.Steps {
			if step.Script != scriptBuild && step.Script != scriptPush {
				continue
			}
			n++
			if envOf(step, "STORAGE_DRIVER") != "vfs" || envOf(step, "BUILDAH_ISOLATION") != "chroot" {
				t.Errorf("%s: STORAGE_DRIVER=%q BUILDAH_ISOLATION=%q", pt.Name, envOf(step, "STORAGE_DRIVER"), envOf(step, "BUILDAH_ISOLATION"))
			}
			var storage *corev1.VolumeMount
			for i := range step.VolumeMounts {
				if step.VolumeMounts[i].MountPath == "/var/lib/containers" {
					storage = &step.VolumeMounts[i]
				}
			}
			if storage == nil {
				t.Errorf("%s: /var/lib/containers is not mounted", pt.Name)
			} else if v := volumeOf(pt.TaskSpec.TaskSpec, storage.Name); v == nil || v.EmptyDir == nil {
				t.Errorf("%s: /var/lib/containers is not an emptyDir: %+v", pt.Name, v)
			}
			sc := step.SecurityContext
			if sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Add) != 1 || sc.Capabilities.Add[0] != "SETFCAP" {
				t.Errorf("%s: securityContext %+v, want capabilities add [SETFCAP]", pt.Name, sc)
			}
			if sc != nil && sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s runs privileged", pt.Name)
			}
			if step.Image != testSettings().BuilderImage {
				t.Errorf("%s image %s", pt.Name, step.Image)
			}
		}
	}
	// build and index in every build task.
	if n != 2*len(allPlatforms) {
		t.Errorf("found %d buildah steps, want %d", n, 2*len(allPlatforms))
	}
}

func TestSecretsAreMountedOnlyWhereNeeded(t *testing.T) {
	b := withPlatforms(quarkusBuild(), v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64)
	b.Spec.Source.Git.SecretRef = &corev1.LocalObjectReference{Name: "git-auth"}
	b.Spec.Strategy.Maven.SettingsSecretRef = &corev1.LocalObjectReference{Name: "m2"}
	pr := mustGenerate(t, input(b))
	got := map[string][]string{}
	for _, pt := range allTasks(pr) {
		for _, v := range pt.TaskSpec.Volumes {
			if v.Secret != nil {
				got[pt.Name] = append(got[pt.Name], v.Secret.SecretName)
				if v.Secret.Optional != nil && *v.Secret.Optional {
					t.Errorf("%s: Secret %s is optional: a missing Secret must stop the task", pt.Name, v.Secret.SecretName)
				}
			}
		}
	}
	// The build tasks push their images by digest, and one of them the list:
	// they need the push Secret.
	want := map[string][]string{"clone": {"git-auth"}, "maven": {"m2"},
		"build-amd64": {"quay-authentication"}, "build-arm64": {"quay-authentication"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Secrets by task (-want +got):\n%s", diff)
	}
	checkSecretMounts := func(pr *tektonv1.PipelineRun, task, step, envName string) {
		t.Helper()
		st := stepNamed(t, taskNamed(t, pr, task), step)
		dir := envOf(st, envName)
		found := false
		for _, vm := range st.VolumeMounts {
			found = found || (vm.MountPath == dir && vm.ReadOnly)
		}
		if !found {
			t.Errorf("%s/%s: %s=%q is not a read-only mount", task, step, envName, dir)
		}
	}
	checkSecretMounts(pr, "clone", "clone", "GIT_SECRET_DIR")
	checkSecretMounts(pr, "maven", "maven", "MAVEN_SETTINGS_DIR")
	checkSecretMounts(pr, "build-arm64", "build", "REGISTRY_AUTH_DIR")
	checkSecretMounts(pr, "build-arm64", StepIndex, "REGISTRY_AUTH_DIR")

	// A Containerfile build clones in its build tasks: the Git Secret goes
	// there, to the clone step only.
	cf := withPlatforms(htopBuild(), v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64)
	cf.Spec.Source.Git.SecretRef = &corev1.LocalObjectReference{Name: "git-auth"}
	cpr := mustGenerate(t, input(cf))
	for _, arch := range []string{"amd64", "arm64"} {
		bt := taskNamed(t, cpr, BuildTaskName(arch))
		var secrets []string
		for _, v := range bt.TaskSpec.Volumes {
			if v.Secret != nil {
				secrets = append(secrets, v.Secret.SecretName)
			}
		}
		slices.Sort(secrets)
		if diff := cmp.Diff([]string{"git-auth", "quay-authentication"}, secrets); diff != "" {
			t.Errorf("Containerfile build-%s Secrets (-want +got):\n%s", arch, diff)
		}
		checkSecretMounts(cpr, BuildTaskName(arch), "clone", "GIT_SECRET_DIR")
		for _, st := range bt.TaskSpec.Steps {
			for _, vm := range st.VolumeMounts {
				if vm.Name == volGitSecret && st.Name != "clone" {
					t.Errorf("Containerfile build-%s step %s mounts the Git Secret", arch, st.Name)
				}
			}
		}
	}

	// Without Secrets, the variables are empty and nothing is mounted.
	b.Spec.Source.Git.SecretRef, b.Spec.Strategy.Maven.SettingsSecretRef, b.Spec.Output.PushSecretRef = nil, nil, nil
	pr = mustGenerate(t, input(b))
	for _, pt := range allTasks(pr) {
		for _, v := range pt.TaskSpec.Volumes {
			if v.Secret != nil {
				t.Errorf("%s mounts Secret %s", pt.Name, v.Secret.SecretName)
			}
		}
	}
}

func TestCachesLiveOutsideTheRunDirectory(t *testing.T) {
	for _, tc := range []struct {
		build func() *v1alpha1.MultiArchBuild
		task  string
		env   string
		want  string
	}{
		{nodejsBuild, InstallTaskName("arm64"), "NPM_CONFIG_CACHE", "cache/npm"},
		{quarkusBuild, TaskMaven, "MAVEN_REPO", "cache/m2/repository"},
	} {
		pr := mustGenerate(t, input(tc.build()))
		step := mainStep(taskNamed(t, pr, tc.task))
		got, ok := sharedPath(step, envOf(step, tc.env))
		if !ok || got != tc.want {
			t.Errorf("%s %s on the shared volume = %q, want %q", tc.task, tc.env, got, tc.want)
		}
	}
	// cleanup removes runs/<run> and nothing else.
	pr := mustGenerate(t, input(nodejsBuild()))
	step := mainStep(taskNamed(t, pr, TaskCleanup))
	runs, _ := sharedPath(step, envOf(step, "RUNS_DIR"))
	if got := runs + "/" + envOf(step, "RUN_NAME"); got != RunDir(pr.Name) {
		t.Errorf("cleanup removes %q, want %q", got, RunDir(pr.Name))
	}
}

func TestPipelineResultsReexportDigestsAndCommit(t *testing.T) {
	pr := mustGenerate(t, input(withPlatforms(htopBuild(), v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxS390X)))
	got := map[string]string{}
	for _, r := range pr.Spec.PipelineSpec.Results {
		got[r.Name] = r.Value.StringVal
	}
	// The list's digest and URL: whichever build task pushed it (the
	// others' results are empty); the commit: every build task cloned the
	// same one, the first platform's says which.
	want := map[string]string{
		ResultImageDigest:         "$(tasks.build-amd64.results.INDEX_IMAGE_DIGEST)$(tasks.build-s390x.results.INDEX_IMAGE_DIGEST)",
		ResultImageURL:            "$(tasks.build-amd64.results.INDEX_IMAGE_URL)$(tasks.build-s390x.results.INDEX_IMAGE_URL)",
		ResultCommit:              "$(tasks.build-amd64.results.COMMIT)",
		ArchDigestResult("amd64"): "$(tasks.build-amd64.results.IMAGE_DIGEST)",
		ArchDigestResult("s390x"): "$(tasks.build-s390x.results.IMAGE_DIGEST)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pipeline results (-want +got):\n%s", diff)
	}
	// Every referenced task result is declared and written by one of the
	// task's steps.
	checkRefs := func(pr *tektonv1.PipelineRun) {
		for _, r := range pr.Spec.PipelineSpec.Results {
			for _, m := range taskResults2.FindAllStringSubmatch(r.Value.StringVal, -1) {
				task, res := taskNamed(t, pr, m[1]), m[2]
				declared := false
				for _, tr := range task.TaskSpec.Results {
					declared = declared || tr.Name == res
				}
				if !declared {
					t.Errorf("result %s: task %s declares no result %s", r.Name, m[1], res)
				}
				written := false
				for _, st := range task.TaskSpec.Steps {
					for _, e := range st.Env {
						written = written || (strings.HasPrefix(e.Name, "RESULT_") && e.Value == "$(results."+res+".path)")
					}
				}
				if !written {
					t.Errorf("result %s: no step of %s is given the path of %s", r.Name, m[1], res)
				}
			}
		}
	}
	checkRefs(pr)
	// NodeJS and Maven: one clone task says which commit.
	npr := mustGenerate(t, input(withPlatforms(nodejsBuild(), v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxS390X)))
	for _, r := range npr.Spec.PipelineSpec.Results {
		if r.Name == ResultCommit && r.Value.StringVal != "$(tasks.clone.results.COMMIT)" {
			t.Errorf("NodeJS COMMIT = %q", r.Value.StringVal)
		}
	}
	checkRefs(npr)
}

// Spec values reach the steps only through params, env and args: every script
// is one of the embedded files, byte for byte, and holds no Tekton variable
// (Tekton substitutes variables into script text before running it).
func TestStepScriptsAreTheEmbeddedFilesWithoutTektonVariables(t *testing.T) {
	embedded := map[string]bool{scriptPrepare: true, scriptClone: true, scriptInstall: true, scriptMaven: true, scriptBuild: true, scriptPush: true, scriptCleanup: true, scriptCheckReused: true, scriptPreflight: true}
	for name, s := range map[string]string{"prepare": scriptPrepare, "clone": scriptClone, "install": scriptInstall, "maven": scriptMaven, "build": scriptBuild, "push": scriptPush, "cleanup": scriptCleanup, "check-reused": scriptCheckReused, "preflight": scriptPreflight} {
		if anyRef.MatchString(s) {
			t.Errorf("%s.sh contains a Tekton variable reference: %s", name, anyRef.FindString(s))
		}
		if !strings.HasPrefix(s, "#!/usr/bin/env bash\n") || !strings.Contains(s, "set -Eeuo pipefail") || !strings.Contains(s, "trap ") {
			t.Errorf("%s.sh must start with #!/usr/bin/env bash, set -Eeuo pipefail and trap failures", name)
		}
	}
	for strategy, sample := range sampleBuilds {
		pr := mustGenerate(t, input(sample()))
		for _, pt := range allTasks(pr) {
			for _, step := range pt.TaskSpec.Steps {
				if !embedded[step.Script] {
					t.Errorf("%s %s step %s: script is not one of the embedded files", strategy, pt.Name, step.Name)
				}
				if len(step.Command) != 0 {
					t.Errorf("%s %s: command %v set next to script", strategy, pt.Name, step.Command)
				}
			}
		}
	}
}

func TestDefaultsAreAppliedWhenFieldsAreEmpty(t *testing.T) {
	s := testSettings()
	for _, tc := range []struct {
		name  string
		spec  v1alpha1.StrategySpec
		check func(t *testing.T, pr *tektonv1.PipelineRun)
	}{
		{"Containerfile", v1alpha1.StrategySpec{}, func(t *testing.T, pr *tektonv1.PipelineRun) {
			for name, want := range map[string]string{paramGitRevision: "main", paramContextDir: ".", paramContainerfile: "Containerfile", paramImage: "quay.io/team/app:latest", paramRepository: "quay.io/team/app"} {
				if got := runParam(pr, name).StringVal; got != want {
					t.Errorf("param %s = %q, want %q", name, got, want)
				}
			}
		}},
		{"NodeJS", v1alpha1.StrategySpec{Type: v1alpha1.StrategyNodeJS}, func(t *testing.T, pr *tektonv1.PipelineRun) {
			if img := mainStep(taskNamed(t, pr, "install-amd64")).Image; img != s.NodeJSImage {
				t.Errorf("install image %s, want the operator's %s", img, s.NodeJSImage)
			}
			if got := runParam(pr, paramInstall); got.Type != tektonv1.ParamTypeArray || len(got.ArrayVal) != 0 {
				t.Errorf("INSTALL_COMMAND = %+v, want an empty array (the script picks npm ci or npm install)", got)
			}
		}},
		{"Maven", v1alpha1.StrategySpec{Type: v1alpha1.StrategyMaven}, func(t *testing.T, pr *tektonv1.PipelineRun) {
			if img := mainStep(taskNamed(t, pr, TaskMaven)).Image; img != s.MavenImage {
				t.Errorf("maven image %s, want the operator's %s", img, s.MavenImage)
			}
			if diff := cmp.Diff([]string{"package", "-DskipTests"}, runParam(pr, paramGoals).ArrayVal); diff != "" {
				t.Errorf("goals (-want +got):\n%s", diff)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &v1alpha1.MultiArchBuild{}
			b.Name, b.Namespace = "app", "ns"
			b.Spec.Source.Git.URL = "https://example.com/app.git"
			b.Spec.Output.Image = "quay.io/team/app"
			b.Spec.Strategy = tc.spec
			pr := mustGenerate(t, Input{Build: b, Settings: s, WorkspaceClaim: "ws"})
			var platforms []string
			for _, pt := range pr.Spec.PipelineSpec.Tasks {
				if strings.HasPrefix(pt.Name, "build-") {
					platforms = append(platforms, envOf(mainStep(pt), "PLATFORM"))
				}
			}
			if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, platforms); diff != "" {
				t.Errorf("default platforms (-want +got):\n%s", diff)
			}
			if pr.Spec.TaskRunTemplate.ServiceAccountName != s.ServiceAccountName {
				t.Errorf("service account %q", pr.Spec.TaskRunTemplate.ServiceAccountName)
			}
			if got := stepNamed(t, taskNamed(t, pr, BuildTaskName("arm64")), StepIndex).Image; got != s.BuilderImage {
				t.Errorf("builder image %q", got)
			}
			if got := pr.Spec.Timeouts.Pipeline.Duration.String(); got != "1h0m0s" {
				t.Errorf("timeout %s", got)
			}
			if len(pr.OwnerReferences) != 0 {
				t.Errorf("owner reference without a UID: %+v", pr.OwnerReferences)
			}
			tc.check(t, pr)
		})
	}
}

func TestSpecOverridesOfOperatorSettings(t *testing.T) {
	b := htopBuild()
	b.Spec.BuilderImage = "registry.example.com/tools/buildah:1.41@sha256:" + strings.Repeat("a", 64)
	b.Spec.ServiceAccountName = "ci-bot"
	b.Spec.Timeout = "1h30m"
	pr := mustGenerate(t, input(b))
	if pr.Spec.TaskRunTemplate.ServiceAccountName != "ci-bot" {
		t.Errorf("service account %q", pr.Spec.TaskRunTemplate.ServiceAccountName)
	}
	for _, pt := range allTasks(pr) {
		for _, step := range pt.TaskSpec.Steps {
			if (step.Script == scriptBuild || step.Script == scriptPush || step.Script == scriptCleanup) && step.Image != b.Spec.BuilderImage {
				t.Errorf("%s image %s", pt.Name, step.Image)
			}
		}
	}
	to := pr.Spec.Timeouts
	if to.Pipeline.Duration.String() != "1h30m0s" || to.Finally.Duration.String() != "5m0s" || to.Tasks.Duration.String() != "1h25m0s" {
		t.Errorf("timeouts pipeline=%s tasks=%s finally=%s", to.Pipeline.Duration, to.Tasks.Duration, to.Finally.Duration)
	}
	b.Spec.Timeout = "10m"
	to = mustGenerate(t, input(b)).Spec.Timeouts
	if to.Pipeline.Duration.String() != "10m0s" || to.Finally.Duration.String() != "1m0s" || to.Tasks.Duration.String() != "9m0s" {
		t.Errorf("short timeout: pipeline=%s tasks=%s finally=%s", to.Pipeline.Duration, to.Tasks.Duration, to.Finally.Duration)
	}
}

func TestSpecValuesTravelAsParamsAndArguments(t *testing.T) {
	b := withPlatforms(nodejsBuild(), v1alpha1.PlatformLinuxARM64)
	b.Spec.Strategy.BuildArgs = []v1alpha1.BuildArg{{Name: "A", Value: "x y"}, {Name: "B", Value: "$(id) ; rm -rf / `x` $HOME"}}
	b.Spec.Strategy.NodeJS.InstallCommand = "npm install --omit=dev --no-audit"
	pr := mustGenerate(t, input(b))
	if diff := cmp.Diff([]string{"A=x y", "B=$(id) ; rm -rf / `x` $HOME"}, runParam(pr, paramBuildArgs).ArrayVal); diff != "" {
		t.Errorf("BUILD_ARGS (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"npm", "install", "--omit=dev", "--no-audit"}, runParam(pr, paramInstall).ArrayVal); diff != "" {
		t.Errorf("INSTALL_COMMAND (-want +got):\n%s", diff)
	}
	if args := mainStep(taskNamed(t, pr, "build-arm64")).Args; !cmp.Equal(args, []string{"$(params.BUILD_ARGS[*])"}) {
		t.Errorf("build args passed as %v", args)
	}
	if args := mainStep(taskNamed(t, pr, "install-arm64")).Args; !cmp.Equal(args, []string{"$(params.INSTALL_COMMAND[*])"}) {
		t.Errorf("install command passed as %v", args)
	}
}

func TestRunNameIsDeterministicShortAndDistinct(t *testing.T) {
	mk := func(name string, gen int64, token string) *v1alpha1.MultiArchBuild {
		b := &v1alpha1.MultiArchBuild{}
		b.Name, b.Generation = name, gen
		if token != "" {
			b.Annotations = map[string]string{v1alpha1.RebuildAnnotation: token}
		}
		return b
	}
	long := strings.Repeat("a", 253)
	seen := map[string]string{}
	for _, tc := range []struct {
		name  string
		gen   int64
		token string
	}{
		{"htop", 1, ""}, {"htop", 2, ""}, {"htop", 2, "1700000000"}, {"htop", 2, "1700000001"},
		{long, 1, ""}, {long, 2, ""}, {long[:252] + "b", 1, ""}, {"a-b", 12, ""}, {"a", 121, ""},
		{strings.Repeat("x.", 40) + "y", 9223372036854775807, "any token, even with spaces / and : colons"},
	} {
		b := mk(tc.name, tc.gen, tc.token)
		got := RunName(b)
		if again := RunName(mk(tc.name, tc.gen, tc.token)); again != got {
			t.Errorf("RunName not deterministic: %s then %s", got, again)
		}
		if len(got) > 63 {
			t.Errorf("RunName(%q, %d) = %q: %d characters", tc.name, tc.gen, got, len(got))
		}
		if errs := dns1123Label(got); errs != "" {
			t.Errorf("RunName %q is not a DNS label: %s", got, errs)
		}
		key := fmt.Sprintf("%s/%d/%s", tc.name, tc.gen, tc.token)
		if prev, dup := seen[got]; dup {
			t.Errorf("RunName collision: %q for %s and %s", got, prev, key)
		}
		seen[got] = key
		if len(tc.name) < 40 && !strings.HasPrefix(got, fmt.Sprintf("%s-%d-", tc.name, tc.gen)) {
			t.Errorf("RunName %q does not start with name-generation-", got)
		}
	}
	if got := RunName(mk("htop", 2, "")); got != "htop-2-"+RunName(mk("htop", 2, ""))[7:] || len(got) != len("htop-2-")+5 {
		t.Errorf("RunName(htop, 2) = %q", got)
	}
	// A build deleted and recreated under the same name is a new object: it
	// must not adopt the run its predecessor left behind.
	first, second := mk("htop", 1, ""), mk("htop", 1, "")
	first.UID, second.UID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "6fa459ea-ee8a-3ca4-894e-db77e160355e"
	if RunName(first) == RunName(second) {
		t.Errorf("RunName ignores the UID: a recreated build would adopt %s", RunName(first))
	}
}

func TestRunLabelsIdentifyTheBuild(t *testing.T) {
	b := htopBuild()
	b.Annotations = map[string]string{v1alpha1.RebuildAnnotation: "Tue Nov 26 2026 / rebuild please!"}
	pr := mustGenerate(t, input(b))
	l := pr.Labels
	if l[LabelBuild] != "htop" || l[LabelGeneration] != "2" || l[LabelManagedBy] != ManagedBy {
		t.Errorf("labels %v", l)
	}
	if tok := l[LabelRebuild]; len(tok) != 16 || strings.Trim(tok, "0123456789abcdef") != "" {
		t.Errorf("rebuild-token label %q is not a short hash", tok)
	}
	if pr.Name != RunName(b) || pr.Namespace != b.Namespace {
		t.Errorf("name %s/%s", pr.Namespace, pr.Name)
	}
	if len(pr.OwnerReferences) != 1 || pr.OwnerReferences[0].UID != b.UID || pr.OwnerReferences[0].Kind != "MultiArchBuild" ||
		pr.OwnerReferences[0].Controller == nil || !*pr.OwnerReferences[0].Controller {
		t.Errorf("owner references %+v", pr.OwnerReferences)
	}
	delete(b.Annotations, v1alpha1.RebuildAnnotation)
	if _, ok := mustGenerate(t, input(b)).Labels[LabelRebuild]; ok {
		t.Error("rebuild-token label set without a rebuild annotation")
	}
}

// --- helpers -------------------------------------------------------------------

// mainStep is the step that does a task's work: the one named after the
// task (clone's, between its prepare and preflight steps), else the last.
func mainStep(pt tektonv1.PipelineTask) tektonv1.Step {
	kind, _, _ := strings.Cut(pt.Name, "-") // build-arm64: build
	for _, st := range pt.TaskSpec.Steps {
		if st.Name == pt.Name || st.Name == kind {
			return st
		}
	}
	return pt.TaskSpec.Steps[len(pt.TaskSpec.Steps)-1]
}

func stepNamed(t *testing.T, pt tektonv1.PipelineTask, name string) tektonv1.Step {
	t.Helper()
	for _, st := range pt.TaskSpec.Steps {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("task %s has no step %s", pt.Name, name)
	return tektonv1.Step{}
}

func findTask(pr *tektonv1.PipelineRun, name string) (tektonv1.PipelineTask, bool) {
	for _, pt := range allTasks(pr) {
		if pt.Name == name {
			return pt, true
		}
	}
	return tektonv1.PipelineTask{}, false
}

func taskNamed(t *testing.T, pr *tektonv1.PipelineRun, name string) tektonv1.PipelineTask {
	t.Helper()
	for _, pt := range allTasks(pr) {
		if pt.Name == name {
			return pt
		}
	}
	t.Fatalf("no task %s", name)
	return tektonv1.PipelineTask{}
}

func envOf(step tektonv1.Step, name string) string {
	for _, e := range step.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func runParam(pr *tektonv1.PipelineRun, name string) tektonv1.ParamValue {
	for _, p := range pr.Spec.Params {
		if p.Name == name {
			return p.Value
		}
	}
	return tektonv1.ParamValue{}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Build pods are hardened by default: no ServiceAccount token on any pod, no
// privilege escalation on any step, every capability dropped and
// RuntimeDefault seccomp on tool steps, only SETFCAP added on buildah's,
// requests and a memory limit on every step, buildah's storage bounded.
func TestBuildPodsAreHardened(t *testing.T) {
	buildah := map[string]bool{"build": true, "push": true, "preflight": true, StepIndex: true}
	for strategy, sample := range sampleBuilds {
		pr := mustGenerate(t, input(sample()))
		templates := []*pod.Template{pr.Spec.TaskRunTemplate.PodTemplate}
		for _, trs := range pr.Spec.TaskRunSpecs {
			templates = append(templates, trs.PodTemplate)
		}
		for i, tpl := range templates {
			if tpl == nil || tpl.AutomountServiceAccountToken == nil || *tpl.AutomountServiceAccountToken {
				t.Errorf("%s pod template %d mounts the ServiceAccount token", strategy, i)
			}
		}
		for _, pt := range allTasks(pr) {
			for _, step := range pt.TaskSpec.Steps {
				where := fmt.Sprintf("%s %s/%s", strategy, pt.Name, step.Name)
				sc := step.SecurityContext
				if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("%s: privilege escalation allowed", where)
					continue
				}
				if sc.Privileged != nil && *sc.Privileged {
					t.Errorf("%s: privileged", where)
				}
				switch {
				case sc.Capabilities == nil:
					t.Errorf("%s: keeps the runtime's default capabilities", where)
				case step.Name == "prepare":
					// root with CHOWN only: every other default capability dropped, none added
					if len(sc.Capabilities.Add) != 0 || slices.Contains(sc.Capabilities.Drop, "CHOWN") ||
						!slices.Contains(sc.Capabilities.Drop, "DAC_OVERRIDE") || !slices.Contains(sc.Capabilities.Drop, "SETUID") || !slices.Contains(sc.Capabilities.Drop, "NET_RAW") {
						t.Errorf("%s: capabilities %+v, want all but CHOWN dropped", where, sc.Capabilities)
					}
				case buildah[step.Name]:
					if fmt.Sprint(sc.Capabilities.Add) != "[SETFCAP]" || !slices.Contains(sc.Capabilities.Drop, "NET_RAW") || !slices.Contains(sc.Capabilities.Drop, "MKNOD") {
						t.Errorf("%s: capabilities %+v, want add [SETFCAP] and NET_RAW, MKNOD dropped", where, sc.Capabilities)
					}
				default:
					if len(sc.Capabilities.Add) != 0 || fmt.Sprint(sc.Capabilities.Drop) != "[ALL]" {
						t.Errorf("%s: capabilities %+v, want every one dropped", where, sc.Capabilities)
					}
					if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
						t.Errorf("%s: no RuntimeDefault seccomp profile", where)
					}
					if sc.RunAsUser == nil || *sc.RunAsUser != 65532 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
						t.Errorf("%s: runs as %v (non-root %v), want the tool steps' user 65532", where, sc.RunAsUser, sc.RunAsNonRoot)
					}
					if envOf(step, "HOME") == "" {
						t.Errorf("%s: no HOME of its own", where)
					}
				}
				r := step.ComputeResources
				if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
					t.Errorf("%s: resources %+v, want CPU and memory requests and a memory limit", where, r)
				}
			}
			for _, v := range pt.TaskSpec.Volumes {
				if v.EmptyDir != nil && (v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.IsZero()) {
					t.Errorf("%s %s: emptyDir %s has no sizeLimit", strategy, pt.Name, v.Name)
				}
			}
		}
	}
}

// --tool-steps-user=0, for volumes that refuse chown: the tool steps run as
// root (still without any capability) and prepare hands nothing over.
func TestToolStepsAsRootWhenAnAdminSaysSo(t *testing.T) {
	in := input(htopBuild())
	in.Settings.ToolUser = 0
	pr := mustGenerate(t, in)
	for _, task := range []string{BuildTaskName("amd64"), BuildTaskName("arm64")} {
		bt := taskNamed(t, pr, task)
		if got := envOf(stepNamed(t, bt, "prepare"), "TOOL_UID"); got != "0" {
			t.Errorf("%s prepare TOOL_UID = %q, want 0", task, got)
		}
		sc := stepNamed(t, bt, "clone").SecurityContext
		if sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.RunAsNonRoot != nil || fmt.Sprint(sc.Capabilities.Drop) != "[ALL]" {
			t.Errorf("%s clone as root: %+v", task, sc)
		}
	}
}

// The layer cache repository: the output repository by default, the spec's
// when given, none when the spec or the operator (--layer-cache=false) turns
// it off; it reaches the build step as a parameter, never as script text.
func TestLayerCacheRepository(t *testing.T) {
	cases := []struct {
		name  string
		cache *v1alpha1.LayerCacheSpec
		flag  bool
		want  string
	}{
		{"default: the output repository", nil, true, "quay.io/example/htop"},
		{"mode Registry without repository", &v1alpha1.LayerCacheSpec{Mode: v1alpha1.LayerCacheRegistry}, true, "quay.io/example/htop"},
		{"a repository of its own", &v1alpha1.LayerCacheSpec{Repository: "quay.io/example/htop-cache"}, true, "quay.io/example/htop-cache"},
		{"disabled by the spec", &v1alpha1.LayerCacheSpec{Mode: v1alpha1.LayerCacheDisabled, Repository: "quay.io/example/htop-cache"}, true, ""},
		{"disabled by the operator", &v1alpha1.LayerCacheSpec{Repository: "quay.io/example/htop-cache"}, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := htopBuild()
			b.Spec.Output.Image = "quay.io/example/htop:1.0"
			b.Spec.Output.LayerCache = tc.cache
			in := input(b)
			in.Settings.LayerCache = tc.flag
			pr := mustGenerate(t, in)
			if got := runParam(pr, paramCacheRepo).StringVal; got != tc.want {
				t.Errorf("CACHE_REPOSITORY = %q, want %q", got, tc.want)
			}
			for _, arch := range []string{"amd64", "arm64"} {
				if got := envOf(mainStep(taskNamed(t, pr, BuildTaskName(arch))), "CACHE_REPOSITORY"); got != "$(params."+paramCacheRepo+")" {
					t.Errorf("build-%s CACHE_REPOSITORY env = %q, want the parameter", arch, got)
				}
			}
		})
	}
}

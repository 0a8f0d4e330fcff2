package pipeline

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Where things live on the shared ReadWriteMany volume:
//
//	runs/<run>/source               the clone of NodeJS and Maven (Maven writes target/ into it)
//	runs/<run>/arch/<arch>/source   NodeJS: the platform's private copy
//	runs/<run>/commit               Containerfile: the commit every platform's own clone checks out
//	runs/<run>/index/<arch>         each platform's pushed digest (and commit), for the index steps
//	cache/npm                       npm cache, kept across runs
//	cache/m2                        Maven local repository, kept across runs
//
// <run> is the PipelineRun name, so two runs never share a directory and the
// finally task removes exactly one. Every task mounts only the subPaths it
// needs: build-<arch> of NodeJS cannot see another platform's copy at all.
const (
	volShared     = "shared"
	volSource     = "source"
	volStorage    = "container-storage"
	volGitSecret  = "git-credentials"
	volPushSecret = "push-credentials"
	volMvnSecret  = "maven-settings"
	volHome       = "home"

	mountSource     = "/workspace/source"
	mountArch       = "/workspace/arch"
	mountRuns       = "/workspace/runs"
	mountRun        = "/workspace/run"
	mountCache      = "/workspace/cache"
	mountHome       = "/workspace/home"
	mountNpmCache   = "/workspace/cache/npm"
	mountMavenCache = "/workspace/cache/m2"
	mountGitSecret  = "/workspace/secrets/git"
	mountPushSecret = "/workspace/secrets/registry"
	mountMvnSecret  = "/workspace/secrets/maven"
	mountStorage    = "/var/lib/containers"
	// ociDir is the build step's scratch directory for the compressed image
	// on its way to the registry, on buildah's node-local volume.
	ociDir = mountStorage + "/multiarch-build"
	// basesFile is where preflight records the platform's base images by
	// digest for the build step's image reuse (scripts/build.sh).
	basesFile = ociDir + "/bases"
)

// Pipeline parameters: every value taken from the spec travels as a
// PipelineRun parameter, then as a task parameter, and reaches the scripts as
// an environment variable or an argument, never inside script text (Tekton
// substitutes parameters into `script` textually).
const (
	paramGitURL        = "GIT_URL"
	paramGitRevision   = "GIT_REVISION"
	paramContextDir    = "CONTEXT_DIR"
	paramContainerfile = "CONTAINERFILE"
	paramBuildArgs     = "BUILD_ARGS"
	paramImage         = "IMAGE"
	paramRepository    = "REPOSITORY"
	paramInstall       = "INSTALL_COMMAND"
	paramGoals         = "MAVEN_GOALS"
	paramCacheRepo     = "CACHE_REPOSITORY"
	// Task parameters only, from other tasks' results.
	paramSourceDateEpoch = "SOURCE_DATE_EPOCH"
)

// generator builds the PipelineRun of one plan.
type generator struct {
	p *plan
	s settings.Settings
	// shared: the pipeline spec goes into a Pipeline many runs refer to
	// (GenerateReferenced): what differs from run to run (the run's name,
	// the claim, Secret and ConfigMap names) is written as a parameter
	// reference, see value.
	shared bool
}

// Parameters a shared pipeline spec takes for what differs between runs.
// RUN_NAME is a task parameter only, given $(context.pipelineRun.name).
const (
	paramRunName       = "RUN_NAME"
	paramClaim         = "WORKSPACE_CLAIM"
	paramGitSecret     = "GIT_SECRET"
	paramPushSecret    = "PUSH_SECRET"
	paramMavenSecret   = "MAVEN_SETTINGS_SECRET"
	paramClusterConfig = "CLUSTER_CONFIG"
)

// runParamNames are the pipeline parameters of a shared spec, in order.
var runParamNames = []string{paramClaim, paramGitSecret, paramPushSecret, paramMavenSecret, paramClusterConfig}

// value is v in an inline spec, a reference to parameter param in a shared one.
func (g *generator) value(param, v string) string {
	if g.shared && v != "" {
		return "$(params." + param + ")"
	}
	return v
}

// Generate returns the self-contained PipelineRun that builds in.Build: an
// inline pipelineSpec whose tasks are inline taskSpecs, so nothing has to be
// installed in the cluster besides Tekton.
//
//	Containerfile: build-<arch> (parallel: prepare, clone, [preflight: the first platform only], build, index)
//	NodeJS:        clone (+ preflight step) -> install-<arch> -> build-<arch> (build, index)
//	Maven:         clone (+ preflight step) -> maven -> build-<arch> (build, index)
//	finally: cleanup
//
// Every build task pushes its image by digest; its index step then publishes
// the digest on the shared volume, and the task that finds every platform's
// there pushes the manifest list: no pod of its own waits for the builds. A
// Containerfile build clones in each build task: no clone pod precedes them
// (every clone checks out the commit the first one did). A retry that
// reuses images starts with check-reused; one that rebuilds nothing ends
// with a push task instead.
//
// Arch-bound tasks (install-<arch>, build-<arch>) are pinned by taskRunSpecs to
// nodes labelled kubernetes.io/arch=<arch> with that architecture's
// tolerations. clone, maven, push and cleanup are not pinned: they only move
// files and bytecode, and their images must be multi-arch like every other
// image of the run, so any node will do.
//
// The shared PVC is a volume of every taskSpec, never a pipeline workspace:
// Tekton's affinity assistant (coschedule: workspaces, the default) would pin
// every task sharing a PVC workspace to one node, which no two-architecture
// build can satisfy.
//
// Errors wrapping ErrInvalidSpec name the spec field the user must fix.
func Generate(in Input) (*tektonv1.PipelineRun, error) {
	p, err := newPlan(in)
	if err != nil {
		return nil, err
	}
	g := &generator{p: p, s: in.Settings}
	pr := g.pipelineRun()
	applyClusterConfig(pr, in.Cluster)
	return pr, nil
}

func (g *generator) pipelineRun() *tektonv1.PipelineRun {
	p := g.p
	b := g.labels()
	pr := &tektonv1.PipelineRun{
		TypeMeta: metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "PipelineRun"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        p.runName,
			Namespace:   p.namespace,
			Labels:      b,
			Annotations: g.annotations(),
		},
		Spec: tektonv1.PipelineRunSpec{
			PipelineSpec: g.pipelineSpec(),
			Params:       g.runParams(),
			Timeouts:     g.timeouts(),
			TaskRunTemplate: tektonv1.PipelineTaskRunTemplate{
				ServiceAccountName: p.serviceAccount,
				PodTemplate:        podTemplate(),
			},
			TaskRunSpecs: g.taskRunSpecs(),
		},
	}
	if p.owner != nil {
		pr.OwnerReferences = []metav1.OwnerReference{*p.owner}
	}
	return pr
}

func (g *generator) labels() map[string]string {
	p := g.p
	l := map[string]string{
		LabelBuild:      p.buildName,
		LabelGeneration: strconv.FormatInt(p.generation, 10),
		LabelManagedBy:  ManagedBy,
	}
	if v := p.rebuildToken; v != "" {
		l[LabelRebuild] = v
	}
	return l
}

// timeouts bounds the run by spec.timeout and reserves part of it for the
// finally task, so that a build that times out still cleans its directory.
func (g *generator) timeouts() *tektonv1.TimeoutFields {
	total := g.p.timeout
	finally := total / 10
	if finally > 5*time.Minute {
		finally = 5 * time.Minute
	}
	return &tektonv1.TimeoutFields{
		Pipeline: &metav1.Duration{Duration: total},
		Tasks:    &metav1.Duration{Duration: total - finally},
		Finally:  &metav1.Duration{Duration: finally},
	}
}

func (g *generator) runParams() tektonv1.Params {
	p := g.p
	params := tektonv1.Params{
		stringParam(paramGitURL, p.gitURL),
		stringParam(paramGitRevision, p.revision),
		stringParam(paramContextDir, p.contextDir),
		stringParam(paramContainerfile, p.containerfile),
		arrayParam(paramBuildArgs, p.buildArgs),
		stringParam(paramImage, p.image),
		stringParam(paramRepository, p.repository),
		stringParam(paramCacheRepo, p.cacheRepo),
	}
	switch p.strategy {
	case v1alpha1.StrategyNodeJS:
		params = append(params, arrayParam(paramInstall, p.installCommand))
	case v1alpha1.StrategyMaven:
		params = append(params, arrayParam(paramGoals, p.mavenGoals))
	}
	return params
}

func (g *generator) pipelineSpec() *tektonv1.PipelineSpec {
	p := g.p
	spec := &tektonv1.PipelineSpec{
		Description: fmt.Sprintf("Multi-architecture build, %s strategy, generated by %s.", p.strategy, ManagedBy),
		Params: tektonv1.ParamSpecs{
			stringParamSpec(paramGitURL, "Git repository (spec.source.git.url)."),
			stringParamSpec(paramGitRevision, "Branch, tag or commit (spec.source.git.revision)."),
			stringParamSpec(paramContextDir, "Directory to build, relative to the repository root (spec.source.contextDir)."),
			stringParamSpec(paramContainerfile, "Containerfile, relative to the context directory (spec.strategy.containerfile)."),
			arrayParamSpec(paramBuildArgs, "Build arguments NAME=VALUE (spec.strategy.buildArgs)."),
			stringParamSpec(paramImage, "Image the manifest list is pushed to, with its tag (spec.output.image)."),
			stringParamSpec(paramRepository, "Repository of the image, without tag."),
			stringParamSpec(paramCacheRepo, "Repository of the layer cache (spec.output.layerCache); empty: no layer cache."),
		},
	}
	switch p.strategy {
	case v1alpha1.StrategyNodeJS:
		spec.Params = append(spec.Params, arrayParamSpec(paramInstall, "Install command as an argument list; empty means npm ci or npm install (spec.strategy.nodejs.installCommand)."))
	case v1alpha1.StrategyMaven:
		spec.Params = append(spec.Params, arrayParamSpec(paramGoals, "Maven goals and options, one argument each (spec.strategy.maven.goals)."))
	}

	// A Containerfile build clones inside each build task: one pod start
	// less on its critical path. NodeJS and Maven keep one clone task (their
	// install-<arch> tasks copy the one clone; Maven compiles it once).
	inTask := g.cloneInBuild()
	var archAfter []string
	if reused := p.reusedPlatforms(); len(reused) > 0 {
		// A retry checks first that the images it lists again are still
		// there: nothing is built when one is gone.
		spec.Tasks = append(spec.Tasks, g.checkReusedTask(reused))
		archAfter = []string{TaskCheckReused}
	}
	if !inTask {
		// clone ends with the preflight step: a base image without one of
		// the platforms ends the run before any node of that architecture
		// is asked for work, and without a pod of its own on the critical
		// path.
		clone := g.cloneTask()
		clone.RunAfter = archAfter
		spec.Tasks = append(spec.Tasks, clone)
		archAfter = []string{TaskClone}
	}
	if p.strategy == v1alpha1.StrategyMaven && len(p.built) > 0 {
		spec.Tasks = append(spec.Tasks, g.mavenTask())
	}
	for _, pl := range p.built {
		arch := pl.Arch()
		switch p.strategy {
		case v1alpha1.StrategyNodeJS:
			spec.Tasks = append(spec.Tasks, g.installTask(pl, archAfter), g.buildTask(pl, InstallTaskName(arch)))
		case v1alpha1.StrategyMaven:
			spec.Tasks = append(spec.Tasks, g.buildTask(pl, TaskMaven))
		default:
			spec.Tasks = append(spec.Tasks, g.buildTask(pl, archAfter...))
		}
	}
	if len(p.built) == 0 {
		// A retry that only lists the reused images again: no build task
		// assembles the list, a task of its own does.
		spec.Tasks = append(spec.Tasks, g.pushTask(archAfter))
	}
	spec.Finally = []tektonv1.PipelineTask{g.cleanupTask()}
	for i := range spec.Tasks {
		withErrorResult(&spec.Tasks[i])
	}
	for i := range spec.Finally {
		withErrorResult(&spec.Finally[i])
	}

	commitTask := TaskClone
	if inTask {
		commitTask = BuildTaskName(p.built[0].Arch())
	}
	if len(p.built) == 0 {
		spec.Results = []tektonv1.PipelineResult{
			pipelineResult(ResultImageDigest, "Digest of the pushed manifest list.", TaskPush, ResultImageDigest),
			pipelineResult(ResultImageURL, "Repository of the pushed manifest list (IMAGE_URL@IMAGE_DIGEST names it).", TaskPush, ResultImageURL),
		}
	} else {
		// One build task assembled the list; the others' results are empty.
		var digest, url string
		for _, pl := range p.built {
			digest += "$(tasks." + BuildTaskName(pl.Arch()) + ".results." + ResultIndexDigest + ")"
			url += "$(tasks." + BuildTaskName(pl.Arch()) + ".results." + ResultIndexURL + ")"
		}
		spec.Results = []tektonv1.PipelineResult{
			resultOf(ResultImageDigest, "Digest of the pushed manifest list.", digest),
			resultOf(ResultImageURL, "Repository of the pushed manifest list (IMAGE_URL@IMAGE_DIGEST names it).", url),
		}
	}
	spec.Results = append(spec.Results, pipelineResult(ResultCommit, "Git commit that was built.", commitTask, ResultCommit))
	for _, pl := range p.built {
		name := ArchDigestResult(pl.Arch())
		spec.Results = append(spec.Results, pipelineResult(name, fmt.Sprintf("Digest of the %s image manifest.", pl), BuildTaskName(pl.Arch()), ResultImageDigest))
	}
	return spec
}

// cloneInBuild: a Containerfile build that builds something clones inside
// each build task (see addClone).
func (g *generator) cloneInBuild() bool {
	return g.p.strategy == v1alpha1.StrategyContainerfile && len(g.p.built) > 0
}

// taskRunSpecs pins every arch-bound task to nodes of its architecture.
func (g *generator) taskRunSpecs() []tektonv1.PipelineTaskRunSpec {
	var specs []tektonv1.PipelineTaskRunSpec
	for _, pl := range g.p.built {
		arch := pl.Arch()
		var names []string
		if g.p.strategy == v1alpha1.StrategyNodeJS {
			names = append(names, InstallTaskName(arch))
		}
		names = append(names, BuildTaskName(arch))
		for _, name := range names {
			specs = append(specs, tektonv1.PipelineTaskRunSpec{
				PipelineTaskName: name,
				PodTemplate: func() *pod.Template {
					t := podTemplate()
					t.NodeSelector = map[string]string{corev1.LabelArchStable: arch}
					t.Tolerations = g.p.tolerations[arch]
					return t
				}(),
			})
		}
	}
	return specs
}

// --- tasks -------------------------------------------------------------------

func (g *generator) cloneTask() tektonv1.PipelineTask {
	p := g.p
	step, volumes := g.cloneStep(g.runMount(mountSource, "source", false))
	pt := tektonv1.PipelineTask{
		Name: TaskClone,
		Params: tektonv1.Params{
			passString(paramGitURL),
			passString(paramGitRevision),
		},
		TaskSpec: &tektonv1.EmbeddedTask{
			Metadata: tektonv1.PipelineTaskMetadata{Labels: map[string]string{LabelManagedBy: ManagedBy}},
			TaskSpec: tektonv1.TaskSpec{
				Description: "Fetch the sources once into the run's directory on the shared volume.",
				Params:      tektonv1.ParamSpecs{stringParamSpec(paramGitURL, ""), stringParamSpec(paramGitRevision, "")},
				Results:     cloneResults(),
				Volumes:     append([]corev1.Volume{g.sharedVolume()}, volumes...),
				Steps:       []tektonv1.Step{g.prepareStep(), step},
			},
		},
	}
	if len(p.built) > 0 {
		g.addPreflight(&pt)
	}
	return pt
}

func cloneResults() []tektonv1.TaskResult {
	return []tektonv1.TaskResult{
		{Name: ResultCommit, Type: tektonv1.ResultsTypeString, Description: "The commit checked out."},
		{Name: ResultSourceDateEpoch, Type: tektonv1.ResultsTypeString, Description: "The commit's committer time, seconds since the epoch."},
	}
}

// cloneStep checks the sources out into the directory mounted by source at
// mountSource; it returns the volumes the step needs besides source's.
func (g *generator) cloneStep(source corev1.VolumeMount) (tektonv1.Step, []corev1.Volume) {
	p := g.p
	step := tektonv1.Step{
		Name:   "clone",
		Image:  p.gitImage,
		Script: scriptClone,
		Env: []corev1.EnvVar{
			env("GIT_URL", "$(params."+paramGitURL+")"),
			env("GIT_REVISION", "$(params."+paramGitRevision+")"),
			env("SOURCE_DIR", mountSource),
			env("RESULT_COMMIT", "$(results."+ResultCommit+".path)"),
			env("RESULT_SOURCE_DATE_EPOCH", "$(results."+ResultSourceDateEpoch+".path)"),
			env("GIT_SECRET_DIR", ""),
		},
		VolumeMounts:     []corev1.VolumeMount{source},
		SecurityContext:  g.toolContext(),
		ComputeResources: g.resources("clone"),
	}
	volumes := []corev1.Volume{toolStep(&step)}
	if p.gitSecret != "" {
		volumes = append(volumes, mountSecret(&step, "GIT_SECRET_DIR", volGitSecret, mountGitSecret, g.value(paramGitSecret, p.gitSecret)))
	}
	return step, volumes
}

// addPreflight ends the clone task with the preflight step: it checks,
// before any architecture task starts, that every image the Containerfile
// builds FROM offers every platform this run builds (scripts/preflight.sh).
// It runs buildah (manifest and configuration reads, no layer) as the build
// steps do, so it gets the cluster's registries configuration and mirrors
// like them (applyClusterConfig), and it pulls as they pull: anonymously.
// REGISTRY_AUTH_DIR is the hook for a pull Secret, should build-<arch> ever
// get one: mount the same Secret here. Spec values arrive as parameters
// (CONTEXT_DIR, CONTAINERFILE, BUILD_ARGS); PLATFORMS are the plan's
// validated platforms. A step of clone rather than a task of its own: one
// pod start less on every build's critical path.
func (g *generator) addPreflight(pt *tektonv1.PipelineTask) {
	pt.Params = append(pt.Params,
		passString(paramContextDir),
		passString(paramContainerfile),
		passArray(paramBuildArgs),
	)
	ts := &pt.TaskSpec.TaskSpec
	ts.Description = fmt.Sprintf("Fetch the sources once into the run's directory on the shared volume, then check that every image the Containerfile builds FROM offers %s; fail naming the image and the platform that is missing.", g.platformList())
	ts.Params = append(ts.Params,
		stringParamSpec(paramContextDir, ""),
		stringParamSpec(paramContainerfile, ""),
		arrayParamSpec(paramBuildArgs, ""),
	)
	ts.Volumes = append(ts.Volumes, g.storageVolume())
	ts.Steps = append(ts.Steps, g.preflightStep(g.runMount(mountSource, "source", true), g.builtPlatforms(), ""))
}

// builtPlatforms are the platforms this run builds, as strings.
func (g *generator) builtPlatforms() []string {
	var platforms []string
	for _, pl := range g.p.built {
		platforms = append(platforms, string(pl))
	}
	return platforms
}

func (g *generator) platformList() string { return strings.Join(g.builtPlatforms(), ", ") }

// preflightStep reads the sources mounted by source at mountSource and checks
// the base images of platforms; its task has the parameters CONTEXT_DIR,
// CONTAINERFILE and BUILD_ARGS and the storage volume. With bases (a
// platform), it also records that platform's base images by digest in the
// storage volume for the build step's image reuse (basesFile).
func (g *generator) preflightStep(source corev1.VolumeMount, platforms []string, bases v1alpha1.Platform) tektonv1.Step {
	p := g.p
	vars := []corev1.EnvVar{
		env("PLATFORMS", strings.Join(platforms, " ")),
		env("SOURCE_DIR", mountSource),
		env("CONTEXT_DIR", "$(params."+paramContextDir+")"),
		env("CONTAINERFILE", "$(params."+paramContainerfile+")"),
		env("REGISTRY_AUTH_DIR", ""),
	}
	if bases != "" {
		vars = append(vars, env("BASES_PLATFORM", string(bases)), env("BASES_FILE", basesFile))
	}
	return tektonv1.Step{
		Name:   StepPreflight,
		Image:  p.builderImage,
		Script: scriptPreflight,
		Args:   []string{"$(params." + paramBuildArgs + "[*])"},
		Env:    append(vars, buildahEnv()...),
		VolumeMounts: []corev1.VolumeMount{
			source,
			{Name: volStorage, MountPath: mountStorage},
		},
		SecurityContext:  buildahContext(),
		ComputeResources: g.resources("push"),
	}
}

// prepareStep readies the shared volume for the run, as root with CHOWN as
// its only capability: it creates the run's directories and the caches, hands
// them to the tool steps' user (--tool-steps-user), and marks the run's start
// (cleanup's sweep of older runs' directories compares with it).
func (g *generator) prepareStep() tektonv1.Step {
	// Only NodeJS builds use per-architecture directories (their copies).
	var arches []string
	if g.p.strategy == v1alpha1.StrategyNodeJS {
		for _, pl := range g.p.built {
			arches = append(arches, pl.Arch())
		}
	}
	return tektonv1.Step{
		Name:   "prepare",
		Image:  g.p.gitImage,
		Script: scriptPrepare,
		Env: []corev1.EnvVar{
			env("RUNS_DIR", mountRuns),
			env("CACHE_DIR", mountCache),
			env("RUN_NAME", g.value(paramRunName, g.p.runName)),
			env("ARCHES", strings.Join(arches, " ")),
			env("TOOL_UID", strconv.FormatInt(g.s.ToolUser, 10)),
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: volShared, MountPath: mountRuns, SubPath: runsDir},
			{Name: volShared, MountPath: mountCache, SubPath: "cache"},
		},
		SecurityContext:  prepareContext(),
		ComputeResources: g.resources("prepare"),
	}
}

// toolStep gives a tool step, which runs as --tool-steps-user, a writable
// home and temporary directory of its own (the user has no home in the
// image), and returns the volume the task needs for it.
func toolStep(step *tektonv1.Step) corev1.Volume {
	step.Env = append(step.Env, env("HOME", mountHome), env("TMPDIR", mountHome))
	step.VolumeMounts = append(step.VolumeMounts, corev1.VolumeMount{Name: volHome, MountPath: mountHome})
	return corev1.Volume{Name: volHome, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("1Gi"))}}}
}

func (g *generator) installTask(pl v1alpha1.Platform, after []string) tektonv1.PipelineTask {
	p := g.p
	arch := pl.Arch()
	step := tektonv1.Step{
		Name:   "install",
		Image:  p.nodeImage,
		Script: scriptInstall,
		Args:   []string{"$(params." + paramInstall + "[*])"},
		Env: []corev1.EnvVar{
			env("PLATFORM", string(pl)),
			env("SOURCE_DIR", mountSource),
			env("CONTEXT_DIR", "$(params."+paramContextDir+")"),
			env("WORK_DIR", mountArch+"/source"),
			env("NPM_CONFIG_CACHE", mountNpmCache),
			env("NPM_CONFIG_UPDATE_NOTIFIER", "false"),
			env("NPM_CONFIG_FUND", "false"),
			env("NPM_CONFIG_AUDIT", "false"),
		},
		VolumeMounts: []corev1.VolumeMount{
			g.runMount(mountSource, "source", true),
			g.runMount(mountArch, "arch/"+arch, false),
			{Name: volShared, MountPath: mountNpmCache, SubPath: "cache/npm"},
		},
		SecurityContext:  g.toolContext(),
		ComputeResources: g.resources("install"),
	}
	home := toolStep(&step)
	return tektonv1.PipelineTask{
		Name:     InstallTaskName(arch),
		RunAfter: after,
		Params: tektonv1.Params{
			passString(paramContextDir),
			passArray(paramInstall),
		},
		TaskSpec: &tektonv1.EmbeddedTask{
			Metadata: archMetadata(arch),
			TaskSpec: tektonv1.TaskSpec{
				Description: fmt.Sprintf("Install the NodeJS dependencies for %s on a node of that architecture, in a copy of the sources private to %s.", pl, arch),
				Params: tektonv1.ParamSpecs{
					stringParamSpec(paramContextDir, ""),
					arrayParamSpec(paramInstall, ""),
				},
				Volumes: []corev1.Volume{g.sharedVolume(), home},
				Steps:   []tektonv1.Step{step},
			},
		},
	}
}

func (g *generator) mavenTask() tektonv1.PipelineTask {
	p := g.p
	step := tektonv1.Step{
		Name:   "maven",
		Image:  p.mavenImage,
		Script: scriptMaven,
		Args:   []string{"$(params." + paramGoals + "[*])"},
		Env: []corev1.EnvVar{
			env("SOURCE_DIR", mountSource),
			env("CONTEXT_DIR", "$(params."+paramContextDir+")"),
			env("MAVEN_REPO", mountMavenCache+"/repository"),
			env("MAVEN_SETTINGS_DIR", ""),
		},
		VolumeMounts: []corev1.VolumeMount{
			g.runMount(mountSource, "source", false),
			{Name: volShared, MountPath: mountMavenCache, SubPath: "cache/m2"},
		},
		SecurityContext:  g.toolContext(),
		ComputeResources: g.resources("maven"),
	}
	volumes := []corev1.Volume{g.sharedVolume(), toolStep(&step)}
	if p.mavenSettings != "" {
		volumes = append(volumes, mountSecret(&step, "MAVEN_SETTINGS_DIR", volMvnSecret, mountMvnSecret, g.value(paramMavenSecret, p.mavenSettings)))
	}
	return tektonv1.PipelineTask{
		Name:     TaskMaven,
		RunAfter: []string{TaskClone},
		Params: tektonv1.Params{
			passString(paramContextDir),
			passArray(paramGoals),
		},
		TaskSpec: &tektonv1.EmbeddedTask{
			Metadata: tektonv1.PipelineTaskMetadata{Labels: map[string]string{LabelManagedBy: ManagedBy}},
			TaskSpec: tektonv1.TaskSpec{
				Description: "Run Maven once: the JVM bytecode is the same for every architecture.",
				Params: tektonv1.ParamSpecs{
					stringParamSpec(paramContextDir, ""),
					arrayParamSpec(paramGoals, ""),
				},
				Volumes: volumes,
				Steps:   []tektonv1.Step{step},
			},
		},
	}
}

func (g *generator) buildTask(pl v1alpha1.Platform, after ...string) tektonv1.PipelineTask {
	p := g.p
	arch := pl.Arch()
	inTask := g.cloneInBuild()
	var mounts []corev1.VolumeMount
	sourceDir := mountSource
	switch {
	case p.strategy == v1alpha1.StrategyNodeJS:
		// Only the platform's own copy, with its own node_modules, is visible.
		sourceDir = mountArch + "/source"
		mounts = append(mounts, g.runMount(mountArch, "arch/"+arch, false))
	case inTask:
		mounts = append(mounts, corev1.VolumeMount{Name: volSource, MountPath: mountSource, ReadOnly: true})
	default:
		mounts = append(mounts, g.runMount(mountSource, "source", true))
	}
	mounts = append(mounts, corev1.VolumeMount{Name: volStorage, MountPath: mountStorage})
	epoch := env("SOURCE_DATE_EPOCH", "$(params."+paramSourceDateEpoch+")")
	if inTask {
		// Written by this task's clone step.
		epoch = env("SOURCE_DATE_EPOCH_FILE", "$(results."+ResultSourceDateEpoch+".path)")
	}
	step := tektonv1.Step{
		Name:   "build",
		Image:  p.builderImage,
		Script: scriptBuild,
		Args:   []string{"$(params." + paramBuildArgs + "[*])"},
		Env: append([]corev1.EnvVar{
			env("PLATFORM", string(pl)),
			env("SOURCE_DIR", sourceDir),
			env("CONTEXT_DIR", "$(params."+paramContextDir+")"),
			env("CONTAINERFILE", "$(params."+paramContainerfile+")"),
			env("REPOSITORY", "$(params."+paramRepository+")"),
			epoch,
			env("OCI_DIR", ociDir),
			env("CACHE_REPOSITORY", "$(params."+paramCacheRepo+")"),
			env("REGISTRY_AUTH_DIR", ""),
			env("RESULT_IMAGE_DIGEST", "$(results."+ResultImageDigest+".path)"),
			env("RESULT_IMAGE_URL", "$(results."+ResultImageURL+".path)"),
			env("RESULT_PUSH_STARTED", "$(results."+ResultPushStarted+".path)"),
		}, buildahEnv()...),
		VolumeMounts:     mounts,
		SecurityContext:  buildahContext(),
		ComputeResources: g.resources("build"),
	}
	index := g.indexStep(pl, inTask)
	volumes := []corev1.Volume{g.sharedVolume(), g.storageVolume()}
	if p.pushSecret != "" {
		mountSecret(&index, "REGISTRY_AUTH_DIR", volPushSecret, mountPushSecret, g.value(paramPushSecret, p.pushSecret))
		volumes = append(volumes, mountSecret(&step, "REGISTRY_AUTH_DIR", volPushSecret, mountPushSecret, g.value(paramPushSecret, p.pushSecret)))
	}
	params := tektonv1.Params{
		passString(paramContextDir),
		passString(paramContainerfile),
		passArray(paramBuildArgs),
		passString(paramImage),
		passString(paramRepository),
		passString(paramCacheRepo),
	}
	paramSpecs := tektonv1.ParamSpecs{
		stringParamSpec(paramContextDir, ""),
		stringParamSpec(paramContainerfile, ""),
		arrayParamSpec(paramBuildArgs, ""),
		stringParamSpec(paramImage, ""),
		stringParamSpec(paramRepository, ""),
		stringParamSpec(paramCacheRepo, ""),
	}
	results := []tektonv1.TaskResult{
		{Name: ResultImageDigest, Type: tektonv1.ResultsTypeString, Description: fmt.Sprintf("Digest of the pushed %s image manifest.", pl)},
		{Name: ResultImageURL, Type: tektonv1.ResultsTypeString, Description: "Repository the image was pushed to by digest (untagged)."},
		{Name: ResultPushStarted, Type: tektonv1.ResultsTypeString, Description: "When the push by digest started, seconds since the epoch (the end of the building phase)."},
		{Name: ResultIndexDigest, Type: tektonv1.ResultsTypeString, Description: "Digest of the manifest list if this task assembled and pushed it, else empty."},
		{Name: ResultIndexURL, Type: tektonv1.ResultsTypeString, Description: "Repository of the manifest list if this task pushed it, else empty."},
	}
	steps := []tektonv1.Step{step, index}
	const build = "build the %s image natively on a node of that architecture and push it to the repository by digest; the last platform's task to finish pushes the manifest list."
	description := "B" + fmt.Sprintf(build, pl)[1:]
	if inTask {
		description = "Fetch the sources into the pod, then " + fmt.Sprintf(build, pl)
		// Each platform clones for itself (every clone checks out the
		// commit the first one did, see scripts/clone.sh), into the pod's
		// own volume: no pod of its own, nothing shared on the volume.
		clone, cloneVolumes := g.cloneStep(corev1.VolumeMount{Name: volSource, MountPath: mountSource})
		clone.Env = append(clone.Env, env("RUN_DIR", mountRun))
		clone.VolumeMounts = append(clone.VolumeMounts, g.runDirMount())
		pre := []tektonv1.Step{g.prepareStep(), clone}
		source := corev1.VolumeMount{Name: volSource, MountPath: mountSource, ReadOnly: true}
		reuse := g.imageReuse()
		var bases v1alpha1.Platform // the platform whose base images preflight records
		if reuse {
			bases = pl
		}
		switch {
		case len(p.built) > 0 && p.built[0] == pl:
			// The first platform's task checks every platform's base images.
			pre = append(pre, g.preflightStep(source, g.builtPlatforms(), bases))
			description += fmt.Sprintf(" Before building, check that every image the Containerfile builds FROM offers %s.", g.platformList())
		case reuse:
			// The others, with the layer cache, read their own platform's
			// base images by digest: the key of the image reuse.
			pre = append(pre, g.preflightStep(source, []string{string(pl)}, pl))
			description += fmt.Sprintf(" Before building, check that every image the Containerfile builds FROM offers %s.", pl)
		}
		if reuse {
			steps[0].Env = append(steps[0].Env,
				env("BUILDER_IMAGE", p.builderImage),
				env("BASES_FILE", basesFile),
				env("COMMIT_FILE", "$(results."+ResultCommit+".path)"),
				env("RESULT_REUSED", "$(results."+ResultReused+".path)"))
			results = append(results, tektonv1.TaskResult{Name: ResultReused, Type: tektonv1.ResultsTypeString,
				Description: "The layer cache's record of the image this task reused instead of building (same commit, build arguments and base images), else empty."})
			description += " With the layer cache, an image built before from the same commit, build arguments and base images is reused without building."
		}
		steps = append(pre, steps...)
		volumes = append(volumes, g.sourceVolume())
		volumes = append(volumes, cloneVolumes...)
		params = append(params, passString(paramGitURL), passString(paramGitRevision))
		paramSpecs = append(paramSpecs, stringParamSpec(paramGitURL, ""), stringParamSpec(paramGitRevision, ""))
		results = append(results, cloneResults()...)
	} else {
		params = append(params, stringParam(paramSourceDateEpoch, "$(tasks."+TaskClone+".results."+ResultSourceDateEpoch+")"))
		paramSpecs = append(paramSpecs, stringParamSpec(paramSourceDateEpoch, "Commit time of the sources, the image's timestamp."))
	}
	return tektonv1.PipelineTask{
		Name:     BuildTaskName(arch),
		RunAfter: after,
		Params:   params,
		TaskSpec: &tektonv1.EmbeddedTask{
			Metadata: archMetadata(arch),
			TaskSpec: tektonv1.TaskSpec{
				Description: description,
				Params:      paramSpecs,
				Results:     results,
				Volumes:     volumes,
				Steps:       steps,
			},
		},
	}
}

// imageReuse: the build tasks key their images for reuse, with the layer
// cache, in a Containerfile build that clones in its tasks (the commit is
// then the whole build context).
func (g *generator) imageReuse() bool {
	return g.p.cacheRepo != "" && g.cloneInBuild()
}

// indexStep ends a build task: it publishes the platform's digest in the
// run's directory and, when every platform's is there, assembles and pushes
// the manifest list (scripts/push.sh). Images a retry reuses are given by
// digest. With clone inside the task, each platform also records its commit
// there and the list is only pushed when all of them built the same one.
func (g *generator) indexStep(pl v1alpha1.Platform, inTask bool) tektonv1.Step {
	p := g.p
	vars := []corev1.EnvVar{
		env("IMAGE", "$(params."+paramImage+")"),
		env("REPOSITORY", "$(params."+paramRepository+")"),
		env("REGISTRY_AUTH_DIR", ""),
		env("PLATFORM", string(pl)),
		env("INDEX_DIR", mountRun+"/index"),
		env("OWN_DIGEST_FILE", "$(results."+ResultImageDigest+".path)"),
		env("OWN_COMMIT_FILE", ""),
		env("RESULT_IMAGE_DIGEST", "$(results."+ResultIndexDigest+".path)"),
		env("RESULT_IMAGE_URL", "$(results."+ResultIndexURL+".path)"),
	}
	if inTask {
		vars[6].Value = "$(results." + ResultCommit + ".path)"
	}
	var args []string
	for _, other := range p.platforms {
		if u, ok := g.reuse(other); ok {
			vars = append(vars, env(ArchDigestResult(other.Arch()), u.Digest))
		}
		args = append(args, string(other))
	}
	return tektonv1.Step{
		Name:             StepIndex,
		Image:            p.builderImage,
		Script:           scriptPush,
		Args:             args,
		Env:              append(vars, buildahEnv()...),
		VolumeMounts:     []corev1.VolumeMount{{Name: volStorage, MountPath: mountStorage}, g.runDirMount()},
		SecurityContext:  buildahContext(),
		ComputeResources: g.resources("push"),
	}
}

// pushTask assembles and pushes the manifest list of a retry that rebuilds
// nothing: every platform's image is reused, by digest.
func (g *generator) pushTask(after []string) tektonv1.PipelineTask {
	p := g.p
	vars := []corev1.EnvVar{
		env("IMAGE", "$(params."+paramImage+")"),
		env("REPOSITORY", "$(params."+paramRepository+")"),
		env("REGISTRY_AUTH_DIR", ""),
		env("RESULT_IMAGE_DIGEST", "$(results."+ResultImageDigest+".path)"),
		env("RESULT_IMAGE_URL", "$(results."+ResultImageURL+".path)"),
	}
	params := tektonv1.Params{
		passString(paramImage),
		passString(paramRepository),
	}
	paramSpecs := tektonv1.ParamSpecs{
		stringParamSpec(paramImage, ""),
		stringParamSpec(paramRepository, ""),
	}
	var args []string
	for _, pl := range p.platforms {
		// The digest the earlier run pushed, checked by check-reused.
		u, _ := g.reuse(pl)
		name := ArchDigestResult(pl.Arch())
		params = append(params, stringParam(name, u.Digest))
		paramSpecs = append(paramSpecs, stringParamSpec(name, fmt.Sprintf("Digest of the %s image, reused from run %s.", pl, u.Run)))
		vars = append(vars, env(name, "$(params."+name+")"))
		args = append(args, string(pl))
	}
	vars = append(vars, buildahEnv()...)
	step := tektonv1.Step{
		Name:             "push",
		Image:            p.builderImage,
		Script:           scriptPush,
		Args:             args,
		Env:              vars,
		VolumeMounts:     []corev1.VolumeMount{{Name: volStorage, MountPath: mountStorage}},
		SecurityContext:  buildahContext(),
		ComputeResources: g.resources("push"),
	}
	volumes := []corev1.Volume{g.storageVolume()}
	if p.pushSecret != "" {
		volumes = append(volumes, mountSecret(&step, "REGISTRY_AUTH_DIR", volPushSecret, mountPushSecret, g.value(paramPushSecret, p.pushSecret)))
	}
	return tektonv1.PipelineTask{
		Name:     TaskPush,
		RunAfter: after,
		Params:   params,
		TaskSpec: &tektonv1.EmbeddedTask{
			Metadata: tektonv1.PipelineTaskMetadata{Labels: map[string]string{LabelManagedBy: ManagedBy}},
			TaskSpec: tektonv1.TaskSpec{
				Description: "Assemble the per-architecture images, pushed by digest by the build tasks, into one manifest list and push it with its tag.",
				Params:      paramSpecs,
				Results: []tektonv1.TaskResult{
					{Name: ResultImageDigest, Type: tektonv1.ResultsTypeString, Description: "Digest of the pushed manifest list."},
					{Name: ResultImageURL, Type: tektonv1.ResultsTypeString, Description: "Repository of the pushed manifest list (IMAGE_URL@IMAGE_DIGEST names it)."},
				},
				Volumes: volumes,
				Steps:   []tektonv1.Step{step},
			},
		},
	}
}

func (g *generator) reuse(pl v1alpha1.Platform) (Reuse, bool) {
	if g.p.retry == nil {
		return Reuse{}, false
	}
	u, ok := g.p.retry.Reused[pl]
	return u, ok
}

// checkReusedTask reads the manifest of every image a retry lists again,
// with the push credentials: the operator reads no Secret, so the registry
// is asked from the run. Arguments are triples platform digest run, values
// the plan validated (a digest, a run name, a platform).
func (g *generator) checkReusedTask(reused []v1alpha1.Platform) tektonv1.PipelineTask {
	p := g.p
	var args []string
	for _, pl := range reused {
		u := p.retry.Reused[pl]
		args = append(args, string(pl), u.Digest, u.Run)
	}
	step := tektonv1.Step{
		Name:   "check",
		Image:  p.builderImage,
		Script: scriptCheckReused,
		Args:   args,
		Env: append([]corev1.EnvVar{
			env("REPOSITORY", "$(params."+paramRepository+")"),
			env("REGISTRY_AUTH_DIR", ""),
		}, buildahEnv()...),
		VolumeMounts:     []corev1.VolumeMount{{Name: volStorage, MountPath: mountStorage}},
		SecurityContext:  buildahContext(),
		ComputeResources: g.resources("push"),
	}
	volumes := []corev1.Volume{g.storageVolume()}
	if p.pushSecret != "" {
		volumes = append(volumes, mountSecret(&step, "REGISTRY_AUTH_DIR", volPushSecret, mountPushSecret, g.value(paramPushSecret, p.pushSecret)))
	}
	return tektonv1.PipelineTask{
		Name:   TaskCheckReused,
		Params: tektonv1.Params{passString(paramRepository)},
		TaskSpec: &tektonv1.EmbeddedTask{
			Metadata: tektonv1.PipelineTaskMetadata{Labels: map[string]string{LabelManagedBy: ManagedBy}},
			TaskSpec: tektonv1.TaskSpec{
				Description: fmt.Sprintf("Check that the images this retry of run %s lists again are still in the repository; fail naming the first one that is gone.", p.retry.Of),
				Params:      tektonv1.ParamSpecs{stringParamSpec(paramRepository, "")},
				Volumes:     volumes,
				Steps:       []tektonv1.Step{step},
			},
		},
	}
}

// withErrorResult gives a task the ERROR result and every step of it the
// file to write it to (RESULT_ERROR, read by lib.sh's step_failed).
func withErrorResult(pt *tektonv1.PipelineTask) {
	ts := &pt.TaskSpec.TaskSpec
	ts.Results = append(ts.Results, tektonv1.TaskResult{
		Name: ResultError, Type: tektonv1.ResultsTypeString,
		Description: fmt.Sprintf("Written only when the task fails: why, in one line of at most %d bytes (the failing tool's own error first).", MaxErrorLen),
	})
	for i := range ts.Steps {
		ts.Steps[i].Env = append(ts.Steps[i].Env, env("RESULT_ERROR", "$(results."+ResultError+".path)"))
	}
}

func (g *generator) cleanupTask() tektonv1.PipelineTask {
	p := g.p
	step := tektonv1.Step{
		Name:   "cleanup",
		Image:  p.builderImage,
		Script: scriptCleanup,
		Env: []corev1.EnvVar{
			env("RUNS_DIR", mountRuns),
			env("RUN_NAME", g.value(paramRunName, p.runName)),
		},
		VolumeMounts:     []corev1.VolumeMount{{Name: volShared, MountPath: mountRuns, SubPath: runsDir}},
		SecurityContext:  g.toolContext(),
		ComputeResources: g.resources("cleanup"),
	}
	home := toolStep(&step)
	return tektonv1.PipelineTask{
		Name: TaskCleanup,
		TaskSpec: &tektonv1.EmbeddedTask{
			Metadata: tektonv1.PipelineTaskMetadata{Labels: map[string]string{LabelManagedBy: ManagedBy}},
			TaskSpec: tektonv1.TaskSpec{
				Description: "Remove this run's directory from the shared volume; the caches stay.",
				Volumes:     []corev1.Volume{g.sharedVolume(), home},
				Steps:       []tektonv1.Step{step},
			},
		},
	}
}

// --- helpers -----------------------------------------------------------------

// runsDir holds one directory per run on the shared volume.
const runsDir = "runs"

// RunDir is the directory of a run on the shared volume, relative to its root.
func RunDir(runName string) string { return runsDir + "/" + runName }

// runMount mounts a directory of this run's directory.
func (g *generator) runMount(mountPath, rel string, readOnly bool) corev1.VolumeMount {
	return corev1.VolumeMount{Name: volShared, MountPath: mountPath, SubPath: RunDir(g.value(paramRunName, g.p.runName)) + "/" + rel, ReadOnly: readOnly}
}

// runDirMount mounts the run's directory itself at mountRun.
func (g *generator) runDirMount() corev1.VolumeMount {
	return corev1.VolumeMount{Name: volShared, MountPath: mountRun, SubPath: RunDir(g.value(paramRunName, g.p.runName))}
}

// sourceVolume holds the clone of a build task that clones for itself: in
// the pod, off the shared volume (a checkout is many small files, which
// network file systems such as EFS write slowly), bounded like buildah's.
func (g *generator) sourceVolume() corev1.Volume {
	v := g.storageVolume()
	v.Name = volSource
	return v
}

func (g *generator) sharedVolume() corev1.Volume {
	return corev1.Volume{Name: volShared, VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: g.value(paramClaim, g.p.claim)},
	}}
}

// storageVolume is buildah's storage: node-local and thrown away with the pod.
// Keeping it off the shared volume avoids the slowness and ownership problems
// of container storage on NFS/EFS; images travel between tasks through the
// registry: each build task pushes its image by digest.
// Its size is bounded (--build-storage-limit): past it the kubelet evicts the
// pod rather than let one build fill the node's disk.
func (g *generator) storageVolume() corev1.Volume {
	ed := &corev1.EmptyDirVolumeSource{}
	if !g.s.BuildStorageLimit.IsZero() {
		ed.SizeLimit = ptr.To(g.s.BuildStorageLimit.DeepCopy())
	}
	return corev1.Volume{Name: volStorage, VolumeSource: corev1.VolumeSource{EmptyDir: ed}}
}

// resources are the requests and limits of a kind of step (--step-resources).
func (g *generator) resources(kind string) corev1.ResourceRequirements {
	if r, ok := g.s.StepResources[kind]; ok {
		return *r.DeepCopy()
	}
	return corev1.ResourceRequirements{}
}

// mountSecret mounts Secret secret read-only into step at dir and points the
// step's environment variable envName at it; it returns the task volume.
func mountSecret(step *tektonv1.Step, envName, volume, dir, secret string) corev1.Volume {
	for i := range step.Env {
		if step.Env[i].Name == envName {
			step.Env[i].Value = dir
		}
	}
	step.VolumeMounts = append(step.VolumeMounts, corev1.VolumeMount{Name: volume, MountPath: dir, ReadOnly: true})
	return secretVolume(volume, secret)
}

func secretVolume(name, secret string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: secret},
	}}
}

// buildahEnv runs buildah inside an unprivileged-enough pod: vfs storage (no
// overlay mounts, no /dev/fuse) and chroot isolation (no nested runc).
func buildahEnv() []corev1.EnvVar {
	return []corev1.EnvVar{
		env("STORAGE_DRIVER", "vfs"),
		env("BUILDAH_ISOLATION", "chroot"),
	}
}

// Build pods, hardened. Every pod: no ServiceAccount token (no step talks to
// the API server; Secrets come as volumes). Every step: no privilege
// escalation (no_new_privs) and as few capabilities as its work needs:
//
//   - prepare runs as root with CHOWN only: the directories the kubelet
//     creates for subPath mounts belong to root, and ReadWriteMany volumes
//     such as EFS seldom honour fsGroup, so it creates the run's directories
//     and the caches itself and hands them to the tool steps' user;
//   - tool steps (clone, install, maven, cleanup) run as that user
//     (--tool-steps-user, 65532; 0 keeps them root for volumes that refuse
//     chown), drop every capability and run under the runtime's default
//     seccomp profile;
//   - buildah steps (build, push) add SETFCAP, to extract layers carrying file
//     capabilities, and drop those of the runtime's default set that no build
//     uses: NET_RAW (raw sockets, ping), MKNOD (device files; OpenShift's
//     SCCs drop it too), NET_BIND_SERVICE and AUDIT_WRITE. They keep CHOWN,
//     DAC_OVERRIDE, FOWNER, FSETID (extracting and committing layers with
//     their owners and modes), SETUID, SETGID, SETPCAP (RUN as the image's
//     USER with its capability set), SYS_CHROOT (chroot isolation) and KILL.
//     Only SETFCAP is added, so the builder SCC (pipelines-scc: any UID,
//     SETFCAP) admits the pods as they are. They set no seccomp profile:
//     buildah, root without CAP_SYS_ADMIN, runs in a user namespace it
//     creates (unshare(CLONE_NEWUSER)), which the RuntimeDefault profile
//     forbids ("Error during unshare(CLONE_NEWUSER): Operation not
//     permitted", seen on the e2e tier's containerd), so they get the node's
//     default (OpenShift's pipelines-scc sets none either).
//
// No step is privileged and none uses a host namespace: Pod Security
// "baseline" admits these pods; "restricted" does not (root, SETFCAP).
func podTemplate() *pod.Template {
	return &pod.Template{AutomountServiceAccountToken: ptr.To(false)}
}

// toolContext: the tool steps run as --tool-steps-user (non-root unless an
// admin set 0) with no capability at all.
func (g *generator) toolContext() *corev1.SecurityContext {
	sc := &corev1.SecurityContext{
		RunAsUser:                ptr.To(g.s.ToolUser),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if g.s.ToolUser != 0 {
		sc.RunAsNonRoot = ptr.To(true)
		sc.RunAsGroup = ptr.To(int64(0)) // the files stay group-root, as buildah's are
	}
	return sc
}

// prepareContext: root with CHOWN only, by dropping every other capability
// of the runtime's default set (dropping is allowed by every SCC; adding
// CHOWN after dropping ALL would not be by pipelines-scc).
func prepareContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsUser:                ptr.To(int64(0)),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{
			"AUDIT_WRITE", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
			"NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func buildahContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsUser:                ptr.To(int64(0)),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities: &corev1.Capabilities{
			Add:  []corev1.Capability{"SETFCAP"},
			Drop: []corev1.Capability{"NET_RAW", "MKNOD", "NET_BIND_SERVICE", "AUDIT_WRITE"},
		},
	}
}

func archMetadata(arch string) tektonv1.PipelineTaskMetadata {
	return tektonv1.PipelineTaskMetadata{Labels: map[string]string{LabelArch: arch, LabelManagedBy: ManagedBy}}
}

func env(name, value string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: value} }

func stringParam(name, value string) tektonv1.Param {
	return tektonv1.Param{Name: name, Value: tektonv1.ParamValue{Type: tektonv1.ParamTypeString, StringVal: value}}
}

func arrayParam(name string, values []string) tektonv1.Param {
	if values == nil {
		values = []string{}
	}
	return tektonv1.Param{Name: name, Value: tektonv1.ParamValue{Type: tektonv1.ParamTypeArray, ArrayVal: values}}
}

func passString(name string) tektonv1.Param {
	return stringParam(name, "$(params."+name+")")
}

func passArray(name string) tektonv1.Param {
	return arrayParam(name, []string{"$(params." + name + "[*])"})
}

func stringParamSpec(name, description string) tektonv1.ParamSpec {
	return tektonv1.ParamSpec{Name: name, Type: tektonv1.ParamTypeString, Description: description}
}

func arrayParamSpec(name, description string) tektonv1.ParamSpec {
	return tektonv1.ParamSpec{Name: name, Type: tektonv1.ParamTypeArray, Description: description}
}

func resultOf(name, description, value string) tektonv1.PipelineResult {
	return tektonv1.PipelineResult{
		Name:        name,
		Type:        tektonv1.ResultsTypeString,
		Description: description,
		Value:       tektonv1.ResultValue{Type: tektonv1.ParamTypeString, StringVal: value},
	}
}

func pipelineResult(name, description, task, result string) tektonv1.PipelineResult {
	return tektonv1.PipelineResult{
		Name:        name,
		Type:        tektonv1.ResultsTypeString,
		Description: description,
		Value:       tektonv1.ResultValue{Type: tektonv1.ParamTypeString, StringVal: "$(tasks." + task + ".results." + result + ")"},
	}
}

package v1alpha1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RebuildAnnotation, set to any new value, starts a fresh run of the same
// generation: kubectl annotate --overwrite mab/NAME build.multiarch.io/rebuild=$(date +%s)
const RebuildAnnotation = "build.multiarch.io/rebuild"

// RetryFailedAnnotation, set to any new value, starts a run that rebuilds
// only the platforms the last run did not build, from that run's commit, and
// pushes a manifest list of the new digests and the reused digests of the
// platforms it had built:
// kubectl annotate --overwrite mab/NAME build.multiarch.io/retry-failed=$(date +%s)
// A value is used once: every run records the value it was created under,
// and a value equal to the last run's asks for nothing. The condition
// Retry says what became of the request.
const RetryFailedAnnotation = "build.multiarch.io/retry-failed"

// StrategyType names how the sources become an image.
// +kubebuilder:validation:Enum=Containerfile;NodeJS;Maven
type StrategyType string

const (
	// StrategyContainerfile builds every architecture from the same clone with buildah.
	StrategyContainerfile StrategyType = "Containerfile"
	// StrategyNodeJS installs dependencies once per architecture, on that
	// architecture's node, in an arch-private copy of the sources.
	StrategyNodeJS StrategyType = "NodeJS"
	// StrategyMaven runs Maven once (the JVM bytecode is arch-neutral), then
	// packages one image per architecture.
	StrategyMaven StrategyType = "Maven"
)

// Platform is an OS/architecture pair the image is built for.
// +kubebuilder:validation:Enum=linux/amd64;linux/arm64;linux/ppc64le;linux/s390x
type Platform string

// The platforms the operator can build for.
const (
	PlatformLinuxAMD64   Platform = "linux/amd64"
	PlatformLinuxARM64   Platform = "linux/arm64"
	PlatformLinuxPPC64LE Platform = "linux/ppc64le"
	PlatformLinuxS390X   Platform = "linux/s390x"
)

// TimeoutDuration parses spec.timeout; zero when it is empty.
func (s *MultiArchBuildSpec) TimeoutDuration() (time.Duration, error) {
	if s.Timeout == "" {
		return 0, nil
	}
	return time.ParseDuration(s.Timeout)
}

// Arch returns the architecture part of the platform ("arm64" for "linux/arm64"),
// the value of the node label kubernetes.io/arch.
func (p Platform) Arch() string {
	s := string(p)
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[i+1:]
		}
	}
	return s
}

// CapacityPolicy says whether the operator may create and scale MachineSets.
// +kubebuilder:validation:Enum=Managed;Unmanaged
type CapacityPolicy string

const (
	// CapacityManaged lets the operator create and scale OpenShift MachineSets
	// so that every requested architecture has a node.
	CapacityManaged CapacityPolicy = "Managed"
	// CapacityUnmanaged only reports whether nodes exist; it never writes a MachineSet.
	CapacityUnmanaged CapacityPolicy = "Unmanaged"
)

// The CEL rules (XValidation markers) below are one rule per field: the API
// server pays a fixed price for every rule it evaluates, whatever the rule
// (a cost tracker, an activation, garbage), on every create and every update
// of a MultiArchBuild, status updates included. A field with several
// conditions has one rule, their conjunction, whose messageExpression
// (evaluated only on rejection) gives the message of each condition that
// fails; message is the fallback should that expression fail. Keep
// messageExpressions to plain concatenation: the API server estimates list
// macros such as filter and join as too costly and refuses the CRD.
// hack/bench/celcost measures what the rules cost.

// MultiArchBuildSpec is what the user asks for: a source, how to build it,
// the platforms and where to push the manifest list.
type MultiArchBuildSpec struct {
	// source is the Git repository to build.
	// +required
	Source SourceSpec `json:"source"`

	// strategy says how the sources become an image: Containerfile, NodeJS or Maven.
	// +kubebuilder:default={}
	// +optional
	Strategy StrategySpec `json:"strategy,omitempty"`

	// platforms are the OS/architecture pairs to build natively, one node of each
	// architecture. Allowed: linux/amd64, linux/arm64, linux/ppc64le, linux/s390x;
	// each at most once; 1 to 4 entries.
	// +kubebuilder:default={"linux/amd64","linux/arm64"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	// +listType=set
	// +optional
	Platforms []Platform `json:"platforms,omitempty"`

	// output is the image repository the manifest list is pushed to.
	// +required
	Output OutputSpec `json:"output"`

	// workspace is the ReadWriteMany volume the per-architecture tasks share
	// (sources, per-arch OCI archives, npm and Maven caches).
	// +kubebuilder:default={}
	// +optional
	Workspace WorkspaceSpec `json:"workspace,omitempty"`

	// capacity says whether the operator may create or scale OpenShift MachineSets
	// so that nodes of every requested architecture exist.
	// +kubebuilder:default={}
	// +optional
	Capacity CapacitySpec `json:"capacity,omitempty"`

	// builderImage overrides the operator's buildah image for this build. The
	// image must be multi-arch: it runs on a node of every requested architecture.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self == '' || self.matches('^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$')",message="spec.builderImage must be an image reference registry/repository[:tag][@sha256:digest]"
	// +optional
	BuilderImage string `json:"builderImage,omitempty"`

	// serviceAccountName is the ServiceAccount the build pods run as. Empty
	// means the operator-managed "multiarch-builder".
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == '' || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="spec.serviceAccountName must be a ServiceAccount name: lowercase letters, digits, '-' and '.'"
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// timeout bounds the whole PipelineRun, as a Go duration such as 30m or 1h.
	// A string, not a metav1.Duration: a typed read-modify-write would turn "1h"
	// into "1h0m0s", bump the generation and start a needless build.
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s')",message="spec.timeout must be a positive duration such as 30m, 1h or 1h30m"
	// +optional
	Timeout string `json:"timeout,omitempty"`

	// runHistoryLimit is how many finished PipelineRuns are kept (0-20).
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=20
	// +optional
	RunHistoryLimit *int32 `json:"runHistoryLimit,omitempty"`
}

// SourceSpec is where the sources come from.
type SourceSpec struct {
	// git is the repository to clone.
	// +required
	Git GitSource `json:"git"`

	// contextDir is the directory inside the repository that holds the sources
	// to build, relative to the repository root, without "..". The build fails
	// if it resolves, through symlinks in the repository, outside the clone.
	// +kubebuilder:default="."
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="(!self.startsWith('/')) && (self != '..' && !self.startsWith('../') && !self.endsWith('/..') && !self.contains('/../')) && (self.matches('^[A-Za-z0-9._@+/-]*$'))",messageExpression="((!self.startsWith('/')) ? '' : 'spec.source.contextDir must be relative to the repository root, not absolute. ') + ((self != '..' && !self.startsWith('../') && !self.endsWith('/..') && !self.contains('/../')) ? '' : \"spec.source.contextDir must stay inside the repository: '..' is not allowed. \") + ((self.matches('^[A-Za-z0-9._@+/-]*$')) ? '' : 'spec.source.contextDir may contain only letters, digits and . _ @ + - /. ')",message="spec.source.contextDir must be a relative path inside the repository of letters, digits and . _ @ + - /, without '..'"
	// +optional
	ContextDir string `json:"contextDir,omitempty"`
}

// GitSource is a Git repository and revision.
type GitSource struct {
	// url of the repository: https://, http://, ssh://, git:// or scp-like user@host:path.
	// It carries no credentials (use secretRef) and neither it nor its user,
	// host, port or scp-like path starts with '-'.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="(self.matches('^(https?|ssh|git)://[^[:space:]/@]+(@[^[:space:]/@]+)?(/[^[:space:]]*)?$') || self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^[:space:]]+$')) && (self.matches('^[][A-Za-z0-9._~:/?#@!&()*+,=%-]+$')) && (!self.startsWith('-') && !self.matches('^[A-Za-z0-9+.-]*://([^/]*[@:[])?-') && !self.matches('^[^/:]*@([^/:]*:)?-')) && (!self.matches('^(https?|git)://[^/@]*@') && !self.matches('^ssh://[^/@]*:[^/@]*@') && !self.matches('^[^/@:]*:[^/@]*@'))",messageExpression="((self.matches('^(https?|ssh|git)://[^[:space:]/@]+(@[^[:space:]/@]+)?(/[^[:space:]]*)?$') || self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^[:space:]]+$')) ? '' : 'spec.source.git.url must be an https://, http://, ssh:// or git:// URL, or scp-like user@host:path, without spaces. ') + ((self.matches('^[][A-Za-z0-9._~:/?#@!&()*+,=%-]+$')) ? '' : 'spec.source.git.url may contain only URL characters (letters, digits and - . _ ~ : / ? # [ ] @ ! & ( ) * + , = %); spaces, quotes and shell characters such as $ ; | < > are not allowed. ') + ((!self.startsWith('-') && !self.matches('^[A-Za-z0-9+.-]*://([^/]*[@:[])?-') && !self.matches('^[^/:]*@([^/:]*:)?-')) ? '' : \"spec.source.git.url must not start with '-', and neither may its user, host or port, nor the path of a user@host:path URL: git and ssh would take it as a command-line option; give the repository as https://host/org/repo.git, ssh://git@host/org/repo.git or git@host:org/repo.git. \") + ((!self.matches('^(https?|git)://[^/@]*@') && !self.matches('^ssh://[^/@]*:[^/@]*@') && !self.matches('^[^/@:]*:[^/@]*@')) ? '' : 'spec.source.git.url must not embed credentials (https://user:password@host/..., https://token@host/... or a password in an ssh URL): remove them from the URL, store them in a kubernetes.io/basic-auth or kubernetes.io/ssh-auth Secret and name it in spec.source.git.secretRef. ')",message="spec.source.git.url must be an https://, http://, ssh:// or git:// URL, or scp-like user@host:path, of URL characters only, without credentials, and none of its parts may start with '-'"
	URL string `json:"url"`

	// revision is the branch, tag or commit SHA to build.
	// +kubebuilder:default="main"
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9_][A-Za-z0-9._/+-]*$') && !self.contains('..') && !self.endsWith('.lock') && !self.endsWith('/')",message="spec.source.git.revision must be a branch, tag or commit SHA: letters, digits and . _ / + -, not starting with '-' and without '..'"
	// +optional
	Revision string `json:"revision,omitempty"`

	// secretRef names a Secret in the build's namespace with Git credentials
	// (kubernetes.io/basic-auth or kubernetes.io/ssh-auth) for a private repository.
	// A basic-auth user name and password are given only to the scheme and host
	// of url, never to a submodule on another host.
	// +optional
	SecretRef *corev1.LocalObjectReference `json:"secretRef,omitempty"`
}

// StrategySpec says how sources become an image.
// +kubebuilder:validation:XValidation:rule="!has(self.nodejs) || self.type == 'NodeJS'",message="spec.strategy.nodejs is only allowed when spec.strategy.type is NodeJS",fieldPath=".nodejs"
// +kubebuilder:validation:XValidation:rule="!has(self.maven) || self.type == 'Maven'",message="spec.strategy.maven is only allowed when spec.strategy.type is Maven",fieldPath=".maven"
type StrategySpec struct {
	// type is Containerfile, NodeJS or Maven.
	// +kubebuilder:default=Containerfile
	// +optional
	Type StrategyType `json:"type,omitempty"`

	// containerfile is the path of the Containerfile (or Dockerfile), relative to
	// contextDir, without "..". The build fails unless it resolves, through
	// symlinks in the repository, to a regular file inside the clone.
	// +kubebuilder:default=Containerfile
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="(!self.startsWith('/')) && (self != '..' && !self.startsWith('../') && !self.endsWith('/..') && !self.contains('/../')) && (self.matches('^[A-Za-z0-9._@+/-]+$'))",messageExpression="((!self.startsWith('/')) ? '' : 'spec.strategy.containerfile must be relative to contextDir, not absolute. ') + ((self != '..' && !self.startsWith('../') && !self.endsWith('/..') && !self.contains('/../')) ? '' : \"spec.strategy.containerfile must stay inside contextDir: '..' is not allowed. \") + ((self.matches('^[A-Za-z0-9._@+/-]+$')) ? '' : 'spec.strategy.containerfile may contain only letters, digits and . _ @ + - /. ')",message="spec.strategy.containerfile must be a relative path inside contextDir of letters, digits and . _ @ + - /, without '..'"
	// +optional
	Containerfile string `json:"containerfile,omitempty"`

	// buildArgs become --build-arg NAME=VALUE for every architecture.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	// +optional
	BuildArgs []BuildArg `json:"buildArgs,omitempty"`

	// nodejs configures the NodeJS strategy; only allowed with type NodeJS.
	// +optional
	NodeJS *NodeJSStrategy `json:"nodejs,omitempty"`

	// maven configures the Maven strategy; only allowed with type Maven.
	// +optional
	Maven *MavenStrategy `json:"maven,omitempty"`
}

// BuildArg is one --build-arg NAME=VALUE.
type BuildArg struct {
	// name of the build argument, as referenced by ARG in the Containerfile.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z_][A-Za-z0-9_]*$')",message="spec.strategy.buildArgs[].name must be a variable name: letters, digits and _, not starting with a digit"
	Name string `json:"name"`

	// value of the build argument. Passed to buildah as an argument, never
	// through a shell.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Value string `json:"value,omitempty"`
}

// NodeJSStrategy configures the per-architecture dependency install.
type NodeJSStrategy struct {
	// image runs the install step; it must be multi-arch and ship node and npm.
	// +kubebuilder:default="registry.access.redhat.com/ubi9/nodejs-20"
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$')",message="spec.strategy.nodejs.image must be an image reference registry/repository[:tag][@sha256:digest]"
	// +optional
	Image string `json:"image,omitempty"`

	// installCommand installs the dependencies. Default: "npm ci" when
	// package-lock.json exists, else "npm install". It is split on spaces and
	// run as a plain argument list, not by a shell.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9_./:=@+,%-]+( [A-Za-z0-9_./:=@+,%-]+)*$')",message="spec.strategy.nodejs.installCommand is run as a plain argument list, not by a shell: words of letters, digits and _ . / : = @ + , % - separated by single spaces; shell operators such as ; & | $ > and quotes are not allowed"
	// +optional
	InstallCommand string `json:"installCommand,omitempty"`
}

// MavenStrategy configures the single Maven build.
type MavenStrategy struct {
	// image runs Maven; it must be multi-arch and ship mvn.
	// +kubebuilder:default="registry.access.redhat.com/ubi9/openjdk-21"
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$')",message="spec.strategy.maven.image must be an image reference registry/repository[:tag][@sha256:digest]"
	// +optional
	Image string `json:"image,omitempty"`

	// goals are the Maven arguments, each passed as one argument to mvn.
	// +kubebuilder:default={"package","-DskipTests"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.all(g, g.matches('^[A-Za-z0-9_:.=/,+@-]+$'))",message="spec.strategy.maven.goals entries may contain only letters, digits and _ : . = / , + @ -; shell metacharacters and spaces are not allowed"
	// +optional
	Goals []string `json:"goals,omitempty"`

	// settingsSecretRef names a Secret with a settings.xml key for Maven.
	// +optional
	SettingsSecretRef *corev1.LocalObjectReference `json:"settingsSecretRef,omitempty"`
}

// OutputSpec is where the manifest list goes.
type OutputSpec struct {
	// image is registry/repository[:tag]; the tag defaults to latest. A digest
	// is not allowed: the pushed digest is reported in status.digest.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.contains('@') && self.matches('^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$')",messageExpression="self.contains('@') ? 'spec.output.image must not carry a digest (@sha256:...): give registry/repository[:tag]; the pushed digest is reported in status.digest' : 'spec.output.image must be a lowercase image reference registry/repository[:tag], for example quay.io/team/app:1.0'",message="spec.output.image must be a lowercase image reference registry/repository[:tag] without a digest, for example quay.io/team/app:1.0"
	Image string `json:"image"`

	// pushSecretRef names a kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg
	// Secret with the registry credentials used to push.
	// +optional
	PushSecretRef *corev1.LocalObjectReference `json:"pushSecretRef,omitempty"`

	// layerCache keeps the layers buildah makes in a registry repository,
	// keyed by what made them (base image, instruction, files copied), and
	// reuses them in the next build of the same architecture: an unchanged
	// rebuild builds nothing, a change to the sources rebuilds from the first
	// instruction that sees it. On by default, in the output image's own
	// repository (the push Secret is then enough).
	// +optional
	LayerCache *LayerCacheSpec `json:"layerCache,omitempty"`
}

// LayerCacheMode says whether layers are cached in a registry.
// +kubebuilder:validation:Enum=Registry;Disabled
type LayerCacheMode string

const (
	// LayerCacheRegistry pulls cached layers from, and pushes new ones to,
	// the cache repository (buildah --layers --cache-from --cache-to).
	LayerCacheRegistry LayerCacheMode = "Registry"
	// LayerCacheDisabled builds every layer every time.
	LayerCacheDisabled LayerCacheMode = "Disabled"
)

// LayerCacheSpec is where a build's layers are cached.
type LayerCacheSpec struct {
	// mode Registry (the default) caches layers in repository; Disabled
	// builds every layer every time.
	// +kubebuilder:default=Registry
	// +optional
	Mode LayerCacheMode `json:"mode,omitempty"`

	// repository is registry/repository, without tag or digest, that holds
	// the cached layers as tags named by their cache key. It defaults to the
	// repository of spec.output.image. Whoever can push to it can choose the
	// layers later builds reuse: give a repository only those who may push
	// the output image can write to.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*)+$')",message="spec.output.layerCache.repository must be a lowercase repository registry/repository, without tag or digest, for example quay.io/team/app-cache"
	// +optional
	Repository string `json:"repository,omitempty"`
}

// WorkspaceSpec is the shared ReadWriteMany volume.
type WorkspaceSpec struct {
	// storageClassName must provide ReadWriteMany volumes (for example EFS).
	// +kubebuilder:default="efs-csi"
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="spec.workspace.storageClassName must be a StorageClass name: lowercase letters, digits, '-' and '.'"
	// +optional
	StorageClassName string `json:"storageClassName,omitempty"`

	// size of the volume, for example 10Gi.
	// +kubebuilder:default="10Gi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="spec.workspace.size must be a positive quantity such as 10Gi"
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
}

// CapacitySpec is how nodes of every architecture come to exist.
type CapacitySpec struct {
	// policy Managed lets the operator create and scale OpenShift MachineSets;
	// Unmanaged only reports whether nodes exist.
	// +kubebuilder:default=Managed
	// +optional
	Policy CapacityPolicy `json:"policy,omitempty"`

	// instanceTypes overrides the operator's default instance type per
	// architecture (keys amd64, arm64, ppc64le, s390x), for example {arm64: m6g.2xlarge}.
	// +kubebuilder:validation:MaxProperties=4
	// +kubebuilder:validation:XValidation:rule="(self.all(k, k in ['amd64', 'arm64', 'ppc64le', 's390x'])) && (self.all(k, self[k].matches('^[a-z0-9-]+[.][a-z0-9-]+$')))",messageExpression="((self.all(k, k in ['amd64', 'arm64', 'ppc64le', 's390x'])) ? '' : 'spec.capacity.instanceTypes keys must be architectures: amd64, arm64, ppc64le or s390x. ') + ((self.all(k, self[k].matches('^[a-z0-9-]+[.][a-z0-9-]+$'))) ? '' : 'spec.capacity.instanceTypes values must be instance types such as m6g.2xlarge. ')",message="spec.capacity.instanceTypes keys must be architectures (amd64, arm64, ppc64le or s390x) and values instance types such as m6g.2xlarge"
	// +optional
	InstanceTypes map[string]string `json:"instanceTypes,omitempty"`
}

// Phase summarises where the build is.
// +kubebuilder:validation:Enum=Pending;Provisioning;Building;Succeeded;Failed
type Phase string

// The phases of a MultiArchBuild.
const (
	PhasePending      Phase = "Pending"
	PhaseProvisioning Phase = "Provisioning"
	PhaseBuilding     Phase = "Building"
	PhaseSucceeded    Phase = "Succeeded"
	PhaseFailed       Phase = "Failed"
)

// PlatformState is the state of one architecture's build.
// +kubebuilder:validation:Enum=Waiting;Building;Built;Failed;Cancelled
type PlatformState string

// The states of one platform's build. Cancelled: the platform did not fail,
// it was stopped: the run was cancelled (by the operator after a preflight
// failure, for lack of a node, or by someone else).
const (
	PlatformWaiting   PlatformState = "Waiting"
	PlatformBuilding  PlatformState = "Building"
	PlatformBuilt     PlatformState = "Built"
	PlatformFailed    PlatformState = "Failed"
	PlatformCancelled PlatformState = "Cancelled"
)

// MultiArchBuildStatus is what the operator observed.
type MultiArchBuildStatus struct {
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase summarises the build: Pending, Provisioning, Building, Succeeded or Failed.
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// conditions: Ready, PipelinesAvailable, StorageReady, CapacityReady, Succeeded.
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// latestRun is the PipelineRun of the latest build.
	// +optional
	LatestRun *RunReference `json:"latestRun,omitempty"`

	// platforms reports the build of each requested platform.
	// +listType=map
	// +listMapKey=platform
	// +optional
	Platforms []PlatformStatus `json:"platforms,omitempty"`

	// revision is the Git commit that was built.
	// +optional
	Revision string `json:"revision,omitempty"`

	// digest is the digest of the pushed manifest list (OCI index).
	// +optional
	Digest string `json:"digest,omitempty"`

	// image is the pushed manifest list by digest: repository@sha256:...
	// +optional
	Image string `json:"image,omitempty"`

	// buildSeconds summarises the building phase of each platform in the
	// current run, e.g. "amd64=95s arm64=130s" ("reused" for a platform a
	// retry did not rebuild); the wide column of kubectl get.
	// +optional
	BuildSeconds string `json:"buildSeconds,omitempty"`
}

// RunReference points at one PipelineRun.
type RunReference struct {
	// name of the PipelineRun.
	Name string `json:"name"`
	// generation of the spec the run builds.
	Generation int64 `json:"generation"`
	// startTime of the run.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// completionTime of the run.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// revision is the Git commit the run cloned, as soon as its clone task
	// reports it (also for a run that failed later: a retry builds from it).
	// +optional
	Revision string `json:"revision,omitempty"`
	// retryOf is the run whose failed platforms this run rebuilds (annotation
	// build.multiarch.io/retry-failed); empty for a full run.
	// +optional
	RetryOf string `json:"retryOf,omitempty"`
}

// PlatformStatus is the build of one platform.
type PlatformStatus struct {
	// platform, for example linux/arm64.
	Platform Platform `json:"platform"`
	// state is Waiting, Building, Built or Failed.
	State PlatformState `json:"state"`
	// digest of the per-architecture image manifest.
	// +optional
	Digest string `json:"digest,omitempty"`
	// nodeName is the node the architecture was built on.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// message explains a Waiting, Failed or Cancelled state, or why a
	// Built platform was not built again (its image was reused).
	// +optional
	Message string `json:"message,omitempty"`
	// nodeWait is how long this platform's run waited for a usable node
	// of its architecture, and which MachineSet and instance type the
	// operator scaled up for it: what the build cost in node time. Absent
	// when a node was there from the start.
	// +optional
	NodeWait *NodeWait `json:"nodeWait,omitempty"`
	// reusedFrom is the run that built this platform's image when the
	// current run, a retry (annotation build.multiarch.io/retry-failed),
	// did not rebuild it but listed its digest again.
	// +optional
	ReusedFrom string `json:"reusedFrom,omitempty"`
	// timings are the phases of this platform's build in the current run,
	// from its TaskRuns' start, completion and step times. Absent for a
	// reused platform.
	// +optional
	Timings *PlatformTimings `json:"timings,omitempty"`
}

// PlatformTimings are the phases of one platform's build, each from Tekton's
// TaskRun status.
type PlatformTimings struct {
	// waiting is from the creation of the platform's first TaskRun
	// (install-<arch> for NodeJS, else build-<arch>) until its first step
	// runs: scheduling, image pulls, init containers.
	// +optional
	Waiting *PhaseTiming `json:"waiting,omitempty"`
	// installing is the install step of install-<arch> (NodeJS only).
	// +optional
	Installing *PhaseTiming `json:"installing,omitempty"`
	// building is the build step of build-<arch> until it starts pushing
	// (the whole step when it did not get that far).
	// +optional
	Building *PhaseTiming `json:"building,omitempty"`
	// pushing is the build step from the start of its push by digest (the
	// task's PUSH_STARTED result) until the step ended.
	// +optional
	Pushing *PhaseTiming `json:"pushing,omitempty"`
}

// PhaseTiming is one phase: when it started, when it ended, how long it took.
type PhaseTiming struct {
	// start of the phase.
	// +required
	Start metav1.Time `json:"start"`
	// end of the phase; absent while it lasts.
	// +optional
	End *metav1.Time `json:"end,omitempty"`
	// seconds is end - start in whole seconds, once end is set.
	// +optional
	Seconds *int64 `json:"seconds,omitempty"`
}

// NodeWait is one platform's wait for a node, for one run.
type NodeWait struct {
	// run is the PipelineRun the wait was for (a new run, from a new
	// generation or rebuild token, starts a new wait).
	// +required
	Run string `json:"run"`
	// since is when the operator first found no usable node.
	// +required
	Since metav1.Time `json:"since"`
	// until is when a node became usable, or when the operator gave up
	// (the build then failed with reason ProvisioningFailed or
	// ProvisioningTimeout).
	// +optional
	Until *metav1.Time `json:"until,omitempty"`
	// seconds is until - since, in whole seconds, once until is set.
	// +optional
	Seconds *int64 `json:"seconds,omitempty"`
	// machineSet is the operator's MachineSet that was scaled up for it,
	// empty when a node came from elsewhere.
	// +optional
	MachineSet string `json:"machineSet,omitempty"`
	// instanceType is that MachineSet's instance type (AWS), VM size
	// (Azure) or machine type (GCP).
	// +optional
	InstanceType string `json:"instanceType,omitempty"`
}

// The CEL rule on metadata.name of the MultiArchBuild CRD: a build's name
// labels its PipelineRuns and TaskRuns, and label values are limited to 63
// characters. controller-gen writes no schema under metadata, so
// hack/crdpatch (run by make manifests) adds the rule to the generated CRD.
// On metadata.name, not at the root of the object as a
// +kubebuilder:validation:XValidation marker on the type would put it: a rule
// at the root is the costliest kind (the API server builds a view of the
// root's schema with metadata on every evaluation), two to three times a rule
// on a string field, on every create and update (hack/bench/celcost -offline).
const (
	NameValidationRule    = "size(self) <= 63"
	NameValidationMessage = "metadata.name must be at most 63 characters: it labels the build's PipelineRuns and TaskRuns, and label values are limited to 63"
)

// MultiArchBuild builds a container image natively on a node of every requested
// CPU architecture and pushes one manifest list.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mab,categories=all
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.output.image`
// +kubebuilder:printcolumn:name="Digest",type=string,JSONPath=`.status.digest`
// +kubebuilder:printcolumn:name="Platforms",type=string,JSONPath=`.spec.platforms`
// +kubebuilder:printcolumn:name="Build-Seconds",type=string,JSONPath=`.status.buildSeconds`,priority=1
// +kubebuilder:printcolumn:name="Run",type=string,JSONPath=`.status.latestRun.name`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MultiArchBuild struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the build the user asks for.
	// +required
	Spec MultiArchBuildSpec `json:"spec"`

	// status is what the operator observed.
	// +optional
	Status MultiArchBuildStatus `json:"status,omitempty"`
}

// MultiArchBuildList is a list of MultiArchBuilds.
// +kubebuilder:object:root=true
type MultiArchBuildList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MultiArchBuild `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MultiArchBuild{}, &MultiArchBuildList{})
}

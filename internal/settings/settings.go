// Package settings holds the operator-level configuration: the defaults that a
// MultiArchBuild does not carry itself (images, instance types, tolerations,
// MachineSet scaling). Every field is a command-line flag of the manager.
package settings

import (
	"encoding/json"
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Settings is the operator's configuration. The zero value is not useful; start
// from Default().
type Settings struct {
	// BuilderImage runs buildah (build and push tasks). Must be multi-arch.
	BuilderImage string
	// GitImage runs the clone task (needs bash and git). Must be multi-arch.
	GitImage string
	// NodeJSImage is the default image of the NodeJS install step.
	NodeJSImage string
	// MavenImage is the default image of the Maven step.
	MavenImage string
	// ServiceAccountName is the ServiceAccount build pods run as when the spec
	// names none; the operator creates it in the build's namespace when absent.
	ServiceAccountName string
	// BuilderClusterRole is bound to the builder ServiceAccount in each build
	// namespace (a RoleBinding of the same name as the account). It grants
	// "use" of the SecurityContextConstraints buildah needs on OpenShift;
	// empty disables the binding.
	BuilderClusterRole string

	// InstanceTypes is the default cloud instance type per architecture
	// (kubernetes.io/arch value) for MachineSets the operator creates.
	InstanceTypes map[string]string
	// Tolerations are added to the build pods of an architecture, and a node
	// taint they tolerate does not make the node unusable.
	Tolerations map[string][]corev1.Toleration
	// MachineSetZones are the availability zones MachineSets are created in;
	// empty means the zone of the template MachineSet.
	MachineSetZones []string
	// MachineSetReplicas is the replica count of a managed MachineSet while a
	// build needs its architecture.
	MachineSetReplicas int32
	// MachineSetIdleTimeout is how long a managed MachineSet stays scaled up
	// with no build needing it.
	MachineSetIdleTimeout time.Duration
	// MachineAPINamespace holds the MachineSets.
	MachineAPINamespace string
	// StartRunsWhileProvisioning starts a build's run while a node of one
	// of its architectures is still being provisioned (capacity on its way,
	// not Terminal, not Failed): clone, preflight and Maven run during the
	// node's boot and only the architecture tasks wait for it (their pods
	// stay Pending until it joins). Off: the run starts once every
	// architecture has a node (gate, then run).
	StartRunsWhileProvisioning bool

	// TektonNamespace holds Tekton's feature-flags ConfigMap; empty means try
	// openshift-pipelines, then tekton-pipelines.
	TektonNamespace string

	// StepResources are the requests and limits of each kind of build step
	// (StepKinds), so a build is scheduled for what it uses and one build
	// cannot take a node's memory from other tenants' pods.
	StepResources map[string]corev1.ResourceRequirements
	// ToolUser is the user the tool steps (clone, install, maven, cleanup)
	// run as; the prepare step hands the run's directories and the caches on
	// the shared volume to it. 0 runs them as root, for volumes that refuse
	// chown (an EFS access point that forces its own owner).
	ToolUser int64
	// BuildStorageLimit bounds buildah's node-local storage (an emptyDir) per
	// build and push pod: past it the kubelet evicts the pod instead of
	// letting one build fill the node's disk.
	BuildStorageLimit resource.Quantity

	// LayerCache lets builds cache their layers in a registry
	// (spec.output.layerCache, on by default); false turns the cache off
	// for every build, whatever its spec says.
	LayerCache bool

	// HTTPProxy, HTTPSProxy and NoProxy reach every build step where the
	// cluster has no proxy of its own (proxies.config.openshift.io/cluster
	// status wins), for vanilla Kubernetes.
	HTTPProxy, HTTPSProxy, NoProxy string
	// TrustedCAConfigMap (NAMESPACE/NAME, key ca-bundle.crt) is a PEM
	// bundle every build step trusts, besides its image's own CAs.
	TrustedCAConfigMap string
	// RegistriesConfigMap (NAMESPACE/NAME, key registries.conf) is a
	// registries.conf drop-in for buildah.
	RegistriesConfigMap string
}

// StepKinds are the kinds of steps of a generated run, the keys of
// StepResources.
var StepKinds = []string{"prepare", "clone", "install", "maven", "build", "push", "cleanup"}

func requirements(cpu, memory, memoryLimit string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory)},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memoryLimit)},
	}
}

// DefaultStepResources: modest requests (a build waits for a node with room,
// and a two-core node still runs a few builds at once), memory limits that fit
// npm, Maven and buildah's image commits; no CPU limit (throttling a build
// only makes it slower).
func DefaultStepResources() map[string]corev1.ResourceRequirements {
	return map[string]corev1.ResourceRequirements{
		"prepare": requirements("10m", "16Mi", "128Mi"),
		"clone":   requirements("100m", "128Mi", "1Gi"),
		"install": requirements("250m", "512Mi", "4Gi"),
		"maven":   requirements("500m", "1Gi", "4Gi"),
		"build":   requirements("250m", "512Mi", "8Gi"),
		"push":    requirements("100m", "256Mi", "2Gi"),
		"cleanup": requirements("10m", "16Mi", "256Mi"),
	}
}

// RelatedImageEnv names, by the CSV's relatedImages name, the environment
// variable that sets each image's default. OLM's convention: the Deployment
// carries the images as RELATED_IMAGE_* variables, so a mirror (or an admin's
// Subscription config) replaces them without changing the manager's
// arguments, which OLM cannot set. Flags still win.
var RelatedImageEnv = map[string]string{
	"buildah": "RELATED_IMAGE_BUILDAH",
	"git":     "RELATED_IMAGE_GIT",
	"nodejs":  "RELATED_IMAGE_NODEJS",
	"maven":   "RELATED_IMAGE_MAVEN",
}

// RelatedImages are the images of the settings by relatedImages name.
func (s *Settings) RelatedImages() map[string]*string {
	return map[string]*string{"buildah": &s.BuilderImage, "git": &s.GitImage, "nodejs": &s.NodeJSImage, "maven": &s.MavenImage}
}

// ApplyEnvironment takes the images' defaults from the RELATED_IMAGE_*
// variables that are set and not empty. Call it before flags are parsed.
func (s *Settings) ApplyEnvironment(lookup func(string) (string, bool)) {
	for name, field := range s.RelatedImages() {
		if v, ok := lookup(RelatedImageEnv[name]); ok && strings.TrimSpace(v) != "" {
			*field = strings.TrimSpace(v)
		}
	}
}

// Default returns the settings the operator starts with.
func Default() Settings {
	return Settings{
		BuilderImage:       "quay.io/buildah/stable:v1.41",
		GitImage:           "registry.redhat.io/openshift-pipelines/pipelines-git-init-rhel9:v1.17",
		NodeJSImage:        "registry.access.redhat.com/ubi9/nodejs-20",
		MavenImage:         "registry.access.redhat.com/ubi9/openjdk-21",
		ServiceAccountName: "multiarch-builder",
		BuilderClusterRole: "multiarch-build-builder-scc",
		InstanceTypes: map[string]string{
			"amd64": "m5a.2xlarge",
			"arm64": "m6g.2xlarge",
		},
		Tolerations:                map[string][]corev1.Toleration{},
		MachineSetReplicas:         1,
		MachineSetIdleTimeout:      30 * time.Minute,
		StartRunsWhileProvisioning: true,
		MachineAPINamespace:        "openshift-machine-api",
		StepResources:              DefaultStepResources(),
		ToolUser:                   65532,
		BuildStorageLimit:          resource.MustParse("20Gi"),
		LayerCache:                 true,
	}
}

// BindFlags registers every setting as a flag on fs, with s's values as defaults.
func (s *Settings) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&s.BuilderImage, "builder-image", s.BuilderImage,
		"Default buildah image of the build and push tasks (multi-arch). A MultiArchBuild's spec.builderImage overrides it.")
	fs.StringVar(&s.GitImage, "git-image", s.GitImage,
		"Image of the clone task; needs bash and git (multi-arch).")
	fs.StringVar(&s.NodeJSImage, "nodejs-image", s.NodeJSImage,
		"Default image of the NodeJS install step when spec.strategy.nodejs.image is empty.")
	fs.StringVar(&s.MavenImage, "maven-image", s.MavenImage,
		"Default image of the Maven step when spec.strategy.maven.image is empty.")
	fs.StringVar(&s.ServiceAccountName, "builder-service-account", s.ServiceAccountName,
		"ServiceAccount build pods run as when spec.serviceAccountName is empty; created in the build's namespace when absent.")
	fs.StringVar(&s.BuilderClusterRole, "builder-cluster-role", s.BuilderClusterRole,
		"ClusterRole bound to the builder ServiceAccount in each build namespace (SCC use for buildah on OpenShift); empty: no binding.")
	fs.Var(mapFlag{s.InstanceTypes}, "instance-type",
		"Default instance type of MachineSets created for an architecture, as ARCH=TYPE; repeatable (defaults: amd64=m5a.2xlarge, arm64=m6g.2xlarge).")
	fs.Var(tolerationFlag{s.Tolerations}, "arch-toleration",
		"Toleration added to the build pods of an architecture, as ARCH:KEY[=VALUE][:EFFECT]; repeatable. Example: arm64:arch=arm64:NoSchedule.")
	fs.Var(listFlag{&s.MachineSetZones}, "machineset-zones",
		"Comma-separated availability zones to create build MachineSets in (default: the zone of the template worker MachineSet).")
	fs.Func("machineset-replicas", fmt.Sprintf("Replicas of a managed MachineSet while builds need its architecture (default %d).", s.MachineSetReplicas), func(v string) error {
		var n int32
		if _, err := fmt.Sscan(v, &n); err != nil || n < 1 || n > 10 {
			return fmt.Errorf("must be a whole number from 1 to 10, got %q", v)
		}
		s.MachineSetReplicas = n
		return nil
	})
	fs.DurationVar(&s.MachineSetIdleTimeout, "machineset-idle-timeout", s.MachineSetIdleTimeout,
		"How long a MachineSet the operator manages stays scaled up with no build needing its architecture, before it goes back to 0.")
	fs.BoolVar(&s.StartRunsWhileProvisioning, "start-runs-while-provisioning", s.StartRunsWhileProvisioning,
		"Start a build's run while a node of one of its architectures is being provisioned, so that clone, preflight and Maven run during the node's boot and only the architecture tasks wait for it; false starts the run once every architecture has a node.")
	fs.BoolVar(&s.LayerCache, "layer-cache", s.LayerCache,
		"Let builds cache their layers in a registry repository (spec.output.layerCache, the output repository by default); false builds every layer every time, whatever the specs say.")
	fs.StringVar(&s.MachineAPINamespace, "machine-api-namespace", s.MachineAPINamespace,
		"Namespace of the OpenShift MachineSets.")
	fs.StringVar(&s.TektonNamespace, "tekton-namespace", s.TektonNamespace,
		"Namespace of Tekton's feature-flags ConfigMap (default: openshift-pipelines, then tekton-pipelines).")
	fs.Func("step-resources", `Requests and limits of a kind of build step, as JSON {"KIND": {"requests": {...}, "limits": {...}}}, KIND one of `+
		strings.Join(StepKinds, ", ")+`; the kinds given replace their defaults. Example: {"build": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "16Gi"}}}`,
		func(v string) error {
			var m map[string]corev1.ResourceRequirements
			if err := json.Unmarshal([]byte(v), &m); err != nil {
				return fmt.Errorf("not a JSON object of ResourceRequirements by step kind: %w", err)
			}
			for k, r := range m {
				if !slices.Contains(StepKinds, k) {
					return fmt.Errorf("unknown step kind %q (kinds: %s)", k, strings.Join(StepKinds, ", "))
				}
				s.StepResources[k] = r
			}
			return nil
		})
	fs.Int64Var(&s.ToolUser, "tool-steps-user", s.ToolUser,
		"User the clone, install, maven and cleanup steps run as (non-root); 0 runs them as root, for shared volumes that refuse chown.")
	fs.StringVar(&s.HTTPProxy, "http-proxy", s.HTTPProxy,
		"HTTP_PROXY of every build step where proxies.config.openshift.io/cluster has none (vanilla Kubernetes).")
	fs.StringVar(&s.HTTPSProxy, "https-proxy", s.HTTPSProxy,
		"HTTPS_PROXY of every build step where proxies.config.openshift.io/cluster has none.")
	fs.StringVar(&s.NoProxy, "no-proxy", s.NoProxy,
		"NO_PROXY of every build step where proxies.config.openshift.io/cluster has none (comma-separated hosts, domains, CIDRs).")
	fs.StringVar(&s.TrustedCAConfigMap, "trusted-ca-configmap", s.TrustedCAConfigMap,
		"NAMESPACE/NAME of a ConfigMap whose ca-bundle.crt (PEM) every build step trusts; the operator's role reads it only if NAME is multiarch-build-trusted-ca.")
	fs.StringVar(&s.RegistriesConfigMap, "registries-configmap", s.RegistriesConfigMap,
		"NAMESPACE/NAME of a ConfigMap whose registries.conf is a drop-in for buildah (mirrors, insecure and blocked registries); the operator's role reads it only if NAME is multiarch-build-registries.")
	fs.Func("build-storage-limit", fmt.Sprintf("Size limit of buildah's node-local storage per build or push pod, a quantity such as 20Gi; past it the pod is evicted (default %s).", s.BuildStorageLimit.String()),
		func(v string) error {
			q, err := resource.ParseQuantity(v)
			if err != nil || q.Sign() <= 0 {
				return fmt.Errorf("must be a positive quantity such as 20Gi, got %q", v)
			}
			s.BuildStorageLimit = q
			return nil
		})
}

// Validate reports the first setting that cannot work.
func (s *Settings) Validate() error {
	if s.ToolUser < 0 || s.ToolUser > 2147483647 {
		return fmt.Errorf("--tool-steps-user must be a user ID from 0 to 2147483647, got %d", s.ToolUser)
	}
	for name, v := range map[string]string{"--builder-image": s.BuilderImage, "--git-image": s.GitImage,
		"--nodejs-image": s.NodeJSImage, "--maven-image": s.MavenImage, "--builder-service-account": s.ServiceAccountName} {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("%s must not be empty", name)
		}
	}
	for flag, v := range map[string]string{"--trusted-ca-configmap": s.TrustedCAConfigMap, "--registries-configmap": s.RegistriesConfigMap} {
		if ns, name, ok := strings.Cut(v, "/"); v != "" && (!ok || ns == "" || name == "" || strings.Contains(name, "/")) {
			return fmt.Errorf("%s must be NAMESPACE/NAME, got %q", flag, v)
		}
	}
	if s.MachineSetIdleTimeout <= 0 {
		return fmt.Errorf("--machineset-idle-timeout must be positive, got %s", s.MachineSetIdleTimeout)
	}
	return nil
}

// InstanceTypeFor returns the instance type for arch, the spec override first.
func (s *Settings) InstanceTypeFor(arch string, override map[string]string) string {
	if t := override[arch]; t != "" {
		return t
	}
	return s.InstanceTypes[arch]
}

type mapFlag struct{ m map[string]string }

func (f mapFlag) String() string {
	if f.m == nil {
		return ""
	}
	keys := make([]string, 0, len(f.m))
	for k := range f.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+f.m[k])
	}
	return strings.Join(parts, ",")
}

func (f mapFlag) Set(v string) error {
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || k == "" || val == "" {
			return fmt.Errorf("want ARCH=TYPE, got %q", kv)
		}
		f.m[k] = val
	}
	return nil
}

type listFlag struct{ l *[]string }

func (f listFlag) String() string {
	if f.l == nil {
		return ""
	}
	return strings.Join(*f.l, ",")
}

func (f listFlag) Set(v string) error {
	*f.l = nil
	for _, z := range strings.Split(v, ",") {
		if z = strings.TrimSpace(z); z != "" {
			*f.l = append(*f.l, z)
		}
	}
	return nil
}

type tolerationFlag struct {
	m map[string][]corev1.Toleration
}

func (f tolerationFlag) String() string { return "" }

// Set parses ARCH:KEY[=VALUE][:EFFECT].
func (f tolerationFlag) Set(v string) error {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return fmt.Errorf("want ARCH:KEY[=VALUE][:EFFECT], got %q", v)
	}
	t := corev1.Toleration{Operator: corev1.TolerationOpExists}
	key, val, hasVal := strings.Cut(parts[1], "=")
	t.Key = key
	if hasVal {
		t.Operator, t.Value = corev1.TolerationOpEqual, val
	}
	if len(parts) == 3 {
		switch e := corev1.TaintEffect(parts[2]); e {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
			t.Effect = e
		default:
			return fmt.Errorf("effect must be NoSchedule, PreferNoSchedule or NoExecute, got %q", parts[2])
		}
	}
	f.m[parts[0]] = append(f.m[parts[0]], t)
	return nil
}

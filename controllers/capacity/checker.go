package capacity

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	configv1 "github.com/openshift/api/config/v1"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	plan "github.com/multiarch-build/multiarch-build-operator/internal/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/capacitypolicy"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
)

// The checker reads; the capacity controller (capacity_controller.go) writes
// MachineSets. Both need these, cluster-wide (nodes, Infrastructure) or in
// one namespace (MachineSets, the boot images ConfigMap).
// +kubebuilder:rbac:groups="",resources=nodes,verbs=list;watch
// +kubebuilder:rbac:groups=config.openshift.io,resources=infrastructures,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch,resourceNames=coreos-bootimages
// +kubebuilder:rbac:groups=build.multiarch.io,resources=multiarchbuilds,verbs=list;watch
// +kubebuilder:rbac:groups=machine.openshift.io,resources=machines,verbs=list;watch
// +kubebuilder:rbac:groups=config.openshift.io,resources=clusterversions,verbs=get;list;watch,resourceNames=version
// +kubebuilder:rbac:groups=build.multiarch.io,resources=buildcapacitypolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=list;watch

var (
	machineSetGK     = schema.GroupKind{Group: machinev1beta1.GroupName, Kind: "MachineSet"}
	infrastructureGK = schema.GroupKind{Group: configv1.GroupName, Kind: "Infrastructure"}
	clusterVersionGK = schema.GroupKind{Group: configv1.GroupName, Kind: "ClusterVersion"}
)

// Cluster is the Checker of an operator running in a
// cluster: it reads nodes (the manager's cache) and, where the OpenShift
// Machine API is served, MachineSets, Infrastructure/cluster and the
// coreos-bootimages ConfigMap (a cache of its own, narrowed to those
// namespaces, that exists only when the Machine API does). It never writes.
type Cluster struct {
	// Reader reads Nodes and MultiArchBuilds.
	Reader client.Reader
	// Machines reads MachineSets, Infrastructure and the boot images
	// ConfigMap; nil when MachineAPI is false.
	Machines client.Reader
	// MachineAPI: the MachineSet kind is served.
	MachineAPI bool
	Settings   settings.Settings
	Clock      clock.PassiveClock
	Conflict   plan.ConflictPolicy
	// RunName names a build's current run; finished runs need no capacity.
	RunName plan.RunNameFunc

	// machineCache is Machines when it is a cache (nil in tests that read
	// straight from the API server); watches come from it.
	machineCache cache.Cache
	nodeCache    cache.Cache
	infraServed  bool
	cvServed     bool
	// namespaces reads namespace labels (metadata only) for the policy's
	// namespaceSelector; nil in tests that do not use one.
	namespaces client.Reader
}

var _ Checker = (*Cluster)(nil)

// NewCluster detects the Machine API through the manager's REST
// mapper and, when it is served, adds a cache for MachineSets (in
// s.MachineAPINamespace), the coreos-bootimages ConfigMap and Infrastructure
// to the manager. On a cluster without it (vanilla Kubernetes) no MachineSet
// informer or watch is ever started: controller-runtime cannot start one on
// a kind the API server does not serve. The Machine API is detected once:
// installing it later needs an operator restart.
func NewCluster(mgr manager.Manager, s settings.Settings) (*Cluster, error) {
	c := &Cluster{
		Reader:     mgr.GetCache(),
		nodeCache:  mgr.GetCache(),
		namespaces: mgr.GetCache(),
		Settings:   s,
		Clock:      clock.RealClock{},
		Conflict:   plan.DefaultConflictPolicy,
		RunName:    pipeline.RunName,
	}
	served, err := kindServed(mgr.GetRESTMapper(), machineSetGK, machinev1beta1.GroupVersion.Version)
	if err != nil {
		return nil, err
	}
	if !served {
		log.Log.WithName("capacity").Info("OpenShift Machine API not served: capacity is only reported, no MachineSet is created or scaled")
		return c, nil
	}
	for _, obj := range []client.Object{&machinev1beta1.MachineSet{}, &machinev1beta1.Machine{}, &configv1.Infrastructure{}} {
		if _, _, err := mgr.GetScheme().ObjectKinds(obj); err != nil {
			return nil, fmt.Errorf("the manager's scheme lacks %T: add machinev1beta1 and configv1 to it: %w", obj, err)
		}
	}
	byObject := map[client.Object]cache.ByObject{
		&machinev1beta1.MachineSet{}: {Namespaces: map[string]cache.Config{s.MachineAPINamespace: {}}},
		&machinev1beta1.Machine{}:    {Namespaces: map[string]cache.Config{s.MachineAPINamespace: {}}},
		&corev1.ConfigMap{}: {
			Namespaces: map[string]cache.Config{plan.BootImagesNamespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", plan.BootImagesConfigMap),
		},
	}
	if ok, err := kindServed(mgr.GetRESTMapper(), infrastructureGK, configv1.GroupVersion.Version); err != nil {
		return nil, err
	} else if ok {
		byObject[&configv1.Infrastructure{}] = cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", "cluster")}
		c.infraServed = true
	}
	if ok, err := kindServed(mgr.GetRESTMapper(), clusterVersionGK, configv1.GroupVersion.Version); err != nil {
		return nil, err
	} else if ok {
		byObject[&configv1.ClusterVersion{}] = cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", "version")}
		c.cvServed = true
	}
	mc, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:           mgr.GetScheme(),
		Mapper:           mgr.GetRESTMapper(),
		ByObject:         byObject,
		DefaultTransform: cache.TransformStripManagedFields(),
	})
	if err != nil {
		return nil, fmt.Errorf("machine API cache: %w", err)
	}
	if err := mgr.Add(capacityCache{mc}); err != nil {
		return nil, err
	}
	c.Machines, c.machineCache, c.MachineAPI = mc, mc, true
	return c, nil
}

// capacityCache puts the Machine API cache in the manager's cache group, so
// it starts before the controllers.
type capacityCache struct{ cache.Cache }

func (c capacityCache) GetCache() cache.Cache { return c.Cache }

func kindServed(m meta.RESTMapper, gk schema.GroupKind, version string) (bool, error) {
	_, err := m.RESTMapping(gk, version)
	switch {
	case err == nil:
		return true, nil
	case meta.IsNoMatchError(err):
		return false, nil
	default:
		return false, fmt.Errorf("discover %s: %w", gk, err)
	}
}

// snapshot is one consistent read of what capacity depends on.
type snapshot struct {
	nodes       []corev1.Node
	usable      map[string][]string
	hostArch    string
	machineSets []machinev1beta1.MachineSet
	machines    []machinev1beta1.Machine
	infra       plan.Infrastructure
	// singleArchPayload: ClusterVersion's desired release is not Multi.
	singleArchPayload bool
	policy            capacitypolicy.Policy
	policyObj         *v1alpha1.BuildCapacityPolicy
}

// readPolicy reads the BuildCapacityPolicy cluster (nil when there is none)
// and merges it over the flags.
func (c *Cluster) readPolicy(ctx context.Context, s *snapshot) error {
	obj := &v1alpha1.BuildCapacityPolicy{}
	err := c.Reader.Get(ctx, types.NamespacedName{Name: v1alpha1.BuildCapacityPolicyName}, obj)
	switch {
	case err == nil:
		s.policyObj = obj
	case apierrors.IsNotFound(err):
		obj = nil
	default:
		return fmt.Errorf("get BuildCapacityPolicy %s: %w", v1alpha1.BuildCapacityPolicyName, err)
	}
	s.policy = capacitypolicy.Effective(c.Settings, obj)
	return nil
}

// tolerations are the tolerations per architecture in effect now (the
// policy's, else the flags').
func (c *Cluster) tolerations() map[string][]corev1.Toleration {
	s := &snapshot{}
	if err := c.readPolicy(context.Background(), s); err != nil {
		return c.Settings.Tolerations
	}
	return tolerations(s.policy)
}

// tolerations are the policy's tolerations per architecture.
func tolerations(p capacitypolicy.Policy) map[string][]corev1.Toleration {
	out := map[string][]corev1.Toleration{}
	for _, a := range p.ArchNames() {
		if ts := p.Arch(a).Tolerations; len(ts) > 0 {
			out[a] = ts
		}
	}
	return out
}

// snapshot reads the nodes and, where the Machine API is served, the
// MachineSets and Infrastructure/cluster.
func (c *Cluster) snapshot(ctx context.Context) (*snapshot, error) {
	s, err := c.nodeSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	return s, c.readMachines(ctx, s)
}

func (c *Cluster) nodeSnapshot(ctx context.Context) (*snapshot, error) {
	s := &snapshot{}
	if err := c.readPolicy(ctx, s); err != nil {
		return nil, err
	}
	var nodes corev1.NodeList
	// Read only: the cached objects are not copied.
	if err := c.Reader.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	s.nodes = nodes.Items
	s.usable = plan.UsableNodes(nodes.Items, tolerations(s.policy))
	s.hostArch = plan.HostArch(nodes.Items)
	return s, nil
}

func (c *Cluster) readMachines(ctx context.Context, s *snapshot) error {
	if !c.MachineAPI {
		return nil
	}
	var sets machinev1beta1.MachineSetList
	if err := c.Machines.List(ctx, &sets, client.InNamespace(c.Settings.MachineAPINamespace), client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("list MachineSets: %w", err)
	}
	s.machineSets = sets.Items
	var machines machinev1beta1.MachineList
	if err := c.Machines.List(ctx, &machines, client.InNamespace(c.Settings.MachineAPINamespace), client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("list Machines: %w", err)
	}
	s.machines = machines.Items
	if c.cvServed {
		cv := &configv1.ClusterVersion{}
		err := c.Machines.Get(ctx, types.NamespacedName{Name: "version"}, cv)
		switch {
		case err == nil:
			s.singleArchPayload = cv.Status.Desired.Version != "" && cv.Status.Desired.Architecture != configv1.ClusterVersionArchitectureMulti
		case apierrors.IsNotFound(err):
		default:
			return fmt.Errorf("get ClusterVersion version: %w", err)
		}
	}
	infra := &configv1.Infrastructure{}
	err := c.Machines.Get(ctx, types.NamespacedName{Name: "cluster"}, infra)
	switch {
	case err == nil:
		s.infra = infrastructureOf(infra)
	case apierrors.IsNotFound(err), meta.IsNoMatchError(err):
		// Not OpenShift's config API: reported as MachineAPIUnavailable.
	default:
		return fmt.Errorf("get Infrastructure cluster: %w", err)
	}
	return nil
}

func infrastructureOf(infra *configv1.Infrastructure) plan.Infrastructure {
	out := plan.Infrastructure{Found: true, Name: infra.Status.InfrastructureName}
	if ps := infra.Status.PlatformStatus; ps != nil {
		out.Platform = string(ps.Type)
		switch {
		case ps.AWS != nil:
			out.Region = ps.AWS.Region
		case ps.GCP != nil:
			out.Region = ps.GCP.Region
		}
	}
	if out.Platform == "" {
		out.Platform = string(infra.Status.Platform) //nolint:staticcheck // older clusters only fill the deprecated field
	}
	return out
}

func (c *Cluster) view(s *snapshot, arch string, policy v1alpha1.CapacityPolicy, candidates []string) plan.View {
	return plan.View{
		Arch:              arch,
		Policy:            policy,
		UsableNodes:       s.usable[arch],
		MachineAPI:        c.MachineAPI,
		Infra:             s.infra,
		Sets:              plan.ServingArch(s.machineSets, arch),
		Now:               c.Clock.Now(),
		Conflict:          c.Conflict,
		Candidates:        candidates,
		SingleArchPayload: s.singleArchPayload,
		ControlPlaneArch:  s.hostArch,
	}
}

// candidates are the instance types to use for arch, in order: an allowed
// override of the build (or of the oldest Managed build, for the
// controller), else the policy's default and fallbacks.
func candidates(p capacitypolicy.Policy, arch, override string) []string {
	if override != "" {
		if ok, _ := capacitypolicy.AllowedInstanceType(p, arch, override); ok {
			return []string{override}
		}
	}
	return p.Arch(arch).InstanceTypes
}

// planInput is what PlanMachineSets needs for arch with the first of
// types ("" means the platform default).
func (c *Cluster) planInput(ctx context.Context, s *snapshot, arch string, types []string) (plan.PlanInput, error) {
	in := plan.PlanInput{
		Arch: arch, InfrastructureName: s.infra.Name, Region: s.infra.Region, Platform: s.infra.Platform,
		MachineSets: s.machineSets, HostArch: s.hostArch, Zones: s.policy.Arch(arch).Zones,
	}
	if len(types) > 0 {
		in.InstanceType = types[0]
		if in.InstanceType == c.Settings.InstanceTypes[arch] {
			// The flag's default is an AWS type: on Azure and GCP the
			// platform's default applies instead.
			in.InstanceType = plan.DefaultInstanceType(s.infra.Platform, arch, in.InstanceType)
		}
	}
	cm := &corev1.ConfigMap{}
	err := c.Machines.Get(ctx, client.ObjectKey{Namespace: plan.BootImagesNamespace, Name: plan.BootImagesConfigMap}, cm)
	switch {
	case err == nil:
		in.StreamJSON, in.StreamFound = cm.Data[plan.BootImagesKey], true
	case apierrors.IsNotFound(err):
	default:
		return in, fmt.Errorf("get ConfigMap %s/%s: %w", plan.BootImagesNamespace, plan.BootImagesConfigMap, err)
	}
	return in, nil
}

// assess is the capacity of one architecture for a build of the given
// policy, including why a MachineSet could not be created.
func (c *Cluster) assess(ctx context.Context, s *snapshot, arch string, policy v1alpha1.CapacityPolicy, types []string) (plan.Status, error) {
	st := plan.Assess(c.view(s, arch, policy, types))
	if !st.Create {
		return st, nil
	}
	in, err := c.planInput(ctx, s, arch, types)
	if err != nil {
		return st, err
	}
	sets, err := plan.PlanMachineSets(in)
	var p *plan.Problem
	if errors.As(err, &p) {
		return plan.Status{Reason: p.Reason, Message: "no usable " + arch + " node and no MachineSet can be made: " + p.Message, Terminal: true}, nil
	}
	if err != nil {
		return st, err
	}
	names := make([]string, len(sets))
	for i, ms := range sets {
		names[i] = ms.Name
	}
	st.Message = fmt.Sprintf("creating MachineSet %s (%s) for %s nodes", strings.Join(names, ", "), in.InstanceType, arch)
	return st, nil
}

// managedAllowed applies the policy to a build's Managed policy for arch:
// why the build may not have capacity made, "" when it may.
func (c *Cluster) managedAllowed(ctx context.Context, p capacitypolicy.Policy, b *v1alpha1.MultiArchBuild, arch string) string {
	var nsLabels map[string]string
	if p.NamespaceSelector != nil && c.namespaces != nil {
		ns := &metav1.PartialObjectMetadata{}
		ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
		if err := c.namespaces.Get(ctx, client.ObjectKey{Name: b.Namespace}, ns); err == nil {
			nsLabels = ns.Labels
		}
	}
	if ok, why := capacitypolicy.ManagedAllowed(p, nsLabels, arch); !ok {
		return why
	}
	return ""
}

// reasonRank orders the reasons of waiting platforms: the one a user must act
// on first becomes the build's reason.
var reasonRank = map[string]int{
	v1alpha1.ReasonCapacityNotAllowed:    0,
	v1alpha1.ReasonUnsupportedArch:       0,
	v1alpha1.ReasonUnsupportedPlatform:   1,
	v1alpha1.ReasonMachineAPIUnavailable: 2,
	v1alpha1.ReasonNoTemplateMachineSet:  3,
	v1alpha1.ReasonBootImageNotFound:     4,
	v1alpha1.ReasonNoNodes:               5,
	v1alpha1.ReasonMachineSetConflict:    6,
	v1alpha1.ReasonProvisioningNodes:     7,
}

// failedRank orders the reasons that fail a build.
var failedRank = map[string]int{
	v1alpha1.ReasonProvisioningFailed:  0,
	v1alpha1.ReasonProvisioningTimeout: 1,
}

// Check reports, per requested platform, whether a usable node exists, and
// if not what happens about it. It only reads caches.
func (c *Cluster) Check(ctx context.Context, build *v1alpha1.MultiArchBuild) (Result, error) {
	s, err := c.nodeSnapshot(ctx)
	if err != nil {
		return Result{}, err
	}
	platforms := build.Spec.Platforms
	if len(platforms) == 0 {
		platforms = []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}
	}
	// The common case, every architecture has a node, reads nothing else.
	for _, p := range platforms {
		if len(s.usable[p.Arch()]) == 0 {
			if err := c.readMachines(ctx, s); err != nil {
				return Result{}, err
			}
			break
		}
	}
	now := c.Clock.Now()
	run := ""
	if c.RunName != nil {
		run = c.RunName(build)
	}
	waitingSince := plan.WaitingSince(build, run)
	res := Result{Ready: true, Reason: v1alpha1.ReasonNodesAvailable}
	if s.policy.FromObject {
		res.Tolerations = tolerations(s.policy)
	}
	var ready, waiting []string
	best, bestFailed := len(reasonRank), len(failedRank)
	for _, p := range platforms {
		arch := p.Arch()
		policy := plan.Policy(build)
		override := build.Spec.Capacity.InstanceTypes[arch]
		var st plan.Status
		notAllowed := ""
		if policy == v1alpha1.CapacityManaged && len(s.usable[arch]) == 0 {
			notAllowed = c.managedAllowed(ctx, s.policy, build, arch)
			if ok, allowed := capacitypolicy.AllowedInstanceType(s.policy, arch, override); !ok && notAllowed == "" {
				notAllowed = fmt.Sprintf("spec.capacity.instanceTypes.%s %q is not allowed by the BuildCapacityPolicy %s: allowed for %s: %s (remove the override to use the default %s)",
					arch, override, v1alpha1.BuildCapacityPolicyName, arch, strings.Join(allowed, ", "), allowed[0])
			}
		}
		if notAllowed != "" {
			// No usable node, and none may be made for this build.
			st = plan.Status{Reason: v1alpha1.ReasonCapacityNotAllowed, Terminal: true,
				Message: fmt.Sprintf("no usable %s node, and the operator may not create one for this build: %s", arch, notAllowed)}
		} else {
			st, err = c.assess(ctx, s, arch, policy, candidates(s.policy, arch, override))
			if err != nil {
				return Result{}, err
			}
		}
		if st.Ready {
			ready = append(ready, fmt.Sprintf("%s (%s)", p, strings.Join(firstN(s.usable[arch], 2), ", ")))
			continue
		}
		// A build waits for a node at most the provisioning timeout.
		if t := s.policy.ProvisioningTimeout; !st.Terminal && t > 0 && !waitingSince.IsZero() && now.Sub(waitingSince) >= t {
			st = plan.Status{Reason: v1alpha1.ReasonProvisioningTimeout, Terminal: true, Failed: true,
				Message: fmt.Sprintf("no usable %s node within the provisioning timeout %s (BuildCapacityPolicy %s spec.provisioningTimeout): %s",
					arch, t, v1alpha1.BuildCapacityPolicyName, st.Message)}
		}
		if res.Waiting == nil {
			res.Waiting = map[v1alpha1.Platform]string{}
		}
		res.Ready = false
		res.Waiting[p] = st.Message
		res.Terminal = res.Terminal || st.Terminal
		waiting = append(waiting, fmt.Sprintf("%s: %s", p, st.Message))
		if st.Failed {
			res.Failed = true
			if r, ok := failedRank[st.Reason]; ok && r < bestFailed {
				bestFailed = r
			}
		}
		if r, ok := reasonRank[st.Reason]; ok && r < best {
			best, res.Reason = r, st.Reason
		} else if !ok && best == len(reasonRank) {
			res.Reason = st.Reason
		}
		if ms := c.scaledFor(s, arch); ms != nil {
			if res.Nodes == nil {
				res.Nodes = map[v1alpha1.Platform]NodeSource{}
			}
			res.Nodes[p] = NodeSource{MachineSet: ms.Name, InstanceType: plan.InstanceTypeOf(ms)}
		}
	}
	if res.Failed {
		for r, rank := range failedRank {
			if rank == bestFailed {
				res.Reason = r
			}
		}
	}
	if res.Ready {
		res.Message = "every platform has a usable node: " + strings.Join(ready, ", ")
	} else {
		res.Message = strings.Join(waiting, "; ")
	}
	return res, nil
}

// scaledFor is the operator's MachineSet of arch that is scaled up (the
// first by name), nil when none is.
func (c *Cluster) scaledFor(s *snapshot, arch string) *machinev1beta1.MachineSet {
	for _, ms := range plan.ServingArch(s.machineSets, arch).Ours {
		if plan.Replicas(ms) > 0 {
			return ms
		}
	}
	return nil
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(append([]string{}, s[:n]...), "...")
	}
	return s
}

// BuildsWaitingFor returns a request for every build that still needs arch
// (not finished, not blocked): the builds to re-queue when arch's capacity
// changes.
func (c *Cluster) BuildsWaitingFor(ctx context.Context, arch string) []reconcile.Request {
	var list v1alpha1.MultiArchBuildList
	if err := c.Reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "listing builds waiting for capacity", "arch", arch)
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		b := &list.Items[i]
		for _, a := range plan.NeededArchs(b, c.RunName) {
			if arch == "" || a == arch {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: b.Namespace, Name: b.Name}})
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// BuildWatches are the sources the build reconciler adds
// (builder.WatchesRawSource) so that a build waiting for capacity is
// re-queued when it may have changed: a node of its architecture becomes
// usable or stops being usable, a MachineSet of it changes (created, scaled,
// conflict), or the boot images or Infrastructure change. Each maps to the
// builds that still need that architecture (BuildsWaitingFor).
func (c *Cluster) BuildWatches() []source.Source {
	toBuilds := func(archOf func(client.Object) string) handler.EventHandler {
		return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []reconcile.Request {
			return c.BuildsWaitingFor(ctx, archOf(obj))
		})
	}
	out := []source.Source{
		source.Kind[client.Object](c.nodeCache, &corev1.Node{}, toBuilds(nodeArch), nodeUsabilityChanged(c.tolerations)),
		source.Kind[client.Object](c.nodeCache, &v1alpha1.BuildCapacityPolicy{}, toBuilds(anyArch)),
	}
	if c.machineCache != nil {
		out = append(out,
			source.Kind[client.Object](c.machineCache, &machinev1beta1.MachineSet{}, toBuilds(machineSetArch)),
			source.Kind[client.Object](c.machineCache, &corev1.ConfigMap{}, toBuilds(anyArch)),
		)
		if c.infraServed {
			out = append(out, source.Kind[client.Object](c.machineCache, &configv1.Infrastructure{}, toBuilds(anyArch)))
		}
		if c.cvServed {
			out = append(out, source.Kind[client.Object](c.machineCache, &configv1.ClusterVersion{}, toBuilds(anyArch)))
		}
	}
	return out
}

func nodeArch(obj client.Object) string { return obj.GetLabels()[plan.LabelArchNode] }

func anyArch(client.Object) string { return "" }

func machineSetArch(obj client.Object) string {
	ms, ok := obj.(*machinev1beta1.MachineSet)
	if !ok {
		return ""
	}
	a, _ := plan.MachineSetArch(ms)
	return a
}

// nodeUsabilityChanged passes node events that change whether the node can
// take build pods: kubelet status heartbeats do not.
func nodeUsabilityChanged(tolerations func() map[string][]corev1.Toleration) predicate.Predicate {
	usable := func(obj client.Object) bool {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return false
		}
		u, _ := plan.NodeUsable(n, tolerations())
		return u
	}
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return usable(e.Object) },
		DeleteFunc: func(e event.DeleteEvent) bool { return true },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return usable(e.ObjectOld) != usable(e.ObjectNew) ||
				nodeArch(e.ObjectOld) != nodeArch(e.ObjectNew)
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

var _ Watcher = (*Cluster)(nil)

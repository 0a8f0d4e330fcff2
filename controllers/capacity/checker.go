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

var (
	machineSetGK     = schema.GroupKind{Group: machinev1beta1.GroupName, Kind: "MachineSet"}
	infrastructureGK = schema.GroupKind{Group: configv1.GroupName, Kind: "Infrastructure"}
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
		Reader:    mgr.GetCache(),
		nodeCache: mgr.GetCache(),
		Settings:  s,
		Clock:     clock.RealClock{},
		Conflict:  plan.DefaultConflictPolicy,
		RunName:   pipeline.RunName,
	}
	served, err := kindServed(mgr.GetRESTMapper(), machineSetGK, machinev1beta1.GroupVersion.Version)
	if err != nil {
		return nil, err
	}
	if !served {
		log.Log.WithName("capacity").Info("OpenShift Machine API not served: capacity is only reported, no MachineSet is created or scaled")
		return c, nil
	}
	for _, obj := range []client.Object{&machinev1beta1.MachineSet{}, &configv1.Infrastructure{}} {
		if _, _, err := mgr.GetScheme().ObjectKinds(obj); err != nil {
			return nil, fmt.Errorf("the manager's scheme lacks %T: add machinev1beta1 and configv1 to it: %w", obj, err)
		}
	}
	byObject := map[client.Object]cache.ByObject{
		&machinev1beta1.MachineSet{}: {Namespaces: map[string]cache.Config{s.MachineAPINamespace: {}}},
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
	infra       plan.Infrastructure
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
	var nodes corev1.NodeList
	// Read only: the cached objects are not copied.
	if err := c.Reader.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return &snapshot{
		nodes:    nodes.Items,
		usable:   plan.UsableNodes(nodes.Items, c.Settings.Tolerations),
		hostArch: plan.HostArch(nodes.Items),
	}, nil
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
		if ps.AWS != nil {
			out.Region = ps.AWS.Region
		}
	}
	if out.Platform == "" {
		out.Platform = string(infra.Status.Platform) //nolint:staticcheck // older clusters only fill the deprecated field
	}
	return out
}

func (c *Cluster) view(s *snapshot, arch string, policy v1alpha1.CapacityPolicy) plan.View {
	return plan.View{
		Arch:        arch,
		Policy:      policy,
		UsableNodes: s.usable[arch],
		MachineAPI:  c.MachineAPI,
		Infra:       s.infra,
		Sets:        plan.ServingArch(s.machineSets, arch),
		Now:         c.Clock.Now(),
		Conflict:    c.Conflict,
	}
}

// planInput is what PlanMachineSets needs for arch; instanceType "" means
// the operator default.
func (c *Cluster) planInput(ctx context.Context, s *snapshot, arch, instanceType string) (plan.PlanInput, error) {
	if instanceType == "" {
		instanceType = c.Settings.InstanceTypes[arch]
	}
	in := plan.PlanInput{
		Arch: arch, InfrastructureName: s.infra.Name, Region: s.infra.Region,
		MachineSets: s.machineSets, HostArch: s.hostArch, Zones: c.Settings.MachineSetZones,
		InstanceType: instanceType,
	}
	cm := &corev1.ConfigMap{}
	err := c.Machines.Get(ctx, types.NamespacedName{Namespace: plan.BootImagesNamespace, Name: plan.BootImagesConfigMap}, cm)
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
func (c *Cluster) assess(ctx context.Context, s *snapshot, arch string, policy v1alpha1.CapacityPolicy, instanceType string) (plan.Status, error) {
	st := plan.Assess(c.view(s, arch, policy))
	if !st.Create {
		return st, nil
	}
	in, err := c.planInput(ctx, s, arch, instanceType)
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
	st.Message = fmt.Sprintf("creating MachineSet %s for %s nodes", strings.Join(names, ", "), arch)
	return st, nil
}

// reasonRank orders the reasons of waiting platforms: the one a user must act
// on first becomes the build's reason.
var reasonRank = map[string]int{
	v1alpha1.ReasonUnsupportedArch:       0,
	v1alpha1.ReasonUnsupportedPlatform:   1,
	v1alpha1.ReasonMachineAPIUnavailable: 2,
	v1alpha1.ReasonNoTemplateMachineSet:  3,
	v1alpha1.ReasonBootImageNotFound:     4,
	v1alpha1.ReasonNoNodes:               5,
	v1alpha1.ReasonMachineSetConflict:    6,
	v1alpha1.ReasonProvisioningNodes:     7,
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
	policy := plan.Policy(build)
	res := Result{Ready: true, Reason: v1alpha1.ReasonNodesAvailable}
	var ready, waiting []string
	best := len(reasonRank)
	for _, p := range platforms {
		arch := p.Arch()
		st, err := c.assess(ctx, s, arch, policy, build.Spec.Capacity.InstanceTypes[arch])
		if err != nil {
			return Result{}, err
		}
		if st.Ready {
			ready = append(ready, fmt.Sprintf("%s (%s)", p, strings.Join(firstN(s.usable[arch], 2), ", ")))
			continue
		}
		if res.Waiting == nil {
			res.Waiting = map[v1alpha1.Platform]string{}
		}
		res.Ready = false
		res.Waiting[p] = st.Message
		res.Terminal = res.Terminal || st.Terminal
		waiting = append(waiting, fmt.Sprintf("%s: %s", p, st.Message))
		if r, ok := reasonRank[st.Reason]; ok && r < best {
			best, res.Reason = r, st.Reason
		} else if !ok && best == len(reasonRank) {
			res.Reason = st.Reason
		}
	}
	if res.Ready {
		res.Message = "every platform has a usable node: " + strings.Join(ready, ", ")
	} else {
		res.Message = strings.Join(waiting, "; ")
	}
	return res, nil
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
		source.Kind[client.Object](c.nodeCache, &corev1.Node{}, toBuilds(nodeArch), nodeUsabilityChanged(c.Settings.Tolerations)),
	}
	if c.machineCache != nil {
		out = append(out,
			source.Kind[client.Object](c.machineCache, &machinev1beta1.MachineSet{}, toBuilds(machineSetArch)),
			source.Kind[client.Object](c.machineCache, &corev1.ConfigMap{}, toBuilds(anyArch)),
		)
		if c.infraServed {
			out = append(out, source.Kind[client.Object](c.machineCache, &configv1.Infrastructure{}, toBuilds(anyArch)))
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
func nodeUsabilityChanged(tolerations map[string][]corev1.Toleration) predicate.Predicate {
	usable := func(obj client.Object) bool {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return false
		}
		u, _ := plan.NodeUsable(n, tolerations)
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

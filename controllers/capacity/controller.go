package capacity

import (
	"context"
	"errors"
	"fmt"
	"time"

	configv1 "github.com/openshift/api/config/v1"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	plan "github.com/multiarch-build/multiarch-build-operator/internal/capacity"
)

// The capacity controller is the only writer of MachineSets. No delete: a
// MachineSet is scaled to zero, never removed.
// MachineSets are cluster-scoped in the ClusterRole (not a Role in
// openshift-machine-api) because OLM's AllNamespaces install grants rights only
// as clusterPermissions or in the operator's own namespace; the controller's
// cache and writes are still restricted to --machine-api-namespace. No delete.
// +kubebuilder:rbac:groups=machine.openshift.io,resources=machinesets,verbs=list;watch;create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// allArchs are the architectures a MultiArchBuild can ask for.
var allArchs = []string{"amd64", "arm64", "ppc64le", "s390x"}

// Reconciler makes sure nodes of every architecture that builds need
// exist: it creates and scales the operator's MachineSets from the demand of
// all MultiArchBuilds (see package internal/capacity for why the view is
// cluster-wide). Its requests are keyed by architecture (Name "arm64", no
// namespace), so a burst of builds is one reconcile per architecture. It
// never writes a MultiArchBuild: builds learn their capacity from Check.
type Reconciler struct {
	*Cluster
	// Client writes MachineSets.
	Client   client.Client
	Recorder events.EventRecorder
}

// SetupWithManager watches builds, nodes and, where the Machine API is
// served, MachineSets, the boot images and Infrastructure, all mapped to the
// architectures they concern.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named("capacity").
		WatchesRawSource(source.Kind[client.Object](mgr.GetCache(), &v1alpha1.MultiArchBuild{},
			handler.EnqueueRequestsFromMapFunc(buildArchs))).
		WatchesRawSource(source.Kind[client.Object](mgr.GetCache(), &corev1.Node{},
			handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request { return archRequests(nodeArch(o)) }),
			nodeUsabilityChanged(r.Settings.Tolerations)))
	if r.machineCache != nil {
		b = b.WatchesRawSource(source.Kind[client.Object](r.machineCache, &machinev1beta1.MachineSet{},
			handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
				if ms, ok := o.(*machinev1beta1.MachineSet); ok && plan.IsManaged(ms) {
					return archRequests(machineSetArch(o))
				}
				// A foreign MachineSet may be a new template or the
				// capacity of any architecture.
				return archRequests("")
			}))).
			WatchesRawSource(source.Kind[client.Object](r.machineCache, &corev1.ConfigMap{},
				handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return archRequests("") })))
		if r.infraServed {
			b = b.WatchesRawSource(source.Kind[client.Object](r.machineCache, &configv1.Infrastructure{},
				handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return archRequests("") })))
		}
	}
	return b.Complete(r)
}

// archRequests is the request of arch, or of every architecture for "".
func archRequests(arch string) []reconcile.Request {
	if arch != "" {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: arch}}}
	}
	out := make([]reconcile.Request, len(allArchs))
	for i, a := range allArchs {
		out[i] = reconcile.Request{NamespacedName: types.NamespacedName{Name: a}}
	}
	return out
}

// buildArchs maps a build to every architecture it asks for (not only those
// it still needs: a build that finishes starts its architectures' idle time).
func buildArchs(_ context.Context, o client.Object) []reconcile.Request {
	b, ok := o.(*v1alpha1.MultiArchBuild)
	if !ok {
		return nil
	}
	platforms := b.Spec.Platforms
	if len(platforms) == 0 {
		platforms = []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}
	}
	var out []reconcile.Request
	for _, p := range platforms {
		out = append(out, archRequests(p.Arch())...)
	}
	return out
}

// Reconcile brings the MachineSets of one architecture in line with the
// demand of every build: ensure they exist when a Managed build needs the
// architecture and no node has it, then scale each.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	arch := req.Name
	logger := log.FromContext(ctx).WithValues("arch", arch)
	ctx = log.IntoContext(ctx, logger)
	if !r.MachineAPI {
		return reconcile.Result{}, nil // nothing to write on vanilla Kubernetes
	}
	s, err := r.snapshot(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	demand, err := r.demand(ctx, arch)
	if err != nil {
		return reconcile.Result{}, err
	}
	created, err := r.ensureMachineSets(ctx, s, arch, demand)
	if err != nil || created {
		// The MachineSet watch brings the new ones back to be scaled.
		return reconcile.Result{}, err
	}
	return r.scaleMachineSets(ctx, s, arch, demand)
}

func (r *Reconciler) demand(ctx context.Context, arch string) (plan.ArchDemand, error) {
	var list v1alpha1.MultiArchBuildList
	// Read only: the cached objects are not copied.
	if err := r.Reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return plan.ArchDemand{}, fmt.Errorf("list MultiArchBuilds: %w", err)
	}
	if d := plan.Demand(list.Items, r.RunName)[arch]; d != nil {
		return *d, nil
	}
	return plan.ArchDemand{}, nil
}

// scaleUp: a Managed build needs arch, no node of it is usable, and no
// MachineSet of someone else already brings one.
func scaleUp(s *snapshot, arch string, d plan.ArchDemand, sets plan.MachineSets) bool {
	if len(d.Managed) == 0 || len(s.usable[arch]) > 0 {
		return false
	}
	for _, ms := range sets.Foreign {
		if plan.Replicas(ms) > 0 {
			return false
		}
	}
	return true
}

// ensureMachineSets creates the MachineSets of arch when a Managed build
// needs one and none can bring a node. A plan that cannot be made (no
// template, no boot image, not AWS) is not an error of the controller: the
// builds report it through Check, and a change of MachineSets, the boot
// images or Infrastructure brings the architecture back.
func (r *Reconciler) ensureMachineSets(ctx context.Context, s *snapshot, arch string, d plan.ArchDemand) (bool, error) {
	sets := plan.ServingArch(s.machineSets, arch)
	if !scaleUp(s, arch, d, sets) {
		return false, nil
	}
	st := plan.Assess(r.view(s, arch, v1alpha1.CapacityManaged))
	if !st.Create {
		return false, nil
	}
	in, err := r.planInput(ctx, s, arch, d.InstanceType)
	if err != nil {
		return false, err
	}
	planned, err := plan.PlanMachineSets(in)
	var p *plan.Problem
	if errors.As(err, &p) {
		log.FromContext(ctx).Info("cannot create a MachineSet", "reason", p.Reason, "message", p.Message, "builds", len(d.Managed))
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, ms := range planned {
		if err := r.Client.Create(ctx, ms); err != nil && !apierrors.IsAlreadyExists(err) {
			return false, fmt.Errorf("create MachineSet %s: %w", ms.Name, err)
		}
		log.FromContext(ctx).Info("created MachineSet", "machineSet", klog.KObj(ms),
			"instanceType", in.InstanceType, "builds", len(d.Managed))
		r.Recorder.Eventf(ms, nil, corev1.EventTypeNormal, "Created", "CreateMachineSet",
			"created for %d build(s) needing %s nodes (instance type %s)", len(d.Managed), arch, in.InstanceType)
	}
	return true, nil
}

// scaleMachineSets applies DecideScale to each of the operator's MachineSets
// of arch, spreading Settings.MachineSetReplicas over them.
func (r *Reconciler) scaleMachineSets(ctx context.Context, s *snapshot, arch string, d plan.ArchDemand) (reconcile.Result, error) {
	sets := plan.ServingArch(s.machineSets, arch)
	up := scaleUp(s, arch, d, sets)
	var requeue time.Duration
	for i, ms := range sets.Ours {
		dec := plan.DecideScale(plan.ScaleInput{
			Now:         r.Clock.Now(),
			Replicas:    plan.Replicas(ms),
			Target:      plan.Share(r.Settings.MachineSetReplicas, i, len(sets.Ours)),
			ScaleUp:     up,
			Needed:      d.Builds > 0,
			Annotations: ms.Annotations,
			IdleTimeout: r.Settings.MachineSetIdleTimeout,
			Conflict:    r.Conflict,
		})
		if dec.RequeueAfter > 0 && (requeue == 0 || dec.RequeueAfter < requeue) {
			requeue = dec.RequeueAfter
		}
		if dec.Empty() {
			continue
		}
		if err := r.apply(ctx, ms, dec); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{RequeueAfter: requeue}, nil
}

// apply writes a scale decision with a merge patch guarded by the
// resourceVersion: a change made meanwhile by someone else is seen on the
// retry, not overwritten.
func (r *Reconciler) apply(ctx context.Context, cached *machinev1beta1.MachineSet, dec plan.ScaleDecision) error {
	logger := log.FromContext(ctx).WithValues("machineSet", klog.KObj(cached))
	ms := cached.DeepCopy()
	before := plan.Replicas(ms)
	if ms.Annotations == nil {
		ms.Annotations = map[string]string{}
	}
	for k, v := range dec.Annotations {
		if v == nil {
			delete(ms.Annotations, k)
		} else {
			ms.Annotations[k] = *v
		}
	}
	if dec.Replicas != nil {
		ms.Spec.Replicas = dec.Replicas
	}
	patch := client.MergeFromWithOptions(cached, client.MergeFromWithOptimisticLock{})
	if err := r.Client.Patch(ctx, ms, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // deleted: the watch brings the architecture back
		}
		return fmt.Errorf("patch MachineSet %s: %w", ms.Name, err)
	}
	switch {
	case dec.NewConflict:
		logger.Info("another controller keeps changing the replicas; standing back", "replicas", before, "backoff", r.Conflict.Backoff)
		r.Recorder.Eventf(ms, nil, corev1.EventTypeWarning, v1alpha1.ReasonMachineSetConflict, "Scale",
			"replicas changed to %d by someone else %s times within %s; the operator stops scaling this MachineSet for %s",
			before, ms.Annotations[plan.AnnotationCorrections], r.Conflict.Window, r.Conflict.Backoff)
	case dec.Replicas != nil:
		reason := "ScaledUp"
		if *dec.Replicas < before {
			reason = "ScaledDown"
		}
		note := "builds need its architecture and no usable node has it"
		if *dec.Replicas < before {
			note = fmt.Sprintf("no build needed its architecture for %s", r.Settings.MachineSetIdleTimeout)
		}
		if dec.Corrected {
			note += "; replicas had been changed to " + fmt.Sprint(before) + " by someone else"
		}
		logger.Info("scaled MachineSet", "from", before, "to", *dec.Replicas, "corrected", dec.Corrected)
		r.Recorder.Eventf(ms, nil, corev1.EventTypeNormal, reason, "Scale", "replicas %d -> %d: %s", before, *dec.Replicas, note)
	}
	return nil
}

// Setup builds the capacity checker and controller and registers the
// controller with the manager. The checker is what the build reconciler's
// Capacity field takes, and its BuildWatches what it watches.
func Setup(mgr ctrl.Manager, c *Cluster) error {
	r := &Reconciler{
		Cluster:  c,
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("multiarch-build-capacity"),
	}
	return r.SetupWithManager(mgr)
}

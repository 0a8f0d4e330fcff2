package capacity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	configv1 "github.com/openshift/api/config/v1"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	plan "github.com/multiarch-build/multiarch-build-operator/internal/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/capacitypolicy"
)

// The capacity controller is the only writer of MachineSets. No delete: a
// MachineSet is scaled to zero, never removed.
// MachineSets are cluster-scoped in the ClusterRole (not a Role in
// openshift-machine-api) because OLM's AllNamespaces install grants rights only
// as clusterPermissions or in the operator's own namespace; the controller's
// cache and writes are still restricted to --machine-api-namespace. No delete.
// +kubebuilder:rbac:groups=machine.openshift.io,resources=machinesets,verbs=list;watch;create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=build.multiarch.io,resources=buildcapacitypolicies/status,verbs=patch

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
			nodeUsabilityChanged(r.tolerations)))
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
				handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return archRequests("") }))).
			WatchesRawSource(source.Kind[client.Object](r.machineCache, &machinev1beta1.Machine{},
				handler.EnqueueRequestsFromMapFunc(r.machineArch), machineChanged()))
		if r.cvServed {
			b = b.WatchesRawSource(source.Kind[client.Object](r.machineCache, &configv1.ClusterVersion{},
				handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return archRequests("") })))
		}
		if r.infraServed {
			b = b.WatchesRawSource(source.Kind[client.Object](r.machineCache, &configv1.Infrastructure{},
				handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return archRequests("") })))
		}
	}
	b = b.WatchesRawSource(source.Kind[client.Object](mgr.GetCache(), &v1alpha1.BuildCapacityPolicy{},
		handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return archRequests("") })))
	return b.Complete(r)
}

// machineArch maps a Machine to the architecture of its MachineSet, when
// that is one of the operator's.
func (r *Reconciler) machineArch(ctx context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[plan.LabelMachineSet]
	if name == "" {
		return nil
	}
	ms := &machinev1beta1.MachineSet{}
	if err := r.Machines.Get(ctx, client.ObjectKey{Namespace: o.GetNamespace(), Name: name}, ms); err != nil || !plan.IsManaged(ms) {
		return nil
	}
	return archRequests(machineSetArch(ms))
}

// machineChanged passes Machine events that can change a decision: phase,
// error, a failed launch, or node; creation and deletion (not provider
// status heartbeats).
func machineChanged() predicate.Predicate {
	key := func(o client.Object) string {
		m, ok := o.(*machinev1beta1.Machine)
		if !ok {
			return ""
		}
		k := ptr.Deref(m.Status.Phase, "") + "|" + string(ptr.Deref(m.Status.ErrorReason, "")) + "|"
		// InsufficientInstanceCapacity changes neither: only the
		// MachineCreation condition of the provider status says it.
		if c := plan.CreationFailed(m); c != nil {
			k += "creation-failed|"
		}
		if m.Status.NodeRef != nil {
			k += m.Status.NodeRef.Name
		}
		return k
	}
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool { return key(e.ObjectOld) != key(e.ObjectNew) },
	}
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
// demand of every build: record Machines that failed and move their
// MachineSet to the next allowed instance type or zone, ensure MachineSets
// exist when a Managed build needs the architecture and no node has it,
// then scale each; last, summarise the architecture in the
// BuildCapacityPolicy's status.
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
	demand, err := r.demand(ctx, s, arch)
	if err != nil {
		return reconcile.Result{}, err
	}
	types := candidates(s.policy, arch, demand.InstanceType)
	if wrote, err := r.handleFailures(ctx, s, arch, types); err != nil || wrote {
		// The MachineSet watch brings the architecture back.
		return reconcile.Result{}, err
	}
	created, err := r.ensureMachineSets(ctx, s, arch, demand, types)
	if err != nil || created {
		// The MachineSet watch brings the new ones back to be scaled.
		return reconcile.Result{}, err
	}
	res, err := r.scaleMachineSets(ctx, s, arch, demand, types)
	if err != nil {
		return res, err
	}
	if err := r.reportPolicy(ctx, s, arch); err != nil {
		return res, err
	}
	// A failed instance type is tried again after FailureMemory, and a
	// Machine without a node fails at the provisioning timeout: look again
	// then.
	if next := r.nextDeadline(s, arch); next > 0 && (res.RequeueAfter == 0 || next < res.RequeueAfter) {
		res.RequeueAfter = next
	}
	return res, nil
}

func (r *Reconciler) demand(ctx context.Context, s *snapshot, arch string) (plan.ArchDemand, error) {
	var list v1alpha1.MultiArchBuildList
	// Read only: the cached objects are not copied.
	if err := r.Reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return plan.ArchDemand{}, fmt.Errorf("list MultiArchBuilds: %w", err)
	}
	opts := plan.DemandOptions{
		Now:                 r.Clock.Now(),
		ProvisioningTimeout: s.policy.ProvisioningTimeout,
		ManagedAllowed: func(b *v1alpha1.MultiArchBuild, a string) bool {
			// A build asking for a type the policy does not allow gets
			// nothing made (Check reports CapacityNotAllowed).
			if ok, _ := capacitypolicy.AllowedInstanceType(s.policy, a, b.Spec.Capacity.InstanceTypes[a]); !ok {
				return false
			}
			return r.managedAllowed(ctx, s.policy, b, a) == ""
		},
		InstanceTypeAllowed: func(a, t string) bool {
			ok, _ := capacitypolicy.AllowedInstanceType(s.policy, a, t)
			return ok
		},
	}
	if d := plan.DemandAt(list.Items, r.RunName, opts)[arch]; d != nil {
		return *d, nil
	}
	return plan.ArchDemand{}, nil
}

// handleFailures looks at the Machines of each of the operator's
// MachineSets of arch. A Machine that Failed (the cloud refused the
// instance) or has no node after the provisioning timeout marks the
// MachineSet's instance type as failed in its zone: the MachineSet goes
// back to 0 (which deletes its Machines) and, when the policy allows
// another instance type there, takes the next one. A MachineSet whose type
// failed and is at 0 takes the next type once one is left. It reports
// whether it wrote.
func (r *Reconciler) handleFailures(ctx context.Context, s *snapshot, arch string, types []string) (bool, error) {
	now := r.Clock.Now()
	wrote := false
	for _, ms := range plan.ServingArch(s.machineSets, arch).Ours {
		if plan.InConflict(ms.Annotations, now, r.Conflict) {
			continue
		}
		current := plan.InstanceTypeOf(ms)
		failures := plan.MachineFailures(plan.MachinesOf(ms, s.machines), now, s.policy.ProvisioningTimeout)
		failedNow := len(failures) > 0 && !plan.TypeFailed(ms.Annotations, current, now)
		if !failedNow && !(plan.TypeFailed(ms.Annotations, current, now) && plan.Replicas(ms) > 0) {
			// Not failing: perhaps move a failed MachineSet at 0 to the
			// next type.
			if plan.Replicas(ms) == 0 && plan.TypeFailed(ms.Annotations, current, now) {
				if next := plan.NextInstanceType(ms.Annotations, candidatesOr(types, current), now); next != "" && next != current {
					if err := r.switchType(ctx, ms, next); err != nil {
						return wrote, err
					}
					wrote = true
				}
			}
			continue
		}
		dec := plan.ScaleDecision{}
		zero := int32(0)
		dec.Replicas = &zero
		dec.Annotations = map[string]*string{}
		set := func(k, v string) { dec.Annotations[k] = &v }
		set(plan.AnnotationReplicas, "0")
		if _, ok := ms.Annotations[plan.AnnotationLastNeeded]; ok {
			dec.Annotations[plan.AnnotationLastNeeded] = nil
		}
		if failedNow {
			failed := plan.FailedTypes(ms.Annotations)
			failed[current] = now
			set(plan.AnnotationFailedTypes, plan.FormatFailedTypes(failed, now))
			set(plan.AnnotationLastFailure, fmt.Sprintf("%s in %s: %s", current, zoneOf(ms), failures[0]))
		}
		if err := r.apply(ctx, ms, dec); err != nil {
			return wrote, err
		}
		wrote = true
		if failedNow {
			log.FromContext(ctx).Info("Machine failed; MachineSet scaled back to 0", "machineSet", klog.KObj(ms),
				"instanceType", current, "failure", failures[0].String())
			r.Recorder.Eventf(ms, nil, corev1.EventTypeWarning, "MachineFailed", "Scale",
				"%s; instance type %s is not tried again in this zone for %s; replicas -> 0", failures[0], current, plan.FailureMemory)
		}
	}
	return wrote, nil
}

// switchType moves a MachineSet at 0 replicas to instance type t.
func (r *Reconciler) switchType(ctx context.Context, cached *machinev1beta1.MachineSet, t string) error {
	raw, err := plan.WithInstanceType(cached, t)
	if err != nil {
		return err
	}
	ms := cached.DeepCopy()
	ms.Spec.Template.Spec.ProviderSpec.Value = raw
	patch := client.MergeFromWithOptions(cached, client.MergeFromWithOptimisticLock{})
	if err := r.Client.Patch(ctx, ms, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("patch MachineSet %s: %w", ms.Name, err)
	}
	log.FromContext(ctx).Info("MachineSet moved to the next allowed instance type", "machineSet", klog.KObj(ms),
		"from", plan.InstanceTypeOf(cached), "to", t)
	r.Recorder.Eventf(ms, nil, corev1.EventTypeNormal, "InstanceTypeFallback", "Update",
		"instance type %s failed in this zone; next allowed type: %s", plan.InstanceTypeOf(cached), t)
	return nil
}

func zoneOf(ms *machinev1beta1.MachineSet) string {
	if z := ms.Spec.Template.Spec.ProviderSpec.Value; z != nil {
		if cfg, err := plan.AWSProviderConfig(ms); err == nil && cfg.Placement.AvailabilityZone != "" {
			return cfg.Placement.AvailabilityZone
		}
		if cfg, err := plan.AzureProviderSpec(ms); err == nil && cfg.Zone != "" {
			return "zone " + cfg.Zone
		}
		if cfg, err := plan.GCPProviderSpec(ms); err == nil && cfg.Zone != "" {
			return cfg.Zone
		}
	}
	return "its zone"
}

func candidatesOr(types []string, current string) []string {
	if len(types) > 0 {
		return types
	}
	return []string{current}
}

// nextDeadline is how long until a failed type of arch may be tried
// again, or a Machine without a node reaches the provisioning timeout; 0
// when neither is pending.
func (r *Reconciler) nextDeadline(s *snapshot, arch string) time.Duration {
	now := r.Clock.Now()
	var next time.Duration
	consider := func(at time.Time) {
		if d := at.Sub(now); d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	for _, ms := range plan.ServingArch(s.machineSets, arch).Ours {
		consider(plan.FailedUntil(ms.Annotations, plan.InstanceTypeOf(ms)))
		if t := s.policy.ProvisioningTimeout; t > 0 {
			for _, m := range plan.MachinesOf(ms, s.machines) {
				if m.Status.NodeRef == nil {
					consider(m.CreationTimestamp.Add(t))
				}
			}
		}
	}
	return next
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
// template, no boot image, unsupported platform) is not an error of the
// controller: the builds report it through Check, and a change of
// MachineSets, the boot images or Infrastructure brings the architecture
// back.
func (r *Reconciler) ensureMachineSets(ctx context.Context, s *snapshot, arch string, d plan.ArchDemand, types []string) (bool, error) {
	sets := plan.ServingArch(s.machineSets, arch)
	if !scaleUp(s, arch, d, sets) {
		return false, nil
	}
	st := plan.Assess(r.view(s, arch, v1alpha1.CapacityManaged, types))
	if !st.Create {
		return false, nil
	}
	in, err := r.planInput(ctx, s, arch, types)
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

// scaleMachineSets applies DecideScale to each of the operator's
// MachineSets of arch, spreading the architecture's replicas (the smaller
// of --machineset-replicas and the policy's maxReplicas) over those whose
// instance type has not failed in their zone, in the order Eligible gives.
func (r *Reconciler) scaleMachineSets(ctx context.Context, s *snapshot, arch string, d plan.ArchDemand, types []string) (reconcile.Result, error) {
	sets := plan.ServingArch(s.machineSets, arch)
	up := scaleUp(s, arch, d, sets)
	now := r.Clock.Now()
	eligible := plan.Eligible(sets.Ours, types, now)
	total := min(r.Settings.MachineSetReplicas, s.policy.Arch(arch).MaxReplicas)
	if total < 0 {
		total = 0
	}
	var requeue time.Duration
	for _, ms := range sets.Ours {
		i := slices.Index(eligible, ms)
		target := int32(0)
		if i >= 0 {
			target = plan.Share(total, i, len(eligible))
		}
		dec := plan.DecideScale(plan.ScaleInput{
			Now:         now,
			Replicas:    plan.Replicas(ms),
			Target:      target,
			ScaleUp:     up && i >= 0,
			Needed:      d.Builds > 0 && i >= 0,
			Annotations: ms.Annotations,
			IdleTimeout: s.policy.IdleTimeout,
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

// reportPolicy writes arch's summary into the BuildCapacityPolicy's status
// when it changed (nothing when there is no policy object, or nothing
// changed: a no-op reconcile writes nothing).
func (r *Reconciler) reportPolicy(ctx context.Context, s *snapshot, arch string) error {
	obj := s.policyObj
	if obj == nil {
		return nil
	}
	sets := plan.ServingArch(s.machineSets, arch)
	sum := v1alpha1.ArchitectureCapacityStatus{Arch: v1alpha1.Architecture(arch), ReadyNodes: int32(len(s.usable[arch]))}
	var last *metav1.Time
	for _, ms := range sets.Ours {
		sum.MachineSets = append(sum.MachineSets, ms.Name)
		sum.Replicas += plan.Replicas(ms)
		if t, ok := ms.Annotations[plan.AnnotationLastScale]; ok {
			if at, err := time.Parse(time.RFC3339, t); err == nil && (last == nil || at.After(last.Time)) {
				last = &metav1.Time{Time: at}
			}
		}
	}
	sum.LastScaleTime = last
	if len(sum.MachineSets) == 0 && sum.ReadyNodes == 0 && !slices.Contains(s.policy.ArchNames(), arch) {
		return nil // an architecture nobody uses or configures is not listed
	}
	updated := obj.DeepCopy()
	st := &updated.Status
	found := false
	for i := range st.Architectures {
		if st.Architectures[i].Arch == sum.Arch {
			st.Architectures[i], found = sum, true
		}
	}
	if !found {
		st.Architectures = append(st.Architectures, sum)
		sort.Slice(st.Architectures, func(i, j int) bool { return st.Architectures[i].Arch < st.Architectures[j].Arch })
	}
	cond := metav1.Condition{Type: "Applied", Status: metav1.ConditionTrue, Reason: "Applied", ObservedGeneration: obj.Generation,
		Message: "the capacity controller applies this policy"}
	if len(s.policy.Problems) > 0 {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "InvalidFields", strings.Join(s.policy.Problems, "; ")
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	st.ObservedGeneration = obj.Generation
	if equality.Semantic.DeepEqual(obj.Status, updated.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, updated, client.MergeFromWithOptions(obj, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // the watch brings it back
		}
		return fmt.Errorf("patch BuildCapacityPolicy status: %w", err)
	}
	return nil
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
		if *dec.Replicas != before {
			ms.Annotations[plan.AnnotationLastScale] = r.Clock.Now().UTC().Format(time.RFC3339)
		}
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

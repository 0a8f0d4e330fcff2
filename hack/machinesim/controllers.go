package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/multiarch-build/multiarch-build-operator/internal/capacity"
)

// Booter starts and stops the kubelet of a node slot (hack/cluster/node.sh).
type Booter interface {
	// Start runs the slot's kubelet as node name with providerID and labels.
	Start(ctx context.Context, slot, name, providerID string, labels map[string]string) error
	// Stop stops the slot's kubelet (the Node object is left to the caller).
	Stop(ctx context.Context, slot string) error
	// Running is the node name the slot's kubelet runs as ("" when stopped).
	Running(ctx context.Context, slot string) (string, error)
}

// Sim is the simulated machine-api-operator on AWS: a MachineSet controller
// and a Machine controller (with the nodelink part) in one.
type Sim struct {
	client.Client
	// API reads without the cache (pods to drain).
	API       client.Reader
	Namespace string
	// Adopt: slot -> the static node a Machine of that slot's architecture
	// adopts (nothing is started or stopped for it).
	Adopt map[string]string
	// Boot: slots whose kubelet a Running Machine starts.
	Boot     []string
	Booter   Booter
	Recorder events.EventRecorder
	Now      func() time.Time
	// DrainTimeout bounds a drain; then the node is removed anyway (as the
	// machine controller does for an unreachable node).
	DrainTimeout time.Duration
}

func (s *Sim) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// config reads the machine-sim ConfigMap (defaults when there is none).
func (s *Sim) config(ctx context.Context) Config {
	cm := &corev1.ConfigMap{}
	var data map[string]string
	if err := s.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: ConfigMapName}, cm); err == nil {
		data = cm.Data
	}
	c, errs := ParseConfig(data)
	for _, err := range errs {
		log.FromContext(ctx).Info("ConfigMap "+ConfigMapName+": ignored", "error", err.Error())
	}
	return c
}

// SetupWithManager registers both controllers.
func (s *Sim) SetupWithManager(mgr ctrl.Manager) error {
	allMachines := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		return s.machineRequests(ctx, func(*machinev1beta1.Machine) bool { return true })
	})
	if err := ctrl.NewControllerManagedBy(mgr).Named("machineset").
		For(&machinev1beta1.MachineSet{}).
		Owns(&machinev1beta1.Machine{}).
		Complete(reconcile.Func(s.reconcileMachineSet)); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).Named("machine").
		For(&machinev1beta1.Machine{}).
		Watches(&corev1.ConfigMap{}, allMachines).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return s.machineRequests(ctx, func(m *machinev1beta1.Machine) bool {
				return m.Annotations[AnnotationNodeName] == o.GetName() || (m.Status.NodeRef != nil && m.Status.NodeRef.Name == o.GetName())
			})
		})).
		Complete(reconcile.Func(s.reconcileMachine))
}

func (s *Sim) machineRequests(ctx context.Context, keep func(*machinev1beta1.Machine) bool) []reconcile.Request {
	var ms machinev1beta1.MachineList
	if err := s.List(ctx, &ms, client.InNamespace(s.Namespace)); err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range ms.Items {
		if keep(&ms.Items[i]) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&ms.Items[i])})
		}
	}
	return out
}

// ---------------------------------------------------------------- MachineSet

func (s *Sim) reconcileMachineSet(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ms := &machinev1beta1.MachineSet{}
	if err := s.Get(ctx, req.NamespacedName, ms); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if ms.DeletionTimestamp != nil {
		return reconcile.Result{}, nil // the garbage collector deletes its Machines
	}
	lg := log.FromContext(ctx)
	// scale-from-zero annotations, as the AWS MachineSet controller keeps them
	if cfg, err := capacity.AWSProviderConfig(ms); err == nil {
		if ann := MachineSetAnnotations(ms.Annotations, cfg.InstanceType, MachineSetArch(ms)); ann != nil {
			patch := client.MergeFrom(ms.DeepCopy())
			ms.Annotations = ann
			if err := s.Patch(ctx, ms, patch); err != nil {
				return reconcile.Result{}, err
			}
		}
	}
	sel, err := metav1.LabelSelectorAsSelector(&ms.Spec.Selector)
	if err != nil {
		return reconcile.Result{}, nil
	}
	var list machinev1beta1.MachineList
	if err := s.List(ctx, &list, client.InNamespace(ms.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return reconcile.Result{}, err
	}
	var active []machinev1beta1.Machine
	for _, m := range list.Items {
		if !metav1.IsControlledBy(&m, ms) {
			continue
		}
		if m.DeletionTimestamp == nil {
			active = append(active, m)
		}
	}
	want := int(ptr.Deref(ms.Spec.Replicas, 1))
	switch diff := want - len(active); {
	case diff > 0:
		for i := 0; i < diff; i++ {
			m := newMachine(ms)
			if err := s.Create(ctx, m); err != nil {
				return reconcile.Result{}, err
			}
			lg.Info("created Machine", "machineset", ms.Name, "machine", m.Name)
		}
	case diff < 0:
		for _, m := range ToDelete(active, -diff, string(ms.Spec.DeletePolicy)) {
			if err := s.Delete(ctx, &m); client.IgnoreNotFound(err) != nil {
				return reconcile.Result{}, err
			}
			lg.Info("deleting Machine", "machineset", ms.Name, "machine", m.Name)
		}
	}
	ready := int32(0)
	for _, m := range active {
		if m.Status.NodeRef != nil && ptr.Deref(m.Status.Phase, "") == machinev1beta1.PhaseRunning {
			ready++
		}
	}
	st := machinev1beta1.MachineSetStatus{
		Replicas:             int32(len(active)),
		FullyLabeledReplicas: int32(len(active)),
		ReadyReplicas:        ready,
		AvailableReplicas:    ready,
		ObservedGeneration:   ms.Generation,
		LabelSelector:        sel.String(),
	}
	if ms.Status.Replicas != st.Replicas || ms.Status.ReadyReplicas != st.ReadyReplicas || ms.Status.AvailableReplicas != st.AvailableReplicas ||
		ms.Status.FullyLabeledReplicas != st.FullyLabeledReplicas || ms.Status.ObservedGeneration != st.ObservedGeneration || ms.Status.LabelSelector != st.LabelSelector {
		patch := client.MergeFrom(ms.DeepCopy())
		ms.Status.Replicas, ms.Status.FullyLabeledReplicas, ms.Status.ReadyReplicas = st.Replicas, st.FullyLabeledReplicas, st.ReadyReplicas
		ms.Status.AvailableReplicas, ms.Status.ObservedGeneration, ms.Status.LabelSelector = st.AvailableReplicas, st.ObservedGeneration, st.LabelSelector
		if err := s.Status().Patch(ctx, ms, patch); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{}, nil
}

// newMachine is a Machine of ms's template, named by the API server
// (<machineset>-<5 random characters>) as the real MachineSet controller does.
func newMachine(ms *machinev1beta1.MachineSet) *machinev1beta1.Machine {
	t := ms.Spec.Template.DeepCopy()
	m := &machinev1beta1.Machine{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: ms.Name + "-",
			Namespace:    ms.Namespace,
			Labels:       t.Labels,
			Annotations:  t.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ms,
				machinev1beta1.GroupVersion.WithKind("MachineSet"))},
		},
		Spec: t.Spec,
	}
	return m
}

// ---------------------------------------------------------------- Machine

func providerConfig(m *machinev1beta1.Machine) (*machinev1beta1.AWSMachineProviderConfig, error) {
	cfg := &machinev1beta1.AWSMachineProviderConfig{}
	if m.Spec.ProviderSpec.Value == nil {
		return nil, fmt.Errorf("no providerSpec")
	}
	if err := json.Unmarshal(m.Spec.ProviderSpec.Value.Raw, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func providerStatus(m *machinev1beta1.Machine) *machinev1beta1.AWSMachineProviderStatus {
	ps := &machinev1beta1.AWSMachineProviderStatus{}
	if m.Status.ProviderStatus != nil && len(m.Status.ProviderStatus.Raw) > 0 {
		_ = json.Unmarshal(m.Status.ProviderStatus.Raw, ps)
	}
	ps.APIVersion, ps.Kind = machinev1beta1.GroupVersion.String(), "AWSMachineProviderStatus"
	return ps
}

func setProviderStatus(m *machinev1beta1.Machine, ps *machinev1beta1.AWSMachineProviderStatus) {
	raw, _ := json.Marshal(ps)
	m.Status.ProviderStatus = &runtime.RawExtension{Raw: raw}
}

// archOf is the architecture of m: its MachineSet's, else its instance type's.
func (s *Sim) archOf(ctx context.Context, m *machinev1beta1.Machine, cfg *machinev1beta1.AWSMachineProviderConfig) string {
	if ref := metav1.GetControllerOf(m); ref != nil && ref.Kind == "MachineSet" {
		ms := &machinev1beta1.MachineSet{}
		if err := s.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: ref.Name}, ms); err == nil {
			return MachineSetArch(ms)
		}
	}
	return MachineArch(cfg)
}

func (s *Sim) isBootSlot(slot string) bool { return slices.Contains(s.Boot, slot) }

// slotArch: slots are named after their architecture (hack/cluster NODES).
func slotArch(slot string) string { return slot }

// claimSlot picks a free slot of arch for m: an adoptable static node, else
// a bootable slot. "" when none is free (another Machine holds it).
func (s *Sim) claimSlot(ctx context.Context, m *machinev1beta1.Machine, arch string) (string, error) {
	var list machinev1beta1.MachineList
	if err := s.List(ctx, &list, client.InNamespace(m.Namespace)); err != nil {
		return "", err
	}
	taken := map[string]bool{}
	for _, o := range list.Items {
		if o.Name != m.Name && o.Annotations[AnnotationSlot] != "" {
			taken[o.Annotations[AnnotationSlot]] = true
		}
	}
	var cands []string
	for slot := range s.Adopt {
		cands = append(cands, slot)
	}
	slices.Sort(cands)
	cands = append(cands, s.Boot...)
	for _, slot := range cands {
		if slotArch(slot) != arch || taken[slot] {
			continue
		}
		if name, ok := s.Adopt[slot]; ok {
			if err := s.Get(ctx, client.ObjectKey{Name: name}, &corev1.Node{}); err != nil {
				continue // the static node is not there (mode switch in progress)
			}
		}
		return slot, nil
	}
	return "", nil
}

func (s *Sim) reconcileMachine(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	m := &machinev1beta1.Machine{}
	if err := s.Get(ctx, req.NamespacedName, m); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if m.DeletionTimestamp != nil {
		return s.deleteMachine(ctx, m)
	}
	if !controllerutil.ContainsFinalizer(m, machinev1beta1.MachineFinalizer) {
		controllerutil.AddFinalizer(m, machinev1beta1.MachineFinalizer)
		return reconcile.Result{}, s.Update(ctx, m)
	}
	lg := log.FromContext(ctx)
	conf := s.config(ctx)
	phase := ptr.Deref(m.Status.Phase, "")
	if phase == machinev1beta1.PhaseFailed {
		return reconcile.Result{}, nil
	}
	if phase == "" {
		return reconcile.Result{}, s.setPhase(ctx, m, machinev1beta1.PhaseProvisioning, nil)
	}
	pc, err := providerConfig(m)
	if err != nil {
		return reconcile.Result{}, s.fail(ctx, m, machinev1beta1.InvalidConfigurationMachineError,
			fmt.Sprintf("failed to get machine config: %v", err))
	}
	zone, region := pc.Placement.AvailabilityZone, pc.Placement.Region
	ps := providerStatus(m)

	// 1. launch the instance (the actuator's Create)
	if ps.InstanceID == nil {
		switch conf.Launch(pc.InstanceType, zone) {
		case Unsupported:
			msg := UnsupportedMessage(pc.InstanceType, zone, OtherZones(region, zone))
			s.event(m, corev1.EventTypeWarning, "FailedCreate", "%s: reconciler failed to Create machine: %s", m.Name, msg)
			lg.Info("launch refused (Unsupported, 400): Machine Failed", "machine", m.Name, "instanceType", pc.InstanceType, "zone", zone)
			return reconcile.Result{}, s.fail(ctx, m, machinev1beta1.InvalidConfigurationMachineError, msg)
		case InsufficientCapacity:
			msg := InsufficientCapacityMessage(pc.InstanceType, zone, OtherZones(region, zone), RequestID())
			base := m.DeepCopy()
			setCondition(ps, metav1.Condition{Type: string(machinev1beta1.MachineCreation), Status: metav1.ConditionFalse,
				Reason: machinev1beta1.MachineCreationFailedConditionReason, Message: msg}, s.now())
			setProviderStatus(m, ps)
			if err := s.Status().Patch(ctx, m, client.MergeFrom(base)); err != nil {
				return reconcile.Result{}, err
			}
			s.event(m, corev1.EventTypeWarning, "FailedCreate", "%s: reconciler failed to Create machine: failed to launch instance: %s", m.Name, msg)
			lg.Info("launch refused (InsufficientInstanceCapacity, 500): retrying", "machine", m.Name, "instanceType", pc.InstanceType, "zone", zone)
			return reconcile.Result{RequeueAfter: 20 * time.Second}, nil
		}
		id := InstanceID()
		ip := PrivateIP(zone)
		base := m.DeepCopy()
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[AnnotationInstanceState] = "pending"
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		// the labels the AWS actuator sets (oc get machines: TYPE, REGION, ZONE)
		m.Labels["machine.openshift.io/instance-type"] = pc.InstanceType
		m.Labels["machine.openshift.io/region"] = region
		m.Labels["machine.openshift.io/zone"] = zone
		m.Annotations[AnnotationNodeName] = PrivateDNSName(ip, region)
		m.Spec.ProviderID = ptr.To(ProviderID(zone, id))
		if err := s.Patch(ctx, m, client.MergeFrom(base)); err != nil {
			return reconcile.Result{}, err
		}
		base = m.DeepCopy()
		ps.InstanceID, ps.InstanceState = ptr.To(id), ptr.To("pending")
		setCondition(ps, metav1.Condition{Type: string(machinev1beta1.MachineCreation), Status: metav1.ConditionTrue,
			Reason: machinev1beta1.MachineCreationSucceededConditionReason, Message: "Machine successfully created"}, s.now())
		setProviderStatus(m, ps)
		// no addresses on the first pass, as the AWS actuator does
		if err := s.Status().Patch(ctx, m, client.MergeFrom(base)); err != nil {
			return reconcile.Result{}, err
		}
		s.event(m, corev1.EventTypeNormal, "Create", "Created Machine %s", m.Name)
		lg.Info("instance launched", "machine", m.Name, "instanceId", id, "instanceType", pc.InstanceType, "zone", zone)
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}

	// 2. the instance runs: addresses, Provisioned
	if len(m.Status.Addresses) == 0 {
		base := m.DeepCopy()
		m.Annotations[AnnotationInstanceState] = "running"
		if err := s.Patch(ctx, m, client.MergeFrom(base)); err != nil {
			return reconcile.Result{}, err
		}
		base = m.DeepCopy()
		ps.InstanceState = ptr.To("running")
		setProviderStatus(m, ps)
		dns := m.Annotations[AnnotationNodeName]
		m.Status.Addresses = []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: ipOfDNSName(dns)},
			{Type: corev1.NodeInternalDNS, Address: dns},
			{Type: corev1.NodeHostName, Address: dns},
		}
		m.Status.Phase = ptr.To(machinev1beta1.PhaseProvisioned)
		m.Status.LastUpdated = &metav1.Time{Time: s.now()}
		if err := s.Status().Patch(ctx, m, client.MergeFrom(base)); err != nil {
			return reconcile.Result{}, err
		}
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}
	if conf.Launch(pc.InstanceType, zone) == NeverJoins && m.Status.NodeRef == nil {
		lg.V(1).Info("instance never joins (noNode)", "machine", m.Name)
		return reconcile.Result{}, nil
	}

	// 3. a node for it: adopt a static node or boot a slot
	slot := m.Annotations[AnnotationSlot]
	if slot == "" {
		arch := s.archOf(ctx, m, pc)
		if slot, err = s.claimSlot(ctx, m, arch); err != nil {
			return reconcile.Result{}, err
		}
		if slot == "" {
			lg.Info("no free node slot: the Machine stays Provisioned without a node", "machine", m.Name, "arch", arch)
			return reconcile.Result{RequeueAfter: 15 * time.Second}, nil
		}
		base := m.DeepCopy()
		m.Annotations[AnnotationSlot] = slot
		if name, ok := s.Adopt[slot]; ok {
			m.Annotations[AnnotationNodeName] = name
		}
		if err := s.Patch(ctx, m, client.MergeFrom(base)); err != nil {
			return reconcile.Result{}, err
		}
		if name, ok := s.Adopt[slot]; ok {
			node := &corev1.Node{}
			if err := s.Get(ctx, client.ObjectKey{Name: name}, node); err == nil {
				base := m.DeepCopy()
				m.Status.Addresses = node.Status.Addresses
				if err := s.Status().Patch(ctx, m, client.MergeFrom(base)); err != nil {
					return reconcile.Result{}, err
				}
			}
		}
		lg.Info("node slot claimed", "machine", m.Name, "slot", slot, "node", m.Annotations[AnnotationNodeName])
	}
	nodeName := m.Annotations[AnnotationNodeName]
	if _, adopted := s.Adopt[slot]; !adopted {
		if !s.isBootSlot(slot) {
			// the slot is not ours in this mode (static arm64 node): no node
			return reconcile.Result{}, nil
		}
		running, err := s.Booter.Running(ctx, slot)
		if err != nil {
			return reconcile.Result{}, err
		}
		switch {
		case running == nodeName:
		case running != "":
			lg.Info("node slot runs another node", "machine", m.Name, "slot", slot, "running", running)
			return reconcile.Result{RequeueAfter: 15 * time.Second}, nil
		default:
			launched := launchTime(ps)
			if wait := launched.Add(conf.BootDelay).Sub(s.now()); wait > 0 && m.Status.NodeRef == nil {
				return reconcile.Result{RequeueAfter: wait}, nil
			}
			labels := map[string]string{
				"node.kubernetes.io/instance-type": pc.InstanceType,
				corev1.LabelTopologyZone:           zone,
				corev1.LabelTopologyRegion:         region,
			}
			if err := s.Booter.Start(ctx, slot, nodeName, ptr.Deref(m.Spec.ProviderID, ""), labels); err != nil {
				return reconcile.Result{}, fmt.Errorf("boot %s in slot %s: %w", nodeName, slot, err)
			}
			lg.Info("instance booted: kubelet started", "machine", m.Name, "slot", slot, "node", nodeName)
			return reconcile.Result{RequeueAfter: 2 * time.Second}, nil
		}
	}

	// 4. nodelink: the Node is Ready -> link it, Running
	node := &corev1.Node{}
	if err := s.Get(ctx, client.ObjectKey{Name: nodeName}, node); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{RequeueAfter: 2 * time.Second}, nil
		}
		return reconcile.Result{}, err
	}
	if err := s.linkNode(ctx, m, node); err != nil {
		return reconcile.Result{}, err
	}
	if !nodeReady(node) {
		return reconcile.Result{RequeueAfter: 2 * time.Second}, nil
	}
	if m.Status.NodeRef == nil || m.Status.NodeRef.Name != node.Name || ptr.Deref(m.Status.Phase, "") != machinev1beta1.PhaseRunning {
		base := m.DeepCopy()
		m.Status.NodeRef = &corev1.ObjectReference{Kind: "Node", Name: node.Name, UID: node.UID}
		m.Status.Phase = ptr.To(machinev1beta1.PhaseRunning)
		m.Status.LastUpdated = &metav1.Time{Time: s.now()}
		if err := s.Status().Patch(ctx, m, client.MergeFrom(base)); err != nil {
			return reconcile.Result{}, err
		}
		lg.Info("Machine Running", "machine", m.Name, "node", node.Name)
	}
	return reconcile.Result{}, nil
}

// linkNode does what the nodelink controller does: the node's annotation
// naming its Machine, the Machine template's node labels, and (for an
// adopted node registered without it) spec.providerID.
func (s *Sim) linkNode(ctx context.Context, m *machinev1beta1.Machine, node *corev1.Node) error {
	base := node.DeepCopy()
	if node.Annotations == nil {
		node.Annotations = map[string]string{}
	}
	node.Annotations[AnnotationNodeMachine] = m.Namespace + "/" + m.Name
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	for k, v := range m.Spec.ObjectMeta.Labels {
		node.Labels[k] = v
	}
	if node.Spec.ProviderID == "" && m.Spec.ProviderID != nil {
		node.Spec.ProviderID = *m.Spec.ProviderID
	}
	if equalNode(base, node) {
		return nil
	}
	return s.Patch(ctx, node, client.MergeFrom(base))
}

func equalNode(a, b *corev1.Node) bool {
	if a.Spec.ProviderID != b.Spec.ProviderID || len(a.Annotations) != len(b.Annotations) || len(a.Labels) != len(b.Labels) {
		return false
	}
	for k, v := range b.Annotations {
		if a.Annotations[k] != v {
			return false
		}
	}
	for k, v := range b.Labels {
		if a.Labels[k] != v {
			return false
		}
	}
	return true
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func launchTime(ps *machinev1beta1.AWSMachineProviderStatus) time.Time {
	if c := meta.FindStatusCondition(ps.Conditions, string(machinev1beta1.MachineCreation)); c != nil {
		return c.LastTransitionTime.Time
	}
	return time.Time{}
}

func setCondition(ps *machinev1beta1.AWSMachineProviderStatus, c metav1.Condition, now time.Time) {
	c.LastTransitionTime = metav1.NewTime(now)
	meta.SetStatusCondition(&ps.Conditions, c)
}

// ipOfDNSName: ip-10-0-130-7.eu-west-3.compute.internal -> 10.0.130.7.
func ipOfDNSName(dns string) string {
	var a, b, c, d int
	if _, err := fmt.Sscanf(dns, "ip-%d-%d-%d-%d.", &a, &b, &c, &d); err != nil {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d.%d", a, b, c, d)
}

func (s *Sim) setPhase(ctx context.Context, m *machinev1beta1.Machine, phase string, mutate func()) error {
	base := m.DeepCopy()
	m.Status.Phase = ptr.To(phase)
	m.Status.LastUpdated = &metav1.Time{Time: s.now()}
	if mutate != nil {
		mutate()
	}
	return s.Status().Patch(ctx, m, client.MergeFrom(base))
}

// fail: phase Failed with errorReason/errorMessage, annotation
// instance-state "unknown", as the machine controller's updateStatus does.
func (s *Sim) fail(ctx context.Context, m *machinev1beta1.Machine, reason machinev1beta1.MachineStatusError, msg string) error {
	base := m.DeepCopy()
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[AnnotationInstanceState] = "unknown"
	if err := s.Patch(ctx, m, client.MergeFrom(base)); err != nil {
		return err
	}
	return s.setPhase(ctx, m, machinev1beta1.PhaseFailed, func() {
		m.Status.ErrorReason = ptr.To(reason)
		m.Status.ErrorMessage = ptr.To(msg)
	})
}

func (s *Sim) event(m *machinev1beta1.Machine, typ, reason, format string, args ...any) {
	if s.Recorder != nil {
		s.Recorder.Eventf(m, nil, typ, reason, reason, format, args...)
	}
}

// ---------------------------------------------------------------- deletion

func (s *Sim) deleteMachine(ctx context.Context, m *machinev1beta1.Machine) (reconcile.Result, error) {
	if !controllerutil.ContainsFinalizer(m, machinev1beta1.MachineFinalizer) {
		return reconcile.Result{}, nil
	}
	lg := log.FromContext(ctx)
	if ptr.Deref(m.Status.Phase, "") != "Deleting" {
		if err := s.setPhase(ctx, m, "Deleting", nil); err != nil {
			return reconcile.Result{}, err
		}
	}
	slot, nodeName := m.Annotations[AnnotationSlot], m.Annotations[AnnotationNodeName]
	if m.Status.NodeRef != nil {
		nodeName = m.Status.NodeRef.Name
	}
	if static, adopted := s.Adopt[slot]; adopted && static == nodeName {
		// an adopted static node is left running: only the link goes
		node := &corev1.Node{}
		if err := s.Get(ctx, client.ObjectKey{Name: nodeName}, node); err == nil && node.Annotations[AnnotationNodeMachine] != "" {
			base := node.DeepCopy()
			delete(node.Annotations, AnnotationNodeMachine)
			if err := s.Patch(ctx, node, client.MergeFrom(base)); err != nil {
				return reconcile.Result{}, err
			}
		}
	} else if slot != "" && nodeName != "" {
		running, err := s.Booter.Running(ctx, slot)
		if err != nil {
			return reconcile.Result{}, err
		}
		node := &corev1.Node{}
		err = s.Get(ctx, client.ObjectKey{Name: nodeName}, node)
		if err != nil && !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		if err == nil && running == nodeName && m.Annotations[AnnotationExcludeDraining] == "" &&
			s.now().Before(m.DeletionTimestamp.Add(s.drainTimeout())) {
			left, err := s.drain(ctx, node)
			if err != nil {
				return reconcile.Result{}, err
			}
			if left > 0 {
				lg.Info("draining", "machine", m.Name, "node", nodeName, "pods", left)
				return reconcile.Result{RequeueAfter: 2 * time.Second}, nil
			}
			lg.Info("drained", "machine", m.Name, "node", nodeName)
		}
		if running == nodeName {
			if err := s.Booter.Stop(ctx, slot); err != nil {
				return reconcile.Result{}, err
			}
			lg.Info("instance terminated: kubelet stopped", "machine", m.Name, "slot", slot, "node", nodeName)
		}
		if err == nil {
			if err := s.Delete(ctx, node); client.IgnoreNotFound(err) != nil {
				return reconcile.Result{}, err
			}
			lg.Info("node deleted", "machine", m.Name, "node", nodeName)
		}
	}
	base := m.DeepCopy()
	controllerutil.RemoveFinalizer(m, machinev1beta1.MachineFinalizer)
	return reconcile.Result{}, client.IgnoreNotFound(s.Patch(ctx, m, client.MergeFrom(base)))
}

func (s *Sim) drainTimeout() time.Duration {
	if s.DrainTimeout > 0 {
		return s.DrainTimeout
	}
	return 5 * time.Minute
}

// drain cordons node and evicts its pods (not mirror pods, not DaemonSet
// pods, as `oc adm drain --ignore-daemonsets` does). Returns how many pods
// are still on the node.
func (s *Sim) drain(ctx context.Context, node *corev1.Node) (int, error) {
	if !node.Spec.Unschedulable {
		base := node.DeepCopy()
		node.Spec.Unschedulable = true
		if err := s.Patch(ctx, node, client.MergeFrom(base)); err != nil {
			return 0, err
		}
	}
	var pods corev1.PodList
	if err := s.API.List(ctx, &pods, client.MatchingFields{"spec.nodeName": node.Name}); err != nil {
		return 0, err
	}
	left := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
			continue
		}
		if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "DaemonSet" {
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			// finished pods hold no containers; deleted so the node is empty
			if err := s.Delete(ctx, p); client.IgnoreNotFound(err) != nil {
				return 0, err
			}
			continue
		}
		left++
		if p.DeletionTimestamp != nil {
			continue
		}
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
		if err := s.SubResource("eviction").Create(ctx, p, ev); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsTooManyRequests(err) {
			return 0, err
		}
	}
	return left, nil
}

package main

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// fakeBooter "boots" a node by creating a Ready Node object, as the kubelet
// of a slot would register.
type fakeBooter struct {
	c       client.Client
	mu      sync.Mutex
	running map[string]string
	stops   int
}

func (f *fakeBooter) Start(ctx context.Context, slot, name, providerID string, labels map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur := f.running[slot]; cur != "" && cur != name {
		return os.ErrExist
	}
	f.running[slot] = name
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/arch": slot}},
		Spec: corev1.NodeSpec{ProviderID: providerID}}
	for k, v := range labels {
		n.Labels[k] = v
	}
	if err := f.c.Create(ctx, n); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
	return f.c.Status().Update(ctx, n)
}

func (f *fakeBooter) Stop(_ context.Context, slot string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.running, slot)
	f.stops++
	return nil
}

func (f *fakeBooter) Running(_ context.Context, slot string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running[slot], nil
}

// TestMachineAPIOnEnvtest runs the simulator against a real API server with
// openshift/api's CRDs: the seed, the worker MachineSet adopting a static
// node, an arm64 MachineSet scaled to 1 (node booted, linked, Running) and
// to 0 (node deleted, Machine gone), and a second arm64 Machine that finds
// the only slot taken.
func TestMachineAPIOnEnvtest(t *testing.T) {
	ctrl.SetLogger(logr.Discard())
	env := testenv.Start(t, testenv.OpenShiftMachine, testenv.OpenShiftConfig)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := client.New(env.Config, client.Options{Scheme: scheme()})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := os.ReadFile("../../controllers/testdata/capacity/stream.json")
	if err != nil {
		t.Fatal(err)
	}
	opts := SeedOptions{StreamJSON: string(stream), Region: "eu-west-3", Zone: "eu-west-3a", WorkerType: "m6i.xlarge", Version: "4.21.0", WorkerReplicas: 1}
	if err := Seed(ctx, c, opts); err != nil {
		t.Fatal(err)
	}
	if err := Seed(ctx, c, opts); err != nil { // idempotent
		t.Fatalf("second seed: %v", err)
	}
	static := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "mab-amd64", Labels: map[string]string{"kubernetes.io/arch": "amd64"}}}
	if err := c.Create(ctx, static); err != nil {
		t.Fatal(err)
	}
	static.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if err := c.Status().Update(ctx, static); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: ConfigMapName},
		Data: map[string]string{KeyBootDelay: "1s"}}); err != nil {
		t.Fatal(err)
	}

	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: scheme(), Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{Namespace: {}}}})
	if err != nil {
		t.Fatal(err)
	}
	booter := &fakeBooter{c: c, running: map[string]string{}}
	sim := &Sim{Client: mgr.GetClient(), API: mgr.GetAPIReader(), Namespace: Namespace,
		Adopt: map[string]string{"amd64": "mab-amd64"}, Boot: []string{"arm64"}, Booter: booter}
	if err := sim.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	go func() { _ = mgr.Start(ctx) }()

	eventually := func(what string, f func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !f(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out: %s", what)
			}
		}
	}
	machinesOf := func(ms string) []machinev1beta1.Machine {
		var l machinev1beta1.MachineList
		_ = c.List(ctx, &l, client.InNamespace(Namespace), client.MatchingLabels{"machine.openshift.io/cluster-api-machineset": ms})
		return l.Items
	}

	// the worker adopts the static node
	var sets machinev1beta1.MachineSetList
	if err := c.List(ctx, &sets, client.InNamespace(Namespace)); err != nil || len(sets.Items) != 1 {
		t.Fatalf("worker MachineSets: %d %v", len(sets.Items), err)
	}
	worker := sets.Items[0]
	eventually("worker Machine Running on mab-amd64", func() bool {
		ms := machinesOf(worker.Name)
		return len(ms) == 1 && ptr.Deref(ms[0].Status.Phase, "") == machinev1beta1.PhaseRunning &&
			ms[0].Status.NodeRef != nil && ms[0].Status.NodeRef.Name == "mab-amd64"
	})
	_ = c.Get(ctx, client.ObjectKey{Name: "mab-amd64"}, static)
	wm := machinesOf(worker.Name)[0]
	if static.Spec.ProviderID != ptr.Deref(wm.Spec.ProviderID, "?") || static.Annotations[AnnotationNodeMachine] != Namespace+"/"+wm.Name {
		t.Errorf("adopted node: providerID %q annotation %q; Machine %s providerID %v", static.Spec.ProviderID,
			static.Annotations[AnnotationNodeMachine], wm.Name, ptr.Deref(wm.Spec.ProviderID, ""))
	}
	if _, ok := static.Labels["node-role.kubernetes.io/worker"]; !ok {
		t.Errorf("nodelink did not copy the worker role label: %v", static.Labels)
	}
	if len(booter.running) != 0 {
		t.Errorf("adoption started a kubelet: %v", booter.running)
	}

	// an arm64 MachineSet
	arm := worker.DeepCopy()
	arm.ObjectMeta = metav1.ObjectMeta{Name: "arm", Namespace: Namespace, Labels: worker.Labels,
		Annotations: map[string]string{"capacity.cluster-autoscaler.kubernetes.io/labels": "kubernetes.io/arch=arm64"}}
	arm.Status = machinev1beta1.MachineSetStatus{}
	arm.Spec.Replicas = ptr.To[int32](1)
	arm.Spec.Selector.MatchLabels["machine.openshift.io/cluster-api-machineset"] = "arm"
	arm.Spec.Template.Labels["machine.openshift.io/cluster-api-machineset"] = "arm"
	if err := c.Create(ctx, arm); err != nil {
		t.Fatal(err)
	}
	scale := func(n int32) {
		t.Helper()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(arm), arm); err != nil {
				return err
			}
			arm.Spec.Replicas = ptr.To(n)
			return c.Update(ctx, arm)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var m machinev1beta1.Machine
	eventually("arm64 Machine Running", func() bool {
		ms := machinesOf("arm")
		if len(ms) == 1 {
			m = ms[0]
		}
		return len(ms) == 1 && ptr.Deref(ms[0].Status.Phase, "") == machinev1beta1.PhaseRunning
	})
	node := &corev1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: m.Status.NodeRef.Name}, node); err != nil {
		t.Fatal(err)
	}
	if node.Spec.ProviderID != *m.Spec.ProviderID || node.Annotations[AnnotationNodeMachine] != Namespace+"/"+m.Name ||
		booter.running["arm64"] != node.Name || len(m.Status.Addresses) != 3 || m.Annotations[AnnotationInstanceState] != "running" ||
		metav1.GetControllerOf(&m) == nil || metav1.GetControllerOf(&m).Name != "arm" {
		t.Errorf("arm64 Machine %s / node %s: providerID %s/%s annotation %q slot %q addresses %v",
			m.Name, node.Name, node.Spec.ProviderID, *m.Spec.ProviderID, node.Annotations[AnnotationNodeMachine], booter.running["arm64"], m.Status.Addresses)
	}
	eventually("MachineSet readyReplicas 1", func() bool {
		_ = c.Get(ctx, client.ObjectKeyFromObject(arm), arm)
		return arm.Status.ReadyReplicas == 1 && arm.Annotations["machine.openshift.io/vCPU"] == "4"
	})

	// a second arm64 Machine: the only slot is taken
	scale(2)
	eventually("second arm64 Machine Provisioned", func() bool {
		for _, o := range machinesOf("arm") {
			if o.Name != m.Name && ptr.Deref(o.Status.Phase, "") == machinev1beta1.PhaseProvisioned {
				return true
			}
		}
		return false
	})
	time.Sleep(1500 * time.Millisecond) // past the boot delay
	for _, o := range machinesOf("arm") {
		if o.Name != m.Name && (o.Status.NodeRef != nil || ptr.Deref(o.Status.Phase, "") != machinev1beta1.PhaseProvisioned) {
			t.Errorf("second Machine %s: phase %v nodeRef %v, want Provisioned without node", o.Name, ptr.Deref(o.Status.Phase, ""), o.Status.NodeRef)
		}
	}

	// scale to 0: nodeless first, then the node is removed with its Machine
	scale(0)
	eventually("arm64 Machines gone", func() bool { return len(machinesOf("arm")) == 0 })
	if err := c.Get(ctx, client.ObjectKey{Name: node.Name}, &corev1.Node{}); !apierrors.IsNotFound(err) {
		t.Errorf("node %s still there: %v", node.Name, err)
	}
	if booter.stops != 1 || booter.running["arm64"] != "" {
		t.Errorf("slot: stops %d running %v", booter.stops, booter.running)
	}

	// failure: unsupported -> Failed, InvalidConfiguration
	cm := &corev1.ConfigMap{}
	_ = c.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: ConfigMapName}, cm)
	cm.Data[KeyUnsupported] = "m6i.xlarge@eu-west-3a"
	if err := c.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	scale(1)
	eventually("Machine Failed", func() bool {
		ms := machinesOf("arm")
		if len(ms) == 1 {
			m = ms[0]
		}
		return len(ms) == 1 && ptr.Deref(ms[0].Status.Phase, "") == machinev1beta1.PhaseFailed
	})
	if ptr.Deref(m.Status.ErrorReason, "") != machinev1beta1.InvalidConfigurationMachineError ||
		ptr.Deref(m.Status.ErrorMessage, "") != UnsupportedMessage("m6i.xlarge", "eu-west-3a", []string{"eu-west-3b", "eu-west-3c"}) {
		t.Errorf("Failed Machine: %v %v", ptr.Deref(m.Status.ErrorReason, ""), ptr.Deref(m.Status.ErrorMessage, ""))
	}
}

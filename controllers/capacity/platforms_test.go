package capacity

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	configv1 "github.com/openshift/api/config/v1"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	plan "github.com/multiarch-build/multiarch-build-operator/internal/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/settings"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// The Azure and GCP stories run the capacity controller on API servers with
// OpenShift's real MachineSet, Machine, Infrastructure and ClusterVersion
// CRDs, filled as the OpenShift 4.21 installer leaves a cluster on Azure
// (eastus, zone 1) or GCP (us-central1, zone a): Infrastructure/cluster, a
// multi-architecture ClusterVersion, the coreos-bootimages ConfigMap (whose
// stream has the Azure marketplace and GCP images), the installer's worker
// MachineSet (testdata/, copies of internal/capacity/testdata/), an amd64
// control plane node and an amd64 worker node.

// cloud is what differs between an Azure and a GCP cluster.
type cloud struct {
	platform   configv1.PlatformType
	infraName  string
	workerFile string
	spec       configv1.PlatformSpec
	status     configv1.PlatformStatus
	master     string
	worker     string
}

var (
	azureCloud = cloud{
		platform:   configv1.AzurePlatformType,
		infraName:  "build-multiarch-5xk8q",
		workerFile: "azure-worker-machineset.yaml",
		spec:       configv1.PlatformSpec{Type: configv1.AzurePlatformType, Azure: &configv1.AzurePlatformSpec{}},
		// Azure's platform status has no region: the template's location is kept.
		status: configv1.PlatformStatus{Type: configv1.AzurePlatformType, Azure: &configv1.AzurePlatformStatus{
			ResourceGroupName:        "build-multiarch-5xk8q-rg",
			NetworkResourceGroupName: "build-multiarch-5xk8q-rg",
			CloudName:                configv1.AzurePublicCloud,
		}},
		master: "build-multiarch-5xk8q-master-0",
		worker: "build-multiarch-5xk8q-worker-eastus1-7xq2v",
	}
	gcpCloud = cloud{
		platform:   configv1.GCPPlatformType,
		infraName:  "build-multiarch-q8d2w",
		workerFile: "gcp-worker-machineset.yaml",
		spec:       configv1.PlatformSpec{Type: configv1.GCPPlatformType, GCP: &configv1.GCPPlatformSpec{}},
		status: configv1.PlatformStatus{Type: configv1.GCPPlatformType, GCP: &configv1.GCPPlatformStatus{
			ProjectID: "openshift-build-multiarch",
			Region:    "us-central1",
		}},
		master: "build-multiarch-q8d2w-master-0",
		worker: "build-multiarch-q8d2w-worker-a-k7rjd",
	}
)

const (
	cloudRHCOSVersion = "9.6.20251015"
	cloudArmVHD       = "https://rhcos.blob.core.windows.net/imagebucket/rhcos-9.6.20250523-0-azure.aarch64.vhd"
	cloudArmGCPImage  = "projects/rhcos-cloud/global/images/rhcos-9-6-20250523-0-gcp-aarch64"
)

// cloudFixture is a capFixture on an Azure or GCP cluster.
type cloudFixture struct {
	*capFixture
	cl     cloud
	stream string
}

func cloudReadFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *cloudFixture) workerSet() *machinev1beta1.MachineSet {
	f.t.Helper()
	ms := &machinev1beta1.MachineSet{}
	f.must(yaml.Unmarshal(cloudReadFixture(f.t, f.cl.workerFile), ms))
	return ms
}

func newCloudFixture(t *testing.T, env *testenv.Env, cl cloud) *cloudFixture {
	c, err := client.New(env.Config, client.Options{Scheme: capScheme})
	if err != nil {
		t.Fatal(err)
	}
	base := newBareCapFixture(t, c)
	f := &cloudFixture{capFixture: base, cl: cl, stream: string(cloudReadFixture(t, "stream.json"))}
	for _, ns := range []string{capMachineNS, plan.BootImagesNamespace, capBuildNS} {
		f.must(c.Create(f.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	f.must(c.Create(f.ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: plan.BootImagesNamespace, Name: plan.BootImagesConfigMap},
		Data:       map[string]string{plan.BootImagesKey: f.stream, "releaseVersion": "4.21.0"},
	}))

	infra := &configv1.Infrastructure{ObjectMeta: metav1.ObjectMeta{Name: "cluster"},
		Spec: configv1.InfrastructureSpec{PlatformSpec: cl.spec}}
	f.must(c.Create(f.ctx, infra))
	infra.Status = configv1.InfrastructureStatus{
		InfrastructureName:     cl.infraName,
		Platform:               cl.platform,
		PlatformStatus:         cl.status.DeepCopy(),
		APIServerURL:           "https://api.build-multiarch.example.com:6443",
		APIServerInternalURL:   "https://api-int.build-multiarch.example.com:6443",
		ControlPlaneTopology:   configv1.HighlyAvailableTopologyMode,
		InfrastructureTopology: configv1.HighlyAvailableTopologyMode,
		CPUPartitioning:        configv1.CPUPartitioningNone,
	}
	f.must(c.Status().Update(f.ctx, infra))

	// A multi-architecture payload, without which no arm64 node could join.
	cv := &configv1.ClusterVersion{ObjectMeta: metav1.ObjectMeta{Name: "version"},
		Spec: configv1.ClusterVersionSpec{ClusterID: "5f0c3c6e-1b7a-4d2e-9a51-3c8e2f6b7d10", Channel: "stable-4.21"}}
	f.must(c.Create(f.ctx, cv))
	now := metav1.Now()
	image := "quay.io/openshift-release-dev/ocp-release@sha256:0f6c4ed4f4a1b8a1a9d7e3c2b5f4e6d7c8b9a0f1e2d3c4b5a69788796a5b4c3d"
	cv.Status = configv1.ClusterVersionStatus{
		Desired: configv1.Release{Version: "4.21.0", Image: image, Architecture: configv1.ClusterVersionArchitectureMulti},
		History: []configv1.UpdateHistory{{State: configv1.CompletedUpdate, StartedTime: now, CompletionTime: &now,
			Version: "4.21.0", Image: image}},
		ObservedGeneration: cv.Generation,
		VersionHash:        "Xl3Jv5UzCqA=",
		AvailableUpdates:   []configv1.Release{},
		Capabilities:       configv1.ClusterVersionCapabilitiesStatus{},
	}
	f.must(c.Status().Update(f.ctx, cv))

	f.must(c.Create(f.ctx, f.workerSet()))
	f.node(cl.master, "amd64", func(n *corev1.Node) {
		n.Labels[plan.LabelNodeRoleMaster] = ""
		delete(n.Labels, plan.LabelNodeRoleWorker)
		n.Spec.Taints = []corev1.Taint{{Key: "node-role.kubernetes.io/master", Effect: corev1.TaintEffectNoSchedule}}
	})
	f.node(cl.worker, "amd64")

	// The reconciler acts as the operator's ServiceAccount with the CSV's
	// rules, and reads ClusterVersion as NewCluster does where it is served.
	oc, err := client.New(operatorConfig(t, env), client.Options{Scheme: capScheme})
	if err != nil {
		t.Fatal(err)
	}
	f.r = &Reconciler{
		Cluster: &Cluster{
			Reader: oc, Machines: oc, MachineAPI: true, Settings: settings.Default(), Clock: f.clk,
			Conflict: plan.DefaultConflictPolicy, RunName: pipeline.RunName,
			infraServed: true, cvServed: true,
		},
		Client: oc, Recorder: f.rec,
	}
	return f
}

// newBareCapFixture is an empty capFixture on c with the AWS stories'
// clock and event recorder.
func newBareCapFixture(t *testing.T, c client.Client) *capFixture {
	return &capFixture{t: t, ctx: context.Background(), c: c,
		clk: testingclock.NewFakeClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)),
		rec: events.NewFakeRecorder(100)}
}

// setStream replaces the stream of the coreos-bootimages ConfigMap.
func (f *cloudFixture) setStream(stream string) {
	f.t.Helper()
	cm := &corev1.ConfigMap{}
	f.must(f.c.Get(f.ctx, types.NamespacedName{Namespace: plan.BootImagesNamespace, Name: plan.BootImagesConfigMap}, cm))
	cm.Data[plan.BootImagesKey] = stream
	f.must(f.c.Update(f.ctx, cm))
}

// streamWithout is the fixture's stream without the element at path
// (keys of nested objects) of architecture arch.
func (f *cloudFixture) streamWithout(arch string, path ...string) string {
	f.t.Helper()
	var st map[string]any
	f.must(json.Unmarshal([]byte(f.stream), &st))
	m := st["architectures"].(map[string]any)[arch].(map[string]any)
	for _, k := range path[:len(path)-1] {
		m = m[k].(map[string]any)
	}
	if _, ok := m[path[len(path)-1]]; !ok {
		f.t.Fatalf("stream has no %s %v", arch, path)
	}
	delete(m, path[len(path)-1])
	b, err := json.Marshal(st)
	f.must(err)
	return string(b)
}

// reset removes what a story added and restores the stream and settings.
func (f *cloudFixture) reset() {
	f.t.Helper()
	f.must(f.c.DeleteAllOf(f.ctx, &v1alpha1.MultiArchBuild{}, client.InNamespace(capBuildNS)))
	var nodes corev1.NodeList
	f.must(f.c.List(f.ctx, &nodes))
	for i := range nodes.Items {
		if n := &nodes.Items[i]; n.Name != f.cl.master && n.Name != f.cl.worker {
			f.must(f.c.Delete(f.ctx, n))
		}
	}
	worker := f.workerSet()
	var sets machinev1beta1.MachineSetList
	f.must(f.c.List(f.ctx, &sets, client.InNamespace(capMachineNS)))
	for i := range sets.Items {
		if ms := &sets.Items[i]; ms.Name != worker.Name {
			f.must(f.c.Delete(f.ctx, ms))
		}
	}
	f.setStream(f.stream)
	f.r.Settings = settings.Default()
	f.events()
}

func (f *cloudFixture) story(t *testing.T, name string, fn func(t *testing.T, f *cloudFixture)) {
	t.Run(name, func(t *testing.T) {
		f.t = t
		defer f.reset()
		fn(t, f)
	})
}

// providerSpecKind is the kind and apiVersion written in ms's providerSpec.
func providerSpecKind(t *testing.T, ms *machinev1beta1.MachineSet) string {
	t.Helper()
	var tm metav1.TypeMeta
	if err := json.Unmarshal(ms.Spec.Template.Spec.ProviderSpec.Value.Raw, &tm); err != nil {
		t.Fatal(err)
	}
	return tm.APIVersion + "/" + tm.Kind
}

// checkCommon asserts what every MachineSet the operator creates has,
// whatever the platform: name, labels, annotations, selector, replicas 0.
func checkCommon(t *testing.T, f *cloudFixture, ms *machinev1beta1.MachineSet, name string) {
	t.Helper()
	if ms.Name != name {
		t.Errorf("name %s, want %s", ms.Name, name)
	}
	if ms.Labels[plan.LabelManagedBy] != "true" || ms.Labels[plan.LabelArch] != "arm64" || ms.Labels[plan.LabelCluster] != f.cl.infraName {
		t.Errorf("labels %v", ms.Labels)
	}
	if ms.Annotations[plan.AnnotationAutoscalerLabels] != "kubernetes.io/arch=arm64" {
		t.Errorf("autoscaler labels annotation %q", ms.Annotations[plan.AnnotationAutoscalerLabels])
	}
	for _, k := range []string{plan.AnnotationVCPU, plan.AnnotationMemoryMb, plan.AnnotationGPU, plan.AnnotationMaxPods} {
		if _, ok := ms.Annotations[k]; ok {
			t.Errorf("stale annotation %s copied from the amd64 template", k)
		}
	}
	if ms.Spec.Selector.MatchLabels[plan.LabelMachineSet] != name || ms.Spec.Template.Labels[plan.LabelMachineSet] != name ||
		ms.Spec.Template.Labels[plan.LabelMachineRole] != "worker" {
		t.Errorf("selector %v template labels %v", ms.Spec.Selector.MatchLabels, ms.Spec.Template.Labels)
	}
	if _, ok := ms.Spec.Template.Spec.Labels[plan.LabelNodeRoleWorker]; !ok {
		t.Errorf("node labels %v", ms.Spec.Template.Spec.Labels)
	}
	if len(ms.OwnerReferences) != 0 || ptr.Deref(ms.Spec.Replicas, -1) != 0 {
		t.Errorf("owners %v replicas %v: created with no owner, at 0", ms.OwnerReferences, ms.Spec.Replicas)
	}
}

// cloudLifecycle is the story both platforms tell: a two-arch Managed build
// on a cluster with amd64 nodes only; Check says the arm64 MachineSet is
// being created; one Reconcile creates it (checked by inspect), the next
// scales it to 1; an arm64 node makes the build Ready.
func cloudLifecycle(t *testing.T, f *cloudFixture, name, instanceType string, inspect func(ms *machinev1beta1.MachineSet)) {
	t.Helper()
	b := f.build("htop", capBoth)
	res := f.check(b)
	if res.Ready || res.Reason != v1alpha1.ReasonProvisioningNodes || res.Terminal ||
		!strings.Contains(res.Waiting[v1alpha1.PlatformLinuxARM64], "creating MachineSet "+name+" ("+instanceType+")") ||
		res.Waiting[v1alpha1.PlatformLinuxAMD64] != "" {
		t.Fatalf("before: %+v", res)
	}
	f.reconcile("amd64")
	if ours, _ := f.machineSets("amd64"); len(ours) != 0 {
		t.Fatalf("amd64 has a usable node; the operator created %d MachineSets", len(ours))
	}
	f.reconcile("arm64")
	ms := f.onlyOurs("arm64")
	checkCommon(t, f, &ms, name)
	if got := plan.InstanceTypeOf(&ms); got != instanceType {
		t.Errorf("instance type %q, want the platform's arm64 default %s (the flag's default is an AWS type)", got, instanceType)
	}
	inspect(&ms)

	f.reconcile("arm64")
	ms = f.onlyOurs("arm64")
	if ptr.Deref(ms.Spec.Replicas, -1) != 1 {
		t.Fatalf("replicas %v, want Settings.MachineSetReplicas=1", ms.Spec.Replicas)
	}
	res = f.check(b)
	if res.Ready || res.Reason != v1alpha1.ReasonProvisioningNodes || !strings.Contains(res.Waiting[v1alpha1.PlatformLinuxARM64], name+" ("+instanceType+", 0/1 ready)") {
		t.Fatalf("while scaling: %+v", res)
	}

	f.node(name+"-x2m9p", "arm64") // as the Machine of that MachineSet names it
	res = f.check(b)
	if !res.Ready || res.Reason != v1alpha1.ReasonNodesAvailable || len(res.Waiting) != 0 {
		t.Fatalf("with an arm64 node: %+v", res)
	}
	f.reconcile("arm64")
	if ms := f.onlyOurs("arm64"); ptr.Deref(ms.Spec.Replicas, -1) != 1 {
		t.Errorf("a needed MachineSet must stay up: replicas %v", ms.Spec.Replicas)
	}
	if ev := f.events(); len(ev) != 2 || !strings.Contains(ev[0], "Created") || !strings.Contains(ev[1], "ScaledUp") {
		t.Errorf("events %q", ev)
	}
	worker := &machinev1beta1.MachineSet{}
	f.must(f.c.Get(f.ctx, client.ObjectKeyFromObject(f.workerSet()), worker))
	if ptr.Deref(worker.Spec.Replicas, -1) != 1 || plan.IsManaged(worker) {
		t.Errorf("the installer's worker MachineSet was changed: replicas %v labels %v", worker.Spec.Replicas, worker.Labels)
	}
}

// cloudRefused asserts that a Reconcile creates no arm64 MachineSet and
// that Check reports reason, terminal, with every one of want in the arm64
// message.
func cloudRefused(t *testing.T, f *cloudFixture, reason string, want ...string) {
	t.Helper()
	b := f.build("htop", capBoth)
	f.reconcile("arm64")
	if ours, _ := f.machineSets("arm64"); len(ours) != 0 {
		t.Fatalf("created %d MachineSets", len(ours))
	}
	res := f.check(b)
	if res.Ready || res.Reason != reason || !res.Terminal {
		t.Fatalf("want %s, terminal: %+v", reason, res)
	}
	msg := res.Waiting[v1alpha1.PlatformLinuxARM64]
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("arm64 message lacks %q:\n%s", w, msg)
		}
	}
	if res.Waiting[v1alpha1.PlatformLinuxAMD64] != "" {
		t.Errorf("amd64 has a node: %+v", res)
	}
}

func TestCapacityOnOpenShiftAzure(t *testing.T) {
	env := testenv.Start(t, testenv.Ours, testenv.OpenShiftMachine, testenv.OpenShiftConfig)
	f := newCloudFixture(t, env, azureCloud)
	tmpl, err := plan.AzureProviderSpec(f.workerSet())
	if err != nil {
		t.Fatal(err)
	}

	f.story(t, "arm64 MachineSet is cloned from the worker with the stream's aarch64 marketplace image, Standard_D4ps_v5 and zone 1", func(t *testing.T, f *cloudFixture) {
		cloudLifecycle(t, f, "build-multiarch-5xk8q-arm64-build-eastus1", "Standard_D4ps_v5", func(ms *machinev1beta1.MachineSet) {
			if k := providerSpecKind(t, ms); k != "machine.openshift.io/v1beta1/AzureMachineProviderSpec" {
				t.Errorf("providerSpec %s", k)
			}
			cfg, err := plan.AzureProviderSpec(ms)
			if err != nil {
				t.Fatal(err)
			}
			want := machinev1beta1.Image{Publisher: "azureopenshift", Offer: "aro4", SKU: "420-arm", Version: cloudRHCOSVersion,
				Type: machinev1beta1.AzureImageTypeMarketplaceNoPlan}
			if cfg.Image != want {
				t.Errorf("image %+v, want the stream's aarch64 hyperVGen2 no-purchase-plan image %+v", cfg.Image, want)
			}
			if cfg.VMSize != "Standard_D4ps_v5" || cfg.Zone != "1" || cfg.Location != "eastus" {
				t.Errorf("vmSize %s zone %q location %s", cfg.VMSize, cfg.Zone, cfg.Location)
			}
			// Everything else is the installer's.
			if cfg.ResourceGroup != tmpl.ResourceGroup || cfg.NetworkResourceGroup != tmpl.NetworkResourceGroup ||
				cfg.Vnet != tmpl.Vnet || cfg.Subnet != tmpl.Subnet || cfg.PublicLoadBalancer != tmpl.PublicLoadBalancer ||
				cfg.OSDisk.DiskSizeGB != 128 || cfg.OSDisk.ManagedDisk.StorageAccountType != "Premium_LRS" ||
				cfg.UserDataSecret == nil || cfg.UserDataSecret.Name != "worker-user-data" ||
				cfg.CredentialsSecret == nil || cfg.CredentialsSecret.Name != "azure-cloud-credentials" {
				t.Errorf("not copied from the template: %+v", cfg)
			}
		})
	})

	f.story(t, "a stream without an aarch64 marketplace image gives BootImageNotFound naming the gallery image to provide", func(t *testing.T, f *cloudFixture) {
		f.setStream(f.streamWithout("aarch64", "rhel-coreos-extensions", "marketplace"))
		cloudRefused(t, f, v1alpha1.ReasonBootImageNotFound,
			"no Azure marketplace image (rhel-coreos-extensions.marketplace.azure.no-purchase-plan.hyperVGen2) for aarch64",
			"only the VHD "+cloudArmVHD,
			"Azure compute gallery image definition (OS Linux, architecture Arm64, Hyper-V generation V2)",
			"provide its resourceID (/resourceGroups/<group>/providers/Microsoft.Compute/galleries/<gallery>/images/<definition>/versions/<version>) as the arm64 boot image")
	})

	f.story(t, "zones that are not Azure availability zones give NoTemplateMachineSet", func(t *testing.T, f *cloudFixture) {
		f.r.Settings.MachineSetZones = []string{"eastus-1"}
		cloudRefused(t, f, v1alpha1.ReasonNoTemplateMachineSet,
			`zone "eastus-1" is not an Azure availability zone`, "some of 1,2,3")
	})
}

func TestCapacityOnOpenShiftGCP(t *testing.T) {
	env := testenv.Start(t, testenv.Ours, testenv.OpenShiftMachine, testenv.OpenShiftConfig)
	f := newCloudFixture(t, env, gcpCloud)
	tmpl, err := plan.GCPProviderSpec(f.workerSet())
	if err != nil {
		t.Fatal(err)
	}

	f.story(t, "arm64 MachineSet is cloned from the worker with the stream's aarch64 image on its boot disk, t2a-standard-4 and zone us-central1-a", func(t *testing.T, f *cloudFixture) {
		cloudLifecycle(t, f, "build-multiarch-q8d2w-arm64-build-us-central1-a", "t2a-standard-4", func(ms *machinev1beta1.MachineSet) {
			if k := providerSpecKind(t, ms); k != "machine.openshift.io/v1beta1/GCPMachineProviderSpec" {
				t.Errorf("providerSpec %s", k)
			}
			cfg, err := plan.GCPProviderSpec(ms)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Disks) != 1 || !cfg.Disks[0].Boot || cfg.Disks[0].Image != cloudArmGCPImage ||
				cfg.Disks[0].Type != "pd-ssd" || cfg.Disks[0].SizeGB != 128 {
				t.Errorf("disks %s, want one boot disk (pd-ssd: T2A boots from Persistent Disk) with %s", spew(cfg.Disks), cloudArmGCPImage)
			}
			if cfg.MachineType != "t2a-standard-4" || cfg.Zone != "us-central1-a" || cfg.Region != "us-central1" {
				t.Errorf("machineType %s zone %s region %s", cfg.MachineType, cfg.Zone, cfg.Region)
			}
			if cfg.ProjectID != tmpl.ProjectID || len(cfg.NetworkInterfaces) != 1 ||
				cfg.NetworkInterfaces[0].Subnetwork != tmpl.NetworkInterfaces[0].Subnetwork ||
				len(cfg.ServiceAccounts) != 1 || cfg.ServiceAccounts[0].Email != tmpl.ServiceAccounts[0].Email ||
				strings.Join(cfg.Tags, ",") != "build-multiarch-q8d2w-worker" ||
				cfg.UserDataSecret == nil || cfg.UserDataSecret.Name != "worker-user-data" {
				t.Errorf("not copied from the template: %+v", cfg)
			}
		})
	})

	f.story(t, "a zone outside the cluster's region gives NoTemplateMachineSet", func(t *testing.T, f *cloudFixture) {
		f.r.Settings.MachineSetZones = []string{"europe-west4-a"}
		cloudRefused(t, f, v1alpha1.ReasonNoTemplateMachineSet,
			`zone "europe-west4-a" is not in the region us-central1 of template MachineSet build-multiarch-q8d2w-worker-a`,
			"--machineset-zones to zones of us-central1")
	})

	f.story(t, "a stream without an aarch64 GCP image gives BootImageNotFound", func(t *testing.T, f *cloudFixture) {
		f.setStream(f.streamWithout("aarch64", "images", "gcp"))
		cloudRefused(t, f, v1alpha1.ReasonBootImageNotFound,
			"no GCP image (images.gcp) for aarch64",
			"projects/<project>/global/images/<name>) as the arm64 boot image")
	})
}

func spew(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

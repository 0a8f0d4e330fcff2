package capacity

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/stream-metadata-go/stream"
	"github.com/google/go-cmp/cmp"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// The Azure and GCP fixtures, and a stream that has Azure and GCP images
// (a superset of the AWS one the controller's stories share).
func localStream(t *testing.T, mutate ...func(*stream.Stream)) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "stream.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(mutate) == 0 {
		return string(b)
	}
	var st stream.Stream
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for _, m := range mutate {
		m(&st)
	}
	out, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func localMachineSet(t *testing.T, file string) machinev1beta1.MachineSet {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var ms machinev1beta1.MachineSet
	if err := yaml.UnmarshalStrict(b, &ms); err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestInstanceTypeArchAzureAndGCP(t *testing.T) {
	for in, want := range map[string][2]string{
		// Azure: a "p" among the additive features is Arm64.
		"Standard_D4ps_v5": {"arm64", "Azure"}, "Standard_E8pds_v5": {"arm64", "Azure"},
		"Standard_B2pls_v2": {"arm64", "Azure"}, "Standard_D16plds_v5": {"arm64", "Azure"},
		"Standard_D2ps_v6": {"arm64", "Azure"}, "standard_d4ps_v5": {"arm64", "Azure"},
		"Standard_D4s_v3": {"amd64", "Azure"}, "Standard_D8as_v5": {"amd64", "Azure"},
		"Standard_NC24ads_A100_v4": {"amd64", "Azure"}, "Standard_NP10s": {"amd64", "Azure"},
		"Standard_M8-2ms": {"amd64", "Azure"}, "Standard_DS2_v2": {"amd64", "Azure"},
		"Standard_HB120rs_v3": {"amd64", "Azure"}, "Basic_A1": {"amd64", "Azure"},
		"Standard_": {"", ""}, "Standard_4ps": {"", ""},
		// GCP: the Arm series.
		"t2a-standard-4": {"arm64", "GCP"}, "c4a-highmem-8": {"arm64", "GCP"},
		"c4a-standard-4-lssd": {"arm64", "GCP"}, "n4a-standard-2": {"arm64", "GCP"},
		"n2-standard-4": {"amd64", "GCP"}, "e2-medium": {"amd64", "GCP"}, "t2d-standard-4": {"amd64", "GCP"},
		"n2-custom-4-16384": {"amd64", "GCP"}, "c3-highcpu-8": {"amd64", "GCP"},
		"N2-standard-4": {"", ""}, "-standard-4": {"", ""},
		// AWS unchanged.
		"m6g.2xlarge": {"arm64", "AWS"}, "m5a.2xlarge": {"amd64", "AWS"}, "nodot": {"", ""},
	} {
		if got := InstanceTypeArch(in); got != want[0] {
			t.Errorf("InstanceTypeArch(%q) = %q, want %q", in, got, want[0])
		}
		if got := InstanceTypePlatform(in); got != want[1] {
			t.Errorf("InstanceTypePlatform(%q) = %q, want %q", in, got, want[1])
		}
	}
}

func TestDefaultInstanceType(t *testing.T) {
	for _, tt := range []struct{ platform, arch, configured, want string }{
		{"Azure", "arm64", "m6g.2xlarge", "Standard_D4ps_v5"}, // the AWS default means nothing on Azure
		{"Azure", "arm64", "Standard_D8ps_v5", "Standard_D8ps_v5"},
		{"Azure", "amd64", "", "Standard_D4s_v5"},
		{"GCP", "arm64", "m6g.2xlarge", "t2a-standard-4"},
		{"GCP", "arm64", "c4a-standard-8", "c4a-standard-8"},
		{"AWS", "arm64", "m6g.2xlarge", "m6g.2xlarge"},
		{"AWS", "arm64", "t2a-standard-4", ""},
		{"GCP", "ppc64le", "", ""},
	} {
		if got := DefaultInstanceType(tt.platform, tt.arch, tt.configured); got != tt.want {
			t.Errorf("DefaultInstanceType(%s, %s, %q) = %q, want %q", tt.platform, tt.arch, tt.configured, got, tt.want)
		}
	}
}

func TestMachineSetArchAndPlatformOfAzureAndGCP(t *testing.T) {
	az := localMachineSet(t, "azure-worker-machineset.yaml")
	gcp := localMachineSet(t, "gcp-worker-machineset.yaml")
	if p := MachineSetPlatform(&az); p != PlatformAzure {
		t.Errorf("Azure fixture platform %q", p)
	}
	if p := MachineSetPlatform(&gcp); p != PlatformGCP {
		t.Errorf("GCP fixture platform %q", p)
	}
	if p := MachineSetPlatform(ptrTo(workerFixture(t))); p != PlatformAWS {
		t.Errorf("AWS fixture platform %q", p)
	}
	if _, err := AWSProviderConfig(&az); err == nil {
		t.Errorf("an Azure providerSpec decoded as AWS")
	}
	// Not annotated yet: the VM size and the machine type tell.
	delete(az.Annotations, AnnotationAutoscalerLabels)
	delete(gcp.Annotations, AnnotationAutoscalerLabels)
	for _, tt := range []struct {
		ms   *machinev1beta1.MachineSet
		want string
	}{{&az, "amd64"}, {&gcp, "amd64"}} {
		if a, from := MachineSetArch(tt.ms); a != tt.want || from != "instance-type" {
			t.Errorf("%s: %q from %q", tt.ms.Name, a, from)
		}
	}
	arm := az.DeepCopy()
	cfg, _ := AzureProviderSpec(arm)
	cfg.VMSize = "Standard_E8pds_v5"
	arm.Spec.Template.Spec.ProviderSpec.Value.Raw, _ = json.Marshal(cfg)
	if a, _ := MachineSetArch(arm); a != "arm64" {
		t.Errorf("Standard_E8pds_v5 MachineSet: %q", a)
	}
}

func ptrTo[T any](v T) *T { return &v }

func TestPlanMachineSetsAzureArm64(t *testing.T) {
	worker := localMachineSet(t, "azure-worker-machineset.yaml")
	sets, err := PlanMachineSets(PlanInput{
		Arch: "arm64", InfrastructureName: "build-multiarch-5xk8q", Platform: PlatformAzure,
		MachineSets: []machinev1beta1.MachineSet{worker}, HostArch: "amd64",
		Zones: []string{"1", "2", "3"}, InstanceType: DefaultInstanceType(PlatformAzure, "arm64", "m6g.2xlarge"),
		StreamJSON: localStream(t), StreamFound: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	var names, zones []string
	for _, ms := range sets {
		cfg, err := AzureProviderSpec(ms)
		if err != nil {
			t.Fatal(err)
		}
		names, zones = append(names, ms.Name), append(zones, cfg.Zone)
	}
	if diff := cmp.Diff([]string{
		"build-multiarch-5xk8q-arm64-build-eastus1", "build-multiarch-5xk8q-arm64-build-eastus2", "build-multiarch-5xk8q-arm64-build-eastus3",
	}, names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"1", "2", "3"}, zones); diff != "" {
		t.Errorf("zones (-want +got):\n%s", diff)
	}
	ms := sets[0]
	name := ms.Name
	if ms.Namespace != "openshift-machine-api" || *ms.Spec.Replicas != 0 {
		t.Errorf("namespace/replicas: %s %d", ms.Namespace, *ms.Spec.Replicas)
	}
	if diff := cmp.Diff(map[string]string{
		LabelCluster: "build-multiarch-5xk8q", LabelMachineRole: "worker", "machine.openshift.io/cluster-api-machine-type": "worker",
		LabelManagedBy: "true", LabelArch: "arm64",
	}, ms.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{
		AnnotationAutoscalerLabels: "kubernetes.io/arch=arm64", AnnotationReplicas: "0",
	}, ms.Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{LabelCluster: "build-multiarch-5xk8q", LabelMachineSet: name}, ms.Spec.Selector.MatchLabels); diff != "" {
		t.Errorf("selector (-want +got):\n%s", diff)
	}
	if ms.Spec.Template.Labels[LabelMachineSet] != name || ms.Spec.Template.Labels[LabelMachineRole] != "worker" {
		t.Errorf("template labels: %v", ms.Spec.Template.Labels)
	}
	if _, ok := ms.Spec.Template.Spec.Labels[LabelNodeRoleWorker]; !ok {
		t.Errorf("node labels: %v", ms.Spec.Template.Spec.Labels)
	}
	cfg, _ := AzureProviderSpec(ms)
	if diff := cmp.Diff(machinev1beta1.Image{
		Publisher: "azureopenshift", Offer: "aro4", SKU: "420-arm", Version: "9.6.20251015",
		Type: machinev1beta1.AzureImageTypeMarketplaceNoPlan,
	}, cfg.Image); diff != "" {
		t.Errorf("image (-want +got):\n%s", diff)
	}
	if cfg.VMSize != "Standard_D4ps_v5" || cfg.Location != "eastus" {
		t.Errorf("vmSize %s location %s", cfg.VMSize, cfg.Location)
	}
	// Everything else of the template is kept.
	if cfg.Subnet != "build-multiarch-5xk8q-worker-subnet" || cfg.Vnet != "build-multiarch-5xk8q-vnet" ||
		cfg.ResourceGroup != "build-multiarch-5xk8q-rg" || cfg.NetworkResourceGroup != "build-multiarch-5xk8q-rg" ||
		cfg.PublicLoadBalancer != "build-multiarch-5xk8q" || !cfg.AcceleratedNetworking ||
		cfg.OSDisk.DiskSizeGB != 128 || cfg.OSDisk.ManagedDisk.StorageAccountType != "Premium_LRS" ||
		cfg.UserDataSecret == nil || cfg.UserDataSecret.Name != "worker-user-data" ||
		cfg.CredentialsSecret == nil || cfg.CredentialsSecret.Name != "azure-cloud-credentials" || cfg.Kind != "AzureMachineProviderSpec" {
		t.Errorf("template settings lost: %+v", cfg)
	}
	// The template is not modified.
	if tc, _ := AzureProviderSpec(&worker); tc.VMSize != "Standard_D4s_v3" || tc.Image.SKU != "420-v2" || tc.Zone != "1" {
		t.Errorf("template modified: %+v", tc)
	}
	// It reads back as an arm64 MachineSet of ours.
	if a, from := MachineSetArch(ms); a != "arm64" || from != "label" || !IsManaged(ms) {
		t.Errorf("arch %q from %q managed %v", a, from, IsManaged(ms))
	}
}

func TestPlanMachineSetsAzureTemplateZoneAndAmd64Generation(t *testing.T) {
	worker := localMachineSet(t, "azure-worker-machineset.yaml")
	in := PlanInput{
		Arch: "arm64", InfrastructureName: "build-multiarch-5xk8q",
		MachineSets: []machinev1beta1.MachineSet{worker}, InstanceType: "Standard_E8pds_v5",
		StreamJSON: localStream(t), StreamFound: true,
	}
	// No Platform (a caller that predates it): the template's; no zones: the template's.
	sets, err := PlanMachineSets(in)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := AzureProviderSpec(sets[0])
	if len(sets) != 1 || sets[0].Name != "build-multiarch-5xk8q-arm64-build-eastus1" || cfg.Zone != "1" || cfg.VMSize != "Standard_E8pds_v5" {
		t.Errorf("got %d, %s zone %q size %s", len(sets), sets[0].Name, cfg.Zone, cfg.VMSize)
	}
	// amd64 from an arm64 template: the x86 image of the template's generation.
	armTmpl := sets[0].DeepCopy()
	armTmpl.Name = "hand-made-arm64-eastus1"
	delete(armTmpl.Labels, LabelManagedBy)
	for gen, want := range map[string]string{"420-v2": "420-v2", "aro_420": "aro_420"} {
		tmpl := worker.DeepCopy()
		tc, _ := AzureProviderSpec(tmpl)
		tc.Image.SKU = gen
		tmpl.Spec.Template.Spec.ProviderSpec.Value.Raw, _ = json.Marshal(tc)
		sets, err := PlanMachineSets(PlanInput{
			Arch: "amd64", InfrastructureName: "x", Platform: PlatformAzure,
			MachineSets: []machinev1beta1.MachineSet{*tmpl}, StreamJSON: localStream(t), StreamFound: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		c, _ := AzureProviderSpec(sets[0])
		if c.Image.SKU != want || c.VMSize != "Standard_D4s_v5" {
			t.Errorf("template sku %s: clone sku %s size %s", gen, c.Image.SKU, c.VMSize)
		}
	}
}

func TestPlanMachineSetsGCPArm64(t *testing.T) {
	worker := localMachineSet(t, "gcp-worker-machineset.yaml")
	sets, err := PlanMachineSets(PlanInput{
		Arch: "arm64", InfrastructureName: "build-multiarch-q8d2w", Platform: PlatformGCP, Region: "us-central1",
		MachineSets: []machinev1beta1.MachineSet{worker}, HostArch: "amd64",
		InstanceType: DefaultInstanceType(PlatformGCP, "arm64", "m6g.2xlarge"),
		StreamJSON:   localStream(t), StreamFound: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 1 {
		t.Fatalf("got %d MachineSets, want the template's zone", len(sets))
	}
	ms := sets[0]
	name := "build-multiarch-q8d2w-arm64-build-us-central1-a"
	if ms.Name != name || ms.Namespace != "openshift-machine-api" || *ms.Spec.Replicas != 0 || len(ms.OwnerReferences) != 0 {
		t.Errorf("name/namespace/replicas/owners: %s/%s %d %v", ms.Namespace, ms.Name, *ms.Spec.Replicas, ms.OwnerReferences)
	}
	if diff := cmp.Diff(map[string]string{
		LabelCluster: "build-multiarch-q8d2w", LabelManagedBy: "true", LabelArch: "arm64",
	}, ms.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{
		AnnotationAutoscalerLabels: "kubernetes.io/arch=arm64", AnnotationReplicas: "0",
	}, ms.Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{LabelCluster: "build-multiarch-q8d2w", LabelMachineSet: name}, ms.Spec.Selector.MatchLabels); diff != "" {
		t.Errorf("selector (-want +got):\n%s", diff)
	}
	if ms.Spec.Template.Labels[LabelMachineSet] != name {
		t.Errorf("template labels: %v", ms.Spec.Template.Labels)
	}
	cfg, err := GCPProviderSpec(ms)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MachineType != "t2a-standard-4" || cfg.Zone != "us-central1-a" || cfg.Region != "us-central1" || cfg.ProjectID != "openshift-build-multiarch" {
		t.Errorf("machineType %s zone %s region %s project %s", cfg.MachineType, cfg.Zone, cfg.Region, cfg.ProjectID)
	}
	if len(cfg.Disks) != 1 || cfg.Disks[0].Image != "projects/rhcos-cloud/global/images/rhcos-9-6-20250523-0-gcp-aarch64" ||
		!cfg.Disks[0].Boot || cfg.Disks[0].Type != "pd-ssd" || cfg.Disks[0].SizeGB != 128 {
		t.Errorf("boot disk: %+v", cfg.Disks[0])
	}
	if len(cfg.NetworkInterfaces) != 1 || cfg.NetworkInterfaces[0].Subnetwork != "build-multiarch-q8d2w-worker-subnet" ||
		len(cfg.ServiceAccounts) != 1 || !strings.HasPrefix(cfg.ServiceAccounts[0].Email, "build-multiarch-q8d2w-w@") ||
		cfg.UserDataSecret == nil || cfg.UserDataSecret.Name != "worker-user-data" || cfg.Kind != "GCPMachineProviderSpec" {
		t.Errorf("template settings lost: %+v", cfg)
	}
	if tc, _ := GCPProviderSpec(&worker); tc.MachineType != "n2-standard-4" || !strings.HasSuffix(tc.Disks[0].Image, "x86-64") {
		t.Errorf("template modified")
	}

	// Other zones of the region, and a C4A (Hyperdisk only) machine type.
	sets, err = PlanMachineSets(PlanInput{
		Arch: "arm64", InfrastructureName: "build-multiarch-q8d2w", Platform: PlatformGCP, Region: "us-central1",
		MachineSets: []machinev1beta1.MachineSet{worker}, Zones: []string{"us-central1-b", "us-central1-f"},
		InstanceType: "c4a-standard-8", StreamJSON: localStream(t), StreamFound: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, zone := range []string{"us-central1-b", "us-central1-f"} {
		c, _ := GCPProviderSpec(sets[i])
		if sets[i].Name != "build-multiarch-q8d2w-arm64-build-"+zone || c.Zone != zone || c.Disks[0].Type != "hyperdisk-balanced" || c.MachineType != "c4a-standard-8" {
			t.Errorf("%s: zone %s disk %s type %s", sets[i].Name, c.Zone, c.Disks[0].Type, c.MachineType)
		}
	}
}

func TestPlanMachineSetsAzureAndGCPProblems(t *testing.T) {
	az := localMachineSet(t, "azure-worker-machineset.yaml")
	gcp := localMachineSet(t, "gcp-worker-machineset.yaml")
	noAzureArm := localStream(t, func(st *stream.Stream) {
		a := st.Architectures["aarch64"]
		a.RHELCoreOSExtensions.Marketplace = nil
		st.Architectures["aarch64"] = a
	})
	noAzureAtAll := localStream(t, func(st *stream.Stream) {
		a := st.Architectures["aarch64"]
		a.RHELCoreOSExtensions = nil
		st.Architectures["aarch64"] = a
	})
	noGCPArm := localStream(t, func(st *stream.Stream) {
		a := st.Architectures["aarch64"]
		a.Images.Gcp = nil
		st.Architectures["aarch64"] = a
	})
	azure := PlanInput{
		Arch: "arm64", InfrastructureName: "build-multiarch-5xk8q", Platform: PlatformAzure,
		MachineSets: []machinev1beta1.MachineSet{az}, StreamJSON: localStream(t), StreamFound: true,
	}
	google := PlanInput{
		Arch: "arm64", InfrastructureName: "build-multiarch-q8d2w", Platform: PlatformGCP, Region: "us-central1",
		MachineSets: []machinev1beta1.MachineSet{gcp}, StreamJSON: localStream(t), StreamFound: true,
	}
	confidential := az.DeepCopy()
	cc, _ := AzureProviderSpec(confidential)
	cc.SecurityProfile = &machinev1beta1.SecurityProfile{Settings: machinev1beta1.SecuritySettings{SecurityType: machinev1beta1.SecurityTypesConfidentialVM}}
	confidential.Spec.Template.Spec.ProviderSpec.Value.Raw, _ = json.Marshal(cc)
	tests := []struct {
		name     string
		in       PlanInput
		mutate   func(*PlanInput)
		reason   string
		contains []string
	}{
		{"Azure: no arm64 marketplace image, only the VHD", azure, func(in *PlanInput) { in.StreamJSON = noAzureArm },
			v1alpha1.ReasonBootImageNotFound, []string{
				"no Azure marketplace image (rhel-coreos-extensions.marketplace.azure.no-purchase-plan.hyperVGen2) for aarch64",
				"rhcos-9.6.20250523-0-azure.aarch64.vhd", "architecture Arm64, Hyper-V generation V2",
				"resourceID (/resourceGroups/<group>/providers/Microsoft.Compute/galleries/<gallery>/images/<definition>/versions/<version>)",
			}},
		{"Azure: no Azure image at all", azure, func(in *PlanInput) { in.StreamJSON = noAzureAtAll },
			v1alpha1.ReasonBootImageNotFound, []string{"and no Azure VHD either"}},
		{"Azure: the admin's gallery image when the stream has none", azure, func(in *PlanInput) {
			in.StreamJSON = noAzureArm
			in.BootImage = "/resourceGroups/build-multiarch-5xk8q-rg/providers/Microsoft.Compute/galleries/gallery_build_multiarch_5xk8q/images/rhcos-arm64/versions/9.6.20250523"
		}, "", nil},
		{"Azure: the AWS default instance type", azure, func(in *PlanInput) { in.InstanceType = "m6g.2xlarge" },
			v1alpha1.ReasonUnsupportedArch, []string{"m6g.2xlarge is one of AWS, this cluster runs on Azure", "default Standard_D4ps_v5"}},
		{"Azure: an x86 size for arm64", azure, func(in *PlanInput) { in.InstanceType = "Standard_D4s_v5" },
			v1alpha1.ReasonUnsupportedArch, []string{"Standard_D4s_v5 is amd64, not arm64"}},
		{"Azure: ppc64le", azure, func(in *PlanInput) { in.Arch = "ppc64le" }, v1alpha1.ReasonUnsupportedArch, []string{"Azure has no ppc64le"}},
		{"Azure: an AWS zone", azure, func(in *PlanInput) { in.Zones = []string{"eu-west-3a"} }, v1alpha1.ReasonNoTemplateMachineSet, []string{"1,2,3"}},
		{"Azure: only a GCP template", azure, func(in *PlanInput) { in.MachineSets = []machinev1beta1.MachineSet{gcp} },
			v1alpha1.ReasonNoTemplateMachineSet, []string{"Azure providerSpec"}},
		{"Azure: confidential VM template", azure, func(in *PlanInput) { in.MachineSets = []machinev1beta1.MachineSet{*confidential} },
			v1alpha1.ReasonNoTemplateMachineSet, []string{"confidential VMs"}},
		{"Azure: no ConfigMap", azure, func(in *PlanInput) { in.StreamFound = false }, v1alpha1.ReasonBootImageNotFound, nil},
		{"GCP: no arm64 image in the stream", google, func(in *PlanInput) { in.StreamJSON = noGCPArm },
			v1alpha1.ReasonBootImageNotFound, []string{"stream rhcos-4.21 has no GCP image (images.gcp) for aarch64", "projects/<project>/global/images/<name>"}},
		{"GCP: the admin's image", google, func(in *PlanInput) {
			in.StreamJSON, in.BootImage = noGCPArm, "projects/my-images/global/images/rhcos-aarch64"
		}, "", nil},
		{"GCP: zone of another region", google, func(in *PlanInput) { in.Zones = []string{"europe-west4-a"} },
			v1alpha1.ReasonNoTemplateMachineSet, []string{"not in the region us-central1"}},
		{"GCP: an x86 machine type for arm64", google, func(in *PlanInput) { in.InstanceType = "n2-standard-8" },
			v1alpha1.ReasonUnsupportedArch, []string{"n2-standard-8 is amd64, not arm64"}},
		{"GCP: an Azure size", google, func(in *PlanInput) { in.InstanceType = "Standard_D4ps_v5" },
			v1alpha1.ReasonUnsupportedArch, []string{"one of Azure, this cluster runs on GCP"}},
		{"VSphere", azure, func(in *PlanInput) { in.Platform = "VSphere" }, v1alpha1.ReasonUnsupportedPlatform, []string{"VSphere"}},
		{"BareMetal", google, func(in *PlanInput) { in.Platform = "BareMetal" }, v1alpha1.ReasonUnsupportedPlatform, []string{"BareMetal"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			tt.mutate(&in)
			sets, err := PlanMachineSets(in)
			if tt.reason == "" {
				if err != nil || len(sets) != 1 {
					t.Fatalf("got %d, %v", len(sets), err)
				}
				switch in.Platform {
				case PlatformAzure:
					c, _ := AzureProviderSpec(sets[0])
					if diff := cmp.Diff(machinev1beta1.Image{ResourceID: in.BootImage, Type: machinev1beta1.AzureImageTypeID}, c.Image); diff != "" {
						t.Errorf("image (-want +got):\n%s", diff)
					}
				case PlatformGCP:
					c, _ := GCPProviderSpec(sets[0])
					if c.Disks[0].Image != in.BootImage {
						t.Errorf("boot disk image %s", c.Disks[0].Image)
					}
				}
				return
			}
			var p *Problem
			if !errors.As(err, &p) || p.Reason != tt.reason {
				t.Fatalf("err = %v, want reason %s", err, tt.reason)
			}
			for _, s := range tt.contains {
				if !strings.Contains(p.Message, s) {
					t.Errorf("message %q does not contain %q", p.Message, s)
				}
			}
		})
	}
}

func TestAssessAzureAndGCP(t *testing.T) {
	for platform, want := range map[string]string{
		"Azure": v1alpha1.ReasonProvisioningNodes, "GCP": v1alpha1.ReasonProvisioningNodes,
		"VSphere": v1alpha1.ReasonUnsupportedPlatform, "BareMetal": v1alpha1.ReasonUnsupportedPlatform,
	} {
		st := Assess(View{Arch: "arm64", MachineAPI: true, Infra: Infrastructure{Found: true, Platform: platform, Name: "x"}})
		if st.Reason != want || st.Create != (want == v1alpha1.ReasonProvisioningNodes) {
			t.Errorf("%s: %+v", platform, st)
		}
	}
	st := Assess(View{Arch: "s390x", MachineAPI: true, Infra: Infrastructure{Found: true, Platform: "GCP", Name: "x"}})
	if st.Reason != v1alpha1.ReasonUnsupportedArch || !strings.Contains(st.Message, "GCP has no s390x") {
		t.Errorf("s390x on GCP: %+v", st)
	}
}

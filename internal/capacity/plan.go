package capacity

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

var errNotAWS = errors.New("providerSpec is not an AWSMachineProviderConfig")

// Problem is why a MachineSet cannot be planned: a CapacityReady reason and a
// message for the user. It is the error PlanMachineSets returns.
type Problem struct {
	Reason  string
	Message string
}

func (p *Problem) Error() string { return p.Reason + ": " + p.Message }

func problem(reason, format string, args ...any) *Problem {
	return &Problem{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// BootImagesNamespace, BootImagesConfigMap and BootImagesKey locate the
// CoreOS stream metadata of the cluster's release.
const (
	BootImagesNamespace = "openshift-machine-config-operator"
	BootImagesConfigMap = "coreos-bootimages"
	BootImagesKey       = "stream"
)

// AMI returns the boot image of arch (kubernetes.io/arch value) in region
// from the coreos-bootimages stream JSON, or a BootImageNotFound Problem.
func AMI(streamJSON, goArch, region string) (string, error) {
	st, a, err := streamArch(streamJSON, goArch)
	if err != nil {
		return "", err
	}
	sa := StreamArch(goArch)
	if a.Images.Aws == nil {
		return "", problem(v1alpha1.ReasonBootImageNotFound,
			"stream %s has no AWS images for %s", st.Stream, sa)
	}
	img, ok := a.Images.Aws.Regions[region]
	if !ok || img.Image == "" {
		return "", problem(v1alpha1.ReasonBootImageNotFound,
			"stream %s has no %s AMI for AWS region %s", st.Stream, sa, region)
	}
	return img.Image, nil
}

// MachineSetName is <infrastructureName>-<arch>-build-<zone>, shortened with a
// hash when it would not fit a label value (the name is also the value of
// the machine.openshift.io/cluster-api-machineset label).
func MachineSetName(infrastructureName, goArch, zone string) string {
	name := fmt.Sprintf("%s-%s-build-%s", infrastructureName, goArch, zone)
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "-" + hex.EncodeToString(sum[:])[:8]
	return strings.TrimRight(name[:63-len(suffix)], "-.") + suffix
}

// SelectTemplate picks the worker MachineSet to clone: template role worker,
// not managed by the operator, a providerSpec of AWS, Azure or GCP; those
// serving hostArch first, then by name.
func SelectTemplate(sets []machinev1beta1.MachineSet, hostArch string) (*machinev1beta1.MachineSet, error) {
	return SelectTemplateFor(sets, hostArch, "")
}

// SelectTemplateFor is SelectTemplate among the MachineSets whose
// providerSpec is of platform (AWS, Azure, GCP); "" accepts any of them.
func SelectTemplateFor(sets []machinev1beta1.MachineSet, hostArch, platform string) (*machinev1beta1.MachineSet, error) {
	var candidates []*machinev1beta1.MachineSet
	for i := range sets {
		ms := &sets[i]
		if ms.Spec.Template.Labels[LabelMachineRole] != "worker" || IsManaged(ms) || ms.DeletionTimestamp != nil {
			continue
		}
		p := MachineSetPlatform(ms)
		if !SupportedPlatform(p) || (platform != "" && p != platform) {
			continue
		}
		if _, err := providerSpecOf(ms, p); err != nil {
			continue
		}
		candidates = append(candidates, ms)
	}
	if len(candidates) == 0 {
		spec := "AWS, Azure or GCP"
		if platform != "" {
			spec = platform
		}
		return nil, problem(v1alpha1.ReasonNoTemplateMachineSet,
			"no worker MachineSet (template label %s=worker, %s providerSpec) to copy", LabelMachineRole, spec)
	}
	sort.SliceStable(candidates, func(i, j int) bool {
		ai, _ := MachineSetArch(candidates[i])
		aj, _ := MachineSetArch(candidates[j])
		if (ai == hostArch) != (aj == hostArch) {
			return ai == hostArch
		}
		return candidates[i].Name < candidates[j].Name
	})
	return candidates[0], nil
}

// providerSpecOf decodes ms's providerSpec of platform.
func providerSpecOf(ms *machinev1beta1.MachineSet, platform string) (any, error) {
	switch platform {
	case PlatformAWS:
		return AWSProviderConfig(ms)
	case PlatformAzure:
		return AzureProviderSpec(ms)
	case PlatformGCP:
		return GCPProviderSpec(ms)
	}
	return nil, fmt.Errorf("platform %q is not supported", platform)
}

// PlanInput is what PlanMachineSets needs.
type PlanInput struct {
	// Arch is the kubernetes.io/arch value to create nodes of.
	Arch string
	// InfrastructureName and Region come from Infrastructure/cluster:
	// status.infrastructureName, and status.platformStatus.aws.region on AWS
	// or status.platformStatus.gcp.region on GCP (Azure has none: the
	// template's location is kept). Empty Region means the template's.
	InfrastructureName string
	Region             string
	// Platform is status.platformStatus.type (AWS, Azure, GCP, ...). Empty
	// means the platform of the template's providerSpec.
	Platform string
	// MachineSets are all MachineSets of the Machine API namespace.
	MachineSets []machinev1beta1.MachineSet
	// HostArch is preferred among templates.
	HostArch string
	// Zones are the availability zones to create one MachineSet each in
	// (on Azure "1", "2", "3"); empty means the template's zone.
	Zones []string
	// InstanceType for the new MachineSets: an AWS instance type, Azure VM
	// size or GCP machine type. Empty means DefaultInstanceTypes on Azure
	// and GCP (see DefaultInstanceType), and is a Problem on AWS.
	InstanceType string
	// StreamJSON is the coreos-bootimages ConfigMap's stream key; Found is
	// false when the ConfigMap does not exist.
	StreamJSON  string
	StreamFound bool
	// BootImage, when set, is the boot image of Arch an admin provides,
	// used instead of the stream's: an AMI id on AWS, an image resourceID
	// (/resourceGroups/<group>/providers/Microsoft.Compute/galleries/<gallery>/images/<definition>/versions/<version>)
	// on Azure, projects/<project>/global/images/<name> on GCP.
	BootImage string
}

// PlanMachineSets returns the MachineSets (replicas 0) that give Arch nodes,
// one per zone, or a *Problem saying why none can be made.
func PlanMachineSets(in PlanInput) ([]*machinev1beta1.MachineSet, error) {
	platform := in.Platform
	var tmpl *machinev1beta1.MachineSet
	if platform == "" {
		// Callers that do not pass the platform: the template's tells it.
		t, err := SelectTemplate(in.MachineSets, in.HostArch)
		if err != nil {
			return nil, err
		}
		tmpl, platform = t, MachineSetPlatform(t)
	}
	if !SupportedPlatform(platform) {
		return nil, problem(v1alpha1.ReasonUnsupportedPlatform,
			"the operator creates MachineSets on AWS, Azure and GCP only, this cluster runs on %s: add a %s MachineSet yourself", platform, in.Arch)
	}
	if !PlatformArchs[platform][in.Arch] {
		return nil, problem(v1alpha1.ReasonUnsupportedArch, "%s has no %s instance types", platform, in.Arch)
	}
	instanceType := in.InstanceType
	if instanceType == "" {
		instanceType = DefaultInstanceType(platform, in.Arch, "")
	}
	if instanceType == "" {
		return nil, problem(v1alpha1.ReasonUnsupportedArch,
			"no instance type for %s: set spec.capacity.instanceTypes.%s or the operator's --instance-type %s=TYPE", in.Arch, in.Arch, in.Arch)
	}
	if p := InstanceTypePlatform(instanceType); p != "" && p != platform {
		return nil, problem(v1alpha1.ReasonUnsupportedArch,
			"instance type %s is one of %s, this cluster runs on %s: set spec.capacity.instanceTypes.%s or the operator's --instance-type %s=TYPE to a %s one (default %s)",
			instanceType, p, platform, in.Arch, in.Arch, platform, DefaultInstanceTypes[platform][in.Arch])
	}
	if a := InstanceTypeArch(instanceType); a != "" && a != in.Arch {
		return nil, problem(v1alpha1.ReasonUnsupportedArch,
			"instance type %s is %s, not %s", instanceType, a, in.Arch)
	}
	if tmpl == nil {
		t, err := SelectTemplateFor(in.MachineSets, in.HostArch, platform)
		if err != nil {
			return nil, err
		}
		tmpl = t
	}
	if in.BootImage == "" && !in.StreamFound {
		return nil, problem(v1alpha1.ReasonBootImageNotFound,
			"ConfigMap %s/%s not found", BootImagesNamespace, BootImagesConfigMap)
	}
	var plan func(zone string) (*machinev1beta1.MachineSet, error)
	var zones []string
	var err error
	switch platform {
	case PlatformAWS:
		plan, zones, err = planAWS(tmpl, in, instanceType)
	case PlatformAzure:
		plan, zones, err = planAzure(tmpl, in, instanceType)
	case PlatformGCP:
		plan, zones, err = planGCP(tmpl, in, instanceType)
	}
	if err != nil {
		return nil, err
	}
	if len(in.Zones) > 0 {
		zones = in.Zones
	}
	var out []*machinev1beta1.MachineSet
	for _, zone := range zones {
		ms, err := plan(zone)
		if err != nil {
			return nil, err
		}
		out = append(out, ms)
	}
	return out, nil
}

// planAWS returns how to clone an AWS template for a zone, and the
// template's zone.
func planAWS(tmpl *machinev1beta1.MachineSet, in PlanInput, instanceType string) (func(string) (*machinev1beta1.MachineSet, error), []string, error) {
	cfg, err := AWSProviderConfig(tmpl)
	if err != nil {
		return nil, nil, problem(v1alpha1.ReasonNoTemplateMachineSet, "template MachineSet %s: %v", tmpl.Name, err)
	}
	ami := in.BootImage
	if ami == "" {
		region := in.Region
		if region == "" {
			region = cfg.Placement.Region
		}
		if ami, err = AMI(in.StreamJSON, in.Arch, region); err != nil {
			return nil, nil, err
		}
	}
	if len(in.Zones) == 0 && cfg.Placement.AvailabilityZone == "" {
		return nil, nil, problem(v1alpha1.ReasonNoTemplateMachineSet,
			"template MachineSet %s has no placement.availabilityZone; set the operator's --machineset-zones", tmpl.Name)
	}
	return func(zone string) (*machinev1beta1.MachineSet, error) {
		return CloneMachineSet(tmpl, CloneInput{
			Name: MachineSetName(in.InfrastructureName, in.Arch, zone), Arch: in.Arch,
			Zone: zone, AMI: ami, InstanceType: instanceType,
		})
	}, []string{cfg.Placement.AvailabilityZone}, nil
}

// planAzure returns how to clone an Azure template for a zone ("1", "2",
// "3"; "" in a region without zones), and the template's zone. The name
// ends in <location><zone>, as the installer names its worker MachineSets
// (<infra>-worker-eastus1).
func planAzure(tmpl *machinev1beta1.MachineSet, in PlanInput, instanceType string) (func(string) (*machinev1beta1.MachineSet, error), []string, error) {
	cfg, err := AzureProviderSpec(tmpl)
	if err != nil {
		return nil, nil, problem(v1alpha1.ReasonNoTemplateMachineSet, "template MachineSet %s: %v", tmpl.Name, err)
	}
	img := machinev1beta1.Image{ResourceID: in.BootImage, Type: machinev1beta1.AzureImageTypeID}
	if in.BootImage == "" {
		if img, err = AzureImage(in.StreamJSON, in.Arch, azureUsesGen2(cfg.Image)); err != nil {
			return nil, nil, err
		}
	}
	for _, z := range in.Zones {
		if z != "1" && z != "2" && z != "3" {
			return nil, nil, problem(v1alpha1.ReasonNoTemplateMachineSet,
				"zone %q is not an Azure availability zone: set the operator's --machineset-zones to some of 1,2,3 (the template MachineSet %s is in zone %q of %s)", z, tmpl.Name, cfg.Zone, cfg.Location)
		}
	}
	return func(zone string) (*machinev1beta1.MachineSet, error) {
		return CloneMachineSet(tmpl, CloneInput{
			Name: MachineSetName(in.InfrastructureName, in.Arch, cfg.Location+zone), Arch: in.Arch,
			Zone: zone, AzureImage: img, InstanceType: instanceType,
		})
	}, []string{cfg.Zone}, nil
}

// planGCP returns how to clone a GCP template for a zone, and the template's
// zone.
func planGCP(tmpl *machinev1beta1.MachineSet, in PlanInput, instanceType string) (func(string) (*machinev1beta1.MachineSet, error), []string, error) {
	cfg, err := GCPProviderSpec(tmpl)
	if err != nil {
		return nil, nil, problem(v1alpha1.ReasonNoTemplateMachineSet, "template MachineSet %s: %v", tmpl.Name, err)
	}
	image := in.BootImage
	if image == "" {
		if image, err = GCPImage(in.StreamJSON, in.Arch); err != nil {
			return nil, nil, err
		}
	}
	region := in.Region
	if region == "" {
		region = cfg.Region
	}
	if len(in.Zones) == 0 && cfg.Zone == "" {
		return nil, nil, problem(v1alpha1.ReasonNoTemplateMachineSet,
			"template MachineSet %s has no zone; set the operator's --machineset-zones", tmpl.Name)
	}
	return func(zone string) (*machinev1beta1.MachineSet, error) {
		return CloneMachineSet(tmpl, CloneInput{
			Name: MachineSetName(in.InfrastructureName, in.Arch, zone), Arch: in.Arch,
			Zone: zone, GCPImage: image, Region: region, InstanceType: instanceType,
		})
	}, []string{cfg.Zone}, nil
}

// CloneInput is what changes between a template and a clone.
type CloneInput struct {
	Name, Arch, Zone, AMI, InstanceType string
	// AzureImage is the image of an Azure clone (AMI is for AWS).
	AzureImage machinev1beta1.Image
	// GCPImage is the boot disk image of a GCP clone,
	// projects/<project>/global/images/<name>.
	GCPImage string
	// Region of a GCP clone; empty keeps the template's.
	Region string
}

// CloneMachineSet copies tmpl into a new MachineSet for in.Arch in in.Zone,
// with the instance type and boot image of in; tmpl's providerSpec is AWS
// (AMI), Azure (AzureImage) or GCP (GCPImage, Region).
func CloneMachineSet(tmpl *machinev1beta1.MachineSet, in CloneInput) (*machinev1beta1.MachineSet, error) {
	var spec any
	var err error
	switch p := MachineSetPlatform(tmpl); p {
	case PlatformAzure:
		spec, err = cloneAzureSpec(tmpl, in)
	case PlatformGCP:
		spec, err = cloneGCPSpec(tmpl, in)
	default:
		spec, err = cloneAWSSpec(tmpl, in)
	}
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode providerSpec: %w", err)
	}

	ms := &machinev1beta1.MachineSet{
		TypeMeta: metav1.TypeMeta{APIVersion: machinev1beta1.GroupVersion.String(), Kind: "MachineSet"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        in.Name,
			Namespace:   tmpl.Namespace,
			Labels:      copyMap(tmpl.Labels),
			Annotations: copyMap(tmpl.Annotations),
		},
	}
	ms.Labels[LabelManagedBy] = "true"
	ms.Labels[LabelArch] = in.Arch
	for _, k := range droppedAnnotations {
		delete(ms.Annotations, k)
	}
	ms.Annotations[AnnotationReplicas] = "0"
	ms.Annotations[AnnotationAutoscalerLabels] = SetLabelInList(ms.Annotations[AnnotationAutoscalerLabels], LabelArchNode, in.Arch)

	tmpl.Spec.DeepCopyInto(&ms.Spec)
	ms.Spec.Replicas = ptr.To[int32](0)
	ms.Spec.Selector.MatchLabels = copyMap(ms.Spec.Selector.MatchLabels)
	ms.Spec.Selector.MatchLabels[LabelMachineSet] = in.Name
	ms.Spec.Template.Labels = copyMap(ms.Spec.Template.Labels)
	ms.Spec.Template.Labels[LabelMachineSet] = in.Name
	ms.Spec.Template.Spec.Labels = copyMap(ms.Spec.Template.Spec.Labels)
	ms.Spec.Template.Spec.Labels[LabelNodeRoleWorker] = ""
	ms.Spec.Template.Spec.ProviderID = nil
	ms.Spec.Template.Spec.ProviderSpec.Value = &runtime.RawExtension{Raw: raw}
	return ms, nil
}

func cloneAWSSpec(tmpl *machinev1beta1.MachineSet, in CloneInput) (*machinev1beta1.AWSMachineProviderConfig, error) {
	cfg, err := AWSProviderConfig(tmpl)
	if err != nil {
		return nil, problem(v1alpha1.ReasonNoTemplateMachineSet, "template MachineSet %s: %v", tmpl.Name, err)
	}
	oldZone := cfg.Placement.AvailabilityZone
	cfg.AMI = machinev1beta1.AWSResourceReference{ID: ptr.To(in.AMI)}
	cfg.InstanceType = in.InstanceType
	cfg.Placement.AvailabilityZone = in.Zone
	if oldZone != in.Zone {
		switch {
		case len(cfg.Subnet.Filters) > 0:
			changed := false
			for i := range cfg.Subnet.Filters {
				for j, v := range cfg.Subnet.Filters[i].Values {
					if oldZone != "" && strings.Contains(v, oldZone) {
						cfg.Subnet.Filters[i].Values[j] = strings.ReplaceAll(v, oldZone, in.Zone)
						changed = true
					}
				}
			}
			if !changed {
				return nil, problem(v1alpha1.ReasonNoTemplateMachineSet,
					"template MachineSet %s: its subnet filters do not name its zone %q, so the subnet of zone %s cannot be derived", tmpl.Name, oldZone, in.Zone)
			}
		case cfg.Subnet.ID != nil || cfg.Subnet.ARN != nil:
			return nil, problem(v1alpha1.ReasonNoTemplateMachineSet,
				"template MachineSet %s names its subnet by id, which is in zone %q, not %s: restrict --machineset-zones to %s", tmpl.Name, oldZone, in.Zone, oldZone)
		}
	}
	return cfg, nil
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+2)
	for k, v := range m {
		out[k] = v
	}
	return out
}

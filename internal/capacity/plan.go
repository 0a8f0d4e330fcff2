package capacity

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/coreos/stream-metadata-go/stream"
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
	if streamJSON == "" {
		return "", problem(v1alpha1.ReasonBootImageNotFound,
			"ConfigMap %s/%s has no %q key", BootImagesNamespace, BootImagesConfigMap, BootImagesKey)
	}
	var st stream.Stream
	if err := json.Unmarshal([]byte(streamJSON), &st); err != nil {
		return "", problem(v1alpha1.ReasonBootImageNotFound,
			"ConfigMap %s/%s: key %q is not CoreOS stream metadata: %v", BootImagesNamespace, BootImagesConfigMap, BootImagesKey, err)
	}
	sa := StreamArch(goArch)
	a, ok := st.Architectures[sa]
	if !ok {
		return "", problem(v1alpha1.ReasonBootImageNotFound,
			"stream %s in ConfigMap %s/%s has no architecture %s", st.Stream, BootImagesNamespace, BootImagesConfigMap, sa)
	}
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
// not managed by the operator, an AWS providerSpec; those serving hostArch
// first, then by name.
func SelectTemplate(sets []machinev1beta1.MachineSet, hostArch string) (*machinev1beta1.MachineSet, error) {
	var candidates []*machinev1beta1.MachineSet
	for i := range sets {
		ms := &sets[i]
		if ms.Spec.Template.Labels[LabelMachineRole] != "worker" || IsManaged(ms) || ms.DeletionTimestamp != nil {
			continue
		}
		if _, err := AWSProviderConfig(ms); err != nil {
			continue
		}
		candidates = append(candidates, ms)
	}
	if len(candidates) == 0 {
		return nil, problem(v1alpha1.ReasonNoTemplateMachineSet,
			"no worker MachineSet (template label %s=worker, AWS providerSpec) to copy", LabelMachineRole)
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

// PlanInput is what PlanMachineSets needs.
type PlanInput struct {
	// Arch is the kubernetes.io/arch value to create nodes of.
	Arch string
	// InfrastructureName and Region come from Infrastructure/cluster.
	InfrastructureName string
	Region             string
	// MachineSets are all MachineSets of the Machine API namespace.
	MachineSets []machinev1beta1.MachineSet
	// HostArch is preferred among templates.
	HostArch string
	// Zones are the availability zones to create one MachineSet each in;
	// empty means the template's zone.
	Zones []string
	// InstanceType for the new MachineSets.
	InstanceType string
	// StreamJSON is the coreos-bootimages ConfigMap's stream key; Found is
	// false when the ConfigMap does not exist.
	StreamJSON  string
	StreamFound bool
}

// PlanMachineSets returns the MachineSets (replicas 0) that give Arch nodes,
// one per zone, or a *Problem saying why none can be made.
func PlanMachineSets(in PlanInput) ([]*machinev1beta1.MachineSet, error) {
	if !AWSArchs[in.Arch] {
		return nil, problem(v1alpha1.ReasonUnsupportedArch, "AWS has no %s instance types", in.Arch)
	}
	if in.InstanceType == "" {
		return nil, problem(v1alpha1.ReasonUnsupportedArch,
			"no instance type for %s: set spec.capacity.instanceTypes.%s or the operator's --instance-type %s=TYPE", in.Arch, in.Arch, in.Arch)
	}
	if a := InstanceTypeArch(in.InstanceType); a != "" && a != in.Arch {
		return nil, problem(v1alpha1.ReasonUnsupportedArch,
			"instance type %s is %s, not %s", in.InstanceType, a, in.Arch)
	}
	tmpl, err := SelectTemplate(in.MachineSets, in.HostArch)
	if err != nil {
		return nil, err
	}
	if !in.StreamFound {
		return nil, problem(v1alpha1.ReasonBootImageNotFound,
			"ConfigMap %s/%s not found", BootImagesNamespace, BootImagesConfigMap)
	}
	ami, err := AMI(in.StreamJSON, in.Arch, in.Region)
	if err != nil {
		return nil, err
	}
	zones := in.Zones
	if len(zones) == 0 {
		cfg, _ := AWSProviderConfig(tmpl)
		if cfg.Placement.AvailabilityZone == "" {
			return nil, problem(v1alpha1.ReasonNoTemplateMachineSet,
				"template MachineSet %s has no placement.availabilityZone; set the operator's --machineset-zones", tmpl.Name)
		}
		zones = []string{cfg.Placement.AvailabilityZone}
	}
	var out []*machinev1beta1.MachineSet
	for _, zone := range zones {
		ms, err := CloneMachineSet(tmpl, CloneInput{
			Name: MachineSetName(in.InfrastructureName, in.Arch, zone), Arch: in.Arch,
			Zone: zone, AMI: ami, InstanceType: in.InstanceType,
		})
		if err != nil {
			return nil, err
		}
		out = append(out, ms)
	}
	return out, nil
}

// CloneInput is what changes between a template and a clone.
type CloneInput struct {
	Name, Arch, Zone, AMI, InstanceType string
}

// CloneMachineSet copies tmpl into a new MachineSet for in.Arch in in.Zone.
func CloneMachineSet(tmpl *machinev1beta1.MachineSet, in CloneInput) (*machinev1beta1.MachineSet, error) {
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
	raw, err := json.Marshal(cfg)
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

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+2)
	for k, v := range m {
		out[k] = v
	}
	return out
}

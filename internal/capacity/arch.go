package capacity

import (
	"encoding/json"
	"strings"

	"github.com/coreos/stream-metadata-go/arch"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
)

// AWSArchs are the architectures AWS has instance types for.
var AWSArchs = map[string]bool{"amd64": true, "arm64": true}

// StreamArch is the CoreOS stream's name of a kubernetes.io/arch value:
// x86_64, aarch64, ppc64le, s390x.
func StreamArch(goArch string) string { return arch.RpmArch(goArch) }

// InstanceTypeArch guesses the architecture of an instance type of AWS, an
// Azure VM size or a GCP machine type, told apart by their syntax
// (InstanceTypePlatform). Empty when it does not look like any of them.
//
// AWS marks Graviton (arm64) families with a "g" among the letters after the
// generation digit (m6g, c6gn, r7gd, t4g, x2gd, im4gn, is4gen, hpc7g, g5g)
// and the first Graviton family is a1; every other family is x86_64 (m5a,
// m6i, g4dn, p5, inf2, ...). Azure marks Arm64 sizes with a "p" among the
// additive features after the vCPU count (Standard_D4ps_v5,
// Standard_E8pds_v5, Standard_B2pls_v2). GCP's Arm series are t2a, c4a, n4a
// and a4x (t2a-standard-4, c4a-highmem-8).
func InstanceTypeArch(instanceType string) string {
	if a := awsInstanceTypeArch(instanceType); a != "" {
		return a
	}
	if a := azureVMSizeArch(instanceType); a != "" {
		return a
	}
	return gcpMachineTypeArch(instanceType)
}

func awsInstanceTypeArch(instanceType string) string {
	family, _, ok := strings.Cut(strings.ToLower(instanceType), ".")
	if !ok || family == "" {
		return ""
	}
	if family == "a1" {
		return "arm64"
	}
	i := 0
	for i < len(family) && family[i] >= 'a' && family[i] <= 'z' {
		i++
	}
	j := i
	for j < len(family) && family[j] >= '0' && family[j] <= '9' {
		j++
	}
	if i == 0 || j == i {
		return ""
	}
	suffix, _, _ := strings.Cut(family[j:], "-") // m7i-flex
	if strings.Contains(suffix, "g") {
		return "arm64"
	}
	return "amd64"
}

// ParseLabelList parses "k=v,k2=v2" (the autoscaler labels annotation).
func ParseLabelList(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k = strings.TrimSpace(k); k != "" {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// SetLabelInList sets key=value in a "k=v,k2=v2" list, keeping the order of
// the other entries and appending a new key at the end.
func SetLabelInList(s, key, value string) string {
	var parts []string
	found := false
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, _, _ := strings.Cut(kv, "=")
		if strings.TrimSpace(k) == key {
			kv, found = key+"="+value, true
		}
		parts = append(parts, kv)
	}
	if !found {
		parts = append(parts, key+"="+value)
	}
	return strings.Join(parts, ",")
}

// MachineSetArch is the architecture the nodes of ms have, and where that was
// read: "label", "autoscaler-annotation", "instance-type" (AWS instance
// type, Azure VM size or GCP machine type) or "" when unknown.
func MachineSetArch(ms *machinev1beta1.MachineSet) (goArch, source string) {
	if a := ms.Labels[LabelArch]; a != "" {
		return a, "label"
	}
	if a := ParseLabelList(ms.Annotations[AnnotationAutoscalerLabels])[LabelArchNode]; a != "" {
		return a, "autoscaler-annotation"
	}
	if a := InstanceTypeArch(InstanceTypeOf(ms)); a != "" {
		return a, "instance-type"
	}
	return "", ""
}

// AWSProviderConfig decodes the MachineSet's providerSpec.
func AWSProviderConfig(ms *machinev1beta1.MachineSet) (*machinev1beta1.AWSMachineProviderConfig, error) {
	v := ms.Spec.Template.Spec.ProviderSpec.Value
	if v == nil || len(v.Raw) == 0 {
		return nil, errNotAWS
	}
	cfg := &machinev1beta1.AWSMachineProviderConfig{}
	if err := json.Unmarshal(v.Raw, cfg); err != nil {
		return nil, err
	}
	if cfg.Kind != "" && cfg.Kind != "AWSMachineProviderConfig" {
		return nil, errNotAWS
	}
	return cfg, nil
}

// IsManaged says whether the operator created (or was handed) ms.
func IsManaged(ms *machinev1beta1.MachineSet) bool {
	return ms.Labels[LabelManagedBy] == "true"
}

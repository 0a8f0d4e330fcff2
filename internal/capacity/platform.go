package capacity

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	configv1 "github.com/openshift/api/config/v1"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
)

// The platforms (Infrastructure status.platformStatus.type) the operator
// creates MachineSets on.
const (
	PlatformAWS   = string(configv1.AWSPlatformType)
	PlatformAzure = string(configv1.AzurePlatformType)
	PlatformGCP   = string(configv1.GCPPlatformType)
)

// PlatformArchs are, per supported platform, the architectures it has
// instance types (VM sizes, machine types) for.
var PlatformArchs = map[string]map[string]bool{
	PlatformAWS:   AWSArchs,
	PlatformAzure: {"amd64": true, "arm64": true},
	PlatformGCP:   {"amd64": true, "arm64": true},
}

// SupportedPlatform says whether the operator creates MachineSets on platform.
func SupportedPlatform(platform string) bool {
	_, ok := PlatformArchs[platform]
	return ok
}

// DefaultInstanceTypes are the instance types of the MachineSets the operator
// creates on Azure and GCP when neither the build nor the operator names one
// for that platform. AWS's defaults are the operator's settings
// (--instance-type).
var DefaultInstanceTypes = map[string]map[string]string{
	// D-series v5, 4 vCPU, 16 GiB: Intel and Ampere Altra (the "p").
	PlatformAzure: {"amd64": "Standard_D4s_v5", "arm64": "Standard_D4ps_v5"},
	// 4 vCPU, 16 GiB: N2 and Tau T2A (Ampere Altra).
	PlatformGCP: {"amd64": "n2-standard-4", "arm64": "t2a-standard-4"},
}

// DefaultInstanceType is the instance type to use on platform for goArch
// when a build does not name one: configured (the operator's setting for
// goArch) when it is an instance type of platform, else the platform's
// default (DefaultInstanceTypes; "" on AWS, whose defaults are the
// settings). The operator's defaults are AWS instance types, which mean
// nothing on Azure or GCP.
func DefaultInstanceType(platform, goArch, configured string) string {
	if configured != "" && InstanceTypePlatform(configured) == platform {
		return configured
	}
	return DefaultInstanceTypes[platform][goArch]
}

// InstanceTypePlatform is the cloud an instance type name belongs to, from
// its syntax: "AWS" for family.size (m6g.2xlarge), "Azure" for
// Standard_<family><vCPUs><features>[_<version>] (Standard_D4ps_v5), "GCP"
// for <family>-<kind>-<vCPUs> (t2a-standard-4, e2-medium,
// n2-custom-4-16384); "" when it looks like none of them.
func InstanceTypePlatform(instanceType string) string {
	switch {
	case awsInstanceTypeArch(instanceType) != "":
		return PlatformAWS
	case azureVMSizeArch(instanceType) != "":
		return PlatformAzure
	case gcpMachineTypeArch(instanceType) != "":
		return PlatformGCP
	}
	return ""
}

// azureVMSizeArch reads an Azure VM size:
// <tier>_<family><vCPUs>[-<constrained vCPUs>]<additive features>[_<accelerator>][_<version>],
// e.g. Standard_D4ps_v5, Standard_E8pds_v5, Standard_B2pls_v2,
// Standard_NC24ads_A100_v4, Standard_M8-2ms. Azure marks Arm64 (Ampere
// Altra, Cobalt) sizes with the additive feature "p" after the vCPU count;
// the P of a family name (NP, an x86 FPGA family) is not one. Empty when it
// is not a VM size.
func azureVMSizeArch(size string) string {
	tier, rest, ok := strings.Cut(size, "_")
	if !ok || (!strings.EqualFold(tier, "Standard") && !strings.EqualFold(tier, "Basic")) {
		return ""
	}
	core, _, _ := strings.Cut(rest, "_")
	i := 0
	for i < len(core) && isLetter(core[i]) {
		i++
	}
	j := i
	for j < len(core) && (isDigit(core[j]) || (core[j] == '-' && j > i)) {
		j++
	}
	if i == 0 || j == i {
		return ""
	}
	features := strings.ToLower(core[j:])
	for k := range len(features) {
		if !isLetter(features[k]) {
			return ""
		}
	}
	if strings.Contains(features, "p") {
		return "arm64"
	}
	return "amd64"
}

// gcpArmFamilies are Google Cloud's Arm machine series: Tau T2A (Ampere
// Altra), C4A and N4A (Axion), A4X (Grace, with GPUs).
var gcpArmFamilies = map[string]bool{"t2a": true, "c4a": true, "n4a": true, "a4x": true}

// gcpHyperdiskOnlyFamilies take no Persistent Disk (pd-*) as boot disk, only
// Hyperdisk.
var gcpHyperdiskOnlyFamilies = map[string]bool{
	"c4": true, "c4a": true, "c4d": true, "n4": true, "n4a": true, "n4d": true,
}

// gcpMachineTypeArch reads a GCP machine type, <series>-<kind>-<vCPUs>
// (n2-standard-4, t2a-standard-4, c4a-highmem-8-lssd), a shared-core type
// (e2-medium) or a custom type (n2-custom-4-16384, custom-2-4096: N1). Empty
// when it is not one.
func gcpMachineTypeArch(machineType string) string {
	family, rest, ok := strings.Cut(machineType, "-")
	if !ok || family == "" || rest == "" || !isLower(family[0]) {
		return ""
	}
	for _, s := range []string{family, rest} {
		for k := range len(s) {
			if c := s[k]; !isLower(c) && !isDigit(c) && c != '-' {
				return ""
			}
		}
	}
	if gcpArmFamilies[family] {
		return "arm64"
	}
	return "amd64"
}

func isLetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isLower(c byte) bool  { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// providerKinds maps the providerSpec kinds to their platform.
var providerKinds = map[string]string{
	"AWSMachineProviderConfig": PlatformAWS,
	"AzureMachineProviderSpec": PlatformAzure,
	"GCPMachineProviderSpec":   PlatformGCP,
}

var errNoProviderSpec = errors.New("MachineSet has no providerSpec")

// MachineSetPlatform is the platform of ms's providerSpec (its kind; a
// providerSpec without kind is read as AWS, as AWSProviderConfig does), or
// "" when it has none or one of another platform.
func MachineSetPlatform(ms *machinev1beta1.MachineSet) string {
	v := ms.Spec.Template.Spec.ProviderSpec.Value
	if v == nil || len(v.Raw) == 0 {
		return ""
	}
	var tm struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(v.Raw, &tm); err != nil {
		return ""
	}
	if tm.Kind == "" {
		return PlatformAWS
	}
	return providerKinds[tm.Kind]
}

func decodeProviderSpec(ms *machinev1beta1.MachineSet, kind string, into any) error {
	v := ms.Spec.Template.Spec.ProviderSpec.Value
	if v == nil || len(v.Raw) == 0 {
		return errNoProviderSpec
	}
	if p := MachineSetPlatform(ms); p != providerKinds[kind] {
		return fmt.Errorf("providerSpec is not an %s", kind)
	}
	return json.Unmarshal(v.Raw, into)
}

// AzureProviderSpec decodes the MachineSet's Azure providerSpec.
func AzureProviderSpec(ms *machinev1beta1.MachineSet) (*machinev1beta1.AzureMachineProviderSpec, error) {
	cfg := &machinev1beta1.AzureMachineProviderSpec{}
	if err := decodeProviderSpec(ms, "AzureMachineProviderSpec", cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// GCPProviderSpec decodes the MachineSet's GCP providerSpec.
func GCPProviderSpec(ms *machinev1beta1.MachineSet) (*machinev1beta1.GCPMachineProviderSpec, error) {
	cfg := &machinev1beta1.GCPMachineProviderSpec{}
	if err := decodeProviderSpec(ms, "GCPMachineProviderSpec", cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// InstanceTypeOf is the instance type (AWS), VM size (Azure) or machine type
// (GCP) of ms's providerSpec; "" when it has none the operator reads.
func InstanceTypeOf(ms *machinev1beta1.MachineSet) string {
	switch MachineSetPlatform(ms) {
	case PlatformAWS:
		if cfg, err := AWSProviderConfig(ms); err == nil {
			return cfg.InstanceType
		}
	case PlatformAzure:
		if cfg, err := AzureProviderSpec(ms); err == nil {
			return cfg.VMSize
		}
	case PlatformGCP:
		if cfg, err := GCPProviderSpec(ms); err == nil {
			return cfg.MachineType
		}
	}
	return ""
}

package capacity

import (
	"strings"

	machinev1beta1 "github.com/openshift/api/machine/v1beta1"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// cloneGCPSpec is the template's GCP providerSpec with the clone's machine
// type, zone, region and the image of its boot disk. The project, network
// and subnetwork (regional), service account, tags and the other disks are
// kept. A boot disk of a Persistent Disk type (pd-ssd, what the installer
// creates) becomes hyperdisk-balanced on the series that boot from
// Hyperdisk only (C4A, N4A, C4, N4, ...), and the other way round.
func cloneGCPSpec(tmpl *machinev1beta1.MachineSet, in CloneInput) (*machinev1beta1.GCPMachineProviderSpec, error) {
	cfg, err := GCPProviderSpec(tmpl)
	if err != nil {
		return nil, problem(v1alpha1.ReasonNoTemplateMachineSet, "template MachineSet %s: %v", tmpl.Name, err)
	}
	if in.Arch != "amd64" && cfg.ConfidentialCompute != "" && cfg.ConfidentialCompute != machinev1beta1.ConfidentialComputePolicyDisabled {
		return nil, problem(v1alpha1.ReasonNoTemplateMachineSet,
			"template MachineSet %s makes confidential VMs (%s), which GCP has no %s machine types for: copy a worker MachineSet without confidentialCompute", tmpl.Name, cfg.ConfidentialCompute, in.Arch)
	}
	if in.Region != "" {
		cfg.Region = in.Region
	}
	if cfg.Region != "" && !strings.HasPrefix(in.Zone, cfg.Region+"-") {
		return nil, problem(v1alpha1.ReasonNoTemplateMachineSet,
			"zone %q is not in the region %s of template MachineSet %s: set the operator's --machineset-zones to zones of %s (%s-a, %s-b, ...)", in.Zone, cfg.Region, tmpl.Name, cfg.Region, cfg.Region, cfg.Region)
	}
	family, _, _ := strings.Cut(in.InstanceType, "-")
	boot := false
	for _, d := range cfg.Disks {
		if d == nil || !d.Boot {
			continue
		}
		boot = true
		d.Image = in.GCPImage
		switch {
		case gcpHyperdiskOnlyFamilies[family] && strings.HasPrefix(d.Type, "pd-"):
			d.Type = "hyperdisk-balanced"
		case family == "t2a" && strings.HasPrefix(d.Type, "hyperdisk-"):
			// Tau T2A boots from Persistent Disk only.
			d.Type = "pd-ssd"
		}
	}
	if !boot {
		return nil, problem(v1alpha1.ReasonNoTemplateMachineSet,
			"template MachineSet %s has no boot disk (disks[].boot true) to put the %s image on", tmpl.Name, in.Arch)
	}
	cfg.MachineType = in.InstanceType
	cfg.Zone = in.Zone
	return cfg, nil
}

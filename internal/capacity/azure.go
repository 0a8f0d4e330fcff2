package capacity

import (
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// cloneAzureSpec is the template's Azure providerSpec with the clone's VM
// size, image and zone. The location, resource groups, virtual network and
// subnet (regional, so good for every zone of the location), load balancer,
// OS disk, managed identity, tags and accelerated networking are kept.
func cloneAzureSpec(tmpl *machinev1beta1.MachineSet, in CloneInput) (*machinev1beta1.AzureMachineProviderSpec, error) {
	cfg, err := AzureProviderSpec(tmpl)
	if err != nil {
		return nil, problem(v1alpha1.ReasonNoTemplateMachineSet, "template MachineSet %s: %v", tmpl.Name, err)
	}
	if in.Arch != "amd64" && cfg.SecurityProfile != nil &&
		cfg.SecurityProfile.Settings.SecurityType == machinev1beta1.SecurityTypesConfidentialVM {
		return nil, problem(v1alpha1.ReasonNoTemplateMachineSet,
			"template MachineSet %s makes confidential VMs, which Azure has no %s VM sizes for: copy a worker MachineSet without securityProfile.settings.securityType ConfidentialVM", tmpl.Name, in.Arch)
	}
	cfg.VMSize = in.InstanceType
	cfg.Image = in.AzureImage
	cfg.Zone = in.Zone
	return cfg, nil
}

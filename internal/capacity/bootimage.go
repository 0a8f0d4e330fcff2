package capacity

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/coreos/stream-metadata-go/stream"
	"github.com/coreos/stream-metadata-go/stream/rhcos"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
)

// streamArch parses the coreos-bootimages stream JSON and returns its
// entry for goArch, or a BootImageNotFound Problem.
func streamArch(streamJSON, goArch string) (*stream.Stream, *stream.Arch, error) {
	if streamJSON == "" {
		return nil, nil, problem(v1alpha1.ReasonBootImageNotFound,
			"ConfigMap %s/%s has no %q key", BootImagesNamespace, BootImagesConfigMap, BootImagesKey)
	}
	var st stream.Stream
	if err := json.Unmarshal([]byte(streamJSON), &st); err != nil {
		return nil, nil, problem(v1alpha1.ReasonBootImageNotFound,
			"ConfigMap %s/%s: key %q is not CoreOS stream metadata: %v", BootImagesNamespace, BootImagesConfigMap, BootImagesKey, err)
	}
	sa := StreamArch(goArch)
	a, ok := st.Architectures[sa]
	if !ok {
		return nil, nil, problem(v1alpha1.ReasonBootImageNotFound,
			"stream %s in ConfigMap %s/%s has no architecture %s", st.Stream, BootImagesNamespace, BootImagesConfigMap, sa)
	}
	return &st, &a, nil
}

// AzureImage returns the Azure boot image of goArch from the
// coreos-bootimages stream JSON: the unpaid RHCOS marketplace image
// (rhel-coreos-extensions.marketplace.azure.no-purchase-plan, publisher
// azureopenshift, offer aro4, the image the installer and ARO boot from),
// as an image reference of type MarketplaceNoPlan. gen2 picks the Hyper-V
// generation 2 image; Arm64 VMs only boot generation 2, so it is forced for
// every architecture but amd64.
//
// When the stream has no such image for goArch, only the VHD
// (rhel-coreos-extensions.azure-disk) that clusters before marketplace
// images uploaded into an image gallery, the Problem (BootImageNotFound)
// says what the admin must provide: a compute gallery image made from that
// VHD, whose resourceID is then the boot image of goArch (PlanInput.BootImage).
func AzureImage(streamJSON, goArch string, gen2 bool) (machinev1beta1.Image, error) {
	st, a, err := streamArch(streamJSON, goArch)
	if err != nil {
		return machinev1beta1.Image{}, err
	}
	sa := StreamArch(goArch)
	gen2 = gen2 || goArch != "amd64"
	var images *rhcos.AzureMarketplaceImages
	if ext := a.RHELCoreOSExtensions; ext != nil && ext.Marketplace != nil && ext.Marketplace.Azure != nil {
		images = ext.Marketplace.Azure.NoPurchasePlan
	}
	var img *rhcos.AzureMarketplaceImage
	gen := "1"
	if gen2 {
		gen = "2"
	}
	if images != nil {
		img = images.Gen1
		if gen2 || img == nil {
			img = images.Gen2
		}
	}
	if img != nil && img.Publisher != "" && img.Offer != "" && img.SKU != "" && img.Version != "" {
		return machinev1beta1.Image{
			Publisher: img.Publisher, Offer: img.Offer, SKU: img.SKU, Version: img.Version,
			Type: machinev1beta1.AzureImageTypeMarketplaceNoPlan,
		}, nil
	}
	vhd := ""
	if ext := a.RHELCoreOSExtensions; ext != nil && ext.AzureDisk != nil {
		vhd = ext.AzureDisk.URL
	}
	arch := "x64"
	if goArch == "arm64" {
		arch = "Arm64"
	}
	msg := fmt.Sprintf("stream %s has no Azure marketplace image (rhel-coreos-extensions.marketplace.azure.no-purchase-plan.hyperVGen%s) for %s", st.Stream, gen, sa)
	if vhd == "" {
		return machinev1beta1.Image{}, problem(v1alpha1.ReasonBootImageNotFound,
			"%s and no Azure VHD either: provide the resourceID of an Azure compute gallery image of RHCOS %s as the %s boot image", msg, sa, goArch)
	}
	return machinev1beta1.Image{}, problem(v1alpha1.ReasonBootImageNotFound,
		"%s, only the VHD %s: copy it into an Azure compute gallery image definition (OS Linux, architecture %s, Hyper-V generation V%s) and provide its resourceID "+
			"(/resourceGroups/<group>/providers/Microsoft.Compute/galleries/<gallery>/images/<definition>/versions/<version>) as the %s boot image, or create a MachineSet of %s nodes with that image yourself",
		msg, vhd, arch, gen, goArch, goArch)
}

// azureUsesGen2 says whether an Azure image reference is a Hyper-V
// generation 2 image, read as the machine-config operator's boot image
// controller reads it: a gallery or managed image whose resourceID names
// gen2 (the installer's <infra>-gen2), an unpaid marketplace SKU with v2
// (420-v2; aro_420 is generation 1) or an Arm64 one, a paid SKU without gen1.
func azureUsesGen2(img machinev1beta1.Image) bool {
	sku := strings.ToLower(img.SKU)
	switch {
	case img.ResourceID != "":
		return strings.Contains(strings.ToLower(img.ResourceID), "gen2")
	case img.Type == machinev1beta1.AzureImageTypeMarketplaceNoPlan || img.Publisher == "azureopenshift":
		return strings.Contains(sku, "v2") || strings.Contains(sku, "arm")
	default:
		return !strings.Contains(sku, "gen1")
	}
}

// GCPImage returns the GCP boot image of goArch from the coreos-bootimages
// stream JSON (images.gcp), as the installer and the machine-config
// operator write it into a boot disk: projects/<project>/global/images/<name>.
func GCPImage(streamJSON, goArch string) (string, error) {
	st, a, err := streamArch(streamJSON, goArch)
	if err != nil {
		return "", err
	}
	g := a.Images.Gcp
	if g == nil || g.Project == "" || g.Name == "" {
		return "", problem(v1alpha1.ReasonBootImageNotFound,
			"stream %s has no GCP image (images.gcp) for %s: provide a GCP image of RHCOS %s (projects/<project>/global/images/<name>) as the %s boot image",
			st.Stream, StreamArch(goArch), StreamArch(goArch), goArch)
	}
	return fmt.Sprintf("projects/%s/global/images/%s", g.Project, g.Name), nil
}

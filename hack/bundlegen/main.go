// Command bundlegen writes the OLM bundle (bundle/ and bundle.Dockerfile) from
// config/manifests: the CSV base, the operator install rendered by kustomize
// (config/default), the CRD and the samples. It does what `operator-sdk
// generate bundle` does for this project, without operator-sdk (which cannot
// be built from the Go module proxy).
//
//	go run ./hack/bundlegen -version 0.1.0 -image quay.io/multiarch-build/multiarch-build-operator:v0.1.0
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	o := DefaultOptions()
	flag.StringVar(&o.ConfigDir, "config", o.ConfigDir, "kustomization rendered into the bundle (CSV base, operator install, samples)")
	flag.StringVar(&o.IconFile, "icon", o.IconFile, "SVG icon of the CSV")
	flag.StringVar(&o.OutputDir, "output-dir", o.OutputDir, "bundle directory to (re)write: manifests/ and metadata/")
	flag.StringVar(&o.Dockerfile, "dockerfile", o.Dockerfile, "bundle Dockerfile to write; empty skips it")
	flag.StringVar(&o.Version, "version", o.Version, "operator version (semver, without v)")
	flag.StringVar(&o.Image, "image", o.Image, "operator image; empty keeps the one set in config/manager")
	flag.StringVar(&o.Channels, "channels", o.Channels, "comma-separated OLM channels of the bundle")
	flag.StringVar(&o.DefaultChannel, "default-channel", o.DefaultChannel, "default OLM channel")
	flag.StringVar(&o.Replaces, "replaces", o.Replaces, "name of the CSV this one replaces, if any")
	flag.StringVar(&o.OpenShiftVersions, "openshift-versions", o.OpenShiftVersions, "com.redhat.openshift.versions of the bundle metadata")
	flag.Parse()

	if err := Generate(o); err != nil {
		fmt.Fprintln(os.Stderr, "bundlegen:", err)
		os.Exit(1)
	}
}

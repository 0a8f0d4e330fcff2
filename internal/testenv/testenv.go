// Package testenv starts a real kube-apiserver and etcd (envtest) with the
// CRDs the operator works with: its own, Tekton's (config/300-crds of the
// tektoncd/pipeline module) and OpenShift's Machine API and config CRDs
// (zz_generated.crd-manifests of openshift/api). Third-party CRDs are read from
// the Go module cache, never copied into the repository.
//
// The binaries come from hack/build-kube.sh (setup-envtest's downloads are not
// reachable offline): KUBEBUILDER_ASSETS, or bin/ at the repository root.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// CRD sets that a test can ask for.
const (
	// Ours is the MultiArchBuild CRD from config/crd/bases.
	Ours = "ours"
	// Tekton is every CRD of tektoncd/pipeline's config/300-crds.
	Tekton = "tekton"
	// OpenShiftMachine is MachineSet and Machine (feature set Default).
	OpenShiftMachine = "openshift-machine"
	// OpenShiftConfig is Infrastructure and ClusterVersion (feature set Default).
	OpenShiftConfig = "openshift-config"
	// OpenShiftClusterConfig is Proxy, Image, ImageDigestMirrorSet and
	// ImageTagMirrorSet: what build pods get of a proxied or disconnected
	// cluster.
	OpenShiftClusterConfig = "openshift-cluster-config"
)

const (
	tektonModule    = "github.com/tektoncd/pipeline"
	openshiftModule = "github.com/openshift/api"
)

// RepoRoot is the repository root: $MAB_ROOT when set (a binary built once
// and cached, such as hack/machinesim, runs from other checkouts than the
// one it was compiled in), else found from this file's location.
func RepoRoot() string {
	if d := os.Getenv("MAB_ROOT"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir is where kube-apiserver and etcd are: KUBEBUILDER_ASSETS or bin/.
func AssetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "bin")
}

var (
	modDirs   = map[string]string{}
	modDirsMu sync.Mutex
)

// ModuleDir is the module cache directory of module at the version go.mod requires.
func ModuleDir(module string) (string, error) {
	modDirsMu.Lock()
	defer modDirsMu.Unlock()
	if d, ok := modDirs[module]; ok {
		return d, nil
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = RepoRoot()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w: %s", module, err, stderr.String())
	}
	d := strings.TrimSpace(string(out))
	if d == "" {
		// Listed but not downloaded yet.
		dl := exec.Command("go", "mod", "download", module)
		dl.Dir = RepoRoot()
		if out, err := dl.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go mod download %s: %w: %s", module, err, out)
		}
		return "", fmt.Errorf("module %s has no directory after download; run go mod download", module)
	}
	modDirs[module] = d
	return d, nil
}

// LoadCRDs reads the CRDs of the named sets.
func LoadCRDs(sets ...string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, set := range sets {
		var files []string
		switch set {
		case Ours:
			matches, err := filepath.Glob(filepath.Join(RepoRoot(), "config", "crd", "bases", "*.yaml"))
			if err != nil {
				return nil, err
			}
			files = matches
		case Tekton:
			dir, err := ModuleDir(tektonModule)
			if err != nil {
				return nil, err
			}
			matches, err := filepath.Glob(filepath.Join(dir, "config", "300-crds", "*.yaml"))
			if err != nil {
				return nil, err
			}
			files = matches
		case OpenShiftClusterConfig:
			dir, err := ModuleDir(openshiftModule)
			if err != nil {
				return nil, err
			}
			for _, n := range []string{"proxies", "images", "imagedigestmirrorsets", "imagetagmirrorsets"} {
				m, err := filepath.Glob(filepath.Join(dir, "config/v1/zz_generated.crd-manifests/*_01_"+n+".crd.yaml"))
				if err != nil {
					return nil, err
				}
				files = append(files, m...)
			}
		case OpenShiftMachine, OpenShiftConfig:
			dir, err := ModuleDir(openshiftModule)
			if err != nil {
				return nil, err
			}
			var names []string
			if set == OpenShiftMachine {
				names = []string{
					"machine/v1beta1/zz_generated.crd-manifests/0000_10_machine-api_01_machinesets-Default.crd.yaml",
					"machine/v1beta1/zz_generated.crd-manifests/0000_10_machine-api_01_machines-Default.crd.yaml",
				}
			} else {
				names = []string{
					"config/v1/zz_generated.crd-manifests/0000_10_config-operator_01_infrastructures-Default.crd.yaml",
					"config/v1/zz_generated.crd-manifests/0000_00_cluster-version-operator_01_clusterversions-Default.crd.yaml",
				}
			}
			for _, n := range names {
				files = append(files, filepath.Join(dir, n))
			}
		default:
			return nil, fmt.Errorf("unknown CRD set %q", set)
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("CRD set %q: no files found", set)
		}
		for _, f := range files {
			c, err := readCRDs(f)
			if err != nil {
				return nil, err
			}
			crds = append(crds, c...)
		}
	}
	return crds, nil
}

func readCRDs(path string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := dec.Decode(crd); err != nil {
			if err.Error() == "EOF" {
				break
			}
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		// Tekton's CRDs name a conversion webhook that does not run here;
		// every served version has the same schema shape for our purposes.
		crd.Spec.Conversion = nil
		out = append(out, crd)
	}
	return out, nil
}

// Env is a running API server.
type Env struct {
	Config *rest.Config
	env    *envtest.Environment
}

// Start starts etcd and kube-apiserver with the CRDs of sets installed. It
// fails the test (never skips) when the binaries are missing: they are part
// of the test setup, built by hack/build-kube.sh.
func Start(tb testing.TB, sets ...string) *Env {
	tb.Helper()
	e, err := StartE(sets...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Stop() })
	return e
}

// StartE is Start for TestMain and benchmarks: the caller stops it.
func StartE(sets ...string) (*Env, error) {
	assets := AssetsDir()
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run hack/build-kube.sh (or make envtest-bins) first", b, assets)
		}
	}
	crds, err := LoadCRDs(sets...)
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDs:                  crds,
		ErrorIfCRDPathMissing: true,
	}
	configureOpenShiftAdmission(env)
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	return &Env{Config: cfg, env: env}, nil
}

// OpenShiftAdmissionPlugins are the admission plugins OpenShift enables that
// a vanilla kube-apiserver does not, and that this operator's writes meet.
// They are added to kube-apiserver's default plugins, not in their place.
// (OpenShift's own plugins, SCC admission first, exist only in OpenShift's
// apiserver: Pod Security admission with the levels OpenShift's label syncer
// would set stands in for SCC; see docs/openshift-fidelity.md.)
var OpenShiftAdmissionPlugins = []string{"OwnerReferencesPermissionEnforcement"}

func configureOpenShiftAdmission(env *envtest.Environment) {
	env.ControlPlane.GetAPIServer().Configure().Append("enable-admission-plugins", strings.Join(OpenShiftAdmissionPlugins, ","))
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error { return e.env.Stop() }

// InstallCRDs installs more CRDs into a running server (for tests where a
// dependency, such as Tekton, appears after the manager started).
func (e *Env) InstallCRDs(sets ...string) error {
	crds, err := LoadCRDs(sets...)
	if err != nil {
		return err
	}
	_, err = envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{CRDs: crds})
	return err
}

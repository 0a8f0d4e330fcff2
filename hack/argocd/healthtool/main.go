// Command argocd-health judges the health of Kubernetes objects with Argo CD's
// own code, configured from the argocd-cm ConfigMap snippet of docs/gitops.md.
//
//	argocd-health [--docs docs/gitops.md] [FILE...]   # no FILE, or "-": stdin
//
// Each FILE (JSON or YAML) holds one object; for each, one line is printed:
// "<status>\t<message>". The tool exits non-zero, saying why, when the docs
// hold no single argocd-cm ConfigMap, when Argo CD refuses the ConfigMap's
// resource.customizations keys, when no health override is configured for an
// object's group/kind (the docs key does not name it), or when the Lua fails.
//
// The chain is the application controller's (argo-cd v2 controller/health.go
// and controller/cache/cache.go): settings.SettingsManager.GetResourceOverrides
// over the ConfigMap, then gitops-engine's health.GetResourceHealth with
// lua.ResourceHealthOverrides, which runs the script in util/lua's VM.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/argoproj/gitops-engine/pkg/health"
	log "github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/argoproj/argo-cd/v2/common"
	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v2/util/lua"
	"github.com/argoproj/argo-cd/v2/util/settings"
)

// argocdNamespace is where the docs' ConfigMap lives and where the settings
// manager looks for it, as in a default Argo CD install.
const argocdNamespace = "argocd"

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("argocd-health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	docs := fs.String("docs", "docs/gitops.md", "`file`: Markdown whose yaml code block holds the argocd-cm ConfigMap")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: argocd-health [--docs docs/gitops.md] [FILE...]\n"+
			"Judges each object (JSON or YAML; stdin when no FILE or FILE is -) with Argo CD's\n"+
			"health code, configured from the argocd-cm ConfigMap of --docs, and prints\n"+
			"<status>\\t<message> per object.\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	// The settings manager logs its informers' start at info level; stdout
	// carries only verdicts and stderr only problems.
	log.SetLevel(log.WarnLevel)

	overrides, err := loadOverrides(*docs)
	if err != nil {
		fmt.Fprintf(stderr, "argocd-health: %v\n", err)
		return 1
	}
	inputs := fs.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	for _, in := range inputs {
		obj, err := readObject(in, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "argocd-health: %v\n", err)
			return 1
		}
		h, err := judge(obj, overrides)
		if err != nil {
			fmt.Fprintf(stderr, "argocd-health: %s: %v\n", name(in), err)
			return 1
		}
		fmt.Fprintf(stdout, "%s\t%s\n", h.Status, h.Message)
	}
	return 0
}

func name(in string) string {
	if in == "-" {
		return "stdin"
	}
	return in
}

// argocdCM returns the one argocd-cm ConfigMap among the ```yaml blocks of the
// Markdown file at path.
func argocdCM(path string) (*corev1.ConfigMap, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var found []*corev1.ConfigMap
	for _, m := range yamlBlock.FindAllStringSubmatch(string(b), -1) {
		for _, doc := range strings.Split(m[1], "\n---\n") {
			var meta struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				return nil, fmt.Errorf("%s: a yaml block does not parse: %w", path, err)
			}
			if meta.Kind != "ConfigMap" || meta.Metadata.Name != common.ArgoCDConfigMapName {
				continue
			}
			cm := &corev1.ConfigMap{}
			if err := yaml.UnmarshalStrict([]byte(doc), cm); err != nil {
				return nil, fmt.Errorf("%s: the %s ConfigMap is not a valid ConfigMap: %w", path, common.ArgoCDConfigMapName, err)
			}
			found = append(found, cm)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%s: want exactly one ```yaml block holding the %s ConfigMap, found %d", path, common.ArgoCDConfigMapName, len(found))
	}
	return found[0], nil
}

// loadOverrides loads the resource overrides from the docs' argocd-cm the
// way Argo CD does: a SettingsManager over a clientset that holds the
// ConfigMap, as `argocd admin settings resource-overrides health
// --argocd-cm-path` does (cmd/argocd/commands/admin/settings.go).
func loadOverrides(docsPath string) (map[string]v1alpha1.ResourceOverride, error) {
	cm, err := argocdCM(docsPath)
	if err != nil {
		return nil, err
	}
	// The API server would refuse a data key that is not a valid ConfigMap
	// key (a "/" between group and kind, say) before Argo CD ever reads it.
	for k := range cm.Data {
		if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
			return nil, fmt.Errorf("%s: the %s key %q is not a valid ConfigMap key, the API server refuses it: %s", docsPath, cm.Name, k, strings.Join(errs, "; "))
		}
	}
	if cm.Namespace == "" {
		cm.Namespace = argocdNamespace
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // stops the settings manager's informers
	mgr := settings.NewSettingsManager(ctx, fake.NewClientset(cm), argocdNamespace)
	overrides, err := mgr.GetResourceOverrides()
	if err != nil {
		return nil, fmt.Errorf("%s: Argo CD does not load the %s ConfigMap's resource overrides "+
			"(its settings manager reads %s in namespace %s, labelled app.kubernetes.io/part-of=argocd): %w",
			docsPath, cm.Name, cm.Name, argocdNamespace, err)
	}
	return overrides, nil
}

// readObject reads one object, JSON or YAML, from the file in, or stdin for
// "-". JSON goes through unstructured's decoder, as objects from the API server
// do (integers as int64).
func readObject(in string, stdin io.Reader) (*unstructured.Unstructured, error) {
	var b []byte
	var err error
	if in == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(in)
	}
	if err != nil {
		return nil, err
	}
	j, err := yaml.YAMLToJSON(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("%s: not JSON or YAML: %w", name(in), err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(j); err != nil {
		return nil, fmt.Errorf("%s: not a Kubernetes object: %w", name(in), err)
	}
	return obj, nil
}

// judge returns Argo CD's verdict on obj, refusing an object whose group/kind
// has no health override: the tool checks the docs' custom health check, not
// Argo CD's built-in ones.
func judge(obj *unstructured.Unstructured, overrides map[string]v1alpha1.ResourceOverride) (*health.HealthStatus, error) {
	key := lua.GetConfigMapKey(obj.GroupVersionKind())
	if o, ok := overrides[key]; !ok || o.HealthLua == "" {
		var keys []string
		for k, o := range overrides {
			if o.HealthLua != "" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("no health override for %s in argocd-cm (health overrides found: [%s]); "+
			"the key must be resource.customizations.health.<group>_<kind>", key, strings.Join(keys, " "))
	}
	h, err := health.GetResourceHealth(obj, lua.ResourceHealthOverrides(overrides))
	if err != nil {
		return nil, fmt.Errorf("the %s health check fails: %w", key, err)
	}
	if h == nil {
		return nil, errors.New("Argo CD found no health check")
	}
	return h, nil
}

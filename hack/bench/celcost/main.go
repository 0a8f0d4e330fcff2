// Command celcost measures what the CEL validation rules of the
// MultiArchBuild CRD (x-kubernetes-validations, from the
// +kubebuilder:validation:XValidation markers in api/v1alpha1 and the rule
// hack/crdpatch adds on metadata.name) cost the kube-apiserver when
// MultiArchBuilds are created.
//
// It starts a real kube-apiserver and etcd (envtest: binaries in bin/, CRDs
// from config/crd/bases or -crd-dir), creates -n MultiArchBuilds (the
// config/samples specs in turn, one namespace, distinct names) from
// -parallel clients, and reports the wall time of the creates, the
// per-create latency (p50, p99) and the CPU seconds (utime+stime of
// /proc/PID/stat) kube-apiserver and etcd used meanwhile. Each repetition
// (-reps) runs on a fresh API server; medians are printed. -strip-cel
// installs the CRDs with every x-kubernetes-validations removed, -strip
// REGEX only the rules whose "path: rule" matches (to bisect), -compare
// alternates as-is and stripped repetitions, -baseline DIR adds the CRDs of
// DIR (a copy of config/crd/bases before a change) to the alternation, and
// -profile DIR saves a CPU profile of kube-apiserver during each rep's
// creates (go tool pprof -focus 'schema/cel' shows the CEL validator's
// share).
//
// Before that, without an API server, it runs the apiserver's own CRD
// validation (which refuses rules whose estimated cost is over budget) and
// prints each rule's estimated cost; with -offline, it also times the
// apiserver's CEL validator (cel.NewValidator, as the customresource
// strategy calls it) in this process on the defaulted samples, all rules and
// each rule alone, with its allocations: steadier than the API server's CPU
// on a busy machine.
//
//	nice go run ./hack/bench/celcost -compare -reps 3
//	nice go run ./hack/bench/celcost -compare -reps 5 -baseline /tmp/crd-before
//	go run ./hack/bench/celcost -offline -skip-apiserver
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apivalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/model"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/multiarch-build/multiarch-build-operator/hack/bench/procstat"
)

const crdName = "multiarchbuilds.build.multiarch.io"

var gvr = schema.GroupVersionResource{Group: "build.multiarch.io", Version: "v1alpha1", Resource: "multiarchbuilds"}

type options struct {
	n, parallel, reps, warmup int
	stripCEL, compare         bool
	strip                     *regexp.Regexp
	root                      string
	profileDir                string
	baseline                  []*apiextensionsv1.CustomResourceDefinition
	profileSeconds            int
	rep                       int
	variant                   string
}

func main() {
	n := flag.Int("n", 500, "MultiArchBuilds created per repetition")
	parallel := flag.Int("parallel", 50, "concurrent clients")
	reps := flag.Int("reps", 3, "repetitions, each on a fresh API server")
	warmup := flag.Int("warmup", 20, "creates before the measured ones (first-request setup of the CRD handler)")
	stripCEL := flag.Bool("strip-cel", false, "install the CRDs with every x-kubernetes-validations removed")
	strip := flag.String("strip", "", "remove only the rules whose \"path: rule\" matches this regexp (bisecting)")
	compare := flag.Bool("compare", false, "alternate as-is and stripped (-strip, else every rule) repetitions and print both")
	offline := flag.Bool("offline", false, "also time the apiserver's CEL validator in this process, rule by rule")
	offlineProfile := flag.String("offline-profile", "", "-offline: write a CPU profile of the all-rules validations to this file")
	iters := flag.Int("iters", 3000, "-offline: validations per measurement")
	profileDir := flag.String("profile", "", "write a CPU profile of the kube-apiserver during the measured creates of each rep into this directory")
	profileSeconds := flag.Int("profile-seconds", 3, "-profile: length of the profile")
	crdDir := flag.String("crd-dir", "config/crd/bases", "the CRDs to install, relative to the repository root (or absolute)")
	baseline := flag.String("baseline", "", "also run, in turn with the others, the CRDs of this directory (e.g. a copy of config/crd/bases before a change)")
	skipAPIServer := flag.Bool("skip-apiserver", false, "only the static estimates (and -offline), no API server")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())

	root, err := repoRoot()
	if err != nil {
		fail(err)
	}
	o := options{n: *n, parallel: *parallel, reps: *reps, warmup: *warmup, stripCEL: *stripCEL, compare: *compare, root: root,
		profileDir: *profileDir, profileSeconds: *profileSeconds}
	if *strip != "" {
		if o.strip, err = regexp.Compile(*strip); err != nil {
			fail(err)
		}
	}
	dir := *crdDir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	crds, err := loadCRDs(dir)
	if err != nil {
		fail(err)
	}
	samples, err := loadSamples(filepath.Join(root, "config", "samples"))
	if err != nil {
		fail(err)
	}
	if *baseline != "" {
		if o.baseline, err = loadCRDs(*baseline); err != nil {
			fail(err)
		}
	}
	if err := printEstimates(crds, samples, *offline, *iters, *offlineProfile); err != nil {
		fail(err)
	}
	if *skipAPIServer {
		return
	}
	if err := runAPIServer(o, crds, samples); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "celcost:", err)
	os.Exit(1)
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

func loadCRDs(dir string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no CRDs in %s (%v)", dir, err)
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := dec.Decode(crd); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if crd.Kind == "CustomResourceDefinition" {
				out = append(out, crd)
			}
		}
	}
	return out, nil
}

// loadSamples reads the MultiArchBuild samples of config/samples.
func loadSamples(dir string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(dir, "build_v1alpha1_multiarchbuild_*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no MultiArchBuild samples in %s (%v)", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{}
		if err := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096).Decode(&u.Object); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// rule is one x-kubernetes-validations entry, found by walking a schema.
type rule struct {
	path string // JSON path of the schema node, e.g. .spec.source.git.url
	rule apiextensionsv1.ValidationRule
	// cardinality is how many times the rule can run in one object: the
	// product of the maxItems/maxProperties of the lists and maps above it
	// (0: one of them is unbounded).
	cardinality uint64
}

func (r rule) String() string { return r.path + ": " + r.rule.Rule }

// walk calls f on every schema node with its path and the cardinality of the
// node (see rule.cardinality).
func walk(s *apiextensionsv1.JSONSchemaProps, path string, card uint64, f func(s *apiextensionsv1.JSONSchemaProps, path string, card uint64)) {
	f(s, path, card)
	for _, k := range sortedKeys(s.Properties) {
		p := s.Properties[k]
		walk(&p, path+"."+k, card, f)
		s.Properties[k] = p
	}
	times := func(max *int64) uint64 {
		if max == nil || card == 0 {
			return 0
		}
		return card * uint64(*max)
	}
	if s.Items != nil && s.Items.Schema != nil {
		walk(s.Items.Schema, path+"[*]", times(s.MaxItems), f)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		walk(s.AdditionalProperties.Schema, path+"[*]", times(s.MaxProperties), f)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func mabSchema(crds []*apiextensionsv1.CustomResourceDefinition) (*apiextensionsv1.JSONSchemaProps, error) {
	for _, c := range crds {
		if c.Name == crdName {
			return c.Spec.Versions[0].Schema.OpenAPIV3Schema, nil
		}
	}
	return nil, fmt.Errorf("CRD %s not found", crdName)
}

func rulesOf(s *apiextensionsv1.JSONSchemaProps) []rule {
	var out []rule
	walk(s, "", 1, func(s *apiextensionsv1.JSONSchemaProps, path string, card uint64) {
		for _, r := range s.XValidations {
			out = append(out, rule{path: path, rule: r, cardinality: card})
		}
	})
	return out
}

// stripped is a deep copy of crds without the rules keep says no to.
func stripped(crds []*apiextensionsv1.CustomResourceDefinition, keep func(rule) bool) []*apiextensionsv1.CustomResourceDefinition {
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, c := range crds {
		c = c.DeepCopy()
		for i := range c.Spec.Versions {
			if s := c.Spec.Versions[i].Schema; s != nil {
				walk(s.OpenAPIV3Schema, "", 1, func(s *apiextensionsv1.JSONSchemaProps, path string, card uint64) {
					var kept apiextensionsv1.ValidationRules
					for _, r := range s.XValidations {
						if keep(rule{path: path, rule: r, cardinality: card}) {
							kept = append(kept, r)
						}
					}
					s.XValidations = kept
				})
			}
		}
		out = append(out, c)
	}
	return out
}

// validateCRD is the apiserver's validation of a CRD on create, cost
// estimates of the CEL rules included.
func validateCRD(crd *apiextensionsv1.CustomResourceDefinition) field.ErrorList {
	c := crd.DeepCopy()
	apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(c)
	internal := &apiextensions.CustomResourceDefinition{}
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(c, internal, nil); err != nil {
		return field.ErrorList{field.InternalError(nil, err)}
	}
	return apivalidation.ValidateCustomResourceDefinition(context.Background(), internal)
}

func structural(s *apiextensionsv1.JSONSchemaProps) (*structuralschema.Structural, error) {
	internal := &apiextensions.JSONSchemaProps{}
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(s, internal, nil); err != nil {
		return nil, err
	}
	return structuralschema.NewStructural(internal)
}

// nodeAt is the structural schema node of a path made by walk.
func nodeAt(root *structuralschema.Structural, path string) *structuralschema.Structural {
	n := root
	for _, part := range strings.Split(strings.TrimPrefix(path, "."), ".") {
		if part == "" {
			continue
		}
		name, rest, _ := strings.Cut(part, "[")
		p := n.Properties[name]
		n = &p
		for ; rest != ""; rest = strings.TrimPrefix(rest, "*][") {
			if n.Items != nil {
				n = n.Items
			} else {
				n = n.AdditionalProperties.Structural
			}
			if rest == "*]" {
				break
			}
		}
	}
	return n
}

// printEstimates prints the static cost estimate of every rule of the
// MultiArchBuild CRD and, with offline, the CPU time of the apiserver's CEL
// validator on the samples.
func printEstimates(crds []*apiextensionsv1.CustomResourceDefinition, samples []*unstructured.Unstructured, offline bool, iters int, profile string) error {
	s, err := mabSchema(crds)
	if err != nil {
		return err
	}
	ss, err := structural(s)
	if err != nil {
		return err
	}
	rules := rulesOf(s)
	envSet := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())
	fmt.Printf("CEL rules of %s: %d; the apiserver refuses a CRD with a rule or messageExpression estimated over %d or all of them over %d\n",
		crdName, len(rules), apivalidation.StaticEstimatedCostLimit, apivalidation.StaticEstimatedCRDCostLimit)
	for _, c := range crds {
		if errs := validateCRD(c); len(errs) > 0 {
			return fmt.Errorf("the apiserver would refuse CRD %s: %v", c.Name, errs.ToAggregate())
		}
	}
	fmt.Println("  the apiserver's CRD validation (cost estimates included) accepts the CRDs")
	var total uint64
	type est struct {
		r                   rule
		cost, msgCost, card uint64
	}
	var ests []est
	for _, r := range rules {
		node := *nodeAt(ss, r.path)
		node.XValidations = apiextensionsv1.ValidationRules{{Rule: r.rule.Rule, MessageExpression: r.rule.MessageExpression}}
		res, err := cel.Compile(&node, model.SchemaDeclType(&node, r.path == ""), celconfig.PerCallLimit, envSet, cel.NewExpressionsEnvLoader())
		if err != nil {
			return fmt.Errorf("%s: %w", r, err)
		}
		if res[0].Error != nil {
			return fmt.Errorf("%s: %v", r, res[0].Error)
		}
		if res[0].MessageExpressionError != nil {
			return fmt.Errorf("%s: messageExpression: %v", r, res[0].MessageExpressionError)
		}
		card := r.cardinality
		if card == 0 {
			card = res[0].MaxCardinality
		}
		ests = append(ests, est{r, res[0].MaxCost, res[0].MessageExpressionMaxCost, card})
		total += (res[0].MaxCost + res[0].MessageExpressionMaxCost) * card
	}
	sort.SliceStable(ests, func(i, j int) bool { return ests[i].cost*ests[i].card > ests[j].cost*ests[j].card })
	fmt.Printf("  %10s %10s %5s %10s  rule\n", "rule", "message", "times", "total")
	for _, e := range ests {
		fmt.Printf("  %10d %10d %5d %10d  %s\n", e.cost, e.msgCost, e.card, (e.cost+e.msgCost)*e.card, shorten(e.r.String(), 100))
	}
	fmt.Printf("  estimated cost of all rules and messageExpressions: %d\n\n", total)
	if !offline {
		return nil
	}

	// The objects as the validator sees them on create: defaulted, with
	// the metadata the API server has set by then.
	var objs []map[string]any
	for i, sm := range samples {
		u := sm.DeepCopy()
		u.SetNamespace("bench")
		u.SetName(fmt.Sprintf("%s-%05d", u.GetName(), i))
		u.SetUID("6f1b5f4e-3c4b-4a8e-9a55-000000000000")
		u.SetCreationTimestamp(metav1.Now())
		structuraldefaulting.Default(u.Object, ss)
		objs = append(objs, u.Object)
	}
	type measurement struct {
		d, cpu        time.Duration
		cost          int64
		allocs, bytes uint64
	}
	measure := func(v *cel.Validator, profile string) measurement {
		if v == nil {
			return measurement{}
		}
		ctx := context.Background()
		var m measurement
		for _, o := range objs { // warm up, and the actual cost of one object
			errs, remaining := v.Validate(ctx, nil, ss, o, nil, celconfig.RuntimeCELCostBudget)
			if len(errs) > 0 {
				fail(fmt.Errorf("sample rejected by the rules: %v", errs.ToAggregate()))
			}
			m.cost += celconfig.RuntimeCELCostBudget - remaining
		}
		m.cost /= int64(len(objs))
		if profile != "" {
			f, err := os.Create(profile)
			if err != nil {
				fail(err)
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				fail(err)
			}
			defer pprof.StopCPUProfile()
		}
		// Ten rounds; the fastest is the estimate: whatever else runs on
		// the machine only ever adds time.
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		rounds := 10
		per := iters / rounds
		m.d, m.cpu = time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
		for r := 0; r < rounds; r++ {
			cpu0 := processCPU()
			start := time.Now()
			for i := 0; i < per; i++ {
				v.Validate(ctx, nil, ss, objs[i%len(objs)], nil, celconfig.RuntimeCELCostBudget)
			}
			m.d = min(m.d, time.Since(start)/time.Duration(per))
			m.cpu = min(m.cpu, (processCPU()-cpu0)/time.Duration(per))
		}
		iters = per * rounds
		runtime.ReadMemStats(&after)
		m.allocs = (after.Mallocs - before.Mallocs) / uint64(iters)
		m.bytes = (after.TotalAlloc - before.TotalAlloc) / uint64(iters)
		return m
	}
	fmt.Printf("CEL validation in this process (the apiserver's cel.NewValidator) of the %d samples, defaulted; time: the fastest of 10 rounds of %d validations:\n", len(samples), iters/10)
	all := measure(cel.NewValidator(ss, true, celconfig.PerCallLimit), profile)
	fmt.Printf("  all rules: %v per object (CPU of the process, garbage collection included: %v), %d allocations (%d bytes), actual cost %d\n",
		all.d, all.cpu, all.allocs, all.bytes, all.cost)
	type one struct {
		r rule
		m measurement
	}
	var ones []one
	for _, r := range rules {
		only, err := structural(stripped([]*apiextensionsv1.CustomResourceDefinition{{
			ObjectMeta: metav1.ObjectMeta{Name: crdName},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: s}}}},
		}}, func(x rule) bool { return x.path == r.path && x.rule.Rule == r.rule.Rule })[0].Spec.Versions[0].Schema.OpenAPIV3Schema)
		if err != nil {
			return err
		}
		ones = append(ones, one{r, measure(cel.NewValidator(only, true, celconfig.PerCallLimit), "")})
	}
	sort.SliceStable(ones, func(i, j int) bool { return ones[i].m.cpu > ones[j].m.cpu })
	fmt.Printf("  %9s %9s %6s %6s  rule alone (with the walk from the root to it)\n", "time", "CPU", "allocs", "cost")
	for _, o := range ones {
		fmt.Printf("  %9v %9v %6d %6d  %s\n", o.m.d, o.m.cpu, o.m.allocs, o.m.cost, shorten(o.r.String(), 100))
	}
	fmt.Println()
	return nil
}

// processCPU is the user and system CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

type result struct {
	wall, p50, p99, apiserverCPU, etcdCPU float64
	errors                                int
}

func runAPIServer(o options, crds []*apiextensionsv1.CustomResourceDefinition, samples []*unstructured.Unstructured) error {
	stripAll := func(rule) bool { return false }
	keepUnmatched := func(r rule) bool { return !o.strip.MatchString(r.String()) }
	type variant struct {
		name string
		crds []*apiextensionsv1.CustomResourceDefinition
	}
	var variants []variant
	switch {
	case o.compare && o.strip != nil:
		variants = []variant{{"as-is", crds}, {"stripped " + o.strip.String(), stripped(crds, keepUnmatched)}}
	case o.compare:
		variants = []variant{{"as-is", crds}, {"no CEL", stripped(crds, stripAll)}}
	case o.stripCEL:
		variants = []variant{{"no CEL", stripped(crds, stripAll)}}
	case o.strip != nil:
		variants = []variant{{"stripped " + o.strip.String(), stripped(crds, keepUnmatched)}}
	default:
		variants = []variant{{"as-is", crds}}
	}
	if o.baseline != nil {
		variants = append(variants, variant{"baseline", o.baseline})
	}
	for _, v := range variants {
		s, _ := mabSchema(v.crds)
		fmt.Printf("%s: %d CEL rules on %s\n", v.name, len(rulesOf(s)), crdName)
	}
	results := make([][]result, len(variants))
	for rep := 0; rep < o.reps; rep++ {
		for i, v := range variants {
			o.rep, o.variant = rep+1, v.name
			r, err := oneRep(o, v.crds, samples)
			if err != nil {
				return fmt.Errorf("%s, rep %d: %w", v.name, rep+1, err)
			}
			fmt.Printf("  rep %d %-12s creates %6.3fs  p50 %6.1fms  p99 %6.1fms  kube-apiserver CPU %6.2fs  etcd CPU %5.2fs  errors %d\n",
				rep+1, v.name, r.wall, r.p50*1000, r.p99*1000, r.apiserverCPU, r.etcdCPU, r.errors)
			results[i] = append(results[i], r)
		}
	}
	fmt.Printf("\nmedians of %d reps, %d creates, %d clients (load average now: %s)\n", o.reps, o.n, o.parallel, loadavg())
	fmt.Printf("  %-30s %9s %9s %9s %14s %9s\n", "", "creates", "p50", "p99", "apiserver CPU", "etcd CPU")
	for i, v := range variants {
		m := func(f func(result) float64) float64 { return median(results[i], f) }
		fmt.Printf("  %-30s %8.3fs %7.1fms %7.1fms %13.2fs %8.2fs\n", v.name,
			m(func(r result) float64 { return r.wall }), m(func(r result) float64 { return r.p50 })*1000,
			m(func(r result) float64 { return r.p99 })*1000, m(func(r result) float64 { return r.apiserverCPU }),
			m(func(r result) float64 { return r.etcdCPU }))
	}
	for i := 1; i < len(variants); i++ {
		rel := func(f func(result) float64) string {
			a, b := median(results[0], f), median(results[i], f)
			return fmt.Sprintf("%+.0f%%", (a-b)/b*100)
		}
		fmt.Printf("  %s vs %s: creates %s, p50 %s, p99 %s, apiserver CPU %s\n", variants[0].name, variants[i].name,
			rel(func(r result) float64 { return r.wall }), rel(func(r result) float64 { return r.p50 }),
			rel(func(r result) float64 { return r.p99 }), rel(func(r result) float64 { return r.apiserverCPU }))
	}
	return nil
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func oneRep(o options, crds []*apiextensionsv1.CustomResourceDefinition, samples []*unstructured.Unstructured) (result, error) {
	env := &envtest.Environment{
		BinaryAssetsDirectory: filepath.Join(o.root, "bin"),
		CRDs:                  crds,
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop() // a refused CRD leaves etcd and kube-apiserver running
		return result{}, fmt.Errorf("start envtest: %w", err)
	}
	defer func() { _ = env.Stop() }()
	apiserver, etcd, err := controlPlanePids(filepath.Join(o.root, "bin"))
	if err != nil {
		return result{}, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return result{}, err
	}
	ctx := context.Background()
	ns := "bench"
	if _, err := dynamic.NewForConfigOrDie(cfg).Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(ctx,
		&unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}},
		metav1.CreateOptions{}); err != nil {
		return result{}, err
	}
	client := dyn.Resource(gvr).Namespace(ns)
	object := func(prefix string, i int) *unstructured.Unstructured {
		u := samples[i%len(samples)].DeepCopy()
		u.SetName(fmt.Sprintf("%s-%s-%05d", prefix, u.GetName(), i))
		u.SetNamespace(ns)
		return u
	}
	// The first creates set up the CRD's handler (and its CEL programs).
	for i := 0; i < o.warmup; i++ {
		if _, err := client.Create(ctx, object("warmup", i), metav1.CreateOptions{}); err != nil {
			return result{}, fmt.Errorf("warm-up create: %w", err)
		}
	}
	time.Sleep(time.Second) // let the warm-up's work settle

	latencies := make([]float64, o.n)
	var errCount int
	var firstErr error
	var mu sync.Mutex
	next := make(chan int, o.n)
	for i := 0; i < o.n; i++ {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	if o.profileDir != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := profile(ctx, cfg, o); err != nil {
				fmt.Fprintln(os.Stderr, "  profile:", err)
			}
		}()
		time.Sleep(100 * time.Millisecond)
	}
	cpu0, etcd0 := procCPU(apiserver), procCPU(etcd)
	start := time.Now()
	var creates sync.WaitGroup
	for w := 0; w < o.parallel; w++ {
		creates.Add(1)
		go func() {
			defer creates.Done()
			for i := range next {
				u := object("b", i)
				t := time.Now()
				_, err := client.Create(ctx, u, metav1.CreateOptions{})
				latencies[i] = time.Since(t).Seconds()
				if err != nil {
					mu.Lock()
					errCount++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	creates.Wait()
	wall := time.Since(start).Seconds()
	cpu1, etcd1 := procCPU(apiserver), procCPU(etcd)
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "  %d creates failed, the first: %v\n", errCount, firstErr)
	}
	sort.Float64s(latencies)
	return result{
		wall: wall, p50: quantile(latencies, 0.50), p99: quantile(latencies, 0.99),
		apiserverCPU: cpu1 - cpu0, etcdCPU: etcd1 - etcd0, errors: errCount,
	}, nil
}

// profile writes a CPU profile of the kube-apiserver (its /debug/pprof).
func profile(ctx context.Context, cfg *rest.Config, o options) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").
		Param("seconds", strconv.Itoa(o.profileSeconds)).DoRaw(ctx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return err
	}
	name := regexp.MustCompile(`[^A-Za-z0-9.-]+`).ReplaceAllString(o.variant, "_")
	return os.WriteFile(filepath.Join(o.profileDir, fmt.Sprintf("kube-apiserver-%s-rep%d.pprof", name, o.rep)), data, 0o644)
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[int(math.Ceil(q*float64(len(sorted))))-1]
}

// controlPlanePids finds the kube-apiserver and etcd this process started
// (children of this process running the binaries of bin/).
func controlPlanePids(bin string) (apiserver, etcd int, err error) {
	// bin/ may hold symlinks: /proc/PID/exe is the file they point at.
	binaries := map[string]string{}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		exe, err := filepath.EvalSymlinks(filepath.Join(bin, name))
		if err != nil {
			return 0, 0, err
		}
		binaries[exe] = name
	}
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || procstat.PPID(pid) != self {
			continue
		}
		switch binaries[exe] {
		case "kube-apiserver":
			apiserver = pid
		case "etcd":
			etcd = pid
		}
	}
	if apiserver == 0 || etcd == 0 {
		return 0, 0, fmt.Errorf("kube-apiserver (pid %d) or etcd (pid %d) of %s not found among this process's children", apiserver, etcd, bin)
	}
	return apiserver, etcd, nil
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}

// procCPU is utime+stime of pid in seconds, NaN when it cannot be read.
func procCPU(pid int) float64 {
	if v, ok := procstat.CPU(pid); ok {
		return v
	}
	return math.NaN()
}

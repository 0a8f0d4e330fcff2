package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LabelPipeline marks the Pipelines the operator maintains; its value is
// the strategy.
const LabelPipeline = "build.multiarch.io/pipeline"

// GenerateReferenced is Generate for the many builds of a namespace that
// share a shape: the pipeline spec goes into a Pipeline named after its
// content (every build of the same strategy, platforms, images, operator
// settings and cluster configuration gets the same one), and the run refers
// to it by name with the values that differ from run to run as parameters:
// the run's own name ($(context.pipelineRun.name)), the workspace claim,
// the Secrets, the cluster configuration's ConfigMap. The run is a few
// kilobytes instead of tens: the API server stores, the watch sends and
// Tekton decodes that much less per build. The Pipeline is immutable in
// practice: a different spec gives a different name.
//
// A retry that reuses images lists their digests in its spec: it is
// returned inline, with no Pipeline (nil).
func GenerateReferenced(in Input) (*tektonv1.Pipeline, *tektonv1.PipelineRun, error) {
	p, err := newPlan(in)
	if err != nil {
		return nil, nil, err
	}
	if len(p.reusedPlatforms()) > 0 {
		pr, err := Generate(in)
		return nil, pr, err
	}
	g := &generator{p: p, s: in.Settings, shared: true}
	pr := g.pipelineRun()
	spec := pr.Spec.PipelineSpec
	values := map[string]string{paramClaim: p.claim, paramGitSecret: p.gitSecret, paramPushSecret: p.pushSecret, paramMavenSecret: p.mavenSettings}
	if c := in.Cluster; c != nil {
		applyClusterConfig(pr, c)
		if c.ConfigMap != "" {
			values[paramClusterConfig] = c.ConfigMap
			for _, pt := range append(append([]tektonv1.PipelineTask{}, spec.Tasks...), spec.Finally...) {
				for i := range pt.TaskSpec.Volumes {
					if cm := pt.TaskSpec.Volumes[i].ConfigMap; cm != nil && cm.Name == c.ConfigMap {
						cm.Name = "$(params." + paramClusterConfig + ")"
					}
				}
			}
		}
	}
	used, err := parameterize(spec)
	if err != nil {
		return nil, nil, err
	}
	for _, name := range runParamNames {
		if used[name] {
			spec.Params = append(spec.Params, stringParamSpec(name, "Given by each run: "+runParamDescription[name]))
			pr.Spec.Params = append(pr.Spec.Params, stringParam(name, values[name]))
		}
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(raw)
	name := fmt.Sprintf("multiarch-%s-%s", strings.ToLower(string(p.strategy)), hex.EncodeToString(sum[:])[:12])
	pl := &tektonv1.Pipeline{
		TypeMeta: metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "Pipeline"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: p.namespace,
			Labels:    map[string]string{LabelManagedBy: ManagedBy, LabelPipeline: strings.ToLower(string(p.strategy))},
		},
		Spec: *spec,
	}
	pr.Spec.PipelineSpec = nil
	pr.Spec.PipelineRef = &tektonv1.PipelineRef{Name: name}
	return pl, pr, nil
}

var runParamDescription = map[string]string{
	paramClaim:         "the ReadWriteMany claim the tasks share.",
	paramGitSecret:     "the Secret of spec.source.git.secretRef.",
	paramPushSecret:    "the Secret of spec.output.pushSecretRef.",
	paramMavenSecret:   "the Secret of spec.strategy.maven.settingsSecretRef.",
	paramClusterConfig: "the ConfigMap of the run's cluster configuration (proxy, trust, registries).",
}

// parameterize declares, in every task of spec that uses one of the
// per-run values, the task parameter it reads, and passes it: RUN_NAME from
// $(context.pipelineRun.name), the others from the pipeline parameter of the
// same name. It returns the pipeline parameters used.
func parameterize(spec *tektonv1.PipelineSpec) (map[string]bool, error) {
	used := map[string]bool{}
	for _, tasks := range [][]tektonv1.PipelineTask{spec.Tasks, spec.Finally} {
		for i := range tasks {
			pt := &tasks[i]
			raw, err := json.Marshal(pt.TaskSpec)
			if err != nil {
				return nil, err
			}
			for _, name := range append([]string{paramRunName}, runParamNames...) {
				if !strings.Contains(string(raw), "$(params."+name+")") {
					continue
				}
				value := "$(params." + name + ")"
				if name == paramRunName {
					value = "$(context.pipelineRun.name)"
				} else {
					used[name] = true
				}
				pt.Params = append(pt.Params, stringParam(name, value))
				pt.TaskSpec.Params = append(pt.TaskSpec.Params, stringParamSpec(name, ""))
			}
		}
	}
	return used, nil
}

package pipeline

import (
	"strings"
	"testing"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// The cluster's proxy, CA bundle and registries configuration reach every
// step as environment values and ConfigMap volumes, never as script text,
// and the run stays valid under Tekton's validation.
func TestClusterConfigReachesEveryStepAsValues(t *testing.T) {
	ctxs := tektonContexts(t)
	cc := &ClusterConfig{
		HTTPProxy: "http://proxy.corp.example:3128", HTTPSProxy: "http://proxy.corp.example:3128",
		NoProxy:   ".cluster.local,.svc,10.0.0.0/16,localhost",
		ConfigMap: "mab-cluster-config-0123456789", CABundle: true, RegistriesConf: true, Policy: true,
	}
	for strategy, sample := range sampleBuilds {
		t.Run(string(strategy), func(t *testing.T) {
			in := input(sample())
			in.Cluster = cc
			pr, err := Generate(in)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			plain, err := Generate(input(sample()))
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if got := pr.Annotations[AnnotationClusterConfig]; got != cc.ConfigMap {
				t.Errorf("annotation %s = %q, want %q", AnnotationClusterConfig, got, cc.ConfigMap)
			}
			for name, ctx := range ctxs {
				if err := pr.Validate(ctx); err != nil {
					t.Errorf("Tekton validation with %s flags: %v", name, err)
				}
				d := pr.DeepCopy()
				d.SetDefaults(ctx)
				if err := d.Validate(ctx); err != nil {
					t.Errorf("Tekton validation after defaults with %s flags: %v", name, err)
				}
			}
			steps, buildahSteps := 0, 0
			plainScripts := map[string]string{}
			eachStep(plain, func(task string, _ *tektonv1.TaskSpec, st *tektonv1.Step) { plainScripts[task+"/"+st.Name] = st.Script })
			eachStep(pr, func(task string, ts *tektonv1.TaskSpec, st *tektonv1.Step) {
				steps++
				where := task + "/" + st.Name
				if st.Script != plainScripts[where] {
					t.Errorf("%s: the script changed with the cluster configuration", where)
				}
				if strings.Contains(st.Script, "proxy.corp.example") {
					t.Errorf("%s: a proxy value is in the script text", where)
				}
				envs := map[string]string{}
				for _, e := range st.Env {
					if _, dup := envs[e.Name]; dup {
						t.Errorf("%s: environment variable %s twice", where, e.Name)
					}
					envs[e.Name] = e.Value
				}
				for k, want := range map[string]string{
					"HTTP_PROXY": cc.HTTPProxy, "http_proxy": cc.HTTPProxy, "HTTPS_PROXY": cc.HTTPSProxy, "https_proxy": cc.HTTPSProxy,
					"NO_PROXY": cc.NoProxy, "no_proxy": cc.NoProxy,
					"TRUSTED_CA_BUNDLE": TrustedCAFile, "NODE_EXTRA_CA_CERTS": "",
				} {
					if envs[k] != want {
						t.Errorf("%s: %s = %q, want %q", where, k, envs[k], want)
					}
				}
				mounts := map[string]string{}
				for _, m := range st.VolumeMounts {
					mounts[m.Name] = m.MountPath
				}
				if mounts[volTrust] != mountTrust {
					t.Errorf("%s: the CA bundle is not mounted at %s: %v", where, mountTrust, mounts)
				}
				if isBuildahStep(st) {
					buildahSteps++
					if envs["SSL_CERT_DIR"] != mountTrust {
						t.Errorf("%s: buildah step SSL_CERT_DIR=%q", where, envs["SSL_CERT_DIR"])
					}
					// buildah runs as root: containers/image reads /etc/containers,
					// never $HOME/.config/containers.
					if mounts[volContainers] != registriesDropIn {
						t.Errorf("%s: registries configuration not mounted at %s: %v", where, registriesDropIn, mounts)
					}
				}
				vols := map[string]bool{}
				for _, v := range ts.Volumes {
					if v.ConfigMap != nil && v.ConfigMap.Name == cc.ConfigMap {
						vols[v.Name] = true
					}
				}
				for name := range mounts {
					if (name == volTrust || name == volContainers) && !vols[name] {
						t.Errorf("%s: mounts %s, which its task does not declare", where, name)
					}
				}
			})
			if steps == 0 || buildahSteps == 0 {
				t.Fatalf("%d steps, %d buildah steps", steps, buildahSteps)
			}
		})
	}
}

// Without a cluster configuration the run is what it always was.
func TestNoClusterConfigChangesNothing(t *testing.T) {
	a, _ := Generate(input(htopBuild()))
	in := input(htopBuild())
	in.Cluster = &ClusterConfig{}
	b, _ := Generate(in)
	eachStep(b, func(task string, _ *tektonv1.TaskSpec, st *tektonv1.Step) {
		for _, e := range st.Env {
			if strings.Contains(strings.ToUpper(e.Name), "PROXY") || e.Name == "TRUSTED_CA_BUNDLE" {
				t.Errorf("%s/%s: %s set by an empty configuration", task, st.Name, e.Name)
			}
		}
	})
	if len(a.Spec.PipelineSpec.Tasks) != len(b.Spec.PipelineSpec.Tasks) {
		t.Error("tasks differ")
	}
}

func eachStep(pr *tektonv1.PipelineRun, f func(task string, ts *tektonv1.TaskSpec, st *tektonv1.Step)) {
	for _, tasks := range [][]tektonv1.PipelineTask{pr.Spec.PipelineSpec.Tasks, pr.Spec.PipelineSpec.Finally} {
		for i := range tasks {
			ts := &tasks[i].TaskSpec.TaskSpec
			for j := range ts.Steps {
				f(tasks[i].Name, ts, &ts.Steps[j])
			}
		}
	}
}

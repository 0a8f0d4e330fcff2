package pipeline

import (
	"strings"

	"github.com/multiarch-build/multiarch-build-operator/internal/clusterconfig"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
)

// ClusterConfig is the cluster's network and trust configuration, as the
// operator read it when it created the run (see internal/clusterconfig).
// Its values are rendered into the PipelineRun: a later change of the
// cluster's configuration reaches the next run, never a running one. The
// CA bundle and the registries configuration travel in ConfigMap, which
// the operator wrote in the build's namespace before the run, named after
// its content and immutable.
type ClusterConfig struct {
	HTTPProxy, HTTPSProxy, NoProxy string
	// ConfigMap in the build's namespace; empty when none of the three
	// below is set.
	ConfigMap string
	// CABundle: ConfigMap has clusterconfig.CABundleKey.
	CABundle bool
	// RegistriesConf: ConfigMap has clusterconfig.RegistriesConfKey.
	RegistriesConf bool
	// Policy: ConfigMap has clusterconfig.PolicyKey.
	Policy bool
}

// AnnotationClusterConfig names, on a run, the ConfigMap of its cluster
// configuration.
const AnnotationClusterConfig = "build.multiarch.io/cluster-config"

const (
	volTrust      = "cluster-trust"
	volContainers = "cluster-containers"
	// mountTrust holds only ca-bundle.crt, so that it can be SSL_CERT_DIR.
	mountTrust = "/etc/multiarch-build/trust"
	// registriesDropIn and policyFile are where buildah, which runs as
	// root, reads the cluster's registries configuration:
	// containers/image reads $HOME/.config/containers only when rootless.
	// registries.conf.d is read after the image's registries.conf and
	// drop-ins, so the image's own settings stay.
	registriesDropIn = "/etc/containers/registries.conf.d/99-cluster.conf"
	policyFile       = "/etc/containers/policy.json"
	// TrustedCAFile is the bundle every step sees (TRUSTED_CA_BUNDLE).
	TrustedCAFile = mountTrust + "/" + clusterconfig.CABundleKey
)

// applyClusterConfig gives every step of every task the proxy variables,
// and, when the cluster has them, the CA bundle and buildah's registries
// configuration. Values are environment variables and files; no script
// text changes:
//   - HTTP_PROXY, HTTPS_PROXY, NO_PROXY and their lower-case forms (git's
//     libcurl reads http_proxy only in lower case; Go, npm and the JDK's
//     callers read either);
//   - TRUSTED_CA_BUNDLE: the PEM bundle, added to the image's own trust by
//     the scripts that need it (clone.sh for git, maven.sh imports it into
//     a truststore with keytool); NODE_EXTRA_CA_CERTS composed by install.sh (node and npm add it
//     to their own); SSL_CERT_DIR for buildah (Go adds the directory's
//     certificates to the system bundle; the directory holds only the bundle);
//   - buildah steps: /etc/containers/registries.conf.d/99-cluster.conf
//     (mirrors, insecure and blocked registries) and /etc/containers/
//     policy.json (allowed registries), file mounts of the run's ConfigMap.
func applyClusterConfig(pr *tektonv1.PipelineRun, c *ClusterConfig) {
	if c == nil {
		return
	}
	if c.ConfigMap != "" {
		if pr.Annotations == nil {
			pr.Annotations = map[string]string{}
		}
		pr.Annotations[AnnotationClusterConfig] = c.ConfigMap
	}
	spec := pr.Spec.PipelineSpec
	if spec == nil {
		return
	}
	for _, tasks := range [][]tektonv1.PipelineTask{spec.Tasks, spec.Finally} {
		for i := range tasks {
			if tasks[i].TaskSpec != nil {
				c.applyTask(&tasks[i].TaskSpec.TaskSpec)
			}
		}
	}
}

func (c *ClusterConfig) applyTask(ts *tektonv1.TaskSpec) {
	trust, containers := false, false
	for i := range ts.Steps {
		st := &ts.Steps[i]
		for _, kv := range [][2]string{{"HTTP_PROXY", c.HTTPProxy}, {"HTTPS_PROXY", c.HTTPSProxy}, {"NO_PROXY", c.NoProxy}} {
			if kv[1] != "" {
				st.Env = append(st.Env, env(kv[0], kv[1]), env(strings.ToLower(kv[0]), kv[1]))
			}
		}
		buildah := isBuildahStep(st)
		if c.ConfigMap != "" && c.CABundle {
			trust = true
			// Not NODE_EXTRA_CA_CERTS itself: a Node.js image may set it to
			// the CAs it needs (node does not read the system store);
			// install.sh adds the cluster bundle to those.
			st.Env = append(st.Env, env("TRUSTED_CA_BUNDLE", TrustedCAFile))
			if buildah {
				st.Env = append(st.Env, env("SSL_CERT_DIR", mountTrust))
			}
			st.VolumeMounts = append(st.VolumeMounts, corev1.VolumeMount{Name: volTrust, MountPath: mountTrust, ReadOnly: true})
		}
		if buildah && c.ConfigMap != "" && (c.RegistriesConf || c.Policy) {
			containers = true
			if c.RegistriesConf {
				st.VolumeMounts = append(st.VolumeMounts, corev1.VolumeMount{Name: volContainers, MountPath: registriesDropIn, SubPath: "99-cluster.conf", ReadOnly: true})
			}
			if c.Policy {
				st.VolumeMounts = append(st.VolumeMounts, corev1.VolumeMount{Name: volContainers + "-policy", MountPath: policyFile, SubPath: "policy.json", ReadOnly: true})
			}
		}
	}
	if trust {
		ts.Volumes = append(ts.Volumes, c.volume(volTrust, corev1.KeyToPath{Key: clusterconfig.CABundleKey, Path: clusterconfig.CABundleKey}))
	}
	if containers {
		if c.RegistriesConf {
			ts.Volumes = append(ts.Volumes, c.volume(volContainers, corev1.KeyToPath{Key: clusterconfig.RegistriesConfKey, Path: "99-cluster.conf"}))
		}
		if c.Policy {
			ts.Volumes = append(ts.Volumes, c.volume(volContainers+"-policy", corev1.KeyToPath{Key: clusterconfig.PolicyKey, Path: "policy.json"}))
		}
	}
}

func (c *ClusterConfig) volume(name string, items ...corev1.KeyToPath) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: c.ConfigMap},
		Items:                items,
	}}}
}

// isBuildahStep: the steps that run buildah carry buildahEnv.
func isBuildahStep(st *tektonv1.Step) bool {
	for _, e := range st.Env {
		if e.Name == "BUILDAH_ISOLATION" {
			return true
		}
	}
	return false
}

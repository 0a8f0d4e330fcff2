package controllers

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	configv1 "github.com/openshift/api/config/v1"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/clusterconfig"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

func init() { utilruntime.Must(configv1.AddToScheme(testScheme)) }

func pemCA(t *testing.T, cn string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func stepEnv(c client.Reader, run *tektonv1.PipelineRun, task, name string) string {
	for _, pt := range pipelineSpecOf(c, run).Tasks {
		if pt.Name != task {
			continue
		}
		for _, st := range pt.TaskSpec.Steps {
			for _, e := range st.Env {
				if e.Name == name {
					return e.Value
				}
			}
		}
	}
	return ""
}

// An OpenShift cluster with a proxy, a trusted CA, insecure registries and
// an ImageTagMirrorSet, plus the vanilla flags' ConfigMaps: the run gets
// the proxy values and an immutable ConfigMap with the bundle and the
// registries drop-in, created before it; a change of the cluster's proxy
// afterwards leaves the run as it is. A trusted CA that is not PEM keeps
// the next build from starting, with a condition naming the ConfigMap and
// the Proxy field; fixing it (and the Proxy watch) starts the run.
func TestClusterConfigIsRenderedIntoTheRunAndBadConfigHoldsIt(t *testing.T) {
	env := testenv.Start(t, testenv.Ours, testenv.Tekton, testenv.OpenShiftClusterConfig)
	c, err := client.New(env.Config, client.Options{Scheme: testScheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := createClass(ctx, c, defaultClass, storagev1.VolumeBindingWaitForFirstConsumer); err != nil {
		t.Fatal(err)
	}
	mustCreate := func(o client.Object) {
		t.Helper()
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	ns := newNamespace(t, c)
	ops := newNamespace(t, c)
	getB := func(name string) *v1alpha1.MultiArchBuild {
		t.Helper()
		b := &v1alpha1.MultiArchBuild{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	runOf := func(name string) *tektonv1.PipelineRun {
		t.Helper()
		run := &tektonv1.PipelineRun{}
		eventually(t, "the PipelineRun of "+name, func() (bool, string) {
			b := getB(name)
			err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: pipeline.RunName(b)}, run)
			return err == nil, fmt.Sprintf("%v; status %+v", err, b.Status.Conditions)
		})
		return run
	}
	newB := func(name string) *v1alpha1.MultiArchBuild {
		t.Helper()
		b := newBuild(ns, name)
		mustCreate(b)
		return b
	}
	mustCreate(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterconfig.OpenShiftConfigNamespace}})
	caProxy, caFlag := pemCA(t, "proxy-ca"), pemCA(t, "flag-ca")
	userCA := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: clusterconfig.OpenShiftConfigNamespace, Name: "user-ca-bundle"}, Data: map[string]string{clusterconfig.CABundleKey: caProxy}}
	mustCreate(userCA)
	mustCreate(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ops, Name: "multiarch-build-trusted-ca"}, Data: map[string]string{clusterconfig.CABundleKey: caFlag}})
	mustCreate(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ops, Name: "multiarch-build-registries"}, Data: map[string]string{clusterconfig.RegistriesConfKey: "[[registry]]\nlocation = \"extra.example\"\ninsecure = true\n"}})
	proxy := &configv1.Proxy{ObjectMeta: metav1.ObjectMeta{Name: "cluster"}, Spec: configv1.ProxySpec{TrustedCA: configv1.ConfigMapNameReference{Name: "user-ca-bundle"}}}
	mustCreate(proxy)
	proxy.Status = configv1.ProxyStatus{HTTPProxy: "http://proxy.example:3128", HTTPSProxy: "http://proxy.example:3128", NoProxy: ".svc,10.96.0.0/16"}
	if err := c.Status().Update(ctx, proxy); err != nil {
		t.Fatal(err)
	}
	mustCreate(&configv1.Image{ObjectMeta: metav1.ObjectMeta{Name: "cluster"}, Spec: configv1.ImageSpec{RegistrySources: configv1.RegistrySources{InsecureRegistries: []string{"mirror.local:5000"}}}})
	mustCreate(&configv1.ImageTagMirrorSet{ObjectMeta: metav1.ObjectMeta{Name: "ubi"}, Spec: configv1.ImageTagMirrorSetSpec{ImageTagMirrors: []configv1.ImageTagMirrors{
		{Source: "registry.access.redhat.com/ubi9", Mirrors: []configv1.ImageMirror{"mirror.local:5000/ubi9"}, MirrorSourcePolicy: configv1.NeverContactSource}}}})
	mustCreate(&configv1.ImageDigestMirrorSet{ObjectMeta: metav1.ObjectMeta{Name: "quay"}, Spec: configv1.ImageDigestMirrorSetSpec{ImageDigestMirrors: []configv1.ImageDigestMirrors{
		{Source: "quay.io/org", Mirrors: []configv1.ImageMirror{"mirror.local:5000/quay/org"}}}}})

	startOperator(t, env, ns, readyCapacity(), func(_ **rest.Config, r *MultiArchBuildReconciler) {
		r.Settings.TrustedCAConfigMap = ops + "/multiarch-build-trusted-ca"
		r.Settings.RegistriesConfigMap = ops + "/multiarch-build-registries"
		r.Settings.HTTPProxy = "http://ignored-flag:1" // the cluster's value wins
	})
	b := newB("proxied")
	run := runOf(b.Name)
	if got := stepEnv(c, run, pipeline.BuildTaskName("amd64"), "HTTPS_PROXY"); got != "http://proxy.example:3128" {
		t.Errorf("clone HTTPS_PROXY = %q", got)
	}
	if got := stepEnv(c, run, "build-amd64", "no_proxy"); got != ".svc,10.96.0.0/16" {
		t.Errorf("build-amd64 no_proxy = %q", got)
	}
	name := run.Annotations[pipeline.AnnotationClusterConfig]
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, cm); err != nil {
		t.Fatalf("the run's ConfigMap %q: %v", name, err)
	}
	if cm.Immutable == nil || !*cm.Immutable || !strings.Contains(cm.Data[clusterconfig.CABundleKey], strings.TrimSpace(caProxy)) ||
		!strings.Contains(cm.Data[clusterconfig.CABundleKey], strings.TrimSpace(caFlag)) {
		t.Errorf("ConfigMap %s: immutable %v, bundle %d bytes", name, cm.Immutable, len(cm.Data[clusterconfig.CABundleKey]))
	}
	for _, want := range []string{`prefix = "registry.access.redhat.com/ubi9"`, `location = "mirror.local:5000/ubi9"`, `pull-from-mirror = "tag-only"`, `pull-from-mirror = "digest-only"`, "blocked = true", `location = "extra.example"`} {
		if !strings.Contains(cm.Data[clusterconfig.RegistriesConfKey], want) {
			t.Errorf("registries.conf lacks %s:\n%s", want, cm.Data[clusterconfig.RegistriesConfKey])
		}
	}
	assertOwnedBy(t, cm, b)
	injected := &corev1.ConfigMap{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: clusterconfig.InjectedConfigMap}, injected); err != nil || injected.Labels[clusterconfig.InjectLabel] != "true" {
		t.Errorf("injected trust bundle ConfigMap: %v %v", err, injected.Labels)
	}

	// A running run keeps what it was created with.
	proxy.Status.HTTPSProxy = "http://other:3128"
	if err := c.Status().Update(ctx, proxy); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	after := &tektonv1.PipelineRun{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(run), after); err != nil {
		t.Fatal(err)
	}
	if got := stepEnv(c, after, pipeline.BuildTaskName("amd64"), "HTTPS_PROXY"); got != "http://proxy.example:3128" || len(runsOf(t, c, ns)) != 1 {
		t.Errorf("after the proxy changed: HTTPS_PROXY %q, %d runs", got, len(runsOf(t, c, ns)))
	}

	// Bad: the trusted CA is not PEM. No run; the condition names it.
	userCA.Data[clusterconfig.CABundleKey] = "not a certificate"
	if err := c.Update(ctx, userCA); err != nil {
		t.Fatal(err)
	}
	bad := newB("held")
	eventually(t, "ClusterConfigInvalid", func() (bool, string) {
		bad = getB(bad.Name)
		s := condOf(bad, v1alpha1.ConditionSucceeded)
		return s.Reason == ReasonClusterConfigInvalid && strings.Contains(s.Message, "ConfigMap openshift-config/user-ca-bundle") &&
			strings.Contains(s.Message, "spec.trustedCA.name"), fmt.Sprintf("%+v", s)
	})
	if n := len(runsOf(t, c, ns)); n != 1 {
		t.Errorf("%d runs: a run started with a bad configuration", n)
	}
	userCA.Data[clusterconfig.CABundleKey] = caProxy
	if err := c.Update(ctx, userCA); err != nil {
		t.Fatal(err)
	}
	// The Proxy watch re-queues the held build.
	if err := c.Get(ctx, client.ObjectKeyFromObject(proxy), proxy); err != nil {
		t.Fatal(err)
	}
	proxy.Annotations = map[string]string{"touched": "1"}
	if err := c.Update(ctx, proxy); err != nil {
		t.Fatal(err)
	}
	heldRun := runOf(bad.Name)
	if got := stepEnv(c, heldRun, pipeline.BuildTaskName("amd64"), "HTTPS_PROXY"); got != "http://other:3128" {
		t.Errorf("the next run's HTTPS_PROXY = %q, want the changed value", got)
	}
}

func assertOwnedBy(t *testing.T, obj metav1.Object, owner *v1alpha1.MultiArchBuild) {
	t.Helper()
	for _, r := range obj.GetOwnerReferences() {
		if r.UID == owner.UID {
			return
		}
	}
	t.Errorf("%s is not owned by %s", obj.GetName(), owner.Name)
}

// pipelineSpecOf is the spec a run executes: inline, or that of the shared
// Pipeline it refers to (read as the admin).
func pipelineSpecOf(c client.Reader, run *tektonv1.PipelineRun) *tektonv1.PipelineSpec {
	if run.Spec.PipelineSpec != nil || run.Spec.PipelineRef == nil {
		return run.Spec.PipelineSpec
	}
	pl := &tektonv1.Pipeline{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: run.Namespace, Name: run.Spec.PipelineRef.Name}, pl); err != nil {
		panic(fmt.Sprintf("the Pipeline run %s refers to: %v", run.Name, err))
	}
	return &pl.Spec
}

package clusterconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testCA(t *testing.T, cn string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func cm(ns, name, key, value string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string]string{key: value}}
}

func TestRenderOpenShift(t *testing.T) {
	ca1, ca2 := testCA(t, "one"), testCA(t, "two")
	s := Sources{
		Proxy: &configv1.Proxy{
			ObjectMeta: metav1.ObjectMeta{Name: "cluster"},
			Spec:       configv1.ProxySpec{HTTPProxy: "http://spec-only:1", TrustedCA: configv1.ConfigMapNameReference{Name: "user-ca-bundle"}},
			Status:     configv1.ProxyStatus{HTTPProxy: "http://proxy:3128", HTTPSProxy: "http://proxy:3128", NoProxy: ".svc,10.0.0.0/16"},
		},
		ProxyCA:  cm("openshift-config", "user-ca-bundle", CABundleKey, ca1),
		Injected: cm("builds", InjectedConfigMap, CABundleKey, ca1+ca2),
		Image: &configv1.Image{Spec: configv1.ImageSpec{RegistrySources: configv1.RegistrySources{
			InsecureRegistries: []string{"mirror.local:5000", "*.insecure.example"},
			BlockedRegistries:  []string{"bad.example.com"},
		}}},
		ITMS: []configv1.ImageTagMirrorSet{{ObjectMeta: metav1.ObjectMeta{Name: "ubi"}, Spec: configv1.ImageTagMirrorSetSpec{ImageTagMirrors: []configv1.ImageTagMirrors{
			{Source: "registry.access.redhat.com/ubi9", Mirrors: []configv1.ImageMirror{"mirror.local:5000/ubi9"}, MirrorSourcePolicy: configv1.NeverContactSource},
		}}}},
		IDMS: []configv1.ImageDigestMirrorSet{{ObjectMeta: metav1.ObjectMeta{Name: "quay"}, Spec: configv1.ImageDigestMirrorSetSpec{ImageDigestMirrors: []configv1.ImageDigestMirrors{
			{Source: "quay.io/org", Mirrors: []configv1.ImageMirror{"mirror.corp.example/quay/org"}},
		}}}},
		Flags: Flags{HTTPProxy: "http://flag:1", NoProxy: "ignored"},
	}
	c, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPProxy != "http://proxy:3128" || c.HTTPSProxy != "http://proxy:3128" || c.NoProxy != ".svc,10.0.0.0/16" {
		t.Errorf("proxy %q %q %q: want the status values (the cluster's win over flags)", c.HTTPProxy, c.HTTPSProxy, c.NoProxy)
	}
	if n := strings.Count(c.CABundle, "BEGIN CERTIFICATE"); n != 2 {
		t.Errorf("bundle has %d certificates, want 2 (each once)", n)
	}
	for _, want := range []string{
		"[[registry]]\nprefix = \"registry.access.redhat.com/ubi9\"\nlocation = \"registry.access.redhat.com/ubi9\"\nblocked = true\n\n[[registry.mirror]]\nlocation = \"mirror.local:5000/ubi9\"\npull-from-mirror = \"tag-only\"\ninsecure = true\n",
		"[[registry]]\nprefix = \"quay.io/org\"\nlocation = \"quay.io/org\"\n\n[[registry.mirror]]\nlocation = \"mirror.corp.example/quay/org\"\npull-from-mirror = \"digest-only\"\n",
		"[[registry]]\nprefix = \"bad.example.com\"\nlocation = \"bad.example.com\"\nblocked = true\n",
		"[[registry]]\nprefix = \"*.insecure.example\"\ninsecure = true\n",
		"[[registry]]\nprefix = \"mirror.local:5000\"\nlocation = \"mirror.local:5000\"\ninsecure = true\n",
	} {
		if !strings.Contains(c.RegistriesConf, want) {
			t.Errorf("registries.conf lacks\n%s\ngot:\n%s", want, c.RegistriesConf)
		}
	}
	if c.Policy != "" {
		t.Errorf("a policy without allowedRegistries: %s", c.Policy)
	}
	if c.Hash() == (Config{}).Hash() || len(c.Hash()) != 10 {
		t.Errorf("hash %q", c.Hash())
	}
}

func TestRenderVanillaFlags(t *testing.T) {
	ca := testCA(t, "corp")
	c, err := Render(Sources{
		Flags:          Flags{HTTPProxy: "http://p:3128", HTTPSProxy: "http://p:3128", NoProxy: "localhost", TrustedCA: "ops/ca", Registries: "ops/reg"},
		FlagCA:         cm("ops", "ca", CABundleKey, ca),
		FlagRegistries: cm("ops", "reg", RegistriesConfKey, "[[registry]]\nlocation = \"r.example\"\ninsecure = true\n"),
		Image:          &configv1.Image{Spec: configv1.ImageSpec{RegistrySources: configv1.RegistrySources{AllowedRegistries: []string{"quay.io", "r.example"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPSProxy != "http://p:3128" || c.CABundle != ca || !strings.Contains(c.RegistriesConf, `location = "r.example"`) {
		t.Errorf("config %+v", c)
	}
	if !strings.Contains(c.Policy, `"quay.io"`) || !strings.Contains(c.Policy, `"reject"`) {
		t.Errorf("policy %s", c.Policy)
	}
}

// Bad configuration names the object and the field, and gives no values.
func TestRenderErrorsNameObjectAndField(t *testing.T) {
	ca := testCA(t, "x")
	proxy := &configv1.Proxy{Spec: configv1.ProxySpec{TrustedCA: configv1.ConfigMapNameReference{Name: "user-ca-bundle"}}}
	for name, tc := range map[string]struct {
		s             Sources
		object, field string
	}{
		"trustedCA missing": {Sources{Proxy: proxy}, "ConfigMap openshift-config/user-ca-bundle", "spec.trustedCA.name"},
		"trustedCA not PEM": {Sources{Proxy: proxy, ProxyCA: cm("openshift-config", "user-ca-bundle", CABundleKey, "hello")}, "ConfigMap openshift-config/user-ca-bundle", "data.ca-bundle.crt"},
		"trustedCA broken":  {Sources{Proxy: proxy, ProxyCA: cm("openshift-config", "user-ca-bundle", CABundleKey, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}, "ConfigMap openshift-config/user-ca-bundle", "data.ca-bundle.crt"},
		"insecure malformed": {Sources{Image: &configv1.Image{Spec: configv1.ImageSpec{RegistrySources: configv1.RegistrySources{InsecureRegistries: []string{"ok.example", "not a registry"}}}}},
			"images.config.openshift.io/cluster", "spec.registrySources.insecureRegistries[1]"},
		"blocked and allowed": {Sources{Image: &configv1.Image{Spec: configv1.ImageSpec{RegistrySources: configv1.RegistrySources{BlockedRegistries: []string{"a.example"}, AllowedRegistries: []string{"b.example"}}}}},
			"images.config.openshift.io/cluster", "spec.registrySources"},
		"mirror malformed": {Sources{ITMS: []configv1.ImageTagMirrorSet{{ObjectMeta: metav1.ObjectMeta{Name: "m"}, Spec: configv1.ImageTagMirrorSetSpec{ImageTagMirrors: []configv1.ImageTagMirrors{{Source: "a.example/x", Mirrors: []configv1.ImageMirror{"https://m.example/x"}}}}}}},
			"imagetagmirrorsets.config.openshift.io/m", "spec.imageTagMirrors[0].mirrors[0]"},
		"proxy URL":             {Sources{Proxy: &configv1.Proxy{Status: configv1.ProxyStatus{HTTPSProxy: "proxy:3128"}}}, "proxies.config.openshift.io/cluster", "status.httpsProxy"},
		"flag CA missing":       {Sources{Flags: Flags{TrustedCA: "ops/ca"}}, "ConfigMap ops/ca", "--trusted-ca-configmap"},
		"flag CA empty":         {Sources{Flags: Flags{TrustedCA: "ops/ca"}, FlagCA: cm("ops", "ca", "other", ca)}, "ConfigMap ops/ca", "data.ca-bundle.crt"},
		"injected not PEM":      {Sources{Injected: cm("b", InjectedConfigMap, CABundleKey, "garbage")}, "ConfigMap b/" + InjectedConfigMap, "data.ca-bundle.crt"},
		"registries flag empty": {Sources{Flags: Flags{Registries: "ops/reg"}, FlagRegistries: cm("ops", "reg", "x", "y")}, "ConfigMap ops/reg", "data.registries.conf"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Render(tc.s)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Render: %v, want an *Error", err)
			}
			if e.Object != tc.object || !strings.Contains(e.Field, tc.field) {
				t.Errorf("error %q: object %q field %q, want %q and %q", err, e.Object, e.Field, tc.object, tc.field)
			}
			if !c.Empty() {
				t.Errorf("a partial configuration came with the error: %+v", c)
			}
		})
	}
	// An injected ConfigMap OpenShift has not filled yet is not an error.
	if _, err := Render(Sources{Injected: cm("b", InjectedConfigMap, "x", "")}); err != nil {
		t.Errorf("empty injected bundle: %v", err)
	}
}

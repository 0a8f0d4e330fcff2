//go:build e2e && proxy

// The proxied, private-CA, disconnected cluster (issue 12), on the local
// cluster with hack/cluster/proxy-world.sh: build pods can reach the
// registries, the git server and the npm registry only through a forward
// proxy (tinyproxy; iptables in the host rejects the rest), the output
// registry speaks TLS with a certificate of a private CA that only the
// cluster's trust configuration knows, and the Containerfile's base image
// is a public name that only an ImageTagMirrorSet resolves.
//
//	make test-e2e-proxy   # go test -tags 'e2e proxy' ./test/e2e/ -run TestProxy -v
package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/clusterconfig"
)

const (
	proxyAddr   = "10.88.255.1:3129"
	tlsRegistry = "10.88.255.1:5771"
	gitHTTPPort = "9420"
	publicBase  = "registry.access.redhat.com/ubi9/ubi-minimal"
)

func configClient(t *testing.T) client.Client {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, configv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(rc, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestProxyTrustedCAAndMirrors(t *testing.T) {
	ctx := context.Background()
	state := os.Getenv("MAB_STATE")
	if state == "" {
		state = "/var/tmp/mab-cluster"
	}
	world := filepath.Join(state, "proxy-world")
	if err := script("hack/cluster/proxy-world.sh", "start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = script("hack/cluster/proxy-world.sh", "stop") })
	caPEM, err := os.ReadFile(filepath.Join(world, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	logStart := fileSize(filepath.Join(world, "tinyproxy.log"))

	// The sources over smart HTTP (git http-backend), so that the clone can go
	// through the proxy (git:// cannot).
	ln, err := net.Listen("tcp", "0.0.0.0:"+gitHTTPPort)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: &cgi.Handler{Path: "/usr/lib/git-core/git-http-backend",
		Env: []string{"GIT_PROJECT_ROOT=" + cfg.GitRoot, "GIT_HTTP_EXPORT_ALL=1"}}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	// The public base image, copied into the plain-HTTP registry under a
	// mirror path: nothing else in the cluster knows it by that name.
	mirror := cfg.Registry + "/mirror/ubi9/ubi-minimal"
	if out, err := exec.Command("skopeo", "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
		"docker://"+cfg.BaseImage, "docker://"+mirror+":latest").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}

	c := configClient(t)
	// The cluster's configuration, as an admin and CNO would have it.
	ensure := func(o client.Object) {
		t.Helper()
		_ = c.Delete(ctx, o.DeepCopyObject().(client.Object))
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), o) })
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterconfig.OpenShiftConfigNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ensure(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: clusterconfig.OpenShiftConfigNamespace, Name: "user-ca-bundle"},
		Data: map[string]string{clusterconfig.CABundleKey: string(caPEM)}})
	proxy := &configv1.Proxy{ObjectMeta: metav1.ObjectMeta{Name: "cluster"}, Spec: configv1.ProxySpec{
		// The plain-HTTP registry (the mirror and the step images) is
		// reached directly, as internal mirror registries usually are
		// (noProxy takes host:port): tinyproxy forwards only one of the
		// repeated Accept headers containers/image sends, so an OCI
		// index pulled through it is refused ("OCI index found, but
		// accept header does not support OCI indexes").
		HTTPProxy: "http://" + proxyAddr, HTTPSProxy: "http://" + proxyAddr, NoProxy: ".svc," + cfg.Registry,
		TrustedCA: configv1.ConfigMapNameReference{Name: "user-ca-bundle"}}}
	ensure(proxy)
	// CNO computes status from spec (adding the cluster's own networks).
	proxy.Status = configv1.ProxyStatus{HTTPProxy: "http://" + proxyAddr, HTTPSProxy: "http://" + proxyAddr, NoProxy: ".cluster.local,.svc," + cfg.Registry + ",10.96.0.0/16,localhost,127.0.0.1"}
	if err := c.Status().Update(ctx, proxy); err != nil {
		t.Fatal(err)
	}
	ensure(&configv1.Image{ObjectMeta: metav1.ObjectMeta{Name: "cluster"}, Spec: configv1.ImageSpec{
		RegistrySources: configv1.RegistrySources{InsecureRegistries: []string{cfg.Registry}}}})
	ensure(&configv1.ImageTagMirrorSet{ObjectMeta: metav1.ObjectMeta{Name: "ubi9-mirror"}, Spec: configv1.ImageTagMirrorSetSpec{
		ImageTagMirrors: []configv1.ImageTagMirrors{{Source: publicBase, Mirrors: []configv1.ImageMirror{configv1.ImageMirror(mirror)},
			MirrorSourcePolicy: configv1.NeverContactSource}}}})
	// The operator detects the config kinds at start.
	if err := script("hack/cluster/operator.sh", "restart"); err != nil {
		t.Fatal(err)
	}

	ns := namespace(t, "e2e-proxy")
	// The build namespace's trust bundle, filled as CNO fills a ConfigMap
	// labelled config.openshift.io/inject-trusted-cabundle (the proxy's
	// trustedCA; CNO adds the system CAs, which the images have).
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: clusterconfig.InjectedConfigMap,
		Labels: map[string]string{clusterconfig.InjectLabel: "true"}}, Data: map[string]string{clusterconfig.CABundleKey: string(caPEM)}}); err != nil {
		t.Fatal(err)
	}

	gitRepo(t, "e2e-proxy", map[string]string{
		"package.json": `{"name": "e2e-proxy", "version": "1.0.0", "private": true, "dependencies": {"ms": "2.1.3"}}` + "\n",
		"index.js":     "console.log(require('ms')('1h'));\n",
		// Not edited for the test: the public name.
		"Containerfile": "FROM " + publicBase + ":latest\nCOPY . /app\n",
	})
	url := "http://10.88.255.1:" + gitHTTPPort + "/e2e-proxy.git"
	b := newBuild(ns, "proxied", url, "e2e/proxied")
	b.Spec.Strategy.Type = v1alpha1.StrategyNodeJS
	b.Spec.Output.Image = tlsRegistry + "/e2e/proxied:" + ns
	res := runBuild(t, b, v1alpha1.PhaseSucceeded)
	t.Logf("build %s: %s, image %s", b.Name, res.build.Status.Phase, res.build.Status.Image)

	// The push landed in the TLS registry, which the host checks with the CA.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+tlsRegistry+"/v2/e2e/proxied/manifests/"+ns, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	t.Logf("TLS registry (private CA, trusted only through proxies.config.openshift.io/cluster spec.trustedCA): GET manifest %s:%s -> %s, digest %s",
		"e2e/proxied", ns, resp.Status, resp.Header.Get("Docker-Content-Digest"))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the index is not in the TLS registry: %s", resp.Status)
	}

	// The proxy's log, per kind of traffic.
	lines := proxyLog(t, filepath.Join(world, "tinyproxy.log"), logStart)
	kinds := []struct{ name, match string }{
		{"clone (git smart HTTP)", "10.88.255.1:" + gitHTTPPort + "/e2e-proxy.git"},
		{"npm", "registry.npmjs.org"},
		{"push to the TLS registry", "CONNECT " + tlsRegistry},
	}
	for _, k := range kinds {
		var got []string
		for _, l := range lines {
			if strings.Contains(l, k.match) {
				got = append(got, l)
			}
		}
		t.Logf("proxy log, %s: %d lines", k.name, len(got))
		for i, l := range got {
			if i == 3 {
				t.Logf("  ...")
				break
			}
			t.Logf("  %s", l)
		}
		if len(got) == 0 {
			t.Errorf("no %s traffic went through the proxy", k.name)
		}
	}
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// proxyLog: tinyproxy's request lines since offset.
func proxyLog(t *testing.T, path string, offset int64) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "Request (file descriptor") || strings.Contains(l, "CONNECT ") || strings.Contains(l, "Established connection") {
			out = append(out, l)
		}
	}
	return out
}

var _ = fmt.Sprintf

// Package registry runs a throwaway OCI registry for tests: Debian's
// docker-registry (distribution v2) on a free 127.0.0.1 port, serving HTTPS
// with a certificate made for the test, storing blobs in the test's temporary
// directory, stopped when the test ends.
//
// TLS rather than plain HTTP because clients must not need an "insecure"
// switch the production scripts do not have (and buildah 1.28, Debian 12's,
// ignores registries.conf "insecure" in "manifest push"). Give clients Env():
// SSL_CERT_FILE makes Go programs such as buildah and skopeo trust the
// test CA.
package registry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Binary is the registry executable looked up on PATH (Debian package
// docker-registry).
const Binary = "docker-registry"

// Registry is a running registry.
type Registry struct {
	// Host is host:port, e.g. 127.0.0.1:38111, the registry part of image references.
	Host string
	// CAFile is the PEM certificate clients must trust (self-signed, valid for 127.0.0.1).
	CAFile string

	client *http.Client
}

// Env is the environment that makes buildah, skopeo and other Go clients
// trust the registry: SSL_CERT_FILE pointing at CAFile. It replaces the
// system's roots for those processes, so give it only to the commands that
// talk to this registry.
func (r *Registry) Env() []string { return []string{"SSL_CERT_FILE=" + r.CAFile} }

// Client is an HTTP client trusting the registry.
func (r *Registry) Client() *http.Client { return r.client }

// Start runs a registry until t ends. It fails the test if docker-registry is
// not installed or does not answer within 15 seconds.
func Start(t testing.TB) *Registry {
	t.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil {
		t.Fatalf("registry: %s not found on PATH (apt-get install docker-registry): %v", Binary, err)
	}
	dir := t.TempDir()
	host := freeAddr(t)
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), host)
	certFile, keyFile, pool := selfSigned(t, dir)
	config += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile)
	configPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("registry: start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("registry log:\n%s", b)
			}
		}
	})

	r := &Registry{Host: host, CAFile: certFile, client: &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		Timeout:   time.Minute,
	}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := r.client.Get("https://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logFile.Name())
			t.Fatalf("registry: %s exited early:\n%s", bin, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry: no answer on %s after 15s: %v", host, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Accept lists the manifest media types a client accepts, indexes first.
var Accept = []string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}

// Manifest is a manifest as the registry serves it.
type Manifest struct {
	// Body is the exact bytes served.
	Body []byte
	// MediaType is the Content-Type header.
	MediaType string
	// Digest is sha256 of Body, computed here (not the registry's header).
	Digest string
	// HeaderDigest is the Docker-Content-Digest header.
	HeaderDigest string
}

// Manifest fetches repo's manifest ref (a tag or a digest) with the Accept
// headers of Accept.
func (r *Registry) Manifest(ctx context.Context, repo, ref string) (*Manifest, error) {
	url := fmt.Sprintf("https://%s/v2/%s/manifests/%s", r.Host, repo, ref)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", strings.Join(Accept, ", "))
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	sum := sha256.Sum256(body)
	return &Manifest{
		Body:         body,
		MediaType:    resp.Header.Get("Content-Type"),
		Digest:       "sha256:" + hex.EncodeToString(sum[:]),
		HeaderDigest: resp.Header.Get("Docker-Content-Digest"),
	}, nil
}

// Blob opens repo's blob digest.
func (r *Registry) Blob(ctx context.Context, repo, digest string) (io.ReadCloser, error) {
	url := fmt.Sprintf("https://%s/v2/%s/blobs/%s", r.Host, repo, digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp.Body, nil
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "test registry"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

//go:build e2e

package e2e

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// The cluster's registry speaks plain HTTP (Debian's docker-registry on the
// host; pods reach it at the host's address).

var acceptManifests = strings.Join([]string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}, ", ")

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	Platform  *struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Variant      string `json:"variant,omitempty"`
	} `json:"platform,omitempty"`
}

type manifest struct {
	MediaType string       `json:"mediaType"`
	Manifests []descriptor `json:"manifests"` // index
	Config    descriptor   `json:"config"`    // image
	Layers    []descriptor `json:"layers"`    // image

	digest       string // sha256 of the body as served
	headerDigest string // Docker-Content-Digest
}

func regGet(ctx context.Context, repo, kind, ref string) (*http.Response, error) {
	url := fmt.Sprintf("http://%s/v2/%s/%s/%s", cfg.Registry, repo, kind, ref)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", acceptManifests)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return resp, nil
}

func getManifest(ctx context.Context, repo, ref string) (*manifest, error) {
	resp, err := regGet(ctx, repo, "manifests", ref)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	if m.MediaType == "" {
		m.MediaType = resp.Header.Get("Content-Type")
	}
	sum := sha256.Sum256(body)
	m.digest = "sha256:" + hex.EncodeToString(sum[:])
	m.headerDigest = resp.Header.Get("Docker-Content-Digest")
	return &m, nil
}

// imageFiles reads the image's layers from the top down and returns, for each
// wanted path (no leading slash) found, the first bytes of the file as the
// image shows it (the topmost layer that has it).
func imageFiles(ctx context.Context, repo string, img *manifest, wanted ...string) (map[string][]byte, error) {
	found := map[string][]byte{}
	for i := len(img.Layers) - 1; i >= 0 && len(found) < len(wanted); i-- {
		if err := func() error {
			resp, err := regGet(ctx, repo, "blobs", img.Layers[i].Digest)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var r io.Reader = resp.Body
			if !strings.HasSuffix(img.Layers[i].MediaType, ".tar") {
				gz, err := gzip.NewReader(resp.Body)
				if err != nil {
					return fmt.Errorf("layer %s: %w", img.Layers[i].Digest, err)
				}
				defer gz.Close()
				r = gz
			}
			tr := tar.NewReader(r)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return fmt.Errorf("layer %s: %w", img.Layers[i].Digest, err)
				}
				name := strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")
				for _, w := range wanted {
					if name != w || found[w] != nil || h.Typeflag != tar.TypeReg {
						continue
					}
					buf := make([]byte, 256)
					n, _ := io.ReadFull(tr, buf)
					found[w] = buf[:n]
				}
			}
		}(); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// elfMachine names the CPU of an ELF header (e_machine at offset 18, little endian).
func elfMachine(head []byte) string {
	if len(head) < 20 || string(head[:4]) != "\x7fELF" {
		return "not ELF"
	}
	switch m := uint16(head[18]) | uint16(head[19])<<8; m {
	case 62:
		return "x86-64"
	case 183:
		return "aarch64"
	default:
		return fmt.Sprintf("e_machine %d", m)
	}
}

// elfFor is the elfMachine value expected for a kubernetes.io/arch value.
var elfFor = map[string]string{"amd64": "x86-64", "arm64": "aarch64"}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

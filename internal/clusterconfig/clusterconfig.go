// Package clusterconfig turns the cluster's network and trust configuration
// into what a build pod needs: the proxy values, one CA bundle, and a
// registries.conf drop-in (and, with allowed registries, a policy.json) for
// buildah. It is pure: objects in, values out.
//
// Sources, OpenShift first, then the operator's flags for vanilla Kubernetes:
//   - proxies.config.openshift.io/cluster: status.httpProxy, httpsProxy,
//     noProxy (the effective values CNO computes) and spec.trustedCA (a
//     ConfigMap in openshift-config, key ca-bundle.crt);
//   - images.config.openshift.io/cluster: spec.registrySources
//     (insecureRegistries, blockedRegistries, allowedRegistries);
//   - every ImageDigestMirrorSet (mirrors for pulls by digest) and
//     ImageTagMirrorSet (mirrors for pulls by tag);
//   - the build namespace's injected trust bundle: a ConfigMap the operator
//     creates with label config.openshift.io/inject-trusted-cabundle=true,
//     which OpenShift's network operator fills (key ca-bundle.crt);
//   - flags: --http-proxy, --https-proxy, --no-proxy (where the cluster has
//     no value), --trusted-ca-configmap and --registries-configmap
//     (NAMESPACE/NAME).
package clusterconfig

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	configv1 "github.com/openshift/api/config/v1"
	corev1 "k8s.io/api/core/v1"
)

// Names and keys.
const (
	// OpenShiftConfigNamespace holds the ConfigMap of proxy spec.trustedCA.
	OpenShiftConfigNamespace = "openshift-config"
	// ClusterName is the name of the cluster-scoped config singletons.
	ClusterName = "cluster"
	// InjectLabel asks OpenShift's network operator to fill a ConfigMap's
	// ca-bundle.crt with the cluster's trust bundle (system CAs, the
	// proxy's trustedCA, the install-time additionalTrustBundle).
	InjectLabel = "config.openshift.io/inject-trusted-cabundle"
	// InjectedConfigMap is the ConfigMap the operator creates, empty and
	// labelled InjectLabel, in every build namespace on OpenShift.
	InjectedConfigMap = "multiarch-build-trusted-ca-bundle"
	// CABundleKey is the key of a PEM bundle, as OpenShift names it.
	CABundleKey = "ca-bundle.crt"
	// RegistriesConfKey is the key of a registries.conf (TOML) in the
	// --registries-configmap ConfigMap and in the rendered ConfigMap.
	RegistriesConfKey = "registries.conf"
	// PolicyKey is the key of the rendered containers-policy.json.
	PolicyKey = "policy.json"
)

// Flags are the operator-level values for clusters without OpenShift's config API.
type Flags struct {
	HTTPProxy, HTTPSProxy, NoProxy string
	// TrustedCA and Registries are NAMESPACE/NAME of ConfigMaps; empty: none.
	TrustedCA, Registries string
}

// Sources is everything read from the cluster for one run. A nil pointer
// is an object that is not there (or a kind not served).
type Sources struct {
	Proxy *configv1.Proxy
	Image *configv1.Image
	IDMS  []configv1.ImageDigestMirrorSet
	ITMS  []configv1.ImageTagMirrorSet
	// ProxyCA is the ConfigMap proxy spec.trustedCA names (nil: missing).
	ProxyCA *corev1.ConfigMap
	// Injected is the build namespace's injected bundle (nil: not there;
	// empty data: not filled yet).
	Injected *corev1.ConfigMap
	// FlagCA and FlagRegistries are the flags' ConfigMaps (nil: missing).
	FlagCA, FlagRegistries *corev1.ConfigMap
	Flags                  Flags
}

// Config is what build pods get.
type Config struct {
	HTTPProxy, HTTPSProxy, NoProxy string
	// CABundle is PEM, every certificate once; empty: none.
	CABundle string
	// RegistriesConf is a registries.conf drop-in; empty: none.
	RegistriesConf string
	// Policy is a containers-policy.json; empty: none (the image's own).
	Policy string
	// From lists where the values came from, for the run's annotation.
	From []string
}

// Empty is true when nothing needs to reach the pods.
func (c Config) Empty() bool {
	return c.HTTPProxy == "" && c.HTTPSProxy == "" && c.NoProxy == "" && c.CABundle == "" && c.RegistriesConf == "" && c.Policy == ""
}

// Data is the content of the ConfigMap the build pods mount.
func (c Config) Data() map[string]string {
	d := map[string]string{}
	if c.CABundle != "" {
		d[CABundleKey] = c.CABundle
	}
	if c.RegistriesConf != "" {
		d[RegistriesConfKey] = c.RegistriesConf
	}
	if c.Policy != "" {
		d[PolicyKey] = c.Policy
	}
	return d
}

// Hash is a short digest of Data: the rendered ConfigMap is named after it,
// so a run always mounts the content it was created with.
func (c Config) Hash() string {
	keys := make([]string, 0, 3)
	d := c.Data()
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s\x00%s\x00", k, d[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:10]
}

// Error is bad configuration: the object and the field to fix.
type Error struct {
	Object  string // e.g. images.config.openshift.io/cluster
	Field   string // e.g. spec.registrySources.insecureRegistries[1]
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %s", e.Object, e.Field, e.Message)
}

// Render validates the sources and renders the configuration. An error is
// an *Error; no partial Config is returned with it.
func Render(s Sources) (Config, error) {
	var c Config
	if p := s.Proxy; p != nil {
		c.HTTPProxy, c.HTTPSProxy, c.NoProxy = p.Status.HTTPProxy, p.Status.HTTPSProxy, p.Status.NoProxy
		if c.HTTPProxy != "" || c.HTTPSProxy != "" || c.NoProxy != "" {
			c.From = append(c.From, "proxies.config.openshift.io/cluster status")
		}
	}
	flagged := false
	for _, f := range []struct {
		v, flag string
		dst     *string
	}{
		{s.Flags.HTTPProxy, "--http-proxy", &c.HTTPProxy},
		{s.Flags.HTTPSProxy, "--https-proxy", &c.HTTPSProxy},
		{s.Flags.NoProxy, "--no-proxy", &c.NoProxy},
	} {
		if *f.dst == "" && f.v != "" {
			*f.dst, flagged = f.v, true
		}
	}
	if flagged {
		c.From = append(c.From, "operator flags (proxy)")
	}
	for _, v := range []struct{ val, field string }{{c.HTTPProxy, "httpProxy"}, {c.HTTPSProxy, "httpsProxy"}} {
		if err := checkProxyURL(v.val); err != nil {
			obj := "proxies.config.openshift.io/cluster"
			if s.Proxy == nil || (s.Proxy.Status.HTTPProxy == "" && s.Proxy.Status.HTTPSProxy == "") {
				obj = "operator flag"
			}
			return Config{}, &Error{Object: obj, Field: "status." + v.field, Message: err.Error()}
		}
	}
	if strings.ContainsAny(c.NoProxy, " \t\r\n") || strings.Contains(c.NoProxy, "$(") {
		return Config{}, &Error{Object: "proxies.config.openshift.io/cluster", Field: "status.noProxy", Message: "must be a comma-separated list without spaces"}
	}

	// Trust: the injected bundle, the proxy's trustedCA, the flag's bundle.
	var bundle pemSet
	if cm := s.Injected; cm != nil && strings.TrimSpace(cm.Data[CABundleKey]) != "" {
		if err := bundle.add(cm.Data[CABundleKey]); err != nil {
			return Config{}, &Error{Object: "ConfigMap " + cm.Namespace + "/" + cm.Name, Field: "data." + CABundleKey + " (filled by OpenShift's CA injection, label " + InjectLabel + ")", Message: err.Error()}
		}
		c.From = append(c.From, "ConfigMap "+cm.Namespace+"/"+cm.Name+" (injected trust bundle)")
	}
	if p := s.Proxy; p != nil && p.Spec.TrustedCA.Name != "" {
		obj := "ConfigMap " + OpenShiftConfigNamespace + "/" + p.Spec.TrustedCA.Name
		field := "(proxies.config.openshift.io/cluster spec.trustedCA.name)"
		if s.ProxyCA == nil {
			return Config{}, &Error{Object: obj, Field: field, Message: "not found"}
		}
		if err := bundle.add(s.ProxyCA.Data[CABundleKey]); err != nil {
			return Config{}, &Error{Object: obj, Field: "data." + CABundleKey + " " + field, Message: err.Error()}
		}
		c.From = append(c.From, obj+" (proxy trustedCA)")
	}
	if ref := s.Flags.TrustedCA; ref != "" {
		obj := "ConfigMap " + ref
		if s.FlagCA == nil {
			return Config{}, &Error{Object: obj, Field: "(--trusted-ca-configmap)", Message: "not found"}
		}
		if err := bundle.add(s.FlagCA.Data[CABundleKey]); err != nil {
			return Config{}, &Error{Object: obj, Field: "data." + CABundleKey + " (--trusted-ca-configmap)", Message: err.Error()}
		}
		c.From = append(c.From, obj+" (--trusted-ca-configmap)")
	}
	c.CABundle = bundle.String()

	conf, policy, from, err := registries(s)
	if err != nil {
		return Config{}, err
	}
	c.RegistriesConf, c.Policy = conf, policy
	c.From = append(c.From, from...)
	return c, nil
}

func checkProxyURL(v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: want http://HOST:PORT or https://HOST:PORT", redact(u))
	}
	if strings.Contains(v, "$(") {
		// Tekton would substitute it in the step's environment.
		return fmt.Errorf("must not contain \"$(\"")
	}
	if u.Host == "" || strings.ContainsAny(v, " \t\r\n") {
		return fmt.Errorf("%q: no host", redact(u))
	}
	return nil
}

func redact(u *url.URL) string {
	if u.User != nil {
		c := *u
		c.User = url.User("REDACTED")
		return c.String()
	}
	return u.String()
}

// pemSet collects certificates once each, in order.
type pemSet struct {
	seen  map[string]bool
	certs []string
}

func (p *pemSet) add(data string) error {
	if strings.TrimSpace(data) == "" {
		return fmt.Errorf("no key %s, or it is empty: want PEM certificates", CABundleKey)
	}
	rest := []byte(data)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("certificate %d does not parse: %v", n+1, err)
		}
		n++
		s := string(pem.EncodeToMemory(b))
		if p.seen == nil {
			p.seen = map[string]bool{}
		}
		if !p.seen[s] {
			p.seen[s] = true
			p.certs = append(p.certs, s)
		}
	}
	if n == 0 {
		return fmt.Errorf("no PEM certificate (-----BEGIN CERTIFICATE-----) found")
	}
	if strings.Contains(string(rest), "-----BEGIN") {
		return fmt.Errorf("a PEM block after certificate %d does not decode", n)
	}
	return nil
}

func (p *pemSet) String() string { return strings.Join(p.certs, "") }

// registryScope is a registry, optionally with a repository path (the
// `prefix` of registries.conf), optionally a *.domain wildcard.
var registryScope = regexp.MustCompile(`^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._/-]+[a-z0-9]+)*)?$`)

type regEntry struct {
	prefix    string
	insecure  bool
	blocked   bool
	mirrors   []mirror
	neverSrc  bool
	mentioned bool
}

type mirror struct {
	location string
	pullFrom string // digest-only, tag-only
}

// registries renders the registries.conf drop-in: an entry per mirrored
// source (mirrors with pull-from-mirror digest-only for IDMS, tag-only for
// ITMS; blocked = true when every set says NeverContactSource), per
// insecure registry and per blocked registry; allowedRegistries become a
// containers-policy.json that rejects pulls from anything else. The
// --registries-configmap's registries.conf is appended as is (it is the
// admin's, in the same format).
func registries(s Sources) (string, string, []string, error) {
	entries := map[string]*regEntry{}
	entry := func(prefix string) *regEntry {
		e, ok := entries[prefix]
		if !ok {
			e = &regEntry{prefix: prefix}
			entries[prefix] = e
		}
		return e
	}
	var from []string
	var insecure []string
	var allowed []string
	if img := s.Image; img != nil {
		rs := img.Spec.RegistrySources
		const obj = "images.config.openshift.io/cluster"
		if len(rs.BlockedRegistries) > 0 && len(rs.AllowedRegistries) > 0 {
			return "", "", nil, &Error{Object: obj, Field: "spec.registrySources", Message: "only one of blockedRegistries and allowedRegistries may be set"}
		}
		for _, l := range []struct {
			name string
			list []string
		}{{"insecureRegistries", rs.InsecureRegistries}, {"blockedRegistries", rs.BlockedRegistries}, {"allowedRegistries", rs.AllowedRegistries}} {
			for i, r := range l.list {
				if !registryScope.MatchString(r) {
					return "", "", nil, &Error{Object: obj, Field: fmt.Sprintf("spec.registrySources.%s[%d]", l.name, i),
						Message: fmt.Sprintf("%q is not a registry (HOST[:PORT][/REPOSITORY] or *.DOMAIN)", r)}
				}
			}
		}
		for _, r := range rs.InsecureRegistries {
			e := entry(r)
			e.insecure, e.mentioned = true, true
			insecure = append(insecure, r)
		}
		for _, r := range rs.BlockedRegistries {
			e := entry(r)
			e.blocked, e.mentioned = true, true
		}
		allowed = rs.AllowedRegistries
		if len(rs.InsecureRegistries)+len(rs.BlockedRegistries)+len(rs.AllowedRegistries) > 0 {
			from = append(from, obj+" spec.registrySources")
		}
	}
	isInsecure := func(loc string) bool {
		for _, r := range insecure {
			if scopeMatches(r, loc) {
				return true
			}
		}
		return false
	}
	type set struct {
		kind, name, pull string
		sources          []string
		mirrors          [][]configv1.ImageMirror
		policies         []configv1.MirrorSourcePolicy
	}
	var sets []set
	for _, m := range s.IDMS {
		st := set{kind: "imagedigestmirrorsets.config.openshift.io", name: m.Name, pull: "digest-only"}
		for _, d := range m.Spec.ImageDigestMirrors {
			st.sources, st.mirrors, st.policies = append(st.sources, d.Source), append(st.mirrors, d.Mirrors), append(st.policies, d.MirrorSourcePolicy)
		}
		sets = append(sets, st)
	}
	for _, m := range s.ITMS {
		st := set{kind: "imagetagmirrorsets.config.openshift.io", name: m.Name, pull: "tag-only"}
		for _, d := range m.Spec.ImageTagMirrors {
			st.sources, st.mirrors, st.policies = append(st.sources, d.Source), append(st.mirrors, d.Mirrors), append(st.policies, d.MirrorSourcePolicy)
		}
		sets = append(sets, st)
	}
	sort.SliceStable(sets, func(i, j int) bool { return sets[i].kind+sets[i].name < sets[j].kind+sets[j].name })
	// A source is blocked only when every set naming it says NeverContactSource.
	contact := map[string]bool{}
	for _, st := range sets {
		field := "spec.imageDigestMirrors"
		if st.pull == "tag-only" {
			field = "spec.imageTagMirrors"
		}
		for i, src := range st.sources {
			if !registryScope.MatchString(src) {
				return "", "", nil, &Error{Object: st.kind + "/" + st.name, Field: fmt.Sprintf("%s[%d].source", field, i), Message: fmt.Sprintf("%q is not a registry or repository", src)}
			}
			e := entry(src)
			e.mentioned = true
			for j, m := range st.mirrors[i] {
				if !registryScope.MatchString(string(m)) || strings.HasPrefix(string(m), "*.") {
					return "", "", nil, &Error{Object: st.kind + "/" + st.name, Field: fmt.Sprintf("%s[%d].mirrors[%d]", field, i, j), Message: fmt.Sprintf("%q is not a registry or repository", m)}
				}
				e.mirrors = append(e.mirrors, mirror{location: string(m), pullFrom: st.pull})
			}
			if st.policies[i] == configv1.NeverContactSource {
				if _, ok := contact[src]; !ok {
					contact[src] = false
				}
			} else {
				contact[src] = true
			}
		}
		from = append(from, st.kind+"/"+st.name)
	}
	for src, c := range contact {
		if !c {
			entries[src].neverSrc = true
		}
	}

	var b strings.Builder
	prefixes := make([]string, 0, len(entries))
	for p := range entries {
		prefixes = append(prefixes, p)
	}
	sort.Strings(prefixes)
	if len(prefixes) > 0 {
		b.WriteString("# Generated by multiarch-build-operator from the cluster's image configuration.\n")
	}
	for _, p := range prefixes {
		e := entries[p]
		fmt.Fprintf(&b, "\n[[registry]]\nprefix = %q\n", e.prefix)
		if !strings.HasPrefix(e.prefix, "*.") {
			// A wildcard prefix takes no location.
			fmt.Fprintf(&b, "location = %q\n", e.prefix)
		}
		if e.insecure || (!strings.HasPrefix(e.prefix, "*.") && isInsecure(e.prefix)) {
			b.WriteString("insecure = true\n")
		}
		if e.blocked || e.neverSrc {
			b.WriteString("blocked = true\n")
		}
		for _, m := range e.mirrors {
			fmt.Fprintf(&b, "\n[[registry.mirror]]\nlocation = %q\npull-from-mirror = %q\n", m.location, m.pullFrom)
			if isInsecure(m.location) {
				b.WriteString("insecure = true\n")
			}
		}
	}
	if s.Flags.Registries != "" {
		if s.FlagRegistries == nil {
			return "", "", nil, &Error{Object: "ConfigMap " + s.Flags.Registries, Field: "(--registries-configmap)", Message: "not found"}
		}
		extra := s.FlagRegistries.Data[RegistriesConfKey]
		if strings.TrimSpace(extra) == "" {
			return "", "", nil, &Error{Object: "ConfigMap " + s.Flags.Registries, Field: "data." + RegistriesConfKey + " (--registries-configmap)", Message: "missing or empty: want a registries.conf (TOML)"}
		}
		if len(prefixes) > 0 {
			b.WriteString("\n")
		}
		b.WriteString("# From ConfigMap " + s.Flags.Registries + " (--registries-configmap).\n")
		b.WriteString(strings.TrimRight(extra, "\n") + "\n")
		from = append(from, "ConfigMap "+s.Flags.Registries+" (--registries-configmap)")
	}
	policy := ""
	if len(allowed) > 0 {
		policy = allowedPolicy(allowed)
	}
	return b.String(), policy, from, nil
}

// scopeMatches: does registry scope r (HOST[:PORT][/REPO] or *.DOMAIN)
// cover location loc?
func scopeMatches(r, loc string) bool {
	if d, ok := strings.CutPrefix(r, "*."); ok {
		host, _, _ := strings.Cut(loc, "/")
		host, _, _ = strings.Cut(host, ":")
		return strings.HasSuffix(host, "."+d)
	}
	return loc == r || strings.HasPrefix(loc, r+"/")
}

// allowedPolicy rejects pulls from any registry but the allowed ones (as
// OpenShift's machine-config operator renders allowedRegistries into the
// nodes' policy.json); local transports stay usable (the build writes and
// reads OCI layouts and its own storage).
func allowedPolicy(allowed []string) string {
	accept := []map[string]string{{"type": "insecureAcceptAnything"}}
	docker := map[string]any{}
	for _, r := range allowed {
		docker[r] = accept
	}
	p := map[string]any{
		"default": []map[string]string{{"type": "reject"}},
		"transports": map[string]any{
			"docker":             docker,
			"atomic":             docker,
			"oci":                map[string]any{"": accept},
			"oci-archive":        map[string]any{"": accept},
			"dir":                map[string]any{"": accept},
			"docker-archive":     map[string]any{"": accept},
			"containers-storage": map[string]any{"": accept},
			"docker-daemon":      map[string]any{"": accept},
		},
	}
	out, _ := json.MarshalIndent(p, "", "  ")
	return string(out) + "\n"
}

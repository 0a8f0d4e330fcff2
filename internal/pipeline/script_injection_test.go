package pipeline

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The scripts' own defences, for values that reach them without admission
// (an older CRD, a hand-made PipelineRun) and for what no admission rule can
// see: the content of the cloned repository.

// runScript runs an embedded script with env (and PATH, HOME) and args, and
// returns its combined output and whether it succeeded.
func runScript(t *testing.T, script string, env, args []string) (string, bool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "step.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LANG=C.UTF-8"}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH", tool)
		}
	}
}

// repoWith creates the bare repository path holding files, symlinks (path ->
// target, committed as links) and gitlinks (path -> commit of a submodule),
// in one commit on main, and returns the commit SHA.
func (g *gitServer) repoWith(t *testing.T, path string, files, symlinks, gitlinks map[string]string) string {
	t.Helper()
	work := t.TempDir()
	for name, content := range files {
		p := filepath.Join(work, filepath.FromSlash(name))
		mustMkdir(t, filepath.Dir(p))
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range symlinks {
		p := filepath.Join(work, filepath.FromSlash(name))
		mustMkdir(t, filepath.Dir(p))
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	gitRun := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.com",
			"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.com", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	gitRun("init", "-q", "-b", "main")
	gitRun("add", ".")
	for name, commit := range gitlinks {
		gitRun("update-index", "--add", "--cacheinfo", "160000,"+commit+","+name)
	}
	gitRun("commit", "-q", "-m", "test sources")
	gitRun("clone", "-q", "--bare", work, filepath.Join(g.root, filepath.FromSlash(path)))
	return gitRun("rev-parse", "HEAD")
}

// A URL beginning with '-' that reaches clone.sh (admission refuses it) is a
// URL to git, never one of its options: git refuses it as a strange path or
// host, and the step says which URL it could not fetch.
func TestCloneNeverTakesTheURLAsAnOption(t *testing.T) {
	needTools(t, "git")
	for _, tc := range []struct{ name, url string }{
		{"upload-pack option", "--upload-pack=touch MARKER"},
		{"ssh option", "-oProxyCommand=touch MARKER"},
		{"short option", "-f"},
		{"ssh host option", "ssh://-oProxyCommand=touch%20MARKER/app.git"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			marker := filepath.Join(dir, "pwned")
			url := strings.ReplaceAll(tc.url, "MARKER", marker)
			out, ok := runScript(t, scriptClone, []string{"GIT_URL=" + url, "GIT_REVISION=main",
				"SOURCE_DIR=" + filepath.Join(dir, "src"), "RESULT_COMMIT=" + filepath.Join(dir, "commit"), "RESULT_SOURCE_DATE_EPOCH=" + filepath.Join(dir, "epoch")}, nil)
			t.Logf("clone.sh with GIT_URL=%q:\n%s", url, indent(out))
			if ok {
				t.Fatal("the clone succeeded")
			}
			for _, bad := range []string{"unknown option", "unknown switch", "usage: git"} {
				if strings.Contains(out, bad) {
					t.Errorf("git read the URL as an option (%q in the output)", bad)
				}
			}
			if want := "clone: ERROR: cannot fetch " + url; !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("the URL ran a command: %s exists", marker)
			}
		})
	}
}

// askpassHelper extracts the GIT_ASKPASS helper clone.sh writes, to ask it
// directly what git would.
func askpassHelper(t *testing.T) string {
	t.Helper()
	_, rest, ok := strings.Cut(scriptClone, "<<'ASKPASS'\n")
	body, _, ok2 := strings.Cut(rest, "\nASKPASS\n")
	if !ok || !ok2 {
		t.Fatal("clone.sh writes no ASKPASS here-document")
	}
	path := filepath.Join(t.TempDir(), "askpass")
	if err := os.WriteFile(path, []byte(body+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// The askpass helper answers git's prompts for the repository's own scheme
// and host only: for any other it prints nothing and fails, so git stops
// instead of sending the Secret there.
func TestAskpassAnswersOnlyForTheRepositoryHost(t *testing.T) {
	helper := askpassHelper(t)
	secret := t.TempDir()
	for k, v := range map[string]string{"username": "builder", "password": "s3cret"} {
		if err := os.WriteFile(filepath.Join(secret, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// clone.sh sets the origin from GIT_URL https://git.example.com:8443/org/app.git.
	const origin = "https://git.example.com:8443"
	for _, tc := range []struct{ prompt, want string }{
		{"Username for 'https://git.example.com:8443': ", "builder"},
		{"Password for 'https://builder@git.example.com:8443': ", "s3cret"},
		{"Username for 'https://evil.example.com': ", ""},
		{"Password for 'https://builder@evil.example.com': ", ""},
		{"Password for 'https://git.example.com:8443@evil.example.com': ", ""},
		{"Password for 'https://builder@git.example.com:8443.evil.example.com': ", ""},
		{"Password for 'https://builder@git.example.com': ", ""},
		{"Password for 'http://builder@git.example.com:8443': ", ""},
		{"Username for 'https://git.example.com:84430': ", ""},
		{"Enter passphrase for key '/tmp/id': ", ""},
	} {
		t.Run(tc.prompt, func(t *testing.T) {
			cmd := exec.Command(helper, tc.prompt)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "GIT_SECRET_DIR=" + secret, "CLONE_CREDENTIAL_ORIGIN=" + origin}
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if stdout.String() != tc.want {
				t.Errorf("answered %q, want %q (stderr %q)", stdout.String(), tc.want, stderr.String())
			}
			if tc.want == "" && err == nil {
				t.Error("exited 0 without an answer: git would send an empty credential instead of failing")
			}
			if tc.want == "" && !strings.Contains(stderr.String(), "spec.source.git.secretRef") {
				t.Errorf("the refusal does not name spec.source.git.secretRef: %q", stderr.String())
			}
		})
	}
}

// authRecorder is a Git server on another host that wants credentials: it
// records every Authorization header it receives and never serves anything.
type authRecorder struct {
	host string
	mu   sync.Mutex
	got  []string
}

func startAuthRecorder(t *testing.T) *authRecorder {
	t.Helper()
	r := &authRecorder{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if a := req.Header.Get("Authorization"); a != "" {
			r.mu.Lock()
			r.got = append(r.got, a)
			r.mu.Unlock()
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="evil"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	r.host = l.Addr().String()
	return r
}

func (r *authRecorder) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// End to end through git: the Secret opens the private repository and its
// submodule on the same server, and is never sent to a submodule's server
// elsewhere.
func TestCloneGivesGitCredentialsOnlyToTheRepositoryHost(t *testing.T) {
	needTools(t, "git")
	git := startGitServer(t, "builder", "s3cret")
	evil := startAuthRecorder(t)
	libCommit := git.repo(t, "private/lib.git", map[string]string{"lib.txt": "lib\n"})
	gitmodules := func(url string) string {
		return "[submodule \"lib\"]\n\tpath = lib\n\turl = " + url + "\n"
	}
	git.repoWith(t, "private/same-host.git", map[string]string{".gitmodules": gitmodules(git.url("private/lib.git"))}, nil,
		map[string]string{"lib": libCommit})
	git.repoWith(t, "private/other-host.git", map[string]string{".gitmodules": gitmodules("http://" + evil.host + "/private/lib.git")}, nil,
		map[string]string{"lib": libCommit})
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	mustMkdir(t, secret)
	for k, v := range map[string]string{"username": "builder", "password": "s3cret"} {
		if err := os.WriteFile(filepath.Join(secret, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	clone := func(t *testing.T, repo string) (string, string, bool) {
		src := filepath.Join(t.TempDir(), "src")
		out, ok := runScript(t, scriptClone, []string{"GIT_URL=" + git.url(repo), "GIT_REVISION=main", "SOURCE_DIR=" + src,
			"RESULT_COMMIT=" + filepath.Join(t.TempDir(), "commit"), "RESULT_SOURCE_DATE_EPOCH=" + filepath.Join(t.TempDir(), "epoch"), "GIT_SECRET_DIR=" + secret}, nil)
		t.Logf("clone.sh of %s:\n%s", repo, indent(out))
		return src, out, ok
	}

	t.Run("submodule on the repository host", func(t *testing.T) {
		src, _, ok := clone(t, "private/same-host.git")
		if !ok {
			t.Fatal("the clone failed")
		}
		if b, err := os.ReadFile(filepath.Join(src, "lib", "lib.txt")); err != nil || string(b) != "lib\n" {
			t.Errorf("the submodule on the repository host was not checked out with the Secret: %q, %v", b, err)
		}
	})
	t.Run("submodule on another host", func(t *testing.T) {
		_, out, ok := clone(t, "private/other-host.git")
		if got := evil.received(); len(got) > 0 {
			t.Errorf("the Git Secret was sent to the submodule's host %s: Authorization %q", evil.host, got)
		}
		if ok {
			t.Fatal("the clone succeeded although the submodule's host was refused credentials")
		}
		if !strings.Contains(out, "clone: updating submodules") {
			t.Error("the repository itself was not cloned with the Secret")
		}
		if want := "the credentials of spec.source.git.secretRef are only given to http://" + git.host; !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	})
}

// A symlink in the repository must not take the build out of the clone:
// contextDir ctx -> / and a Containerfile -> /etc/passwd would let COPY (or
// the install command, or Maven) read the pod's files. Symlinks that stay
// inside the clone keep working.
func TestStepsKeepContextAndContainerfileInsideTheClone(t *testing.T) {
	needTools(t, "git", "realpath", "tar")
	git := startGitServer(t, "builder", "s3cret")
	git.repoWith(t, "public/links.git",
		map[string]string{
			"good/Containerfile": "FROM scratch\n",
			"good/package.json":  "{}\n",
			"good/pom.xml":       "<project/>\n",
			"app/package.json":   "{}\n",
		},
		map[string]string{
			"ctx":                     "/",
			"up":                      "../../../../../../../..",
			"app/Containerfile":       "/etc/passwd",
			"app/Up.Containerfile":    "../../../../../../../../etc/passwd",
			"good-link":               "good",
			"good/Link.Containerfile": "Containerfile",
			"good/Repo.Containerfile": "../good/Containerfile",
			"good/DirFile":            "../app",
		}, nil)
	dir := t.TempDir()
	src := filepath.Join(dir, "source")
	out, ok := runScript(t, scriptClone, []string{"GIT_URL=" + git.url("public/links.git"), "GIT_REVISION=main",
		"SOURCE_DIR=" + src, "RESULT_COMMIT=" + filepath.Join(dir, "commit"), "RESULT_SOURCE_DATE_EPOCH=" + filepath.Join(dir, "epoch")}, nil)
	if !ok {
		t.Fatalf("clone failed:\n%s", out)
	}
	if target, err := os.Readlink(filepath.Join(src, "ctx")); err != nil || target != "/" {
		t.Fatalf("the clone does not hold the symlink ctx -> /: %q, %v", target, err)
	}

	// Stubs stand for buildah, mvn and the install command: each records
	// where it ran and with what, and fails, so no case builds anything.
	stubs := filepath.Join(dir, "stubs")
	mustMkdir(t, stubs)
	record := filepath.Join(dir, "record")
	stub := "#!/bin/sh\n{ pwd; printf '%s\\n' \"$@\"; } > " + record + "\nexit 3\n"
	for _, name := range []string{"buildah", "mvn", "stub-install"} {
		if err := os.WriteFile(filepath.Join(stubs, name), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := "PATH=" + stubs + ":" + os.Getenv("PATH")
	build := func(contextDir, containerfile string) []string {
		return []string{path, "PLATFORM=linux/amd64", "SOURCE_DIR=" + src, "CONTEXT_DIR=" + contextDir,
			"CONTAINERFILE=" + containerfile, "REPOSITORY=r.example/a", "SOURCE_DATE_EPOCH=1700000000", "OCI_DIR=" + filepath.Join(dir, "oci"),
			"RESULT_IMAGE_DIGEST=" + filepath.Join(dir, "digest"), "RESULT_IMAGE_URL=" + filepath.Join(dir, "url")}
	}
	install := func(contextDir string) []string {
		return []string{path, "PLATFORM=linux/amd64", "SOURCE_DIR=" + src, "CONTEXT_DIR=" + contextDir,
			"WORK_DIR=" + filepath.Join(dir, "work"), "NPM_CONFIG_CACHE=" + filepath.Join(dir, "npm")}
	}
	maven := func(contextDir string) []string {
		return []string{path, "SOURCE_DIR=" + src, "CONTEXT_DIR=" + contextDir, "MAVEN_REPO=" + filepath.Join(dir, "m2")}
	}
	const outsideDir = "outside the cloned sources: a symlink in the repository must not lead out of it"

	for _, tc := range []struct {
		name, script string
		env, args    []string
		want         string
	}{
		{"build: contextDir is a symlink to /", scriptBuild, build("ctx", "Containerfile"), nil,
			"build linux/amd64: ERROR: ctx (spec.source.contextDir) resolves to /, " + outsideDir},
		{"build: contextDir is a relative symlink out of the clone", scriptBuild, build("up", "Containerfile"), nil,
			"build linux/amd64: ERROR: up (spec.source.contextDir) resolves to /, " + outsideDir},
		{"build: contextDir under a symlink to /", scriptBuild, build("ctx/etc", "passwd"), nil,
			"build linux/amd64: ERROR: ctx/etc (spec.source.contextDir) resolves to /etc, " + outsideDir},
		{"build: Containerfile is a symlink to /etc/passwd", scriptBuild, build("app", "Containerfile"), nil,
			"build linux/amd64: ERROR: Containerfile (spec.strategy.containerfile) resolves to /etc/passwd, " + outsideDir},
		{"build: Containerfile is a relative symlink out of the clone", scriptBuild, build("app", "Up.Containerfile"), nil,
			"build linux/amd64: ERROR: Up.Containerfile (spec.strategy.containerfile) resolves to /etc/passwd, " + outsideDir},
		{"build: Containerfile is a directory", scriptBuild, build("good", "DirFile"), nil,
			"build linux/amd64: ERROR: DirFile (spec.strategy.containerfile) in good is not a regular file"},
		{"install: contextDir is a symlink to /", scriptInstall, install("ctx"), []string{"stub-install"},
			"install linux/amd64: ERROR: ctx (spec.source.contextDir) resolves to /, " + outsideDir},
		{"maven: contextDir is a symlink to /", scriptMaven, maven("ctx"), []string{"package"},
			"maven: ERROR: ctx (spec.source.contextDir) resolves to /, " + outsideDir},
		{"maven: contextDir is a relative symlink out of the clone", scriptMaven, maven("up"), []string{"package"},
			"maven: ERROR: up (spec.source.contextDir) resolves to /, " + outsideDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(record)
			out, ok := runScript(t, tc.script, tc.env, tc.args)
			t.Logf("output:\n%s", indent(out))
			if ok {
				t.Fatal("the step succeeded")
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output lacks %q", tc.want)
			}
			if b, err := os.ReadFile(record); err == nil {
				t.Errorf("the step ran its tool outside the clone:\n%s", b)
			}
		})
	}

	// Symlinks inside the clone: the tool runs, on the resolved paths.
	resolvedSrc, err := filepath.EvalSymlinks(src)
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	for _, tc := range []struct {
		name, script string
		env, args    []string
		want         []string // the stub's working directory, then its arguments
	}{
		{"build: contextDir and Containerfile are symlinks inside the clone", scriptBuild, build("good-link", "Link.Containerfile"), nil,
			[]string{"", "build", "--platform", "linux/amd64", "--timestamp", "1700000000", "--file", resolvedSrc + "/good/Containerfile", "--tag", "localhost/multiarch-build:linux-amd64", resolvedSrc + "/good"}},
		{"build: Containerfile elsewhere in the clone", scriptBuild, build("good", "Repo.Containerfile"), nil,
			[]string{"", "build", "--platform", "linux/amd64", "--timestamp", "1700000000", "--file", resolvedSrc + "/good/Containerfile", "--tag", "localhost/multiarch-build:linux-amd64", resolvedSrc + "/good"}},
		{"build: context dir with a dash", scriptBuild, build("good-link/", "Containerfile"), nil,
			[]string{"", "build", "--platform", "linux/amd64", "--timestamp", "1700000000", "--file", resolvedSrc + "/good/Containerfile", "--tag", "localhost/multiarch-build:linux-amd64", resolvedSrc + "/good"}},
		{"install: contextDir is a symlink inside the clone", scriptInstall, install("good-link"), []string{"stub-install", "--flag"},
			[]string{"<resolved work>/good", "--flag"}},
		{"maven: contextDir is a symlink inside the clone", scriptMaven, maven("good-link"), []string{"package"},
			[]string{resolvedSrc + "/good", "--batch-mode", "--no-transfer-progress", "-Dmaven.repo.local=" + filepath.Join(dir, "m2"), "package"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(record)
			out, _ := runScript(t, tc.script, tc.env, tc.args)
			t.Logf("output:\n%s", indent(out))
			b, err := os.ReadFile(record)
			if err != nil {
				t.Fatalf("the step did not run its tool: %v", err)
			}
			got := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			if tc.want[0] == "" {
				got[0] = "" // buildah's working directory does not matter
			}
			if rw, err := filepath.EvalSymlinks(work); err == nil {
				got[0] = strings.Replace(got[0], rw, "<resolved work>", 1)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("the tool ran as\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

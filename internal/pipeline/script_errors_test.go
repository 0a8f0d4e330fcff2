package pipeline

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A failing step must say what failed and what to fix, in the step's log.
func TestScriptsFailWithClearMessages(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not on PATH")
	}
	git := startGitServer(t, "builder", "s3cret")
	git.repo(t, "private/app.git", map[string]string{"README": "x\n"})
	dir := t.TempDir()
	secret := func(kv ...string) string {
		d, err := os.MkdirTemp(dir, "secret")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(kv); i += 2 {
			if err := os.WriteFile(filepath.Join(d, kv[i]), []byte(kv[i+1]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	for _, tc := range []struct {
		name   string
		script string
		env    []string
		args   []string
		want   string
	}{
		{
			name:   "clone with a wrong password",
			script: scriptClone,
			env: []string{"GIT_URL=" + git.url("private/app.git"), "GIT_REVISION=main", "SOURCE_DIR=" + filepath.Join(dir, "src1"),
				"RESULT_COMMIT=" + filepath.Join(dir, "commit"), "RESULT_SOURCE_DATE_EPOCH=" + filepath.Join(dir, "epoch"), "GIT_SECRET_DIR=" + secret("username", "builder", "password", "wrong")},
			want: "clone: ERROR: cannot fetch " + git.url("private/app.git") + ": check the URL and, for a private repository, spec.source.git.secretRef",
		},
		{
			name:   "clone of a missing revision",
			script: scriptClone,
			env: []string{"GIT_URL=" + git.url("private/app.git"), "GIT_REVISION=v9.9", "SOURCE_DIR=" + filepath.Join(dir, "src2"),
				"RESULT_COMMIT=" + filepath.Join(dir, "commit"), "RESULT_SOURCE_DATE_EPOCH=" + filepath.Join(dir, "epoch"), "GIT_SECRET_DIR=" + secret("username", "builder", "password", "s3cret")},
			want: "clone: ERROR: revision v9.9 not found in " + git.url("private/app.git"),
		},
		{
			name:   "clone with a Secret of the wrong type",
			script: scriptClone,
			env: []string{"GIT_URL=" + git.url("private/app.git"), "GIT_REVISION=main", "SOURCE_DIR=" + filepath.Join(dir, "src3"),
				"RESULT_COMMIT=" + filepath.Join(dir, "commit"), "RESULT_SOURCE_DATE_EPOCH=" + filepath.Join(dir, "epoch"), "GIT_SECRET_DIR=" + secret("token", "x")},
			want: "has neither ssh-privatekey (kubernetes.io/ssh-auth) nor username/password (kubernetes.io/basic-auth) keys",
		},
		{
			name:   "push with a Secret of the wrong type",
			script: scriptPush,
			env: []string{"IMAGE=r.example/a:b", "REPOSITORY=r.example/a", "RESULT_IMAGE_DIGEST=x", "RESULT_IMAGE_URL=y",
				"REGISTRY_AUTH_DIR=" + secret("config.json", "{}")},
			args: []string{"linux/amd64"},
			want: "push: ERROR: the Secret of spec.output.pushSecretRef has neither a .dockerconfigjson key (type kubernetes.io/dockerconfigjson) nor a .dockercfg key (type kubernetes.io/dockercfg)",
		},
		{
			name:   "build without the Containerfile",
			script: scriptBuild,
			env: []string{"PLATFORM=linux/arm64", "SOURCE_DIR=" + dir, "CONTEXT_DIR=.", "CONTAINERFILE=Dockerfile.missing",
				"REPOSITORY=r.example/a", "SOURCE_DATE_EPOCH=1700000000", "OCI_DIR=" + filepath.Join(dir, "oci"),
				"RESULT_IMAGE_DIGEST=" + filepath.Join(dir, "digest"), "RESULT_IMAGE_URL=" + filepath.Join(dir, "url")},
			want: "build linux/arm64: ERROR: Dockerfile.missing (spec.strategy.containerfile) not found in .",
		},
		{
			name:   "maven with a settings Secret lacking settings.xml",
			script: scriptMaven,
			env: []string{"SOURCE_DIR=" + dir, "CONTEXT_DIR=.", "MAVEN_REPO=" + filepath.Join(dir, "m2"),
				"MAVEN_SETTINGS_DIR=" + secret("settings.yaml", "x"), "PATH=" + os.Getenv("PATH")},
			args: []string{"package"},
			want: "maven: ERROR: the Secret of spec.strategy.maven.settingsSecretRef has no settings.xml key",
		},
		{
			name:   "cleanup refuses a run name that could widen the deletion",
			script: scriptCleanup,
			env:    []string{"RUNS_DIR=" + dir, "RUN_NAME=../.."},
			want:   "cleanup: ERROR: refusing run name '../..'",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "step.sh")
			if err := os.WriteFile(path, []byte(tc.script), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(path, tc.args...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, tc.env...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the step succeeded:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("cleanup removed more than it should: %v", err)
	}
}

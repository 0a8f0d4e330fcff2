package pipeline

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// stepRun runs a step script with env (and PATH, HOME) and returns its
// output and error.
func stepRun(t *testing.T, script string, env []string, args ...string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "step.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A Containerfile build clones in every build task. The branch may move
// between two of those clones: every platform must still build the commit
// the run's first clone checked out, or fail saying so, never push a list
// of two commits.
func TestClonesOfOneRunBuildOneCommit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not on PATH")
	}
	git := startGitServer(t, "builder", "s3cret")
	first := git.repoAt(t, "public/moving.git", map[string]string{"Containerfile": "FROM scratch\n"}, "@1700000000 +0000")
	// The branch moves on: a second commit on main.
	work := t.TempDir()
	gitRun := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.com",
			"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.com", "GIT_CONFIG_GLOBAL=/dev/null",
			"GIT_AUTHOR_DATE=@1700000500 +0000", "GIT_COMMITTER_DATE=@1700000500 +0000")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	gitRun("clone", "-q", filepath.Join(git.root, "public/moving.git"), ".")
	if err := os.WriteFile(filepath.Join(work, "Containerfile"), []byte("FROM scratch\nLABEL moved=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun("commit", "-q", "-am", "moved")
	gitRun("push", "-q", "origin", "main")
	second := gitRun("rev-parse", "HEAD")

	clone := func(t *testing.T, runDir string) (dir, out string, err error) {
		dir = t.TempDir()
		out, err = stepRun(t, scriptClone, []string{
			"GIT_URL=" + git.url("public/moving.git"), "GIT_REVISION=main", "SOURCE_DIR=" + filepath.Join(dir, "src"),
			"RESULT_COMMIT=" + filepath.Join(dir, "commit"), "RESULT_SOURCE_DATE_EPOCH=" + filepath.Join(dir, "epoch"),
			"RUN_DIR=" + runDir,
		})
		t.Logf("clone:\n%s", indent(out))
		return dir, out, err
	}

	t.Run("the first clone sets the run's commit", func(t *testing.T) {
		runDir := t.TempDir()
		dir, _, err := clone(t, runDir)
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(dir, "commit")); got != second {
			t.Errorf("COMMIT %s, want main's %s", got, second)
		}
		if got := strings.TrimSpace(readFile(t, filepath.Join(runDir, "commit"))); got != second {
			t.Errorf("the run's commit %q, want %s", got, second)
		}
		left, _ := filepath.Glob(filepath.Join(runDir, ".commit.*"))
		if len(left) != 0 {
			t.Errorf("left behind %v", left)
		}
	})

	t.Run("a later clone checks out the run's commit, not where the branch is now", func(t *testing.T) {
		runDir := t.TempDir()
		if err := os.WriteFile(filepath.Join(runDir, "commit"), []byte(first+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		dir, out, err := clone(t, runDir)
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(dir, "commit")); got != first {
			t.Errorf("COMMIT %s, want the run's %s (main is at %s)", got, first, second)
		}
		if got := readFile(t, filepath.Join(dir, "epoch")); got != "1700000000" {
			t.Errorf("SOURCE_DATE_EPOCH %s, want the run's commit's 1700000000", got)
		}
		if got := readFile(t, filepath.Join(dir, "src", "Containerfile")); got != "FROM scratch\n" {
			t.Errorf("checked out Containerfile %q, want the first commit's", got)
		}
		if !strings.Contains(out, "this run's other platforms build "+first) {
			t.Errorf("the log does not say why it checks out %s", first)
		}
	})

	t.Run("a run's commit the server does not serve fails the clone, naming the fix", func(t *testing.T) {
		runDir := t.TempDir()
		gone := strings.Repeat("0", 39) + "1"
		if err := os.WriteFile(filepath.Join(runDir, "commit"), []byte(gone+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, out, err := clone(t, runDir)
		if err == nil {
			t.Fatal("the clone succeeded")
		}
		want := "main moved while this run cloned it (from " + gone + " to " + second + ")"
		if !strings.Contains(out, want) || !strings.Contains(out, "set spec.source.git.revision to a commit") {
			t.Errorf("output lacks %q and the fix", want)
		}
	})
}

// The index step at the end of every build task: the list is pushed by the
// task that finds every platform's image, once; the others only publish
// their digest and leave with empty results. None of these cases reaches a
// registry (TestScriptsBuildAndPushRealMultiArchImages pushes for real).
func TestIndexStepLeavesTheListToTheLastPlatform(t *testing.T) {
	const (
		amd = "sha256:" + "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
		arm = "sha256:" + "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
		c1  = "1111111111111111111111111111111111111111"
		c2  = "2222222222222222222222222222222222222222"
	)
	index := func(t *testing.T, indexDir, commit string) (dir, out string, err error) {
		dir = t.TempDir()
		own := filepath.Join(dir, "own-digest")
		if err := os.WriteFile(own, []byte(amd), 0o644); err != nil {
			t.Fatal(err)
		}
		env := []string{"IMAGE=registry.invalid/a:v1", "REPOSITORY=registry.invalid/a", "PLATFORM=linux/amd64",
			"INDEX_DIR=" + indexDir, "OWN_DIGEST_FILE=" + own,
			"RESULT_IMAGE_DIGEST=" + filepath.Join(dir, "digest"), "RESULT_IMAGE_URL=" + filepath.Join(dir, "url"),
			"RESULT_ERROR=" + filepath.Join(dir, "error")}
		if commit != "" {
			if err := os.WriteFile(filepath.Join(dir, "own-commit"), []byte(commit), 0o644); err != nil {
				t.Fatal(err)
			}
			env = append(env, "OWN_COMMIT_FILE="+filepath.Join(dir, "own-commit"))
		}
		out, err = stepRun(t, scriptPush, env, "linux/amd64", "linux/arm64")
		t.Logf("index:\n%s", indent(out))
		return dir, out, err
	}
	emptyResults := func(t *testing.T, dir string) {
		t.Helper()
		for _, r := range []string{"digest", "url"} {
			if got, err := os.ReadFile(filepath.Join(dir, r)); err != nil || len(got) != 0 {
				t.Errorf("result %s = %q (%v), want written and empty (Tekton's pipeline result concatenates them)", r, got, err)
			}
		}
	}

	t.Run("first to finish: publishes its digest, leaves the list to the other", func(t *testing.T) {
		indexDir := filepath.Join(t.TempDir(), "index")
		dir, out, err := index(t, indexDir, c1)
		if err != nil {
			t.Fatal(err)
		}
		emptyResults(t, dir)
		if got := readFile(t, filepath.Join(indexDir, "amd64")); got != amd+" "+c1+"\n" {
			t.Errorf("published %q", got)
		}
		if !strings.Contains(out, "linux/arm64 is not pushed yet") {
			t.Error("the log does not say who pushes the list")
		}
		if _, err := os.Stat(filepath.Join(indexDir, ".assembling")); err == nil {
			t.Error("took the lock without pushing")
		}
	})

	t.Run("both finish together: the one that loses the lock leaves", func(t *testing.T) {
		indexDir := filepath.Join(t.TempDir(), "index")
		mustMkdir(t, filepath.Join(indexDir, ".assembling"))
		if err := os.WriteFile(filepath.Join(indexDir, "arm64"), []byte(arm+" "+c1+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		dir, out, err := index(t, indexDir, c1)
		if err != nil {
			t.Fatal(err)
		}
		emptyResults(t, dir)
		if !strings.Contains(out, "another platform's task is pushing the manifest list") {
			t.Error("the log does not say who pushes the list")
		}
	})

	t.Run("two commits: no list, an error naming both", func(t *testing.T) {
		indexDir := filepath.Join(t.TempDir(), "index")
		mustMkdir(t, indexDir)
		if err := os.WriteFile(filepath.Join(indexDir, "arm64"), []byte(arm+" "+c2+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		dir, _, err := index(t, indexDir, c1)
		if err == nil {
			t.Fatal("the step succeeded")
		}
		msg := readFile(t, filepath.Join(dir, "error"))
		for _, want := range []string{"linux/arm64 was built from commit " + c2, "linux/amd64 from " + c1, "not pushing a list of two commits"} {
			if !strings.Contains(msg, want) {
				t.Errorf("ERROR %q lacks %q", msg, want)
			}
		}
		if _, err := os.Stat(filepath.Join(indexDir, ".assembling")); err == nil {
			t.Error("took the lock")
		}
	})
}

// Every build task of a Containerfile build runs prepare, at the same time,
// as root with CHOWN but no DAC_OVERRIDE (as the pod gets it): the second
// one finds the run's directory already handed to the tool steps' user and
// must still succeed (on the e2e cluster it failed touching .started).
func TestPrepareTwiceForOneRun(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("prepare hands directories over with chown: needs root")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not on PATH")
	}
	shared := t.TempDir()
	script := filepath.Join(t.TempDir(), "prepare.sh")
	if err := os.WriteFile(script, []byte(scriptPrepare), 0o755); err != nil {
		t.Fatal(err)
	}
	prepare := func(i int) {
		t.Helper()
		// The capabilities prepareContext leaves: CHOWN only.
		cmd := exec.Command(setpriv, "--inh-caps=-all,+chown", "--ambient-caps=-all,+chown", "--bounding-set=-all,+chown", "--", script)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "RUNS_DIR=" + filepath.Join(shared, "runs"),
			"CACHE_DIR=" + filepath.Join(shared, "cache"), "RUN_NAME=app-1-abcde", "TOOL_UID=65532"}
		mustMkdir(t, filepath.Join(shared, "runs"))
		mustMkdir(t, filepath.Join(shared, "cache"))
		out, err := cmd.CombinedOutput()
		if i <= 2 || err != nil {
			t.Logf("prepare %d:\n%s", i, indent(string(out)))
		}
		if err != nil {
			t.Fatalf("prepare %d: %v", i, err)
		}
	}
	prepare(1)
	// The other platforms' prepares run while the first task's clone already
	// writes into the run's directory: its commit, set aside then linked
	// (scripts/clone.sh), files that come and go. Seen on the e2e cluster:
	// a recursive hand-over that met one of them mid-walk failed the task.
	run := filepath.Join(shared, "runs", "app-1-abcde")
	stop := make(chan struct{})
	churned := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				churned <- n
				return
			default:
			}
			aside := filepath.Join(run, fmt.Sprintf(".commit.build-amd64-pod.%d", n))
			if os.WriteFile(aside, []byte("0123456789abcdef0123456789abcdef01234567\n"), 0o600) == nil {
				_ = os.Remove(aside)
			}
			n++
		}
	}()
	for i := 2; i <= 40; i++ {
		prepare(i)
	}
	close(stop)
	t.Logf("40 prepares while %d files came and went in the run's directory", <-churned)
	fi, err := os.Stat(filepath.Join(shared, "runs", "app-1-abcde", ".started"))
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != 65532 {
		t.Errorf(".started is %+v, want it handed to 65532", fi.Sys())
	}
	// What the index step (root) writes into the run's index directory,
	// cleanup (the tool steps' user, no capability) must be able to remove:
	// the directory is prepare's, handed over.
	index := filepath.Join(shared, "runs", "app-1-abcde", "index")
	if err := os.WriteFile(filepath.Join(index, "amd64"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustMkdir(t, filepath.Join(index, ".assembling"))
	// 65532 must reach the volume and read the script.
	for _, d := range []string{filepath.Dir(shared), shared} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cleanup := filepath.Join(shared, "cleanup.sh")
	if err := os.WriteFile(cleanup, []byte(scriptCleanup), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid=65532", "--regid=0", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--", cleanup)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/tmp", "RUNS_DIR=" + filepath.Join(shared, "runs"), "RUN_NAME=app-1-abcde"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cleanup as 65532: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(shared, "runs", "app-1-abcde")); !os.IsNotExist(err) {
		t.Errorf("cleanup as 65532 left the run's directory (index written by root): %v", err)
	}
}

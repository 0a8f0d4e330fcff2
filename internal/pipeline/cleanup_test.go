package pipeline

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runScript runs an embedded step script with env and returns its output.
func runStepScript(t *testing.T, script string, env ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "step.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	return string(out)
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	sort.Strings(out)
	return out
}

// Nothing left behind: a run's cleanup removes its own directory and those
// of older runs that never cleaned up (a deleted run; a run superseded before
// CancelledRunFinally existed), never a newer run's, nor the caches.
func TestCleanupSweepsOlderRunsAndKeepsNewerOnes(t *testing.T) {
	for _, marked := range []bool{true, false} {
		root := t.TempDir()
		runs := filepath.Join(root, "runs")
		now := time.Now()
		mk := func(name string, mtime time.Time) {
			d := filepath.Join(runs, name)
			if err := os.MkdirAll(filepath.Join(d, "source"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(d, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(root, "cache", "npm"), 0o755); err != nil {
			t.Fatal(err)
		}
		mk("app-1-deleted", now.Add(-time.Hour))
		mk("app-2-superseded", now.Add(-time.Minute))
		own := "app-3-current"
		if marked {
			runStepScript(t, scriptPrepare, "RUNS_DIR="+runs, "CACHE_DIR="+filepath.Join(root, "cache"), "RUN_NAME="+own, "ARCHES=amd64 arm64", "TOOL_UID=65532")
			for _, d := range []string{"runs", "runs/" + own, "runs/" + own + "/source", "runs/" + own + "/arch/arm64", "cache", "cache/npm", "cache/m2"} {
				fi, err := os.Stat(filepath.Join(root, d))
				if err != nil {
					t.Fatal(err)
				}
				if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 65532 {
					t.Errorf("prepare left %s owned by %d, want the tool steps' user 65532", d, uid)
				}
			}
			mark := filepath.Join(runs, own, ".started")
			if err := os.Chtimes(mark, now, now); err != nil {
				t.Fatal(err)
			}
		} else {
			mk(own, now) // the clone task never ran: no mark
		}
		mk("app-4-newer", now.Add(time.Minute)) // created after this run started
		out := runStepScript(t, scriptCleanup, "RUNS_DIR="+runs, "RUN_NAME="+own)
		got := strings.Join(entries(t, runs), ",")
		want := "app-4-newer"
		if !marked {
			want = "app-1-deleted,app-2-superseded,app-4-newer"
		}
		if got != want {
			t.Errorf("marked=%v: runs/ holds %s after cleanup, want %s\n%s", marked, got, want, out)
		}
		if c := strings.Join(entries(t, root), ","); c != "cache,runs" {
			t.Errorf("the volume's root holds %s, want cache,runs", c)
		}
		if marked && (!strings.Contains(out, "swept app-1-deleted") || !strings.Contains(out, "swept app-2-superseded")) {
			t.Errorf("cleanup does not say what it swept:\n%s", out)
		}
	}
}

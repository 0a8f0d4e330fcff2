package pipeline

import (
	"os/exec"
	"strings"
	"testing"
)

// The scripts the PipelineRun carries are their files without comment
// lines: still valid bash, every command line kept in order, here-document
// bodies (data, such as clone's askpass helper) untouched.
func TestCompactKeepsEveryCommand(t *testing.T) {
	raw := map[string]string{"lib": scriptLib, "prepare": rawPrepare, "clone": rawClone, "install": rawInstall, "maven": rawMaven,
		"build": rawBuild, "push": rawPush, "cleanup": rawCleanup, "check-reused": rawCheckReused, "preflight": rawPreflight}
	total, kept := 0, 0
	for name, src := range raw {
		out := compact(src)
		total, kept = total+len(src), kept+len(out)
		var want []string
		for _, line := range strings.Split(src, "\n") {
			if t := strings.TrimSpace(line); !strings.HasPrefix(t, "#") {
				want = append(want, line)
			}
		}
		var got []string
		for _, line := range strings.Split(out, "\n") {
			if t := strings.TrimSpace(line); !strings.HasPrefix(t, "#") {
				got = append(got, line)
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: compact changed or dropped a command line", name)
		}
		if name != "lib" {
			cmd := exec.Command("bash", "-n")
			cmd.Stdin = strings.NewReader(withLib(src))
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s: bash -n on the compacted script: %v\n%s", name, err, b)
			}
		}
	}
	// clone's askpass helper is a here-document starting with #!/bin/sh.
	if !strings.Contains(scriptClone, "<<'ASKPASS'\n#!/bin/sh\n") {
		t.Error("clone: the body of the ASKPASS here-document lost its #! line")
	}
	if strings.Contains(scriptBuild, "# --timestamp:") {
		t.Error("build: a comment line is still there")
	}
	t.Logf("step scripts: %d bytes as written, %d as the PipelineRun carries them (%.0f%%)", total, kept, 100*float64(kept)/float64(total))
}

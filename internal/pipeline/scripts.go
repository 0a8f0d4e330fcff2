package pipeline

import (
	_ "embed"
	"regexp"
	"strings"
)

// The step scripts. They are constant: values from the spec reach them only as
// environment variables and arguments declared on the steps, because Tekton
// substitutes $(params...) into script text before running it. Each is its
// file with scripts/lib.sh put right after its #! line.
//
// lib.sh reports why a step failed: when it fails, one line goes to the file
// RESULT_ERROR names (the task result ERROR; nothing when RESULT_ERROR is
// unset): the line of the tools' standard error matching the script's
// ERROR_PATTERN (buildah's last "Error: ...", git's first "fatal: ...",
// npm's first "npm error"/"npm ERR!", Maven's first "[ERROR]"; ERROR_MATCH
// says first or last), followed by the script's own diagnosis (fail) when
// it has one; without either, the tools' last line of standard error, else
// where the script stopped. Only the standard error of commands run through
// logged is searched. The line is data: written with printf %s, control
// characters blanked, at most MaxErrorLen bytes; nothing evaluates it.
var (
	scriptPrepare     = withLib(rawPrepare)
	scriptClone       = withLib(rawClone)
	scriptInstall     = withLib(rawInstall)
	scriptMaven       = withLib(rawMaven)
	scriptBuild       = withLib(rawBuild)
	scriptPush        = withLib(rawPush)
	scriptCleanup     = withLib(rawCleanup)
	scriptCheckReused = withLib(rawCheckReused)
	scriptPreflight   = withLib(rawPreflight)
)

var (
	//go:embed scripts/lib.sh
	scriptLib string
	//go:embed scripts/prepare.sh
	rawPrepare string
	//go:embed scripts/clone.sh
	rawClone string
	//go:embed scripts/install.sh
	rawInstall string
	//go:embed scripts/maven.sh
	rawMaven string
	//go:embed scripts/build.sh
	rawBuild string
	//go:embed scripts/push.sh
	rawPush string
	//go:embed scripts/cleanup.sh
	rawCleanup string
	//go:embed scripts/check-reused.sh
	rawCheckReused string
	//go:embed scripts/preflight.sh
	rawPreflight string
)

// withLib puts the shared library after the #! line of script, both without
// their comment lines (compact).
func withLib(script string) string {
	shebang, rest, ok := strings.Cut(script, "\n")
	if !ok || !strings.HasPrefix(shebang, "#!") {
		panic("pipeline: a step script must start with a #! line")
	}
	return shebang + "\n" + compact(scriptLib) + compact(rest)
}

// heredocStart matches a line that opens a here-document: <<WORD, <<-WORD,
// <<'WORD' or <<"WORD" at its end.
var heredocStart = regexp.MustCompile(`<<(-?)\s*['"]?([A-Za-z_][A-Za-z0-9_]*)['"]?\s*$`)

// compact drops the comment lines of a script: the scripts' files are
// written to be read, the PipelineRun carries every script of every task,
// and each of its bytes is stored, sent and decoded by the API server for
// every build (and again in each TaskRun). Only lines whose first non-blank
// character is # go, never inside a here-document (whose body is data);
// the scripts keep no multi-line string with such a line
// (TestCompactKeepsEveryCommand runs bash -n on each and compares the
// commands).
func compact(script string) string {
	var b strings.Builder
	b.Grow(len(script))
	heredoc, dash := "", false
	for _, line := range strings.SplitAfter(script, "\n") {
		switch {
		case heredoc != "":
			end := strings.TrimRight(line, "\n")
			if dash {
				end = strings.TrimLeft(end, "\t")
			}
			if end == heredoc {
				heredoc = ""
			}
		case strings.HasPrefix(strings.TrimLeft(line, " \t"), "#"):
			continue
		default:
			if m := heredocStart.FindStringSubmatch(strings.TrimRight(line, "\n")); m != nil {
				heredoc, dash = m[2], m[1] == "-"
			}
		}
		b.WriteString(line)
	}
	return b.String()
}

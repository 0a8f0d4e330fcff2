package manifests

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const docsDir = repoRoot + "/docs"

// apiConstants returns the string constants of api/v1alpha1/conditions.go
// whose names start with prefix, by value.
func apiConstants(t *testing.T, prefix string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), repoRoot+"/api/v1alpha1/conditions.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("%s is not a string literal; this test reads the constants' values from the source", name.Name)
				}
				v, _ := strconv.Unquote(lit.Value)
				out[v] = name.Name
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s* constants found in api/v1alpha1/conditions.go", prefix)
	}
	return out
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(docsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTroubleshootingExplainsEveryConditionReason fails when a condition
// reason constant of api/v1alpha1 has no section in docs/troubleshooting.md
// (a "### `Reason`" heading), when a condition type has no "## Condition
// `Type`" section, or when the page documents a reason that no longer exists.
func TestTroubleshootingExplainsEveryConditionReason(t *testing.T) {
	doc := readDoc(t, "troubleshooting.md")
	headings := map[string]bool{}
	conditions := map[string]bool{}
	for _, line := range strings.Split(doc, "\n") {
		if m := regexp.MustCompile("^### `([A-Za-z]+)`$").FindStringSubmatch(line); m != nil {
			headings[m[1]] = true
		}
		if m := regexp.MustCompile("^## Condition `([A-Za-z]+)`$").FindStringSubmatch(line); m != nil {
			conditions[m[1]] = true
		}
	}
	reasons := apiConstants(t, "Reason")
	var missing []string
	for value, name := range reasons {
		if !headings[value] {
			missing = append(missing, name+" ("+value+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("docs/troubleshooting.md has no \"### `...`\" section for reason %s: say what it means and how to fix it", m)
	}
	for h := range headings {
		if _, ok := reasons[h]; !ok {
			t.Errorf("docs/troubleshooting.md documents reason %q, which api/v1alpha1/conditions.go does not define", h)
		}
	}
	for value, name := range apiConstants(t, "Condition") {
		if !conditions[value] {
			t.Errorf("docs/troubleshooting.md has no \"## Condition `%s`\" section (%s)", value, name)
		}
	}
	t.Logf("%d reasons and %d conditions documented", len(reasons), len(conditions))
}

func TestDocsShowHowToWaitForABuild(t *testing.T) {
	found := false
	for _, name := range docFiles(t) {
		if strings.Contains(readDoc(t, name), "kubectl wait --for=condition=Ready mab/") {
			found = true
		}
	}
	if !found {
		t.Error("no page in docs/ shows kubectl wait --for=condition=Ready mab/<name>")
	}
}

func docFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(docsDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".md") {
			out = append(out, e.Name())
		}
	}
	return out
}

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile("(?m)^#{1,6} (.+)$")
	notSlug   = regexp.MustCompile(`[^a-z0-9 _-]`)
)

// anchor is GitHub's id of a heading.
func anchor(heading string) string {
	return strings.ReplaceAll(notSlug.ReplaceAllString(strings.ToLower(strings.TrimSpace(heading)), ""), " ", "-")
}

// TestDocsLinksResolve checks the relative links between the pages of docs/
// and into the repository, anchors included.
func TestDocsLinksResolve(t *testing.T) {
	for _, name := range docFiles(t) {
		doc := readDoc(t, name)
		for _, m := range mdLink.FindAllStringSubmatch(doc, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, frag, _ := strings.Cut(target, "#")
			path := filepath.Join(docsDir, name)
			if file != "" {
				path = filepath.Join(docsDir, file)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s links to %s, which does not exist", name, target)
					continue
				}
			}
			if frag == "" || !strings.HasSuffix(path, ".md") {
				continue
			}
			b, _ := os.ReadFile(path)
			ok := false
			for _, h := range mdHeading.FindAllStringSubmatch(string(b), -1) {
				if anchor(h[1]) == frag {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s links to %s, but %s has no heading with anchor #%s", name, target, filepath.Base(path), frag)
			}
		}
	}
}

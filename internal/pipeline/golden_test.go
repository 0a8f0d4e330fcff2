package pipeline

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.yaml golden files from the generator's output")

// The PipelineRuns of the three sample builds, reviewed by a human in
// testdata/. Regenerate with: go test ./internal/pipeline -run TestGolden -update
func TestGoldenPipelineRunsOfTheSampleBuilds(t *testing.T) {
	for _, tc := range []struct {
		file  string
		build func() Input
	}{
		{"htop-containerfile.yaml", func() Input { return input(htopBuild()) }},
		{"nodejs-hello-world.yaml", func() Input { return input(nodejsBuild()) }},
		{"quarkus-getting-started.yaml", func() Input { return input(quarkusBuild()) }},
	} {
		t.Run(tc.file, func(t *testing.T) {
			pr, err := Generate(tc.build())
			if err != nil {
				t.Fatal(err)
			}
			got, err := yaml.Marshal(pr)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/pipeline -run TestGolden -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("PipelineRun differs from %s (-want +got); if intended, rerun with -update and review:\n%s", path, diff)
			}
		})
	}
}

package chart

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestGeneratedIsCurrent: the committed deploy/base and deploy/cert-manager
// files are what the chart renders now.
func TestGeneratedIsCurrent(t *testing.T) {
	c := load(t)
	files, err := Generated(c)
	if err != nil {
		t.Fatal(err)
	}
	root := repoRoot(t)
	for rel, want := range files {
		got, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Errorf("%s: %v; run `make manifests-chart`", rel, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from a fresh render of %s: run `make manifests-chart` and commit it", rel, Path)
		}
	}
}

// Command render writes the parts of deploy/ that are generated from the
// chart deploy/chart/mtls-guard: deploy/base/mtls-guard.yaml and
// deploy/cert-manager/certificates.yaml. Run it through
// `make manifests-chart`.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/internal/testenv/chart"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := testenv.Root()
	if err != nil {
		return err
	}
	c, err := chart.Load()
	if err != nil {
		return err
	}
	files, err := chart.Generated(c)
	if err != nil {
		return err
	}
	for _, rel := range slices.Sorted(mapsKeys(files)) {
		path := filepath.Join(root, rel)
		if err := os.WriteFile(path, files[rel], 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", rel, err)
		}
		fmt.Println("wrote", rel)
	}
	return nil
}

func mapsKeys(m map[string][]byte) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

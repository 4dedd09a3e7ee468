package chart

import (
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/manifests"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.Root()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func load(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// render renders the chart with values as YAML and fails the test on error.
func render(t *testing.T, c *chart.Chart, values string) []client.Object {
	t.Helper()
	vals, err := Values(values)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := Render(c, Options{Values: vals})
	if err != nil {
		t.Fatalf("rendering with values %q: %v", values, err)
	}
	return Objects(ms)
}

// one returns the only object of type T, failing the test otherwise.
func one[T client.Object](t *testing.T, objs []client.Object) T {
	t.Helper()
	o, err := manifests.One[T](objs)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func named[T client.Object](t *testing.T, objs []client.Object, ns, name string) T {
	t.Helper()
	o, err := manifests.Named[T](objs, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

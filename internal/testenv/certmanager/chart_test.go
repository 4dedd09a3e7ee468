package certmanager_test

import (
	"testing"

	"github.com/mtls-guard/mtls-guard/internal/testenv/chart"
)

// TestChartWithCertManager installs deploy/chart/mtls-guard with
// certificates.mode=certManager, rendered by the Helm SDK as `helm
// install` would (internal/testenv/chart.Render: schema-checked values,
// Helm's install order), and proves the same as for deploy/.
func TestChartWithCertManager(t *testing.T) {
	ctx := t.Context()
	c := startCluster(ctx, t)
	ch, err := chart.Load()
	if err != nil {
		t.Fatal(err)
	}
	// certificates.mode=certManager with the chart's own self-signed CA.
	ms, err := chart.Render(ch, chart.Options{Values: chart.CertManagerValues()})
	if err != nil {
		t.Fatal(err)
	}
	objs := chart.Objects(ms)
	c.install(ctx, t, objs)
	c.prove(ctx, t, findWiring(t, objs))
}

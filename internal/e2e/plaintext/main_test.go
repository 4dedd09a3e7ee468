// Package plaintext proves rule 3a end to end: plaintext callers that no
// pod list shows, seen by a real Prometheus that scrapes Istio's metrics
// from an istiometrics exporter (standing in for the destination's
// sidecar), refuse STRICT through a real kube-apiserver, the real kubectl
// and the guard's `serve` code path with deploy/'s RBAC and webhook
// configuration.
package plaintext

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/internal/testenv/guardproc"
	"github.com/mtls-guard/mtls-guard/internal/testenv/istiometrics"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// probeNamespace is where testenv.RegisterWebhook leaves an unmeshed pod:
// STRICT there is denied by any guard, whatever its evidence.
const probeNamespace = "mtls-guard-probe"

// suite is the shared control plane, Prometheus, exporter and guard.
var suite struct {
	*guardproc.Cluster
	webhookName string
	exporter    *istiometrics.Exporter
	target      string // the exporter's host:port
	prometheus  *testenv.Prometheus
	// webRequests counts the plaintext requests to web so far: the seed's
	// one, and one per run of TestWindowPassed.
	webRequests int
	// guard is the one guard the webhook configuration points at; only
	// one runs at a time, so that every answer is known to be its own.
	guard *guard
}

func TestMain(m *testing.M) {
	// ctx ends the exporter.
	ctx, cancel := context.WithCancel(context.Background())
	os.Exit(guardproc.Main(m, "plaintext e2e", func() error { return setup(ctx) }, func() { teardown(cancel) }))
}

// setup starts everything; teardown stops whatever it started, even when
// it failed halfway. ctx ends the exporter.
func setup(ctx context.Context) error {
	// Both binaries are checked first, so that a missing one fails at once
	// with how to build it.
	if _, err := testenv.BinDir(); err != nil {
		return err
	}
	if _, err := testenv.PrometheusBinary(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var err error
	if suite.Cluster, err = guardproc.StartCluster(ctx, "plaintext"); err != nil {
		return err
	}
	suite.webhookName = suite.Deploy.Webhook.Webhooks[0].Name

	// The exporter serves the web sidecar's stats endpoint (exporter's
	// context: the whole run); Prometheus scrapes it every second.
	suite.exporter = istiometrics.New()
	// The exporter lives until teardown cancels the suite's context.
	if suite.target, err = suite.exporter.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	promDir, err := os.MkdirTemp(suite.Dir, "prometheus-")
	if err != nil {
		return err
	}
	if suite.prometheus, err = testenv.StartPrometheus(ctx, promDir, []string{suite.target}, time.Second); err != nil {
		return err
	}
	if err := setupSeed(ctx); err != nil {
		return err
	}

	g, err := launchGuard(ctx, defaultFlags())
	if err != nil {
		return err
	}
	suite.guard = g
	return testenv.RegisterWebhook(ctx, suite.Admin, suite.Deploy, g.URL(webhook.Path), g.Bundle.CACert)
}

func teardown(cancel context.CancelFunc) {
	if suite.guard != nil {
		suite.guard.Stop()
	}
	if suite.prometheus != nil {
		if err := suite.prometheus.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping Prometheus: %v\n", err)
		}
	}
	cancel() // the exporter
	suite.Cluster.Stop()
}

// Evidence flags of the guards: refreshed every second, stale after five,
// so that a stopped Prometheus shows within seconds.
const (
	refresh = "1s"
	maxAge  = "5s"
	// longWindow outlasts the suite: the seed's request stays evidence.
	longWindow = "10m"
)

// defaultFlags are the evidence flags of the guard most tests use.
func defaultFlags() []string { return evidenceFlags(suite.prometheus.URL, longWindow, "allow") }

func evidenceFlags(url, window, unavailable string) []string {
	return []string{
		"--prometheus-url=" + url,
		"--plaintext-refresh=" + refresh,
		"--plaintext-max-age=" + maxAge,
		"--plaintext-window=" + window,
		"--plaintext-unavailable=" + unavailable,
	}
}

// guard is one in-process `mtls-guard serve` and its evidence flags.
type guard struct {
	*guardproc.Guard
	flags []string
}

// launchGuard runs a guard as deploy/'s ServiceAccount with these
// evidence flags and waits for /readyz, which never waits on Prometheus.
func launchGuard(ctx context.Context, flags []string) (*guard, error) {
	g, err := guardproc.Launch(ctx, suite.GuardOptions(flags...))
	if err != nil {
		return nil, err
	}
	return &guard{Guard: g, flags: flags}, nil
}

// useGuard makes the webhook call a guard with these evidence flags: the
// running one if its flags are the same, else a new one, after the old
// one has stopped. It returns when the API server has called the new
// guard, so every guard decision that follows is that guard's.
func useGuard(t *testing.T, flags ...string) {
	t.Helper()
	if suite.guard != nil && !suite.guard.Exited() && slices.Equal(suite.guard.flags, flags) {
		return
	}
	ctx := context.Background()
	if suite.guard != nil {
		suite.guard.Stop()
		suite.guard = nil
	}
	g, err := launchGuard(ctx, flags)
	if err != nil {
		t.Fatalf("starting a guard with %v: %v", flags, err)
	}
	suite.guard = g
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := suite.Admin.Get(ctx, client.ObjectKeyFromObject(suite.Deploy.Webhook), vwc); err != nil {
		t.Fatalf("reading the webhook configuration: %v", err)
	}
	url := g.URL(webhook.Path)
	for i := range vwc.Webhooks {
		vwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: g.Bundle.CACert}
	}
	if err := suite.Admin.Update(ctx, vwc); err != nil {
		t.Fatalf("pointing the webhook at the new guard: %v", err)
	}
	// The old guard is gone: a decision of the guard's on the probe's
	// STRICT (denied next to its unmeshed pod) comes from the new one.
	eventuallyDecided(t, suite.Admin, strict(probeNamespace, "probe"), webhook.OutcomeDenied)
}

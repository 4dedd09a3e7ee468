// Package e2e proves the guard through a real kube-apiserver and etcd: the
// webhook configuration and RBAC from deploy/, the real `serve` code path
// over HTTPS, and the real kubectl binary.
package e2e

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/internal/testenv/guardproc"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// Names from deploy/: the guard runs in guardNamespace; rootNamespace is
// Istio's root namespace.
const (
	guardNamespace = testenv.GuardNamespace
	rootNamespace  = testenv.RootNamespace
)

// suite is the shared control plane and guard.
var suite struct {
	*guardproc.Cluster
	webhookName string
	guard       *guard
	// clientCAFile signs the client certificate the API server presents
	// to webhooks; a guard given it as --client-ca-file accepts the API
	// server and nobody else.
	clientCAFile string
}

func TestMain(m *testing.M) {
	os.Exit(guardproc.Main(m, "e2e", setup, teardown))
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The API server presents a client certificate to every webhook, so
	// that a guard with --client-ca-file can be called through it.
	caPEM, certPEM, keyPEM, err := testenv.IssueClientCert("kube-apiserver")
	if err != nil {
		return err
	}
	if suite.Cluster, err = guardproc.StartCluster(ctx, "e2e", testenv.WithWebhookClientCert(certPEM, keyPEM)); err != nil {
		return err
	}
	suite.clientCAFile = filepath.Join(suite.Dir, "client-ca.crt")
	if err := os.WriteFile(suite.clientCAFile, caPEM, 0o600); err != nil {
		return err
	}
	if err := createNamespace(ctx, rootNamespace, nil); err != nil {
		return err
	}
	if suite.guard, err = launchGuard(ctx, guardOptions{metrics: true}); err != nil {
		return err
	}
	if err := testenv.RegisterWebhook(ctx, suite.Admin, suite.Deploy, suite.guard.URL(webhook.Path), suite.guard.Bundle.CACert); err != nil {
		return err
	}
	suite.webhookName = suite.Deploy.Webhook.Webhooks[0].Name
	return nil
}

func teardown() {
	if suite.guard != nil {
		suite.guard.Stop()
	}
	suite.Cluster.Stop()
}

// guard is one in-process `mtls-guard serve`.
type guard struct{ *guardproc.Guard }

// guardOptions say how to start a guard.
type guardOptions struct {
	// kubeconfig is whom the guard runs as; deploy/'s ServiceAccount when
	// empty.
	kubeconfig string
	extra      []string // more flags; they win over the defaults
	// metrics serves /metrics on a free loopback port (default flags:
	// HTTPS with authentication and authorisation).
	metrics bool
	// noWait returns before /readyz answers OK: the caller watches
	// readiness itself.
	noWait bool
}

// options are the suite's guard options: a serving certificate for
// localhost too, and 10s to shut down.
func (o guardOptions) options() guardproc.Options {
	p := suite.GuardOptions(o.extra...)
	if o.kubeconfig != "" {
		p.Kubeconfig = o.kubeconfig
	}
	p.DNSNames, p.Metrics, p.ShutdownTimeout = []string{"localhost"}, o.metrics, 10*time.Second
	return p
}

// launchGuard runs server.Main, the code path of `mtls-guard serve`, and
// waits for /readyz; it stops what it started when it fails.
func launchGuard(ctx context.Context, o guardOptions) (*guard, error) {
	g, err := guardproc.Launch(ctx, o.options())
	if err != nil {
		return nil, err
	}
	return &guard{g}, nil
}

// startGuard runs a guard for a test, and waits for /readyz unless
// o.noWait: it fails the test when the guard does not start and stops the
// guard when the test ends.
func startGuard(t *testing.T, o guardOptions) *guard {
	t.Helper()
	if o.noWait {
		return &guard{guardproc.StartTest(t, context.Background(), o.options())}
	}
	return &guard{guardproc.LaunchTest(t, o.options())}
}

// httpsClient trusts the guard's CA.
func (g *guard) httpsClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.RootCAs(), MinVersion: tls.VersionTLS12}}}
}

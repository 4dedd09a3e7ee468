// Package e2e proves the guard through a real kube-apiserver and etcd: the
// webhook configuration and RBAC from deploy/, the real `serve` code path
// over HTTPS, and the real kubectl binary.
package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/certs"
	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/internal/testenv/audit"
	"github.com/mtls-guard/mtls-guard/internal/testenv/guardproc"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// Names from deploy/: the guard runs as this ServiceAccount.
const (
	guardNamespace = "mtls-guard"
	rootNamespace  = "istio-system"
)

// suite is the shared control plane and guard.
var suite struct {
	env         *testenv.Env
	admin       client.Client  // records Audit-Ids, see call
	clients     *audit.Clients // makes the clients, see newClient
	adminConfig string         // kubeconfig path of a cluster admin
	webhookName string
	deploy      *testenv.Deploy
	guardRole   string // the guard's ClusterRole from deploy/
	guard       *guard
	audit       auditLog
	// clientCAFile signs the client certificate the API server presents
	// to webhooks; a guard given it as --client-ca-file accepts the API
	// server and nobody else.
	clientCAFile string
	dir          string
}

func TestMain(m *testing.M) {
	os.Exit(guardproc.Main(m, "e2e", guardNamespace, setup, teardown))
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var err error
	if suite.dir, err = os.MkdirTemp("", "mtls-guard-e2e-"); err != nil {
		return err
	}
	// The API server presents a client certificate to every webhook, so
	// that a guard with --client-ca-file can be called through it.
	caPEM, certPEM, keyPEM, err := testenv.IssueClientCert("kube-apiserver")
	if err != nil {
		return err
	}
	suite.clientCAFile = filepath.Join(suite.dir, "client-ca.crt")
	if err := os.WriteFile(suite.clientCAFile, caPEM, 0o600); err != nil {
		return err
	}
	env, err := testenv.Start(testenv.WithWebhookClientCert(certPEM, keyPEM))
	if err != nil {
		return err
	}
	suite.env = env
	suite.audit = auditLog{audit.NewLog(env.AuditLog)}
	if suite.clients, err = audit.NewClients(env.Config, server.Scheme()); err != nil {
		return err
	}
	if suite.admin, err = newClient(env.Config); err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	if suite.adminConfig, err = env.Kubeconfig(suite.dir, "e2e-admin", "system:masters"); err != nil {
		return err
	}
	if suite.deploy, err = testenv.InstallRBAC(ctx, suite.admin); err != nil {
		return err
	}
	suite.guardRole = suite.deploy.ClusterRole
	if err := createNamespace(ctx, rootNamespace, nil); err != nil {
		return err
	}

	g, err := launchGuard(ctx, guardOptions{user: testenv.GuardUser, metrics: true})
	if err != nil {
		return err
	}
	suite.guard = g

	url := fmt.Sprintf("https://127.0.0.1:%d%s", g.port, webhook.Path)
	if err := testenv.RegisterWebhook(ctx, suite.admin, suite.deploy, url, g.bundle.CACert); err != nil {
		return err
	}
	suite.webhookName = suite.deploy.Webhook.Webhooks[0].Name
	return nil
}

func teardown() {
	if suite.guard != nil {
		suite.guard.stop()
	}
	if suite.env != nil {
		if err := suite.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping envtest: %v\n", err)
		}
	}
	if suite.dir != "" {
		os.RemoveAll(suite.dir)
	}
}

// newClient is a client for cfg whose calls record their Audit-Ids.
func newClient(cfg *rest.Config) (client.Client, error) { return suite.clients.New(cfg) }

// guard is one in-process `mtls-guard serve`.
type guard struct {
	port, probePort, metricsPort int
	bundle                       *certs.Bundle
	certDir                      string
	cancel                       context.CancelFunc
	done                         chan struct{} // closed when server.Main returns
	err                          error         // what it returned
}

// guardOptions say how to start a guard.
type guardOptions struct {
	// user is the envtest user the guard authenticates as; ignored when
	// kubeconfig is set.
	user       string
	kubeconfig string
	extra      []string // more flags; they win over the defaults
	// metrics serves /metrics on a free loopback port (default flags:
	// HTTPS with authentication and authorisation).
	metrics bool
	// noWait returns before /readyz answers OK: the caller watches
	// readiness itself.
	noWait bool
}

// launchGuard runs server.Main, the code path of `mtls-guard serve`, and
// waits for /readyz unless o.noWait. It stops what it started when it
// fails.
func launchGuard(ctx context.Context, o guardOptions) (*guard, error) {
	g := &guard{done: make(chan struct{})}
	var err error
	if g.port, err = testenv.FreePort(); err != nil {
		return nil, err
	}
	if g.probePort, err = testenv.FreePort(); err != nil {
		return nil, err
	}
	if g.certDir, err = os.MkdirTemp(suite.dir, "certs-"); err != nil {
		return nil, err
	}
	if g.bundle, err = certs.Issue("mtls-guard", guardNamespace, certs.WithIPAddresses(net.IPv4(127, 0, 0, 1)), certs.WithDNSNames("localhost")); err != nil {
		return nil, fmt.Errorf("issuing serving certificate: %w", err)
	}
	if err := g.bundle.WriteDir(g.certDir); err != nil {
		return nil, err
	}
	kc := o.kubeconfig
	if kc == "" {
		if kc, err = suite.env.Kubeconfig(suite.dir, o.user, testenv.GuardGroups...); err != nil {
			return nil, err
		}
	}
	metricsAddr := "0"
	if o.metrics {
		if g.metricsPort, err = testenv.FreePort(); err != nil {
			return nil, err
		}
		metricsAddr = fmt.Sprintf("127.0.0.1:%d", g.metricsPort)
	}
	args := append([]string{
		"--kubeconfig", kc,
		"--host", "127.0.0.1",
		"--port", fmt.Sprint(g.port),
		"--cert-dir", g.certDir,
		"--metrics-bind-address", metricsAddr,
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", g.probePort),
		"--root-namespace", rootNamespace,
		"--graceful-shutdown-timeout", "10s",
	}, o.extra...)
	runCtx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() {
		defer close(g.done)
		g.err = server.Main(runCtx, args, os.Stderr)
	}()
	if o.noWait {
		return g, nil
	}
	if err := g.waitReady(ctx); err != nil {
		g.stop()
		return nil, err
	}
	return g, nil
}

// startGuard is launchGuard for a test: it fails the test and stops the
// guard when the test ends.
func startGuard(t *testing.T, o guardOptions) *guard {
	t.Helper()
	g, err := launchGuard(context.Background(), o)
	if err != nil {
		t.Fatalf("starting a guard: %v", err)
	}
	t.Cleanup(g.stop)
	return g
}

// stop ends the guard, if it still runs, and waits for it.
func (g *guard) stop() {
	g.cancel()
	<-g.done
}

// exited reports whether server.Main returned.
func (g *guard) exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// ready asks /readyz.
func (g *guard) ready(ctx context.Context) (bool, error) { return testenv.Ready(ctx, g.probePort) }

func (g *guard) waitReady(ctx context.Context) error {
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if g.exited() {
			return false, fmt.Errorf("guard exited before it was ready: %v", g.err)
		}
		return g.ready(ctx)
	})
	if err != nil {
		return fmt.Errorf("waiting for the guard's /readyz: %w", err)
	}
	return nil
}

// rootCAs trusts the guard's serving CA.
func (g *guard) rootCAs() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(g.bundle.CACert)
	return pool
}

// httpsClient trusts the guard's CA.
func (g *guard) httpsClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.rootCAs(), MinVersion: tls.VersionTLS12}}}
}

var errNoAuditID = errors.New("the API server's answer carried no Audit-Id")

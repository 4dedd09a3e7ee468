// Package e2e proves the guard through a real kube-apiserver and etcd: the
// webhook configuration and RBAC from deploy/, the real `serve` code path
// over HTTPS, and the real kubectl binary.
package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/certs"
	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
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
	admin       client.Client
	adminConfig string // kubeconfig path of a cluster admin
	webhookName string
	guardRole   string // the ClusterRole from deploy/
	guard       *guard
	dir         string
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// Only `-short` may skip the suite; without binaries it fails loudly.
	if isShort() {
		fmt.Println("e2e: skipped under -short")
		return 0
	}
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup failed: %v\n", err)
		teardown()
		return 1
	}
	rc := m.Run()
	teardown()
	return rc
}

func isShort() bool {
	for _, a := range os.Args[1:] {
		if a == "-test.short" || a == "-test.short=true" {
			return true
		}
	}
	return false
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	suite.env = env
	if suite.dir, err = os.MkdirTemp("", "mtls-guard-e2e-"); err != nil {
		return err
	}
	if suite.admin, err = client.New(env.Config, client.Options{Scheme: server.Scheme()}); err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	if suite.adminConfig, err = env.Kubeconfig(suite.dir, "e2e-admin", "system:masters"); err != nil {
		return err
	}
	d, err := testenv.InstallRBAC(ctx, suite.admin)
	if err != nil {
		return err
	}
	suite.guardRole = d.ClusterRole
	mustNamespace(ctx, rootNamespace, nil)

	g, err := startGuard(ctx, testenv.GuardUser, nil)
	if err != nil {
		return err
	}
	suite.guard = g

	url := fmt.Sprintf("https://127.0.0.1:%d%s", g.port, webhook.Path)
	if err := testenv.RegisterWebhook(ctx, suite.admin, d, url, g.bundle.CACert); err != nil {
		return err
	}
	suite.webhookName = d.Webhook.Webhooks[0].Name
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

// guard is one in-process `mtls-guard serve`.
type guard struct {
	port, probePort int
	bundle          *certs.Bundle
	certDir         string
	cancel          context.CancelFunc
	done            chan error
}

// startGuard runs server.Main, the code path of `mtls-guard serve`, as the
// given user, with extra flags, and waits for /readyz unless the user is
// empty (then the caller wants to watch readiness itself).
func startGuard(ctx context.Context, user string, extra []string, kubeconfig ...string) (*guard, error) {
	g := &guard{done: make(chan error, 1)}
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
	kc := ""
	if len(kubeconfig) > 0 {
		kc = kubeconfig[0]
	} else if kc, err = suite.env.Kubeconfig(suite.dir, user, testenv.GuardGroups...); err != nil {
		return nil, err
	}
	args := append([]string{
		"--kubeconfig", kc,
		"--host", "127.0.0.1",
		"--port", fmt.Sprint(g.port),
		"--cert-dir", g.certDir,
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", g.probePort),
		"--root-namespace", rootNamespace,
		"--graceful-shutdown-timeout", "10s",
	}, extra...)
	runCtx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() { g.done <- server.Main(runCtx, args, os.Stderr) }()
	if len(kubeconfig) > 0 {
		return g, nil
	}
	if err := g.waitReady(ctx); err != nil {
		g.stop()
		return nil, err
	}
	return g, nil
}

func (g *guard) stop() {
	g.cancel()
	<-g.done
}

// ready asks /readyz.
func (g *guard) ready(ctx context.Context) (bool, error) { return testenv.Ready(ctx, g.probePort) }

func (g *guard) waitReady(ctx context.Context) error {
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-g.done:
			return false, fmt.Errorf("guard exited before it was ready: %v", err)
		default:
		}
		return g.ready(ctx)
	})
	if err != nil {
		return fmt.Errorf("waiting for the guard's /readyz: %w", err)
	}
	return nil
}

// httpsClient trusts the guard's CA.
func (g *guard) httpsClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(g.bundle.CACert)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

func isDenial(err error) bool {
	return err != nil && strings.Contains(err.Error(), "denied the request")
}

// Package guardproc is the scaffolding of the end-to-end suites: their
// TestMain (Main), their control plane as the tests use it (Cluster), and
// the guard they run in-process (Guard): server.Main, the code path of
// `mtls-guard serve`, on loopback ports with a serving certificate of its
// own, as whoever its kubeconfig names.
package guardproc

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mtls-guard/mtls-guard/certs"
	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
)

// Options say how Start and Launch start a guard.
type Options struct {
	// Kubeconfig is the guard's: whom it runs as.
	Kubeconfig string
	// Dir is where the guard's serving certificate gets a new directory.
	Dir string
	// Namespace is the guard's own, the namespace of its serving
	// certificate; RootNamespace is Istio's root namespace.
	Namespace, RootNamespace string
	// DNSNames are names of the serving certificate besides 127.0.0.1.
	DNSNames []string
	// Metrics serves /metrics on a free loopback port, Guard.MetricsPort,
	// as the guard's defaults say (HTTPS, with authentication and
	// authorisation); without it the guard serves no metrics.
	Metrics bool
	// ShutdownTimeout is --graceful-shutdown-timeout; 5s when zero.
	ShutdownTimeout time.Duration
	// Args are more flags; they win over the defaults.
	Args []string
}

// Guard is one in-process `mtls-guard serve`.
type Guard struct {
	// Port serves the webhooks, ProbePort /readyz and /healthz, and
	// MetricsPort, with Options.Metrics, /metrics.
	Port, ProbePort, MetricsPort int
	// Bundle is the serving certificate and its CA.
	Bundle *certs.Bundle
	// CertDir is where the guard reads its serving certificate: a renewed
	// one written there is served without a restart.
	CertDir string
	cancel  context.CancelFunc
	done    chan struct{} // closed when server.Main returns
	err     error         // what it returned
}

// Start runs server.Main until ctx ends or Stop, and returns at once: the
// caller watches readiness itself (Ready, WaitReady).
func Start(ctx context.Context, o Options) (*Guard, error) {
	n := 2
	if o.Metrics {
		n = 3
	}
	ports, err := testenv.FreePorts(n)
	if err != nil {
		return nil, err
	}
	g := &Guard{Port: ports[0], ProbePort: ports[1], done: make(chan struct{})}
	metricsAddr := "0"
	if o.Metrics {
		g.MetricsPort = ports[2]
		metricsAddr = fmt.Sprintf("127.0.0.1:%d", g.MetricsPort)
	}
	if g.CertDir, err = os.MkdirTemp(o.Dir, "certs-"); err != nil {
		return nil, err
	}
	if g.Bundle, err = certs.Issue("mtls-guard", o.Namespace, certs.WithIPAddresses(net.IPv4(127, 0, 0, 1)), certs.WithDNSNames(o.DNSNames...)); err != nil {
		return nil, fmt.Errorf("issuing serving certificate: %w", err)
	}
	if err := g.Bundle.WriteDir(g.CertDir); err != nil {
		return nil, err
	}
	shutdown := o.ShutdownTimeout
	if shutdown == 0 {
		shutdown = 5 * time.Second
	}
	args := append([]string{
		"--kubeconfig", o.Kubeconfig,
		"--host", "127.0.0.1",
		"--port", fmt.Sprint(g.Port),
		"--cert-dir", g.CertDir,
		"--metrics-bind-address", metricsAddr,
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", g.ProbePort),
		"--root-namespace", o.RootNamespace,
		"--graceful-shutdown-timeout", shutdown.String(),
	}, o.Args...)
	runCtx, cancel := context.WithCancel(ctx)
	g.cancel = cancel
	go func() {
		defer close(g.done)
		g.err = server.Main(runCtx, args, os.Stderr)
	}()
	return g, nil
}

// Launch starts a guard that runs until Stop and waits, within ctx, for
// its /readyz; it stops what it started when it fails.
func Launch(ctx context.Context, o Options) (*Guard, error) {
	g, err := Start(context.Background(), o)
	if err != nil {
		return nil, err
	}
	if err := g.WaitReady(ctx); err != nil {
		g.Stop()
		return nil, err
	}
	return g, nil
}

// StartTest is Start for a test, and LaunchTest Launch: they fail the
// test when the guard does not start, and stop the guard when the test
// ends.
func StartTest(t testing.TB, ctx context.Context, o Options) *Guard {
	t.Helper()
	return forTest(t)(Start(ctx, o))
}

// LaunchTest: see StartTest.
func LaunchTest(t testing.TB, o Options) *Guard {
	t.Helper()
	return forTest(t)(Launch(context.Background(), o))
}

func forTest(t testing.TB) func(*Guard, error) *Guard {
	return func(g *Guard, err error) *Guard {
		t.Helper()
		if err != nil {
			t.Fatalf("starting a guard: %v", err)
		}
		t.Cleanup(g.Stop)
		return g
	}
}

// Stop ends the guard, if it still runs, and waits for it: its ports are
// closed when Stop returns.
func (g *Guard) Stop() {
	g.cancel()
	<-g.done
}

// Exited reports whether server.Main returned.
func (g *Guard) Exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// Err is what server.Main returned; nil while it runs.
func (g *Guard) Err() error {
	if !g.Exited() {
		return nil
	}
	return g.err
}

// Ready asks /readyz; a guard that is not listening yet is not ready.
func (g *Guard) Ready(ctx context.Context) (bool, error) { return testenv.Ready(ctx, g.ProbePort) }

// WaitReady polls /readyz until it answers OK, within ctx and a minute,
// and fails at once when the guard exits.
func (g *Guard) WaitReady(ctx context.Context) error {
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if g.Exited() {
			return false, fmt.Errorf("the guard exited before it was ready: %v", g.err)
		}
		return g.Ready(ctx)
	})
	if err != nil {
		return fmt.Errorf("waiting for the guard's /readyz: %w", err)
	}
	return nil
}

// URL is the guard's HTTPS URL with path.
func (g *Guard) URL(path string) string { return fmt.Sprintf("https://127.0.0.1:%d%s", g.Port, path) }

// RootCAs trusts the guard's serving CA.
func (g *Guard) RootCAs() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(g.Bundle.CACert)
	return pool
}

// Main is the TestMain of the end-to-end suite name: only -short skips
// the suite; otherwise the guards know their own namespace, deploy/'s, as
// deployed, setup runs, and the tests only when it succeeded. teardown
// stops whatever setup started, even halfway. Main returns the exit code.
func Main(m *testing.M, name string, setup func() error, teardown func()) int {
	flag.Parse()
	if testing.Short() {
		fmt.Printf("%s: skipped under -short\n", name)
		return 0
	}
	// Set once, before any guard starts: server.Main reads it.
	if err := os.Setenv("POD_NAMESPACE", testenv.GuardNamespace); err != nil {
		fmt.Fprintf(os.Stderr, "%s setup failed: %v\n", name, err)
		return 1
	}
	err := setup()
	defer teardown()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s setup failed: %v\n", name, err)
		return 1
	}
	return m.Run()
}

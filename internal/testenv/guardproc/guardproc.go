// Package guardproc runs the guard in-process for the end-to-end tests:
// server.Main, the code path of `mtls-guard serve`, on loopback ports with
// a serving certificate of its own, as whoever its kubeconfig names.
package guardproc

import (
	"context"
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

// Options say how Launch starts a guard.
type Options struct {
	// Kubeconfig is the guard's: whom it runs as.
	Kubeconfig string
	// Dir is where the guard's serving certificate gets a new directory.
	Dir string
	// Namespace is the guard's own, the namespace of its serving
	// certificate; RootNamespace is Istio's root namespace.
	Namespace, RootNamespace string
	// Args are more flags; they win over Launch's.
	Args []string
}

// Guard is one in-process `mtls-guard serve`.
type Guard struct {
	// Port serves the webhooks, ProbePort /readyz and /healthz.
	Port, ProbePort int
	// Bundle is the serving certificate and its CA.
	Bundle *certs.Bundle
	cancel context.CancelFunc
	done   chan struct{} // closed when server.Main returns
	err    error         // what it returned
}

// Launch runs server.Main and waits, within ctx, for /readyz; it stops
// what it started when it fails.
func Launch(ctx context.Context, o Options) (*Guard, error) {
	g := &Guard{done: make(chan struct{})}
	ports, err := testenv.FreePorts(2)
	if err != nil {
		return nil, err
	}
	g.Port, g.ProbePort = ports[0], ports[1]
	certDir, err := os.MkdirTemp(o.Dir, "certs-")
	if err != nil {
		return nil, err
	}
	if g.Bundle, err = certs.Issue("mtls-guard", o.Namespace, certs.WithIPAddresses(net.IPv4(127, 0, 0, 1))); err != nil {
		return nil, fmt.Errorf("issuing serving certificate: %w", err)
	}
	if err := g.Bundle.WriteDir(certDir); err != nil {
		return nil, err
	}
	args := append([]string{
		"--kubeconfig", o.Kubeconfig,
		"--host", "127.0.0.1",
		"--port", fmt.Sprint(g.Port),
		"--cert-dir", certDir,
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", g.ProbePort),
		"--root-namespace", o.RootNamespace,
		"--graceful-shutdown-timeout", "5s",
	}, o.Args...)
	runCtx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() {
		defer close(g.done)
		g.err = server.Main(runCtx, args, os.Stderr)
	}()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if g.Exited() {
			return false, fmt.Errorf("the guard exited before it was ready: %w", g.err)
		}
		return testenv.Ready(ctx, g.ProbePort)
	})
	if err != nil {
		g.Stop()
		return nil, fmt.Errorf("waiting for the guard's /readyz: %w", err)
	}
	return g, nil
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

// Main is the TestMain of an end-to-end suite named name whose guards run
// in namespace: only -short skips the suite; otherwise the guards know
// their own namespace, as deployed, setup runs, and the tests only when it
// succeeded. teardown stops whatever setup started, even halfway. Main
// returns the exit code.
func Main(m *testing.M, name, namespace string, setup func() error, teardown func()) int {
	flag.Parse()
	if testing.Short() {
		fmt.Printf("%s: skipped under -short\n", name)
		return 0
	}
	// Set once, before any guard starts: server.Main reads it.
	if err := os.Setenv("POD_NAMESPACE", namespace); err != nil {
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

package certmanager_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mtls-guard/mtls-guard/internal/testenv"
)

// poll checks cond every 100ms until it holds; timeout only bounds a
// failure.
func poll(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil && expired(ctx) {
			// A call cut short by the deadline: report the timeout.
			return false, context.DeadlineExceeded
		}
		return ok, err
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// expired reports whether ctx is done or past its deadline; a call that
// hits the deadline may return before ctx.Err is set.
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// parseCerts decodes every CERTIFICATE block of a PEM bundle.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate in PEM data")
	}
	return out, nil
}

func mustCerts(t *testing.T, what string, data []byte) []*x509.Certificate {
	t.Helper()
	certs, err := parseCerts(data)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return certs
}

// handshake dials addr with TLS, verifying the server against roots for
// serverName, and returns the leaf the server presented.
func handshake(ctx context.Context, addr string, roots *x509.CertPool, serverName string) (*x509.Certificate, error) {
	d := tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		Config:    &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12},
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// secretVolume is a directory laid out as kubelet lays out a mounted
// Secret: the files live in a timestamped directory, ..data points at it,
// and each key is a symlink through ..data. An update writes a new
// directory and swaps ..data atomically, so a reader never sees half of it.
type secretVolume struct{ dir string }

func newSecretVolume(t *testing.T, data map[string][]byte) *secretVolume {
	t.Helper()
	v := &secretVolume{dir: t.TempDir()}
	v.update(t, data)
	for key := range data {
		if err := os.Symlink(filepath.Join("..data", key), filepath.Join(v.dir, key)); err != nil {
			t.Fatalf("linking %s: %v", key, err)
		}
	}
	return v
}

func (v *secretVolume) update(t *testing.T, data map[string][]byte) {
	t.Helper()
	ts, err := os.MkdirTemp(v.dir, "..ts-")
	if err != nil {
		t.Fatal(err)
	}
	for key, b := range data {
		if err := os.WriteFile(filepath.Join(ts, key), b, 0o600); err != nil {
			t.Fatalf("writing %s: %v", key, err)
		}
	}
	dataLink := filepath.Join(v.dir, "..data")
	old, _ := os.Readlink(dataLink)
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dataLink); err != nil {
		t.Fatalf("swapping ..data: %v", err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

var guardBuild struct {
	once sync.Once
	path string
	dir  string // removed after the tests, when built here
	err  error
}

// guardBinary builds the guard's binary from the repository root, with the
// guard's own go.mod, once per test binary. MTLS_GUARD_BINARY names a
// prebuilt one instead.
func guardBinary(t *testing.T) string {
	t.Helper()
	guardBuild.once.Do(func() {
		if bin := os.Getenv("MTLS_GUARD_BINARY"); bin != "" {
			guardBuild.path = bin
			return
		}
		root, err := testenv.Root()
		if err != nil {
			guardBuild.err = err
			return
		}
		dir, err := os.MkdirTemp("", "mtls-guard-bin-")
		if err != nil {
			guardBuild.err = err
			return
		}
		guardBuild.dir = dir
		guardBuild.path = filepath.Join(dir, "mtls-guard")
		cmd := exec.Command("go", "build", "-o", guardBuild.path, ".")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			guardBuild.err = fmt.Errorf("go build of the guard in %s: %w\n%s", root, err, out)
		}
	})
	if guardBuild.err != nil {
		t.Fatal(guardBuild.err)
	}
	return guardBuild.path
}

// guardProcess is `mtls-guard serve` running in its own process.
type guardProcess struct {
	cmd       *exec.Cmd
	addr      string
	probePort int
	done      chan struct{}
	err       error
}

// startGuard runs the guard's binary with the given kubeconfig and
// certificate directory and waits until /readyz answers.
func startGuard(ctx context.Context, t *testing.T, kubeconfig, certDir string) *guardProcess {
	t.Helper()
	bin := guardBinary(t)
	ports, err := testenv.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	port, probePort := ports[0], ports[1]
	g := &guardProcess{
		addr:      fmt.Sprintf("127.0.0.1:%d", port),
		probePort: probePort,
		done:      make(chan struct{}),
	}
	g.cmd = exec.Command(bin, "serve",
		"--kubeconfig", kubeconfig,
		"--cert-dir", certDir,
		"--host", "127.0.0.1",
		"--port", fmt.Sprint(port),
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probePort),
	)
	g.cmd.Stdout, g.cmd.Stderr = logFile, logFile
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() {
		g.err = g.cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() { g.stop(t) })
	poll(ctx, t, 2*time.Minute, "the guard's /readyz", func(ctx context.Context) (bool, error) {
		if g.exited() {
			return false, fmt.Errorf("the guard exited before it was ready: %v (logs in %s)", g.err, logFile.Name())
		}
		return testenv.Ready(ctx, g.probePort)
	})
	return g
}

// exited reports whether the process has ended.
func (g *guardProcess) exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, as kubelet does, and kills the guard if it has not
// drained within a minute.
func (g *guardProcess) stop(t *testing.T) {
	if g.exited() {
		return
	}
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM to the guard: %v", err)
	}
	select {
	case <-g.done:
	case <-time.After(time.Minute):
		t.Errorf("the guard did not exit within a minute of SIGTERM; killing it")
		g.cmd.Process.Kill()
		<-g.done
	}
}

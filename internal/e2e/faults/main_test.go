// Package faults breaks things around a running guard (the API server
// stops and starts, SIGTERM arrives with requests in flight, the cache
// loses the API server) and checks that the guard fails closed and
// recovers. It runs its own control plane, so that stopping the API server
// disturbs no other suite.
package faults

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/mtls-guard/mtls-guard/certs"
	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/webhook"
)

const rootNamespace = "istio-system"

// env is this package's control plane.
var env struct {
	*testenv.Env
	admin client.Client
	dir   string
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	for _, a := range os.Args[1:] {
		if a == "-test.short" || a == "-test.short=true" {
			fmt.Println("faults: skipped under -short")
			return 0
		}
	}
	// As deployed: the guard knows its own namespace. Set once, before
	// any guard starts.
	if err := os.Setenv("POD_NAMESPACE", "mtls-guard"); err != nil {
		fmt.Fprintf(os.Stderr, "faults setup failed: %v\n", err)
		return 1
	}
	err := setup()
	// Whatever setup started is stopped, even when it failed halfway.
	defer teardown()
	if err != nil {
		fmt.Fprintf(os.Stderr, "faults setup failed: %v\n", err)
		return 1
	}
	return m.Run()
}

// setup starts etcd and an API server whose certificates live in a
// directory of ours: envtest then keeps them, and the users it issued,
// across an API server restart.
func setup() error {
	var err error
	if env.dir, err = os.MkdirTemp("", "mtls-guard-faults-"); err != nil {
		return err
	}
	bin, err := testenv.BinDir()
	if err != nil {
		return err
	}
	crds, err := testenv.IstioCRDs()
	if err != nil {
		return err
	}
	apiDir := filepath.Join(env.dir, "apiserver")
	if err := os.Mkdir(apiDir, 0o700); err != nil {
		return err
	}
	te := &envtest.Environment{
		BinaryAssetsDirectory:    bin,
		CRDInstallOptions:        envtest.CRDInstallOptions{Paths: []string{crds}, ErrorIfPathMissing: true},
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	te.ControlPlane.APIServer = &envtest.APIServer{CertDir: apiDir}
	// Without a bound the API server waits for open watches (the guard's)
	// to end on their own before it stops, for a minute and more.
	te.ControlPlane.APIServer.Configure().Set("shutdown-watch-termination-grace-period", "2s")
	cfg, err := te.Start()
	env.Env = &testenv.Env{Environment: te, Config: cfg, BinDir: bin}
	if err != nil {
		return fmt.Errorf("starting envtest: %w", err)
	}
	if env.admin, err = client.New(cfg, client.Options{Scheme: server.Scheme()}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := testenv.InstallRBAC(ctx, env.admin); err != nil {
		return err
	}
	return env.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rootNamespace}})
}

func teardown() {
	if env.Env != nil && env.Environment != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping envtest: %v\n", err)
		}
	}
	if env.dir != "" {
		os.RemoveAll(env.dir)
	}
}

// guard is one in-process `mtls-guard serve`, as the deploy/ ServiceAccount.
type guard struct {
	port, probePort int
	ca              []byte
	cancel          context.CancelFunc
	done            chan struct{} // closed when server.Main returns
	err             error         // what it returned
}

// startGuard runs server.Main with extra flags until ctx ends (or stop).
func startGuard(t *testing.T, ctx context.Context, extra ...string) *guard {
	t.Helper()
	g := &guard{done: make(chan struct{}), port: freePort(t), probePort: freePort(t)}
	dir := t.TempDir()
	b, err := certs.Issue("mtls-guard", "mtls-guard", certs.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	g.ca = b.CACert
	kc, err := env.Kubeconfig(dir, testenv.GuardUser, testenv.GuardGroups...)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--kubeconfig", kc,
		"--host", "127.0.0.1",
		"--port", fmt.Sprint(g.port),
		"--cert-dir", dir,
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", g.probePort),
		"--root-namespace", rootNamespace,
		"--graceful-shutdown-timeout", "20s",
	}, extra...)
	ctx, g.cancel = context.WithCancel(ctx)
	go func() {
		defer close(g.done)
		g.err = server.Main(ctx, args, os.Stderr)
	}()
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

// probe asks /readyz or /healthz.
func (g *guard) probe(path string) bool {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", g.probePort, path))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitProbe polls a probe until it reports want.
func (g *guard) waitProbe(t *testing.T, path string, want bool, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		if g.exited() {
			return false, fmt.Errorf("guard exited: %v", g.err)
		}
		return g.probe(path) == want, nil
	})
	if err != nil {
		t.Fatalf("%s never reported ok=%v: %v", path, want, err)
	}
	return time.Since(start)
}

func (g *guard) tlsConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(g.ca)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
}

func (g *guard) url() string { return fmt.Sprintf("https://127.0.0.1:%d%s", g.port, webhook.Path) }

// decide posts a review and returns the answer.
func (g *guard) decide(t *testing.T, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: g.tlsConfig()}}
	defer c.CloseIdleConnections()
	resp, err := c.Post(g.url(), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", g.url(), err)
	}
	defer resp.Body.Close()
	return readAnswer(t, resp.Body)
}

func readAnswer(t *testing.T, r io.Reader) *admissionv1.AdmissionResponse {
	t.Helper()
	var rv admissionv1.AdmissionReview
	if err := json.NewDecoder(r).Decode(&rv); err != nil || rv.Response == nil {
		t.Fatalf("the answer is not an AdmissionReview: %v", err)
	}
	return rv.Response
}

// strictReview is a STRICT namespace-wide CREATE in ns.
func strictReview(t *testing.T, uid, ns string) []byte {
	t.Helper()
	obj := fmt.Sprintf(`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":%q},"spec":{"mtls":{"mode":"STRICT"}}}`, ns)
	r := map[string]any{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid":       uid,
			"kind":      map[string]string{"group": "security.istio.io", "version": "v1", "kind": "PeerAuthentication"},
			"resource":  map[string]string{"group": "security.istio.io", "version": "v1", "resource": "peerauthentications"},
			"namespace": ns, "name": "default", "operation": "CREATE",
			"userInfo": map[string]any{"username": "faults"},
			"dryRun":   true,
			"object":   json.RawMessage(obj),
		},
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("encoding a review: %v", err)
	}
	return b
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mkNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"istio-injection": "enabled"}}}
	if err := env.admin.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
}

// mkPod creates a pod, meshed (native sidecar) or not.
func mkPod(t *testing.T, ns, name string, meshed bool) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
	if meshed {
		always := corev1.ContainerRestartPolicyAlways
		p.Spec.InitContainers = []corev1.Container{{Name: "istio-proxy", Image: "istio/proxyv2", RestartPolicy: &always}}
	}
	if err := env.admin.Create(context.Background(), p); err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, name, err)
	}
}

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
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/internal/testenv/guardproc"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// cluster is this package's control plane.
var cluster *guardproc.Cluster

func TestMain(m *testing.M) {
	os.Exit(guardproc.Main(m, "faults", setup, teardown))
}

// setup starts etcd and an API server that can be stopped and started
// again under the guard, and installs deploy/'s RBAC.
func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	if cluster, err = guardproc.StartCluster(ctx, "faults", testenv.WithRestartableAPIServer(), testenv.WithoutAuditLog()); err != nil {
		return err
	}
	return cluster.Admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testenv.RootNamespace}})
}

func teardown() { cluster.Stop() }

// guard is one in-process `mtls-guard serve`, as the deploy/ ServiceAccount.
type guard struct{ *guardproc.Guard }

// startGuard runs server.Main with extra flags until ctx ends (or Stop),
// without waiting for readiness, and stops it when the test ends.
func startGuard(t *testing.T, ctx context.Context, extra ...string) *guard {
	t.Helper()
	o := cluster.GuardOptions(extra...)
	o.Dir, o.ShutdownTimeout = t.TempDir(), 20*time.Second
	return &guard{guardproc.StartTest(t, ctx, o)}
}

// probe asks /readyz or /healthz.
func (g *guard) probe(path string) bool {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", g.ProbePort, path))
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
		if g.Exited() {
			return false, fmt.Errorf("guard exited: %v", g.Err())
		}
		return g.probe(path) == want, nil
	})
	if err != nil {
		t.Fatalf("%s never reported ok=%v: %v", path, want, err)
	}
	return time.Since(start)
}

func (g *guard) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: g.RootCAs(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
}

// decide posts a review and returns the answer.
func (g *guard) decide(t *testing.T, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: g.tlsConfig()}}
	defer c.CloseIdleConnections()
	resp, err := c.Post(g.URL(webhook.Path), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", g.URL(webhook.Path), err)
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

func mkNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"istio-injection": "enabled"}}}
	if err := cluster.Admin.Create(context.Background(), ns); err != nil {
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
	if err := cluster.Admin.Create(context.Background(), p); err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, name, err)
	}
}

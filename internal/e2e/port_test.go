package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// meshWideReview is a mesh-wide STRICT CREATE in the root namespace, as
// anyone who reaches the port could POST it.
func meshWideReview(uid string) []byte {
	return []byte(reviewWith(uid, func(r map[string]any) {
		req := r["request"].(map[string]any)
		req["namespace"], req["dryRun"] = rootNamespace, true
		req["userInfo"] = map[string]any{"username": "e2e-anyone"}
		req["object"] = json.RawMessage(fmt.Sprintf(`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":%q},"spec":{"mtls":{"mode":"STRICT"}}}`, rootNamespace))
	}))
}

// TestClientCertRequired: with --client-ca-file the webhook port refuses,
// at the TLS layer, a client without a certificate signed by that CA,
// while the API server (given one through its admission configuration)
// still gets decisions.
func TestClientCertRequired(t *testing.T) {
	g := startGuard(t, guardOptions{extra: []string{"--client-ca-file", suite.clientCAFile}})

	t.Run("a client without a certificate gets no answer", func(t *testing.T) {
		hc := g.httpsClient()
		defer hc.CloseIdleConnections()
		resp, err := hc.Post(g.URL(webhook.Path), "application/json", bytes.NewReader(meshWideReview("no-cert")))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Fatalf("a client without a certificate was answered: HTTP %d %s", resp.StatusCode, body)
		}
		t.Logf("refused: %v", err)
		// The refusal is TLS's: the handshake, or the first read after it
		// under TLS 1.3, fails for want of a certificate.
		conn, err := dialTLS(g, &tls.Config{NextProtos: []string{"http/1.1"}})
		if err == nil {
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
			_, err = conn.Read(make([]byte, 1))
		}
		if err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Errorf("TLS without a client certificate: %v, want the server's certificate-required alert", err)
		}
	})

	t.Run("the API server gets decisions", func(t *testing.T) {
		const label = "mtls-guard-e2e/client-cert"
		ns := namespace(t, "client-cert", map[string]string{"istio-injection": "enabled", label: "true"})
		create(t, pod(ns, "legacy", nil, unmeshed))
		name := registerScopedWebhook(t, g, "client-cert.e2e.mtls-guard.io", label)
		var last request
		err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			last = createAs(suite.Admin, pa(ns, "default", "STRICT"), client.DryRunAll)
			if last.AuditID == "" {
				return false, nil
			}
			ev, err := suite.Audit.ByAuditID(context.Background(), last.AuditID)
			if err != nil {
				return false, err
			}
			return ev.Annotations[name+"/"+webhook.AuditDecision] == webhook.OutcomeDenied, nil
		})
		if err != nil {
			t.Fatalf("the guard that requires client certificates never decided through the API server: %v (last: %v)", err, last.Err)
		}
	})
}

// TestAnswersAreBounded: a mesh-wide review over a cluster with more
// than engine.MaxListed unmeshed workloads lists at most MaxListed causes
// and one that counts the rest; the audit annotation is bounded too.
func TestAnswersAreBounded(t *testing.T) {
	ns := namespace(t, "bounded", injected)
	const n = engine.MaxListed + 3
	for i := range n {
		create(t, pod(ns, fmt.Sprintf("bare-%02d", i), nil, unmeshed))
	}
	var resp *admissionv1.AdmissionResponse
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		_, resp = post(t, suite.guard, meshWideReview("bounded"))
		return strings.Contains(resp.Result.Message, ns+"/"), nil
	})
	if err != nil {
		t.Fatalf("the guard never saw the %d pods of %s: %v", n, ns, err)
	}
	if resp.Allowed || resp.Result.Details == nil {
		t.Fatalf("mesh-wide STRICT over %d unmeshed pods: %+v", n, resp.Result)
	}
	causes := resp.Result.Details.Causes
	if len(causes) != engine.MaxListed+1 {
		t.Fatalf("%d causes, want %d listed and one for the rest", len(causes), engine.MaxListed)
	}
	for _, c := range causes[:engine.MaxListed] {
		if c.Type != webhook.CauseUnmeshedWorkload {
			t.Errorf("cause %+v, want type %s", c, webhook.CauseUnmeshedWorkload)
		}
	}
	if last := causes[engine.MaxListed]; last.Type != webhook.CauseMoreWorkloads {
		t.Errorf("last cause %+v, want type %s", last, webhook.CauseMoreWorkloads)
	}

	// Through the API server, the audit annotation is bounded the same way.
	r := createAs(suite.Admin, pa(rootNamespace, "default", "STRICT"), client.DryRunAll)
	got := r.mustDecide(t, webhook.OutcomeDenied)[webhook.AuditUnmeshed]
	if listed := strings.Split(got, ","); len(listed) != engine.MaxListed+1 || !strings.HasSuffix(got, " more)") {
		t.Errorf("%s lists %d entries: %q; want %d and a count of the rest", webhook.AuditUnmeshed, len(listed), got, engine.MaxListed)
	}
}

// scrape GETs a guard's /metrics with a bearer token ("" for none) and
// returns the HTTP status.
func scrape(t *testing.T, g *guard, token string) int {
	t.Helper()
	if g.MetricsPort == 0 {
		t.Fatal("the guard serves no /metrics")
	}
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/metrics", g.MetricsPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := g.httpsClient()
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// scrapeUntil polls /metrics until it answers want: a new RBAC binding
// takes a moment to reach the API server's authorizer.
func scrapeUntil(t *testing.T, g *guard, token string, want int) {
	t.Helper()
	var last int
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		last = scrape(t, g, token)
		return last == want, nil
	})
	if err != nil {
		t.Fatalf("/metrics answered HTTP %d, want %d: %v", last, want, err)
	}
}

// TestMetricsNeedAuthorization: /metrics is served over HTTPS to callers
// whose token the API server authenticates and authorises.
func TestMetricsNeedAuthorization(t *testing.T) {
	if code := scrape(t, suite.guard, ""); code != http.StatusUnauthorized {
		t.Errorf("without a token: HTTP %d, want 401", code)
	}
	// controller-runtime's filter answers a token the API server rejects
	// with an error as 500, not 401; either way, no metrics.
	if code := scrape(t, suite.guard, "not-a-token"); code == http.StatusOK {
		t.Errorf("with a made-up token: HTTP %d", code)
	}
	if code := scrape(t, suite.guard, serviceAccountToken(t, "no-metrics")); code != http.StatusForbidden {
		t.Errorf("with a token of a ServiceAccount without mtls-guard-metrics-reader: HTTP %d, want 403", code)
	}
	scrapeUntil(t, suite.guard, metricsReaderToken(t), http.StatusOK)
	// Plain HTTP gets nothing.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", suite.guard.MetricsPort))
	if err == nil {
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("/metrics answered over plain HTTP")
		}
	}
}

// TestSelfCheckSeesAKSSelector registers a webhook configuration whose
// namespaceSelector AKS's admissions enforcer would have rewritten, with
// the root namespace labelled as AKS labels its own: the guard reading it
// back is not ready, says which namespace it cannot see, and counts the
// problem in mtls_guard_webhook_config_problems.
func TestSelfCheckSeesAKSSelector(t *testing.T) {
	ctx := context.Background()
	setRootLabel := func(v string) error {
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"kubernetes.azure.com/managedby":`+v+`}}}`))
		return suite.Admin.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rootNamespace}}, patch)
	}
	if err := setRootLabel(`"aks"`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := setRootLabel("null"); err != nil {
			t.Errorf("removing the label from %s: %v", rootNamespace, err)
		}
	})

	const name = "mtls-guard-aks"
	vwc := suite.Deploy.Webhook.DeepCopy()
	vwc.ObjectMeta = metav1.ObjectMeta{Name: name}
	ignore := admissionregistrationv1.Ignore
	for i := range vwc.Webhooks {
		w := &vwc.Webhooks[i]
		w.Name = fmt.Sprintf("aks-%d.e2e.mtls-guard.io", i)
		// Never called for real: an unreachable URL, ignored on failure.
		url := "https://127.0.0.1:1/unused"
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: suite.guard.Bundle.CACert}
		w.FailurePolicy = &ignore
		// What the enforcer adds to every webhook without the annotation.
		w.NamespaceSelector.MatchExpressions = append(w.NamespaceSelector.MatchExpressions,
			metav1.LabelSelectorRequirement{Key: "control-plane", Operator: metav1.LabelSelectorOpDoesNotExist},
			metav1.LabelSelectorRequirement{Key: "kubernetes.azure.com/managedby", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"aks"}},
		)
	}
	create(t, vwc)
	t.Cleanup(func() {
		if err := suite.Admin.Delete(context.Background(), vwc); err != nil {
			t.Errorf("removing webhook configuration %s: %v", name, err)
		}
	})

	// The guard reads configurations by name; its ServiceAccount may read
	// only deploy/'s, so this one runs as the admin.
	g := startGuard(t, guardOptions{kubeconfig: suite.AdminConfig, noWait: true, extra: []string{"--webhook-config-name", name}})
	var body string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if g.Exited() {
			return false, fmt.Errorf("guard exited: %v", g.Err())
		}
		code, b, err := probe(ctx, g, "/readyz/webhook-config")
		body = b
		return err == nil && code == http.StatusInternalServerError && strings.Contains(b, name), nil
	})
	if err != nil {
		t.Fatalf("/readyz/webhook-config never failed (last body %q): %v", body, err)
	}
	if !strings.Contains(body, rootNamespace) {
		t.Errorf("/readyz/webhook-config does not name the root namespace %s: %q", rootNamespace, body)
	}
	if ready, _ := g.Ready(ctx); ready {
		t.Error("/readyz is OK although the configuration hides the root namespace")
	}
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		var m dto.Metric
		if err := server.WebhookConfigProblems.Write(&m); err != nil {
			return false, err
		}
		return m.GetGauge().GetValue() > 0, nil
	})
	if err != nil {
		t.Errorf("mtls_guard_webhook_config_problems never rose above 0: %v", err)
	}
	// deploy/'s own configuration hides nothing: the shared guard is ready.
	if code, b, err := probe(ctx, suite.guard, "/readyz/webhook-config"); err != nil || code != http.StatusOK {
		t.Errorf("the shared guard's /readyz/webhook-config: %d %q %v", code, b, err)
	}
}

// probe GETs a path of a guard's health probe port.
func probe(ctx context.Context, g *guard, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(g.ProbePort)+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// registerScopedWebhook registers a copy of deploy/'s webhook
// configuration that calls g for the namespaces labelled label=true only,
// removes it when the test ends, and returns the webhook's name.
func registerScopedWebhook(t *testing.T, g *guard, name, label string) string {
	t.Helper()
	vwc := suite.Deploy.Webhook.DeepCopy()
	if len(vwc.Webhooks) < 1 {
		t.Fatal("deploy/'s webhook configuration has no webhook")
	}
	vwc.Webhooks = vwc.Webhooks[:1]
	url := g.URL(webhook.Path)
	vwc.ObjectMeta = metav1.ObjectMeta{Name: name}
	w := &vwc.Webhooks[0]
	w.Name = name
	w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: g.Bundle.CACert}
	w.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{label: "true"}}
	create(t, vwc)
	t.Cleanup(func() {
		if err := suite.Admin.Delete(context.Background(), vwc); err != nil {
			t.Errorf("removing webhook configuration %s: %v", name, err)
		}
	})
	return name
}

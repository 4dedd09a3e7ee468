package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// TestWebhookServerKeepsControllerRuntimeMetrics: hooks registered on the
// guard's own server are counted in controller-runtime's webhook metrics.
func TestWebhookServerKeepsControllerRuntimeMetrics(t *testing.T) {
	const path = "/metrics-probe"
	s := NewWebhookServer(WebhookOptions{Log: logr.Discard()})
	s.Register(path, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	rec := httptest.NewRecorder()
	s.WebhookMux().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, nil))
	if rec.Code != http.StatusTeapot {
		t.Fatalf("hook not served: %d", rec.Code)
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "controller_runtime_webhook_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["webhook"] == path && labels["code"] == "418" && m.GetCounter().GetValue() == 1 {
				return
			}
		}
	}
	t.Fatal("controller_runtime_webhook_requests_total{webhook=/metrics-probe,code=418} was not counted")
}

package webhook_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// TestHTTPHandler: what the guard answers before the handler decides. A
// review is decided and answered as admission.k8s.io/v1 with its UID;
// whatever cannot be read as one (too large, empty, not JSON, another
// kind or version, another content type) gets an error, never an
// allowance.
func TestHTTPHandler(t *testing.T) {
	h := &webhook.Handler{Reader: fixtureReader(t), Decide: fixtureDecide(t, engine.DefaultOptions()), Options: engine.DefaultOptions(), Log: logr.Discard()}
	srv := webhook.NewHTTPHandler(h, logr.Discard())
	const good = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"security.istio.io","version":"v1","kind":"PeerAuthentication"},"operation":"CREATE","namespace":"meshed","object":{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default"},"spec":{"mtls":{"mode":"STRICT"}}}}}`
	for _, tc := range []struct {
		name        string
		body        io.Reader
		contentType string
		wantAllowed bool
		wantCode    int32
		wantUID     string
	}{
		{"a decision", strings.NewReader(good), "application/json", true, 200, "u1"},
		{"a denial", strings.NewReader(strings.Replace(good, `"meshed"`, `"legacy"`, 1)), "application/json", false, 403, "u1"},
		{"body over the limit", io.MultiReader(strings.NewReader(`{"request":{"uid":"big","x":"`), strings.NewReader(strings.Repeat("x", webhook.MaxRequestBytes))), "application/json", false, 413, ""},
		{"empty body", strings.NewReader(""), "application/json", false, 400, ""},
		{"wrong content type", strings.NewReader(good), "text/plain", false, 400, ""},
		{"truncated", strings.NewReader(good[:120]), "application/json", false, 400, ""},
		{"no request.uid", strings.NewReader(strings.Replace(good, `"uid":"u1",`, "", 1)), "application/json", false, 400, ""},
		{"an object that is not an AdmissionReview", strings.NewReader(`{"apiVersion":"v1","kind":"Pod"`), "application/json", false, 400, ""},
		{"request is not an object", strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":7}`), "application/json", false, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, webhook.Path, tc.body)
			r.Header.Set("Content-Type", tc.contentType)
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				t.Errorf("HTTP %d, want 200", rec.Code)
			}
			var out admissionv1.AdmissionReview
			if err := json.NewDecoder(bytes.NewReader(rec.Body.Bytes())).Decode(&out); err != nil || out.Response == nil {
				t.Fatalf("not an AdmissionReview (%v): %s", err, rec.Body.Bytes())
			}
			resp := out.Response
			if resp.Allowed != tc.wantAllowed || resp.Result == nil || resp.Result.Code != tc.wantCode {
				t.Errorf("allowed=%v %+v, want allowed=%v code %d", resp.Allowed, resp.Result, tc.wantAllowed, tc.wantCode)
			}
			if string(resp.UID) != tc.wantUID {
				t.Errorf("UID %q, want %q", resp.UID, tc.wantUID)
			}
			if tc.wantUID != "" && (out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview") {
				t.Errorf("answered as %q %q, want an admission.k8s.io/v1 AdmissionReview", out.APIVersion, out.Kind)
			}
		})
	}
}

package webhook_test

import (
	"bytes"
	"encoding/json"
	"errors"
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

// unreadable fails the test if the handler reads the body.
type unreadable struct{ t *testing.T }

func (u unreadable) Read([]byte) (int, error) {
	u.t.Error("the body of an oversized request was read")
	return 0, errors.New("must not be read")
}

// TestHTTPHandler: what the guard answers before the handler decides:
// oversized bodies refused unread, bodies that are no JSON v1 or v1beta1
// AdmissionReview refused with the UID echoed when the body names one.
func TestHTTPHandler(t *testing.T) {
	h := &webhook.Handler{Reader: fixtureReader(t), Decide: fixtureDecide(t, engine.DefaultOptions()), Options: engine.DefaultOptions(), Log: logr.Discard()}
	srv := webhook.NewHTTPHandler(h, logr.Discard())
	const good = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"security.istio.io","version":"v1","kind":"PeerAuthentication"},"operation":"CREATE","namespace":"meshed","object":{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default"},"spec":{"mtls":{"mode":"STRICT"}}}}}`
	for _, tc := range []struct {
		name        string
		body        io.Reader
		length      int64 // Content-Length; -1 unknown (chunked)
		contentType string
		wantAllowed bool
		wantCode    int32
		wantMsg     string
		wantUID     string
		wantVersion string
	}{
		{"a decision", strings.NewReader(good), int64(len(good)), "application/json", true, 200, "allowed", "u1", "admission.k8s.io/v1"},
		{"v1beta1 answered in v1beta1", strings.NewReader(strings.Replace(good, "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1)), -1, "application/json", true, 200, "allowed", "u1", "admission.k8s.io/v1beta1"},
		{"Content-Length over the limit: refused unread", unreadable{t}, webhook.MaxRequestBytes + 1, "application/json", false, 413, "Content-Length 7340033 bytes; limit is 7340032", "", "admission.k8s.io/v1"},
		{"chunked body over the limit", io.MultiReader(strings.NewReader(`{"request":{"uid":"big","x":"`), strings.NewReader(strings.Repeat("x", webhook.MaxRequestBytes))), -1, "application/json", false, 413, "too large", "", "admission.k8s.io/v1"},
		{"empty body", strings.NewReader(""), 0, "application/json", false, 400, "request body is empty", "", "admission.k8s.io/v1"},
		{"wrong content type", strings.NewReader(good), int64(len(good)), "text/plain", false, 400, "contentType=text/plain", "u1", "admission.k8s.io/v1"},
		{"truncated after the UID", strings.NewReader(good[:120]), 120, "application/json", false, 400, "not a JSON AdmissionReview", "u1", "admission.k8s.io/v1"},
		{"UID in a nested object only", strings.NewReader(`{"x":{"request":{"uid":"no"}},"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{"uid":"no"}}}`), -1, "application/json", false, 400, "no request.uid", "", "admission.k8s.io/v1"},
		{"AdmissionReview v2", strings.NewReader(strings.Replace(good, "admission.k8s.io/v1", "admission.k8s.io/v2", 1)), -1, "application/json", false, 400, "unsupported AdmissionReview version", "u1", "admission.k8s.io/v1"},
		{"request.kind is not a review's kind", strings.NewReader(strings.Replace(good, `"kind":"AdmissionReview"`, `"kind":"Status"`, 1)), -1, "application/json", false, 400, `kind "Status"`, "u1", "admission.k8s.io/v1"},
		{"case matters, as to the API server", strings.NewReader(strings.Replace(good, `"apiVersion"`, `"APIVersion"`, 1)), -1, "application/json", false, 400, "unsupported AdmissionReview version", "u1", "admission.k8s.io/v1"},
		{"request is not an object", strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":7}`), -1, "application/json", false, 400, "", "", "admission.k8s.io/v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, webhook.Path, tc.body)
			r.ContentLength = tc.length
			r.Header.Set("Content-Type", tc.contentType)
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("HTTP %d %q, want 200 application/json", rec.Code, rec.Header().Get("Content-Type"))
			}
			var out admissionv1.AdmissionReview
			if err := json.NewDecoder(bytes.NewReader(rec.Body.Bytes())).Decode(&out); err != nil || out.Response == nil {
				t.Fatalf("not an AdmissionReview (%v): %s", err, rec.Body.Bytes())
			}
			resp := out.Response
			if resp.Allowed != tc.wantAllowed || resp.Result == nil || resp.Result.Code != tc.wantCode || !strings.Contains(resp.Result.Message, tc.wantMsg) {
				t.Errorf("allowed=%v %+v, want allowed=%v code %d with %q", resp.Allowed, resp.Result, tc.wantAllowed, tc.wantCode, tc.wantMsg)
			}
			if string(resp.UID) != tc.wantUID {
				t.Errorf("UID %q, want %q", resp.UID, tc.wantUID)
			}
			if out.APIVersion != tc.wantVersion || out.Kind != "AdmissionReview" {
				t.Errorf("answered as %s %s, want %s AdmissionReview", out.APIVersion, out.Kind, tc.wantVersion)
			}
		})
	}
}

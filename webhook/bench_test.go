package webhook_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/index/clustergen"
	"github.com/mtls-guard/mtls-guard/internal/policy"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// ssaReview is the AdmissionReview the API server sends for a server-side
// dry-run apply of pa: the object carries its managedFields.
func ssaReview(b *testing.B, obj map[string]any) []byte {
	b.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		b.Fatal(err)
	}
	yes := true
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:             "705ab4f5-6393-11e8-b7cc-42010a800002",
			Kind:            metav1.GroupVersionKind{Group: policy.GroupName, Version: "v1", Kind: policy.Kind},
			Resource:        metav1.GroupVersionResource{Group: policy.GroupName, Version: "v1", Resource: "peerauthentications"},
			RequestKind:     &metav1.GroupVersionKind{Group: policy.GroupName, Version: "v1", Kind: policy.Kind},
			RequestResource: &metav1.GroupVersionResource{Group: policy.GroupName, Version: "v1", Resource: "peerauthentications"},
			Namespace:       "ns-0000", Name: "default",
			Operation: admissionv1.Create,
			UserInfo:  authenticationv1.UserInfo{Username: "system:admin", Groups: []string{"system:masters", "system:authenticated"}},
			Object:    runtime.RawExtension{Raw: raw},
			DryRun:    &yes,
			Options:   runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1","dryRun":["All"],"fieldManager":"kubectl"}`)},
		},
	}
	body, err := json.Marshal(ar)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkServeHTTP is the guard's side of one admission call: the HTTP
// handler as served (body checks, decoding, decision on an index of 10k
// pods, JSON log line, metrics, answer) for a namespace-wide STRICT that
// is denied.
func BenchmarkServeHTTP(b *testing.B) {
	gen := clustergen.New(clustergen.Config{Pods: 10000, Namespaces: 100})
	ix := index.New(engine.DefaultOptions())
	for _, o := range gen.Objects() {
		ix.Add(o)
	}
	log := zap.New(zap.WriteTo(io.Discard))
	h := &webhook.Handler{Decide: ix.Decide, Options: engine.DefaultOptions(), Log: log}
	srv := webhook.NewHTTPHandler(h, log)
	obj := map[string]any{
		"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
		"metadata": map[string]any{
			"name": "default", "namespace": "ns-0000", "generation": 1, "creationTimestamp": "2026-11-27T07:00:00Z",
			"uid": "2b1c4f0e-9d7c-4a53-9a52-0f1b8f5e2d11",
			"managedFields": []any{map[string]any{
				"manager": "kubectl", "operation": "Apply", "apiVersion": "security.istio.io/v1", "time": "2026-11-27T07:00:00Z",
				"fieldsType": "FieldsV1", "fieldsV1": map[string]any{"f:spec": map[string]any{"f:mtls": map[string]any{"f:mode": map[string]any{}}}},
			}},
		},
		"spec": map[string]any{"mtls": map[string]any{"mode": "STRICT"}},
	}
	body := ssaReview(b, obj)
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, webhook.Path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(`"allowed":false`)) {
			b.Fatalf("got %d %s", w.Code, w.Body)
		}
	}
}

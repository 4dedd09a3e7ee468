package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// FuzzArrivalHTTP: the arrivals webhook's one-pass pod decoding
// (NewArrivalHTTPHandler) answers every body exactly as
// controller-runtime's admission.Webhook alone (NewHTTPHandler) does: the
// same status and the same AdmissionReview, byte for byte, whether the
// body is a pod review, a workload, another version or garbage. The seeds
// are the reviews the API server sends, with the variants that must take
// the slow path.
func FuzzArrivalHTTP(f *testing.F) {
	ix := index.New(engine.DefaultOptions())
	for _, o := range append(fixtureObjects(), paObj(nsLegacy, "default", "STRICT", t0, nil, nil)) {
		ix.Add(o)
	}
	h := &webhook.ArrivalHandler{
		Synced:    func(context.Context) error { return nil },
		DecidePod: ix.DecidePod, DecideTemplate: ix.DecideTemplate, Owner: ix.Owner,
		Pods: webhook.ActionDeny, Workloads: webhook.ActionWarn, Log: logr.Discard(),
	}
	served, plain := webhook.NewArrivalHTTPHandler(h, logr.Discard()), webhook.NewHTTPHandler(h, logr.Discard())

	pod, _ := deploymentPod(nsLegacy, "batch", false)
	pod.Annotations = map[string]string{mesh.InjectKey: "false"}
	meshed, _ := deploymentPod(nsLegacy, "web", true)
	exempt := podObj(nsLegacy, "debug", map[string]string{mesh.ExemptLabel: "true"}, false)
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsLegacy, Name: "batch"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "batch", mesh.InjectKey: "false"}},
		}},
	}
	podKind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	for _, seed := range []string{
		arrivalReview(f, podKind, pod),
		arrivalReview(f, podKind, meshed),
		arrivalReview(f, podKind, exempt),
		arrivalReview(f, metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, deploy),
		strings.Replace(arrivalReview(f, podKind, pod), `"admission.k8s.io/v1"`, `"admission.k8s.io/v1beta1"`, 1),
		strings.Replace(arrivalReview(f, podKind, pod), `"uid":"u1",`, "", 1),
		strings.Replace(arrivalReview(f, podKind, pod), `"metadata"`, `"Metadata"`, 1),
		strings.Replace(arrivalReview(f, podKind, pod), `"namespace":"legacy","labels"`, `"namespace":7,"labels"`, 1),
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"legacy","object":null}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":7}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
		`{`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		answer := func(srv http.Handler) *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodPost, webhook.ArrivalPath, bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, r)
			return w
		}
		got, want := answer(served), answer(plain)
		if got.Code != want.Code || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Fatalf("served %d %s\nadmission.Webhook %d %s", got.Code, got.Body, want.Code, want.Body)
		}
	})
}

// arrivalReview is the AdmissionReview the API server sends when obj, of
// kind, is created.
func arrivalReview(tb testing.TB, kind metav1.GroupVersionKind, obj runtime.Object) string {
	tb.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		tb.Fatal(err)
	}
	no := false
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "u1", Kind: kind, Namespace: nsLegacy, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw}, DryRun: &no,
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return string(body)
}

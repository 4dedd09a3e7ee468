package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// arrivalRequest is the admission request for creating obj.
func arrivalRequest(t *testing.T, kind metav1.GroupVersionKind, ns, name string, obj runtime.Object, dryRun bool) admission.Request {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: types.UID("uid-" + name), Kind: kind, Namespace: ns, Name: name, Operation: admissionv1.Create,
		Object: runtime.RawExtension{Raw: raw}, DryRun: &dryRun,
	}}
}

// TestArrivals: pods and workload templates that arrive unmeshed where
// STRICT already holds are warned about (with an Event on the workload) or
// refused, by setting; everything else, and anything the guard cannot
// judge, is admitted.
func TestArrivals(t *testing.T) {
	podKind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	deployKind := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	strictLegacy := paObj(nsLegacy, "default", "STRICT", t0, nil, nil)
	debug := podObj(nsLegacy, "debug", nil, false)
	meshed := podObj(nsLegacy, "fine", nil, true)
	permissive := podObj(nsMeshed, "debug", nil, false)
	optOut := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsLegacy, Name: "batch", UID: "u-batch"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "batch", mesh.InjectKey: "false"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		}},
	}
	for _, tc := range []struct {
		name        string
		pods, wls   webhook.Action
		req         admission.Request
		synced      error
		wantAllowed bool
		wantOutcome string // audit decision; "" for none
		wantEvent   bool
	}{
		{"unmeshed pod under STRICT: warned", webhook.ActionWarn, webhook.ActionWarn, arrivalRequest(t, podKind, nsLegacy, "debug", debug, false), nil, true, webhook.OutcomeWarned, true},
		{"the same, dry run: no Event", webhook.ActionWarn, webhook.ActionWarn, arrivalRequest(t, podKind, nsLegacy, "debug", debug, true), nil, true, webhook.OutcomeWarned, false},
		{"unmeshed pod under STRICT: denied", webhook.ActionDeny, webhook.ActionWarn, arrivalRequest(t, podKind, nsLegacy, "debug", debug, false), nil, false, webhook.OutcomeDenied, true},
		{"meshed pod: nothing", webhook.ActionDeny, webhook.ActionDeny, arrivalRequest(t, podKind, nsLegacy, "fine", meshed, false), nil, true, "", false},
		{"unmeshed pod where nothing is STRICT: nothing", webhook.ActionDeny, webhook.ActionDeny, arrivalRequest(t, podKind, nsMeshed, "debug", permissive, false), nil, true, "", false},
		{"pods off", webhook.ActionOff, webhook.ActionDeny, arrivalRequest(t, podKind, nsLegacy, "debug", debug, false), nil, true, "", false},
		{"guard not synced: admitted even under deny", webhook.ActionDeny, webhook.ActionDeny, arrivalRequest(t, podKind, nsLegacy, "debug", debug, false), webhook.ErrNotSynced, true, webhook.OutcomeUnjudged, false},
		{"Deployment opting out: warned", webhook.ActionDeny, webhook.ActionWarn, arrivalRequest(t, deployKind, nsLegacy, "batch", optOut, false), nil, true, webhook.OutcomeWarned, true},
		{"Deployment opting out: denied", webhook.ActionWarn, webhook.ActionDeny, arrivalRequest(t, deployKind, nsLegacy, "batch", optOut, false), nil, false, webhook.OutcomeDenied, true},
		{"undecodable: admitted", webhook.ActionDeny, webhook.ActionDeny, func() admission.Request {
			r := arrivalRequest(t, podKind, nsLegacy, "debug", debug, false)
			r.Object.Raw = []byte("{")
			return r
		}(), nil, true, webhook.OutcomeUnjudged, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := engine.DefaultOptions()
			ix := index.New(opts)
			for _, o := range append(fixtureObjects(), strictLegacy) {
				ix.Add(o)
			}
			rec := events.NewFakeRecorder(10)
			h := &webhook.ArrivalHandler{
				Synced:    func(context.Context) error { return tc.synced },
				DecidePod: ix.DecidePod, DecideTemplate: ix.DecideTemplate, Owner: ix.Owner,
				Pods: tc.pods, Workloads: tc.wls, Recorder: rec, Log: logr.Discard(),
			}
			resp := h.Handle(context.Background(), tc.req)
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("allowed = %v, want %v: %+v", resp.Allowed, tc.wantAllowed, resp.Result)
			}
			if !resp.Allowed && resp.Result.Code != http.StatusForbidden {
				t.Errorf("code %d, want 403", resp.Result.Code)
			}
			if got := resp.AuditAnnotations[webhook.AuditDecision]; got != tc.wantOutcome {
				t.Errorf("audit decision %q, want %q", got, tc.wantOutcome)
			}
			if warned := len(resp.Warnings) > 0; warned != (tc.wantOutcome == webhook.OutcomeWarned) {
				t.Errorf("warnings %q", resp.Warnings)
			}
			if got := len(rec.Events); (got == 1) != tc.wantEvent || got > 1 {
				t.Errorf("%d Events, want one: %v", got, tc.wantEvent)
			}
		})
	}
}

// TestArrivalOwner: a pod's Event goes to its Deployment, through the
// ReplicaSet the index holds, with the Deployment's UID, so that
// kubectl describe deployment shows it.
func TestArrivalOwner(t *testing.T) {
	ix := index.New(engine.DefaultOptions())
	pod, rs := deploymentPod(nsLegacy, "old", false)
	ix.Add(rs)
	got := ix.Owner(pod)
	want := corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: nsLegacy, Name: "old", UID: rs.OwnerReferences[0].UID}
	if got != want {
		t.Fatalf("owner %+v, want %+v", got, want)
	}
	bare := podObj(nsLegacy, "bare", nil, false)
	if got := ix.Owner(bare); got.Kind != "Pod" || got.Name != "bare" {
		t.Fatalf("owner of a bare pod %+v", got)
	}
}

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
		sameAnswer(t, served, plain, "application/json", func() io.Reader { return bytes.NewReader(body) })
	})
}

// TestArrivalHTTPEdges: what the fuzzer cannot send gets the same answer
// on both paths too: another content type, a body over the limit, none.
func TestArrivalHTTPEdges(t *testing.T) {
	h := &webhook.ArrivalHandler{Pods: webhook.ActionDeny, Workloads: webhook.ActionDeny, Log: logr.Discard()}
	served, plain := webhook.NewArrivalHTTPHandler(h, logr.Discard()), webhook.NewHTTPHandler(h, logr.Discard())
	pod := podObj(nsLegacy, "debug", nil, false)
	review := arrivalReview(t, metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, pod)
	for _, tc := range []struct {
		name, contentType string
		body              func() io.Reader
	}{
		{"another content type", "text/plain", func() io.Reader { return strings.NewReader(review) }},
		{"body over the limit", "application/json", func() io.Reader {
			return io.MultiReader(strings.NewReader(review[:len(review)-2]+`,"x":"`), strings.NewReader(strings.Repeat("x", webhook.MaxRequestBytes)))
		}},
		{"no body", "application/json", func() io.Reader { return http.NoBody }},
	} {
		t.Run(tc.name, func(t *testing.T) { sameAnswer(t, served, plain, tc.contentType, tc.body) })
	}
}

// sameAnswer fails t unless served and plain answer a POST of body with
// the same status and the same bytes, and the answer is not an allowance.
func sameAnswer(t *testing.T, served, plain http.Handler, contentType string, body func() io.Reader) {
	t.Helper()
	answer := func(srv http.Handler) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, webhook.ArrivalPath, body())
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		return w
	}
	got, want := answer(served), answer(plain)
	if got.Code != want.Code || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
		t.Fatalf("served %d %s\nadmission.Webhook %d %s", got.Code, got.Body, want.Code, want.Body)
	}
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

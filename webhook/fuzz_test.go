package webhook_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/policy"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// fuzzOverrideGroups is --override-groups for FuzzHandle.
var fuzzOverrideGroups = []string{"mesh-admins"}

// FuzzHandle sends arbitrary bytes as the body of an admission request
// through the handler the guard serves (webhook.NewHTTPHandler around
// controller-runtime's admission.Webhook) over the fixture cluster. It must
// never panic and always answer an AdmissionReview; it must never allow
// unless the body is a PeerAuthentication request that engine.Decide, on
// the same cluster, allows; and when the body is such a request, the answer
// must be the engine's, with the request's UID. The seed corpus is in
// testdata/fuzz/FuzzHandle; `make fuzz` searches further.
func FuzzHandle(f *testing.F) {
	snap := fixtureSnapshot(f)
	opts := engine.DefaultOptions()
	h := &webhook.Handler{Reader: fixtureReader(f), Decide: fixtureDecide(f, opts), Options: opts, OverrideGroups: fuzzOverrideGroups, Log: logr.Discard()}
	srv := webhook.NewHTTPHandler(h, logr.Discard())
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, webhook.Path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		srv.ServeHTTP(rec, r)
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("answer is not an AdmissionReview (%v): %q", err, rec.Body.Bytes())
		}
		if rec.Code != http.StatusOK || out.APIVersion == "" || out.Kind != "AdmissionReview" {
			t.Fatalf("HTTP %d, apiVersion %q kind %q", rec.Code, out.APIVersion, out.Kind)
		}
		resp := out.Response
		req, ok := decodeReview(body)
		if !ok {
			if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest {
				t.Fatalf("a body that is no AdmissionReview was answered %+v", resp)
			}
			return
		}
		if resp.UID != req.UID {
			t.Fatalf("answer UID %q, want the request's %q", resp.UID, req.UID)
		}
		want, code := expectedDecision(t, snap, opts, req)
		if want == nil {
			if resp.Allowed || resp.Result == nil || resp.Result.Code != code {
				t.Fatalf("an undecidable request was answered %+v, want code %d", resp.Result, code)
			}
			return
		}
		if resp.Allowed != want.Allowed || resp.Result == nil || resp.Result.Message != want.Message {
			t.Fatalf("answer allowed=%v %+v\nwant the engine's allowed=%v %q", resp.Allowed, resp.Result, want.Allowed, want.Message)
		}
		if len(resp.Warnings) != len(want.Warnings) {
			t.Fatalf("warnings %q, want %q", resp.Warnings, want.Warnings)
		}
	})
}

// admissionCodecs decode AdmissionReviews the way controller-runtime does.
var admissionCodecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	utilruntime.Must(admissionv1.AddToScheme(s))
	utilruntime.Must(admissionv1beta1.AddToScheme(s))
	return serializer.NewCodecFactory(s)
}()

// anyReview decodes v1 and v1beta1 AdmissionReviews alike, as
// controller-runtime's unversionedAdmissionReview does.
type anyReview struct{ admissionv1.AdmissionReview }

var _ runtime.Object = &anyReview{}

// decodeReview decodes a body into its AdmissionRequest, independently of
// the handler under test.
func decodeReview(body []byte) (*admissionv1.AdmissionRequest, bool) {
	if len(body) == 0 || len(body) > webhook.MaxRequestBytes {
		return nil, false
	}
	// Only JSON reviews of the versions the API server speaks.
	var tm metav1.TypeMeta
	if err := utiljson.Unmarshal(body, &tm); err != nil || tm.Kind != "AdmissionReview" ||
		(tm.APIVersion != "admission.k8s.io/v1" && tm.APIVersion != "admission.k8s.io/v1beta1") {
		return nil, false
	}
	req := &admissionv1.AdmissionRequest{}
	ar := anyReview{}
	ar.Request = req
	ar.SetGroupVersionKind(admissionv1.SchemeGroupVersion.WithKind("AdmissionReview"))
	if _, _, err := admissionCodecs.UniversalDeserializer().Decode(body, nil, &ar); err != nil {
		return nil, false
	}
	return req, true
}

// expectedDecision is what the handler must answer: the engine's decision
// on the snapshot, or nil and the error code for a request it cannot
// decide.
func expectedDecision(t *testing.T, snap *engine.Snapshot, opts engine.Options, req *admissionv1.AdmissionRequest) (*engine.Decision, int32) {
	t.Helper()
	gvk := schema.GroupVersionKind{Group: req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind}
	if req.UID == "" || !policy.IsPeerAuthentication(gvk) {
		return nil, http.StatusBadRequest
	}
	ops := map[admissionv1.Operation]engine.Operation{admissionv1.Create: engine.Create, admissionv1.Update: engine.Update, admissionv1.Delete: engine.Delete}
	op, ok := ops[req.Operation]
	if !ok {
		return nil, http.StatusBadRequest
	}
	raw := req.Object.Raw
	if op == engine.Delete {
		raw = req.OldObject.Raw
	}
	if len(raw) == 0 {
		return nil, http.StatusBadRequest
	}
	p, err := policy.Decode(raw)
	if err != nil {
		return nil, http.StatusBadRequest
	}
	if p.Namespace == "" {
		p.Namespace = req.Namespace
	}
	if p.Namespace == "" {
		return nil, http.StatusBadRequest
	}
	ignored := p.OverrideReason != "" && !slices.ContainsFunc(req.UserInfo.Groups, func(g string) bool { return slices.Contains(fuzzOverrideGroups, g) })
	if ignored {
		p.OverrideReason = ""
	}
	d, err := engine.Decide(snap, engine.Change{Operation: op, Policy: p}, opts)
	if err != nil {
		t.Fatalf("engine.Decide on a snapshot: %v", err)
	}
	if ignored && !d.Allowed && !d.Invalid {
		d.Message += "\nThe " + policy.OverrideAnnotation + ` annotation is ignored: user ` + strconv.Quote(req.UserInfo.Username) + " is not in an override group (mesh-admins)."
	}
	return d, 0
}

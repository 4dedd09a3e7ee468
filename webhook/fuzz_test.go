package webhook_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/engine/enginetest"
	"github.com/mtls-guard/mtls-guard/internal/policy"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// fuzzAdmin is the one user whose overrides the fuzzed handler's
// authorizer grants.
const fuzzAdmin = "mesh-admin"

// FuzzHandle sends arbitrary bytes as the body of an admission request
// through the handler the guard serves (webhook.NewHTTPHandler around
// controller-runtime's admission.Webhook) over the fixture cluster. It must
// never panic and always answer an AdmissionReview with the request's UID.
// Its oracle is engine.Decide on a Snapshot of the same cluster, with the
// request's objects decoded independently (the typed path), not a copy of
// the handler: every allowance and every denial the handler gives must be
// the engine's, naming the same workloads. Errors are never allowances.
// The seed corpus is in testdata/fuzz/FuzzHandle; `make fuzz` searches
// further.
func FuzzHandle(f *testing.F) {
	snap := fixtureSnapshot(f)
	opts := engine.DefaultOptions()
	authz := &rbac{allowed: map[string]bool{fuzzAdmin: true}}
	h := &webhook.Handler{Reader: fixtureReader(f), Decide: fixtureDecide(f, opts), Options: opts, Authorizer: authz, Log: logr.Discard()}
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
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d", rec.Code)
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
		decision := resp.AuditAnnotations[webhook.AuditDecision]
		if decision == webhook.OutcomeError {
			if resp.Allowed {
				t.Fatalf("an error was answered as an allowance: %+v", resp.Result)
			}
			return
		}
		want := oracle(t, snap, opts, req)
		if want == nil {
			// Only the guard's own validity rules may judge what the
			// typed path cannot read.
			if resp.Allowed || decision != webhook.OutcomeInvalid {
				t.Fatalf("decided %q (allowed=%v) a request the engine cannot decide: %+v", decision, resp.Allowed, resp.Result)
			}
			return
		}
		if resp.Allowed != want.Allowed || (decision == webhook.OutcomeInvalid) != want.Invalid {
			t.Fatalf("answer allowed=%v decision %q, the engine's allowed=%v invalid=%v: %q", resp.Allowed, decision, want.Allowed, want.Invalid, want.Message)
		}
		if got, wantKeys := resp.AuditAnnotations[webhook.AuditUnmeshed], unmeshedKeys(want.Unmeshed); got != wantKeys {
			t.Fatalf("unmeshed workloads %q, the engine's %q", got, wantKeys)
		}
	})
}

// oracle is engine.Decide on the snapshot, for the request's objects
// decoded the typed way; nil when they cannot be read as a change. Only
// fuzzAdmin's overrides count, as the fuzzed handler's authorizer says.
func oracle(t *testing.T, snap *enginetest.Snapshot, opts engine.Options, req *admissionv1.AdmissionRequest) *engine.Decision {
	t.Helper()
	ops := map[admissionv1.Operation]engine.Operation{admissionv1.Create: engine.Create, admissionv1.Update: engine.Update, admissionv1.Delete: engine.Delete}
	op, ok := ops[req.Operation]
	if !ok {
		return nil
	}
	typed := func(raw []byte) *policy.Policy {
		var pa securityv1.PeerAuthentication
		if len(raw) == 0 || utiljson.Unmarshal(raw, &pa) != nil || pa.Name == "" {
			return nil
		}
		if pa.Namespace == "" {
			pa.Namespace = req.Namespace
		}
		return policy.FromV1(&pa)
	}
	ch := engine.Change{Operation: op, Policy: typed(req.Object.Raw)}
	switch op {
	case engine.Delete:
		ch.Policy = typed(req.OldObject.Raw)
	case engine.Update:
		if ch.Old = typed(req.OldObject.Raw); ch.Old == nil {
			return nil
		}
	}
	if ch.Policy == nil || ch.Policy.Namespace == "" {
		return nil
	}
	if req.UserInfo.Username != fuzzAdmin {
		ch.Policy.OverrideReason = ""
	}
	d, err := engine.Decide(snap, ch, opts)
	if err != nil {
		t.Fatalf("engine.Decide on a snapshot: %v", err)
	}
	return d
}

// unmeshedKeys renders workloads as the audit annotation does: at most
// engine.MaxListed, then how many more.
func unmeshedKeys(ws []engine.Workload) string {
	keys := make([]string, 0, len(ws))
	for i, w := range ws {
		if i == engine.MaxListed {
			keys = append(keys, "("+strconv.Itoa(len(ws)-i)+" more)")
			break
		}
		keys = append(keys, w.Namespace+"/"+w.Kind+"/"+w.Name)
	}
	return strings.Join(keys, ",")
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
	req := &admissionv1.AdmissionRequest{}
	ar := anyReview{}
	ar.Request = req
	ar.SetGroupVersionKind(admissionv1.SchemeGroupVersion.WithKind("AdmissionReview"))
	if _, _, err := admissionCodecs.UniversalDeserializer().Decode(body, nil, &ar); err != nil {
		return nil, false
	}
	return req, true
}

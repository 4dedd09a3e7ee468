package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/policy"
	"github.com/mtls-guard/mtls-guard/webhook"
)

var override = map[string]string{policy.OverrideAnnotation: "INC-42: legacy callers move next sprint"}

// rbac authorises overrides the way a SubjectAccessReview answers: users
// in allowed may, the user "unreachable" gets an error, anyone else may not.
type rbac struct {
	allowed map[string]bool
	asked   []string // namespace/name of every review
}

func (r *rbac) AuthorizeOverride(_ context.Context, user authenticationv1.UserInfo, namespace, name string) (bool, string, error) {
	r.asked = append(r.asked, namespace+"/"+name)
	if user.Username == "unreachable" {
		return false, "", errors.New("connection refused")
	}
	return r.allowed[user.Username], "", nil
}

// TestOverrideAuthorization: the override annotation counts only when the
// authorizer (RBAC, through a SubjectAccessReview) lets the requesting user
// override that policy; otherwise, and when the review fails, the denial
// stands and says why.
func TestOverrideAuthorization(t *testing.T) {
	strictLegacy := paObj(nsLegacy, "default", "STRICT", metav1.Time{}, nil, override)
	carveDelete := paObj(nsCarve, "web-permissive", "PERMISSIVE", metav1.Time{}, map[string]string{"app": "web"}, override)
	for _, tc := range []struct {
		name          string
		allowOverride bool
		op            admissionv1.Operation
		user          string
		obj           *securityv1.PeerAuthentication
		wantOutcome   string
		wantAsked     []string
		wantIgnored   string // substring of the override-ignored note; "" for none
	}{
		{
			name: "granted", allowOverride: true, op: admissionv1.Create, user: "alice", obj: strictLegacy,
			wantOutcome: webhook.OutcomeOverridden, wantAsked: []string{"legacy/default"},
		},
		{
			name: "not granted: override ignored, denial says why", allowOverride: true, op: admissionv1.Create, user: "bob", obj: strictLegacy,
			wantOutcome: webhook.OutcomeDenied, wantAsked: []string{"legacy/default"}, wantIgnored: `user "bob" may not override`,
		},
		{
			name: "review fails: no override (fail closed)", allowOverride: true, op: admissionv1.Create, user: "unreachable", obj: strictLegacy,
			wantOutcome: webhook.OutcomeDenied, wantAsked: []string{"legacy/default"}, wantIgnored: "connection refused",
		},
		{
			name: "nothing to override: no review", allowOverride: true, op: admissionv1.Create, user: "bob",
			obj:         paObj(nsMeshed, "default", "STRICT", metav1.Time{}, nil, override),
			wantOutcome: webhook.OutcomeAllowed,
		},
		{
			name: "overrides disabled: the engine's note, no review", allowOverride: false, op: admissionv1.Create, user: "alice", obj: strictLegacy,
			wantOutcome: webhook.OutcomeDenied,
		},
		{
			name: "DELETE: the annotation on the deleted object, granted", allowOverride: true, op: admissionv1.Delete, user: "alice", obj: carveDelete,
			wantOutcome: webhook.OutcomeOverridden, wantAsked: []string{"carve/web-permissive"},
		},
		{
			name: "DELETE: not granted", allowOverride: true, op: admissionv1.Delete, user: "bob", obj: carveDelete,
			wantOutcome: webhook.OutcomeDenied, wantAsked: []string{"carve/web-permissive"}, wantIgnored: "may not override",
		},
		{
			name: "invalid policy: invalid, no review", allowOverride: true, op: admissionv1.Create, user: "alice",
			obj:         portsWithoutSelector(paObj(nsLegacy, "ports", "STRICT", metav1.Time{}, nil, override)),
			wantOutcome: webhook.OutcomeInvalid,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := engine.DefaultOptions()
			opts.AllowOverride = tc.allowOverride
			authz := &rbac{allowed: map[string]bool{"alice": true}}
			h := &webhook.Handler{Reader: fixtureReader(t), Decide: fixtureDecide(t, opts), Options: opts, Authorizer: authz, Log: logr.Discard()}
			resp := h.Handle(context.Background(), request(t, tc.op, tc.user, nil, tc.obj))
			if got := resp.AuditAnnotations[webhook.AuditDecision]; got != tc.wantOutcome {
				t.Fatalf("outcome %q, want %q: %+v", got, tc.wantOutcome, resp.Result)
			}
			wantAllowed := tc.wantOutcome == webhook.OutcomeAllowed || tc.wantOutcome == webhook.OutcomeOverridden
			if resp.Allowed != wantAllowed {
				t.Errorf("allowed = %v, want %v", resp.Allowed, wantAllowed)
			}
			if !slices.Equal(authz.asked, tc.wantAsked) {
				t.Errorf("reviews asked for %q, want %q", authz.asked, tc.wantAsked)
			}
			note, ok := resp.AuditAnnotations[webhook.AuditOverrideIgnored]
			if ok != (tc.wantIgnored != "") || !strings.Contains(note, tc.wantIgnored) {
				t.Fatalf("audit annotation %s = %q (present %v), want one with %q", webhook.AuditOverrideIgnored, note, ok, tc.wantIgnored)
			}
			if ok {
				if !strings.HasSuffix(resp.Result.Message, note) {
					t.Errorf("the denial does not end with why the override was ignored:\n%s", resp.Result.Message)
				}
				if resp.AuditAnnotations[webhook.AuditOverrideReason] != "" {
					t.Errorf("an ignored override is audited as the reason: %q", resp.AuditAnnotations[webhook.AuditOverrideReason])
				}
			}
			if tc.wantOutcome == webhook.OutcomeOverridden && resp.AuditAnnotations[webhook.AuditOverrideReason] != override[policy.OverrideAnnotation] {
				t.Errorf("override reason audited as %q", resp.AuditAnnotations[webhook.AuditOverrideReason])
			}
		})
	}
}

// TestLaggingCache: the policy's state before comes from the request, not
// from an index that lags behind the API server. The index below is held
// at the first of three writes on purpose: STRICT (overridden), then
// PERMISSIVE, then STRICT again. Deciding the last write against the
// index's copy would find that no pod becomes stricter.
func TestLaggingCache(t *testing.T) {
	opts := engine.DefaultOptions()
	decide := fixtureDecide(t, opts, paObj(nsLegacy, "default", "STRICT", metav1.Now(), nil, override))
	h := &webhook.Handler{Reader: fixtureReader(t), Decide: decide, Options: opts, Authorizer: &rbac{}, Log: logr.Discard()}
	strict := paObj(nsLegacy, "default", "STRICT", metav1.Time{}, nil, nil)

	update := request(t, admissionv1.Update, "bob", nil, strict)
	old, err := json.Marshal(paObj(nsLegacy, "default", "PERMISSIVE", metav1.Time{}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	update.OldObject.Raw = old
	// kubectl replace --force deletes the object, then creates it: the
	// CREATE arrives while the index still holds the deleted one.
	create := request(t, admissionv1.Create, "bob", nil, strict)

	for name, req := range map[string]admission.Request{"UPDATE": update, "CREATE after DELETE": create} {
		t.Run(name, func(t *testing.T) {
			resp := h.Handle(context.Background(), req)
			if resp.Allowed || resp.AuditAnnotations[webhook.AuditDecision] != webhook.OutcomeDenied {
				t.Fatalf("allowed=%v decision %q, want a denial: %s", resp.Allowed, resp.AuditAnnotations[webhook.AuditDecision], resp.Result.Message)
			}
			if got := resp.AuditAnnotations[webhook.AuditUnmeshed]; got != "legacy/Deployment/old" {
				t.Errorf("unmeshed %q, want legacy/Deployment/old", got)
			}
		})
	}
}

// TestUpdateNeedsOldObject: an UPDATE without its state before cannot be
// decided from the request, and the cache is not asked instead.
func TestUpdateNeedsOldObject(t *testing.T) {
	h := &webhook.Handler{Reader: fixtureReader(t), Decide: fixtureDecide(t, engine.DefaultOptions()), Options: engine.DefaultOptions(), Log: logr.Discard()}
	req := request(t, admissionv1.Update, "bob", nil, paObj(nsLegacy, "default", "STRICT", metav1.Time{}, nil, nil))
	req.OldObject.Raw = nil
	resp := h.Handle(context.Background(), req)
	if resp.Allowed || resp.Result.Code != http.StatusBadRequest {
		t.Fatalf("allowed=%v code %d, want a 400", resp.Allowed, resp.Result.Code)
	}
}

// TestHandleErrors: a request the guard cannot decide gets an error with
// the right code, never an allowance.
func TestHandleErrors(t *testing.T) {
	strict := paObj(nsLegacy, "default", "STRICT", metav1.Time{}, nil, nil)
	notSynced := func(context.Context) error { return webhook.ErrNotSynced }
	for _, tc := range []struct {
		name     string
		synced   func(context.Context) error
		mutate   func(*admissionv1.AdmissionRequest)
		noDecide bool // no decision source configured
		wantCode int32
		wantMsg  string
	}{
		{"cache not synced", notSynced, nil, false, http.StatusServiceUnavailable, "not synced"},
		{"cache stale", func(context.Context) error { return errors.New("stale for 20s") }, nil, false, http.StatusServiceUnavailable, "stale for 20s"},
		{"wrong kind", nil, func(r *admissionv1.AdmissionRequest) { r.Kind.Kind = "Pod" }, false, http.StatusBadRequest, "only decides"},
		{"wrong version", nil, func(r *admissionv1.AdmissionRequest) { r.Kind.Version = "v2" }, false, http.StatusBadRequest, "only decides"},
		{"CONNECT", nil, func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Connect }, false, http.StatusBadRequest, "unsupported operation"},
		{"no object", nil, func(r *admissionv1.AdmissionRequest) { r.Object.Raw = nil }, false, http.StatusBadRequest, "no object"},
		{"object not JSON", nil, func(r *admissionv1.AdmissionRequest) { r.Object.Raw = []byte("{") }, false, http.StatusBadRequest, "decoding the PeerAuthentication"},
		{"no decision source", nil, nil, true, http.StatusInternalServerError, "no decision source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &webhook.Handler{Reader: fixtureReader(t), Decide: fixtureDecide(t, engine.DefaultOptions()), Synced: tc.synced, Options: engine.DefaultOptions(), Log: logr.Discard()}
			if tc.noDecide {
				h.Decide = nil
			}
			req := request(t, admissionv1.Create, "bob", nil, strict)
			if tc.mutate != nil {
				tc.mutate(&req.AdmissionRequest)
			}
			resp := h.Handle(context.Background(), req)
			if resp.Allowed || resp.Result == nil || resp.Result.Code != tc.wantCode || !strings.Contains(resp.Result.Message, tc.wantMsg) {
				t.Fatalf("got allowed=%v %+v, want code %d with %q", resp.Allowed, resp.Result, tc.wantCode, tc.wantMsg)
			}
			if resp.AuditAnnotations[webhook.AuditDecision] != webhook.OutcomeError {
				t.Errorf("audit decision %q, want error", resp.AuditAnnotations[webhook.AuditDecision])
			}
		})
	}
}

// portsWithoutSelector makes a policy invalid: portLevelMtls needs a selector.
func portsWithoutSelector(p *securityv1.PeerAuthentication) *securityv1.PeerAuthentication {
	p.Spec.PortLevelMtls = map[uint32]*apisecurity.PeerAuthentication_MutualTLS{
		8080: {Mode: apisecurity.PeerAuthentication_MutualTLS_STRICT},
	}
	return p
}

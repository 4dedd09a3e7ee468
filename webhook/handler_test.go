package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/policy"
	"github.com/mtls-guard/mtls-guard/webhook"
)

var override = map[string]string{policy.OverrideAnnotation: "INC-42: legacy callers move next sprint"}

// TestOverrideGroups: with --override-groups, the override annotation counts
// only for members of those groups; anyone else's is ignored and the denial
// says why.
func TestOverrideGroups(t *testing.T) {
	const ignoredNote = `The mtls-guard.io/override-reason annotation is ignored: user "bob" is not in an override group (mesh-admins, sre).`
	groups := []string{"mesh-admins", "sre"}
	strictLegacy := paObj(nsLegacy, "default", "STRICT", metav1.Time{}, nil, override)
	for _, tc := range []struct {
		name          string
		groups        []string // --override-groups
		allowOverride bool
		op            admissionv1.Operation
		user          string
		userGroups    []string
		obj           *securityv1.PeerAuthentication
		wantOutcome   string
		wantMsg       []string
		notMsg        []string
	}{
		{
			name: "no groups configured: anyone's override counts", allowOverride: true,
			op: admissionv1.Create, user: "bob", userGroups: []string{"devs"}, obj: strictLegacy,
			wantOutcome: webhook.OutcomeOverridden, wantMsg: []string{"allowed by override", "Deployment/old"},
		},
		{
			name: "member of an override group", groups: groups, allowOverride: true,
			op: admissionv1.Create, user: "alice", userGroups: []string{"system:authenticated", "sre"}, obj: strictLegacy,
			wantOutcome: webhook.OutcomeOverridden, wantMsg: []string{"allowed by override"}, notMsg: []string{"ignored"},
		},
		{
			name: "not a member: override ignored, denial says why", groups: groups, allowOverride: true,
			op: admissionv1.Create, user: "bob", userGroups: []string{"system:authenticated", "devs"}, obj: strictLegacy,
			wantOutcome: webhook.OutcomeDenied, wantMsg: []string{"denied", "Deployment/old", ignoredNote},
		},
		{
			name: "no groups at all", groups: groups, allowOverride: true,
			op: admissionv1.Create, user: "bob", obj: strictLegacy,
			wantOutcome: webhook.OutcomeDenied, wantMsg: []string{ignoredNote},
		},
		{
			name: "group names match exactly", groups: groups, allowOverride: true,
			op: admissionv1.Create, user: "bob", userGroups: []string{"SRE", "mesh-admins-2"}, obj: strictLegacy,
			wantOutcome: webhook.OutcomeDenied, wantMsg: []string{ignoredNote},
		},
		{
			name: "not a member, but nothing to override", groups: groups, allowOverride: true,
			op: admissionv1.Create, user: "bob", obj: paObj(nsMeshed, "default", "STRICT", metav1.Time{}, nil, override),
			wantOutcome: webhook.OutcomeAllowed, notMsg: []string{"ignored"},
		},
		{
			name: "overrides disabled: the engine's note, not the groups'", groups: groups, allowOverride: false,
			op: admissionv1.Create, user: "alice", userGroups: []string{"sre"}, obj: strictLegacy,
			wantOutcome: webhook.OutcomeDenied, wantMsg: []string{"overrides are disabled"}, notMsg: []string{"override group"},
		},
		{
			name: "DELETE: the annotation on the deleted object, member", groups: groups, allowOverride: true,
			op: admissionv1.Delete, user: "alice", userGroups: []string{"mesh-admins"},
			obj:         paObj(nsCarve, "web-permissive", "PERMISSIVE", metav1.Time{}, map[string]string{"app": "web"}, override),
			wantOutcome: webhook.OutcomeOverridden, wantMsg: []string{"DELETE", "allowed by override", "Pod/legacy"},
		},
		{
			name: "DELETE: the annotation on the deleted object, not a member", groups: groups, allowOverride: true,
			op: admissionv1.Delete, user: "bob", userGroups: []string{"devs"},
			obj:         paObj(nsCarve, "web-permissive", "PERMISSIVE", metav1.Time{}, map[string]string{"app": "web"}, override),
			wantOutcome: webhook.OutcomeDenied, wantMsg: []string{"DELETE", "denied", "Pod/legacy", ignoredNote},
		},
		{
			name: "invalid policy: invalid, no note", groups: groups, allowOverride: true,
			op: admissionv1.Create, user: "bob",
			obj:         portsWithoutSelector(paObj(nsLegacy, "ports", "STRICT", metav1.Time{}, nil, override)),
			wantOutcome: webhook.OutcomeInvalid, wantMsg: []string{"invalid"}, notMsg: []string{"override group"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := engine.DefaultOptions()
			opts.AllowOverride = tc.allowOverride
			h := &webhook.Handler{Reader: fixtureReader(t), Decide: fixtureDecide(t, opts), Options: opts, OverrideGroups: tc.groups, Log: logr.Discard()}
			req := request(t, tc.op, tc.user, tc.userGroups, tc.obj)
			resp := h.Handle(context.Background(), req)
			if got := resp.AuditAnnotations[webhook.AuditDecision]; got != tc.wantOutcome {
				t.Fatalf("outcome %q, want %q: %+v", got, tc.wantOutcome, resp.Result)
			}
			wantAllowed := tc.wantOutcome == webhook.OutcomeAllowed || tc.wantOutcome == webhook.OutcomeOverridden
			if resp.Allowed != wantAllowed {
				t.Errorf("allowed = %v, want %v", resp.Allowed, wantAllowed)
			}
			msg := resp.Result.Message
			for _, w := range tc.wantMsg {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
			for _, w := range tc.notMsg {
				if strings.Contains(msg, w) {
					t.Errorf("message has %q:\n%s", w, msg)
				}
			}
			note, ok := resp.AuditAnnotations[webhook.AuditOverrideIgnored]
			if wantNote := strings.Contains(strings.Join(tc.wantMsg, "\n"), ignoredNote); ok != wantNote || (ok && note != ignoredNote) {
				t.Errorf("audit annotation %s = %q (present %v), want present %v", webhook.AuditOverrideIgnored, note, ok, wantNote)
			}
		})
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

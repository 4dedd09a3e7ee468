// Package webhook serves the guard's decision as a validating admission
// webhook for Istio PeerAuthentications.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// Path is where the webhook is served, for v1 and v1beta1 alike.
const Path = "/validate-security-istio-io-v1-peerauthentication"

// Event reasons.
const (
	ReasonDenied     = "StrictMTLSDenied"
	ReasonOverridden = "StrictMTLSOverridden"
)

// Audit annotation keys; the API server prefixes them with the webhook name.
const (
	AuditDecision       = "decision"
	AuditUnmeshed       = "unmeshed-workloads"
	AuditOverrideReason = "override-reason"
	// AuditOverrideIgnored says why an override annotation did not count.
	AuditOverrideIgnored = "override-ignored"
)

// MaxWarningLength keeps each admission warning on one kubectl line.
const MaxWarningLength = 119

// ErrNotSynced is returned while the cache cannot answer.
var ErrNotSynced = errors.New("the guard's cache has not synced with the API server yet; refusing to decide on an empty view")

// ErrCacheStale is wrapped by the error returned while the cache has lost
// the API server for longer than the guard tolerates.
var ErrCacheStale = errors.New("the guard's cache is stale")

var errNoDecide = errors.New("the webhook has no decision source configured")

// Handler decides PeerAuthentication admission requests.
type Handler struct {
	// Reader is the manager's cache; Events read their Namespace from it.
	Reader client.Reader
	// Synced reports whether the cache can answer; nil means always.
	Synced func(context.Context) error
	// Options configure the engine.
	Options engine.Options
	// Decide decides a change, from an index kept by informer events
	// (internal/index). Without it every request is answered with an error.
	Decide func(engine.Change) (*engine.Decision, error)
	// OverrideGroups, when not empty, restricts the override annotation to
	// requests whose user is in at least one of these groups; anyone else's
	// override is ignored and the denial says why.
	OverrideGroups []string
	// Recorder records denial and override Events; nil records none.
	Recorder events.EventRecorder
	// Log receives one line per decision.
	Log logr.Logger
}

var _ admission.Handler = (*Handler)(nil)

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	op := string(req.Operation)
	// The request's fields go with the one line logged, rather than
	// through WithValues, which builds a logger per request.
	kv := []any{"uid", req.UID, "operation", op, "namespace", req.Namespace, "name", req.Name, "user", req.UserInfo.Username}
	d, ignored, code, err := h.decide(ctx, req)
	DecisionSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		Decisions.WithLabelValues(op, OutcomeError).Inc()
		h.Log.Error(err, "no decision", append(kv, "code", code)...)
		resp := admission.Errored(code, err)
		resp.AuditAnnotations = map[string]string{AuditDecision: OutcomeError}
		return resp
	}
	outcome := outcomeOf(d)
	Decisions.WithLabelValues(op, outcome).Inc()
	h.Log.Info("decision", append(kv, "outcome", outcome, "scope", d.Scope, "dryRun", req.DryRun != nil && *req.DryRun,
		"touched", d.Touched, "unmeshed", workloadKeys(d.Unmeshed), "overrideReason", d.OverrideReason,
		"overrideIgnored", ignored != "", "duration", time.Since(start))...)
	if req.DryRun == nil || !*req.DryRun {
		h.record(ctx, req, d)
	}
	resp := response(d, outcome, req)
	if ignored != "" {
		resp.AuditAnnotations[AuditOverrideIgnored] = ignored
	}
	return resp
}

// decide decodes the request and asks the engine. ignored says why an
// override annotation did not count, when that turned into a denial. The
// code is the HTTP status to answer with when err is set.
func (h *Handler) decide(ctx context.Context, req admission.Request) (d *engine.Decision, ignored string, code int32, err error) {
	if req.UID == "" {
		// The API server always sends one and rejects an answer without it.
		return nil, "", http.StatusBadRequest, errors.New("the AdmissionReview has no request.uid")
	}
	gvk := schema.GroupVersionKind{Group: req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind}
	if !policy.IsPeerAuthentication(gvk) {
		return nil, "", http.StatusBadRequest, fmt.Errorf("this webhook only decides security.istio.io/v1 and v1beta1 PeerAuthentications, got %s", gvk)
	}
	var op engine.Operation
	raw := req.Object.Raw
	switch req.Operation {
	case admissionv1.Create:
		op = engine.Create
	case admissionv1.Update:
		op = engine.Update
	case admissionv1.Delete:
		op, raw = engine.Delete, req.OldObject.Raw
	default:
		return nil, "", http.StatusBadRequest, fmt.Errorf("unsupported operation %q", req.Operation)
	}
	if len(raw) == 0 {
		field := "object"
		if op == engine.Delete {
			field = "oldObject"
		}
		return nil, "", http.StatusBadRequest, fmt.Errorf("the AdmissionRequest has no %s to decide", field)
	}
	p, err := policy.Decode(raw)
	if err != nil {
		return nil, "", http.StatusBadRequest, fmt.Errorf("decoding the PeerAuthentication: %w", err)
	}
	if p.Namespace == "" {
		p.Namespace = req.Namespace
	}
	if p.Namespace == "" {
		// PeerAuthentications are namespaced; to the cache, no namespace
		// would mean every namespace.
		return nil, "", http.StatusBadRequest, fmt.Errorf("PeerAuthentication %s has no namespace, in the object or the request", p.Name)
	}
	ignored = h.overrideIgnored(p, req.UserInfo)
	if ignored != "" {
		// Decide as if the annotation were absent: policy.Policy is
		// shared read-only, so change a copy.
		cp := *p
		cp.OverrideReason = ""
		p = &cp
	}
	if h.Synced != nil {
		if err := h.Synced(ctx); err != nil {
			return nil, "", http.StatusServiceUnavailable, err
		}
	}
	if h.Decide == nil {
		return nil, "", http.StatusInternalServerError, errNoDecide
	}
	d, err = h.Decide(engine.Change{Operation: op, Policy: p})
	if err != nil {
		return nil, "", http.StatusInternalServerError, fmt.Errorf("deciding %s: %w", p.Key(), err)
	}
	if ignored != "" && !d.Allowed && !d.Invalid {
		// Only a denial needs the note: an allowance did not need the override.
		d.Message += "\n" + ignored
		return d, ignored, 0, nil
	}
	return d, "", 0, nil
}

// overrideIgnored returns why the policy's override annotation does not
// count for this user, or "" when it counts, is absent, or overrides are
// disabled altogether (the engine then says so itself).
func (h *Handler) overrideIgnored(p *policy.Policy, user authenticationv1.UserInfo) string {
	if len(h.OverrideGroups) == 0 || p.OverrideReason == "" || !h.Options.AllowOverride {
		return ""
	}
	for _, g := range user.Groups {
		if slices.Contains(h.OverrideGroups, g) {
			return ""
		}
	}
	return fmt.Sprintf("The %s annotation is ignored: user %q is not in an override group (%s).",
		policy.OverrideAnnotation, user.Username, strings.Join(h.OverrideGroups, ", "))
}

func outcomeOf(d *engine.Decision) string {
	switch {
	case d.Invalid:
		return OutcomeInvalid
	case d.Overridden:
		return OutcomeOverridden
	case d.Allowed:
		return OutcomeAllowed
	}
	return OutcomeDenied
}

// response turns a decision into the admission answer.
func response(d *engine.Decision, outcome string, req admission.Request) admission.Response {
	resp := admission.ValidationResponse(d.Allowed, d.Message)
	if !d.Allowed {
		causes := make([]metav1.StatusCause, 0, len(d.Unmeshed))
		for _, w := range d.Unmeshed {
			causes = append(causes, metav1.StatusCause{
				Type:    metav1.CauseType("UnmeshedWorkload"),
				Message: w.String(),
				Field:   w.Namespace + "/" + w.Kind + "/" + w.Name,
			})
		}
		resp.Result.Details = &metav1.StatusDetails{
			Name: req.Name, Group: policy.GroupName, Kind: "peerauthentications", Causes: causes,
		}
		if d.Invalid {
			resp.Result.Reason = metav1.StatusReasonInvalid
		}
	}
	for _, w := range d.Warnings {
		resp.Warnings = append(resp.Warnings, shorten(w, MaxWarningLength))
	}
	resp.AuditAnnotations = map[string]string{
		AuditDecision:       outcome,
		AuditUnmeshed:       strings.Join(workloadKeys(d.Unmeshed), ","),
		AuditOverrideReason: d.OverrideReason,
	}
	return resp
}

// record emits the audit Events; dry runs never get here.
func (h *Handler) record(ctx context.Context, req admission.Request, d *engine.Decision) {
	if h.Recorder == nil || (d.Allowed && !d.Overridden) || d.Invalid {
		return
	}
	ns := &corev1.Namespace{}
	namespace, _, _ := strings.Cut(d.Policy, "/")
	if err := h.Reader.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		// Events are best effort; the decision stands and is logged.
		h.Log.Error(err, "no Event recorded: namespace not in cache", "namespace", namespace)
		return
	}
	ns = ns.DeepCopy()
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	related := &securityv1.PeerAuthentication{}
	related.SetGroupVersionKind(securityv1.SchemeGroupVersion.WithKind(policy.Kind))
	related.Namespace, related.Name = namespace, strings.TrimPrefix(d.Policy, namespace+"/")
	reason, action := ReasonDenied, "Deny"
	if d.Overridden {
		reason, action = ReasonOverridden, "Override"
	}
	note := fmt.Sprintf("%s %s: %s", req.Operation, d.Policy, strings.Join(workloadKeys(d.Unmeshed), ", "))
	if d.Overridden {
		note += fmt.Sprintf(" (override: %s)", d.OverrideReason)
	}
	h.Recorder.Eventf(ns, related, corev1.EventTypeWarning, reason, action, "%s", shorten(note, 1000))
}

func workloadKeys(ws []engine.Workload) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Namespace + "/" + w.Kind + "/" + w.Name
	}
	return out
}

func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

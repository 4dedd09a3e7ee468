// Package webhook serves the guard's decision as a validating admission
// webhook for Istio PeerAuthentications.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionv1 "k8s.io/api/admission/v1"
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
	// AuditPlaintext names the workloads with plaintext callers that the
	// change makes stricter; AuditEvidence says why the plaintext evidence
	// could not judge the change.
	AuditPlaintext = "plaintext-workloads"
	AuditEvidence  = "plaintext-evidence"
	// AuditExempt names the unmeshed pods of the touched namespaces that
	// the exempt label kept out of the decision.
	AuditExempt = "exempt-pods"
)

// Cause types of a denial's status details.
const (
	CauseUnmeshedWorkload  metav1.CauseType = "UnmeshedWorkload"
	CausePlaintextWorkload metav1.CauseType = "PlaintextCallers"
	// CauseMoreWorkloads ends a list cut at engine.MaxListed entries.
	CauseMoreWorkloads metav1.CauseType = "MoreUnmeshedWorkloads"
)

// MaxWarningLength keeps each admission warning on one kubectl line.
const MaxWarningLength = 119

// ErrNotSynced is returned while the cache cannot answer.
var ErrNotSynced = errors.New("the guard's cache has not synced with the API server yet; refusing to decide on an empty view")

// ErrCacheStale is wrapped by the error returned while the cache has lost
// the API server for longer than the guard tolerates.
var ErrCacheStale = errors.New("the guard's cache is stale")

var (
	errNoDecide     = errors.New("the webhook has no decision source configured")
	errNoAuthorizer = errors.New("the webhook has no override authorizer configured")
)

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
	// Authorizer checks that the requesting user may override a denial;
	// without one no override counts.
	Authorizer OverrideAuthorizer
	// Recorder records denial and override Events; nil records none.
	Recorder events.EventRecorder
	// Events, when set, deduplicates Events: one per policy and reason
	// within its interval, so that replayed requests cannot flood a
	// namespace with Events. Nil records every one.
	Events *EventDeduper
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
	outcome := string(d.Outcome())
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
	ch, err := changeOf(req)
	if err != nil {
		return nil, "", http.StatusBadRequest, err
	}
	if h.Synced != nil {
		if err := h.Synced(ctx); err != nil {
			return nil, "", http.StatusServiceUnavailable, err
		}
	}
	if h.Decide == nil {
		return nil, "", http.StatusInternalServerError, errNoDecide
	}
	p := ch.Policy
	d, err = h.Decide(ch)
	if err != nil {
		return nil, "", http.StatusInternalServerError, fmt.Errorf("deciding %s: %w", p.Key(), err)
	}
	if !d.Overridden {
		return d, "", 0, nil
	}
	// The override counts only when RBAC grants it to this user: ask only
	// now, when it would turn a denial into an allowance.
	var allowed bool
	err = errNoAuthorizer
	if h.Authorizer != nil {
		allowed, _, err = h.Authorizer.AuthorizeOverride(ctx, req.UserInfo, p.Namespace, p.Name)
	}
	if allowed && err == nil {
		return d, "", 0, nil
	}
	ignored = overrideRefusal(req.UserInfo, p.Namespace, p.Name, err)
	// Decide as if the annotation were absent: policy.Policy is shared
	// read-only, so change a copy.
	cp := *p
	cp.OverrideReason = ""
	ch.Policy = &cp
	if d, err = h.Decide(ch); err != nil {
		return nil, "", http.StatusInternalServerError, fmt.Errorf("deciding %s: %w", p.Key(), err)
	}
	d.Message += "\n" + ignored
	return d, ignored, 0, nil
}

// changeOf reads the change from the request: the policy from object (the
// object being deleted, oldObject, for DELETE) and, for UPDATE, its state
// before from oldObject. Nothing comes from the guard's cache.
func changeOf(req admission.Request) (engine.Change, error) {
	var ch engine.Change
	gvk := schema.GroupVersionKind{Group: req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind}
	if !policy.IsPeerAuthentication(gvk) {
		return ch, fmt.Errorf("this webhook only decides security.istio.io/v1 and v1beta1 PeerAuthentications, got %s", gvk)
	}
	switch req.Operation {
	case admissionv1.Create:
		ch.Operation = engine.Create
	case admissionv1.Update:
		ch.Operation = engine.Update
	case admissionv1.Delete:
		ch.Operation = engine.Delete
	default:
		return ch, fmt.Errorf("unsupported operation %q", req.Operation)
	}
	var err error
	if ch.Operation == engine.Delete {
		ch.Policy, err = decodePolicy(req, "oldObject", req.OldObject.Raw)
	} else {
		ch.Policy, err = decodePolicy(req, "object", req.Object.Raw)
	}
	if err != nil {
		return ch, err
	}
	if ch.Operation == engine.Update {
		if ch.Old, err = decodePolicy(req, "oldObject", req.OldObject.Raw); err != nil {
			return ch, err
		}
		if ch.Old.Namespace != ch.Policy.Namespace || ch.Old.Name != ch.Policy.Name {
			return ch, fmt.Errorf("the UPDATE's oldObject is %s, not %s", ch.Old.Key(), ch.Policy.Key())
		}
	}
	return ch, nil
}

// decodePolicy decodes one of the request's objects and compiles it.
func decodePolicy(req admission.Request, field string, raw []byte) (*policy.Policy, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("the AdmissionRequest has no %s to decide", field)
	}
	// policy.Decode rather than the typed admission decoder: the typed
	// decode refuses an unknown mode outright, where the rules want the
	// policy denied as invalid, with the reason.
	p, err := policy.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("decoding the PeerAuthentication in %s: %w", field, err)
	}
	if p.Namespace == "" {
		p.Namespace = req.Namespace
	}
	if p.Namespace == "" {
		// PeerAuthentications are namespaced; to the index, no namespace
		// would mean every namespace.
		return nil, fmt.Errorf("PeerAuthentication %s has no namespace, in the %s or the request", p.Name, field)
	}
	return p, nil
}

// response turns a decision into the admission answer.
func response(d *engine.Decision, outcome string, req admission.Request) admission.Response {
	resp := admission.ValidationResponse(d.Allowed, d.Message)
	if !d.Allowed {
		// Bounded like the message: a mesh-wide answer must not list every
		// unmeshed workload of the cluster to whoever can reach the port.
		all := make([]metav1.StatusCause, 0, len(d.Unmeshed)+len(d.Plaintext))
		for _, w := range d.Unmeshed {
			all = append(all, metav1.StatusCause{Type: CauseUnmeshedWorkload, Message: w.String(), Field: w.Namespace + "/" + w.Kind + "/" + w.Name})
		}
		for _, w := range d.Plaintext {
			all = append(all, metav1.StatusCause{Type: CausePlaintextWorkload, Message: w.String(d.Window), Field: w.Namespace + "/" + w.Kind + "/" + w.Name})
		}
		causes := all[:min(len(all), engine.MaxListed)]
		if n := len(all) - len(causes); n > 0 {
			causes = append(causes[:len(causes):len(causes)], metav1.StatusCause{
				Type: CauseMoreWorkloads, Message: fmt.Sprintf("and %d more workloads", n),
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
		AuditUnmeshed:       boundedList(workloadKeys(d.Unmeshed)),
		AuditOverrideReason: d.OverrideReason,
	}
	if len(d.Exempt) > 0 {
		resp.AuditAnnotations[AuditExempt] = boundedList(d.Exempt)
	}
	if len(d.Plaintext) > 0 {
		resp.AuditAnnotations[AuditPlaintext] = boundedList(plaintextKeys(d.Plaintext))
	}
	if d.EvidenceUnavailable != "" {
		resp.AuditAnnotations[AuditEvidence] = "unavailable: " + d.EvidenceUnavailable
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
	if !h.Events.First(d.Policy + "/" + reason) {
		EventsSuppressed.Inc()
		return
	}
	note := fmt.Sprintf("%s %s: %s", req.Operation, d.Policy, strings.Join(append(workloadKeys(d.Unmeshed), plaintextKeys(d.Plaintext)...), ", "))
	if d.Overridden {
		note += fmt.Sprintf(" (override: %s)", d.OverrideReason)
	}
	h.Recorder.Eventf(ns, related, corev1.EventTypeWarning, reason, action, "%s", shorten(note, 1000))
}

// boundedList joins at most engine.MaxListed entries, then how many more.
func boundedList(keys []string) string {
	if len(keys) <= engine.MaxListed {
		return strings.Join(keys, ",")
	}
	return strings.Join(keys[:engine.MaxListed], ",") + fmt.Sprintf(",(%d more)", len(keys)-engine.MaxListed)
}

func plaintextKeys(ws []engine.PlaintextWorkload) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Namespace + "/" + w.Kind + "/" + w.Name
	}
	return out
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

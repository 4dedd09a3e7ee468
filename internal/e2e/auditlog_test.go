package e2e

import (
	"context"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/mtls-guard/mtls-guard/internal/testenv/audit"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// auditEvent is an API server audit record.
type auditEvent audit.Event

// guardAnnotations are the guard's audit annotations, without the
// webhook-name prefix the API server adds.
func (e auditEvent) guardAnnotations() map[string]string {
	return audit.Event(e).WebhookAnnotations(suite.webhookName)
}

// auditLog is the API server's audit log, read as it grows.
type auditLog struct{ *audit.Log }

func (a auditLog) mark(t *testing.T) int { return a.Mark(t) }

// find waits for the newest event after mark that matches.
func (a auditLog) find(t *testing.T, mark int, what string, match func(auditEvent) bool) auditEvent {
	t.Helper()
	return auditEvent(a.Find(t, mark, what, func(e audit.Event) bool { return match(auditEvent(e)) }))
}

// byAuditID waits for the record of one request. It does not fail the
// test, so that goroutines may call it.
func (a auditLog) byAuditID(id string) (auditEvent, error) {
	ev, err := a.ByAuditID(context.Background(), id)
	return auditEvent(ev), err
}

// all returns every event so far.
func (a auditLog) all(t *testing.T) []auditEvent {
	t.Helper()
	var out []auditEvent
	for _, e := range a.All(t) {
		out = append(out, auditEvent(e))
	}
	return out
}

// request is one API call and the API server's audit record of it.
type request struct {
	err error
	id  string // Audit-Id of the last response
}

// call makes one API request through one of the tests' clients and
// remembers the Audit-Id of its answer.
func call(fn func(ctx context.Context) error) request {
	r := audit.Call(fn)
	return request{err: r.Err, id: r.AuditID}
}

// audit returns the guard's audit annotations on the request, without
// failing the test (goroutines may call it).
func (r request) audit() (map[string]string, error) {
	if r.id == "" {
		return nil, fmt.Errorf("%w (error: %v)", errNoAuditID, r.err)
	}
	ev, err := suite.audit.byAuditID(r.id)
	if err != nil {
		return nil, err
	}
	return ev.guardAnnotations(), nil
}

// guardAudit returns the guard's audit annotations on the request.
func (r request) guardAudit(t *testing.T) map[string]string {
	t.Helper()
	a, err := r.audit()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// is reports whether the API server refused the request with 403 (or
// admitted it) and the guard's audit decision for that very request is
// outcome. Nothing is read from the error's text.
func (r request) is(outcome string) (bool, error) {
	switch outcome {
	case webhook.OutcomeAllowed, webhook.OutcomeOverridden:
		if r.err != nil {
			return false, nil
		}
	default:
		if !apierrors.IsForbidden(r.err) {
			return false, nil
		}
	}
	a, err := r.audit()
	if err != nil {
		return false, err
	}
	return a[webhook.AuditDecision] == outcome, nil
}

// decidedAs is is for a test goroutine.
func (r request) decidedAs(t *testing.T, outcome string) bool {
	t.Helper()
	ok, err := r.is(outcome)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// mustDecide fails the test unless the guard decided the request as
// outcome; it returns the guard's audit annotations.
func (r request) mustDecide(t *testing.T, outcome string) map[string]string {
	t.Helper()
	if !r.decidedAs(t, outcome) {
		var got string
		if r.id != "" {
			got = r.guardAudit(t)[webhook.AuditDecision]
		}
		t.Fatalf("want the guard's decision %q, got error %v (reason %q) and audit decision %q", outcome, r.err, apierrors.ReasonForError(r.err), got)
	}
	return r.guardAudit(t)
}

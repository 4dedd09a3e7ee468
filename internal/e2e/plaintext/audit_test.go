package plaintext

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

// guard returns the guard's audit annotations, without the webhook-name
// prefix the API server adds.
func (e auditEvent) guard() map[string]string {
	return audit.Event(e).WebhookAnnotations(suite.webhookName)
}

// auditLog is the API server's audit log, read as it grows.
type auditLog struct{ *audit.Log }

// mark is the number of events so far; Find looks only after it.
func (a auditLog) mark(t *testing.T) int { return a.Mark(t) }

// request is one API call: its error, Audit-Id and warnings.
type request struct {
	err      error
	id       string
	warnings []string
}

// call makes one API request through a client of newClient.
func call(fn func(ctx context.Context) error) request {
	r := audit.Call(fn)
	return request{err: r.Err, id: r.AuditID, warnings: r.Warnings}
}

// guardAudit waits for the API server's audit record of the request and
// returns the guard's annotations on it.
func (r request) guardAudit() (map[string]string, error) {
	if r.id == "" {
		return nil, fmt.Errorf("the API server's answer carried no Audit-Id (error: %v)", r.err)
	}
	ev, err := suite.audit.ByAuditID(context.Background(), r.id)
	if err != nil {
		return nil, err
	}
	return auditEvent(ev).guard(), nil
}

// decided reports whether the guard decided the request as outcome: the
// status (403 for a denial, none for an admission) and the guard's audit
// decision for that very request. Nothing is read from the message.
func (r request) decided(t *testing.T, outcome string) bool {
	t.Helper()
	switch outcome {
	case webhook.OutcomeDenied:
		if !apierrors.IsForbidden(r.err) {
			return false
		}
	default:
		if r.err != nil {
			return false
		}
	}
	a, err := r.guardAudit()
	if err != nil {
		t.Fatal(err)
	}
	return a[webhook.AuditDecision] == outcome
}

// mustDecide fails the test unless the guard decided the request as
// outcome, and returns the guard's audit annotations.
func (r request) mustDecide(t *testing.T, outcome string) map[string]string {
	t.Helper()
	if !r.decided(t, outcome) {
		var got map[string]string
		if r.id != "" {
			got, _ = r.guardAudit()
		}
		t.Fatalf("want the guard's decision %q, got error %v and audit annotations %v", outcome, r.err, got)
	}
	a, err := r.guardAudit()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

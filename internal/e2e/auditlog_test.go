package e2e

import (
	"context"
	"testing"

	"github.com/mtls-guard/mtls-guard/internal/testenv/audit"
)

// auditEvent is an API server audit record.
type auditEvent struct{ audit.Event }

// guardAnnotations are the guard's audit annotations, without the
// webhook-name prefix the API server adds.
func (e auditEvent) guardAnnotations() map[string]string {
	return e.WebhookAnnotations(suite.webhookName)
}

// request is one API call and the API server's answer to it.
type request struct{ audit.Response }

// call makes one API request through one of the tests' clients and
// remembers the Audit-Id of its answer.
func call(fn func(ctx context.Context) error) request { return request{audit.Call(fn)} }

// is reports whether the API server refused the request with 403 (or
// admitted it) and the guard's audit decision for that very request is
// outcome. Nothing is read from the error's text.
func (r request) is(outcome string) (bool, error) {
	return suite.Audit.Decided(context.Background(), r.Response, suite.webhookName, outcome)
}

// decidedAs is is for a test goroutine.
func (r request) decidedAs(t *testing.T, outcome string) bool {
	t.Helper()
	return suite.Audit.CheckDecided(t, r.Response, suite.webhookName, outcome)
}

// mustDecide fails the test unless the guard decided the request as
// outcome; it returns the guard's audit annotations.
func (r request) mustDecide(t *testing.T, outcome string) map[string]string {
	t.Helper()
	return suite.Audit.MustDecide(t, r.Response, suite.webhookName, outcome)
}

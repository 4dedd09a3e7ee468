package plaintext

import (
	"context"
	"testing"

	"github.com/mtls-guard/mtls-guard/internal/testenv/audit"
)

// request is one API call: its error, Audit-Id and warnings.
type request struct{ audit.Response }

// call makes one API request through a client of suite.Client.
func call(fn func(ctx context.Context) error) request { return request{audit.Call(fn)} }

// guardAudit waits for the API server's audit record of the request and
// returns the guard's annotations on it.
func (r request) guardAudit() (map[string]string, error) {
	return suite.Audit.Annotations(context.Background(), r.Response, suite.webhookName)
}

// decided reports whether the guard decided the request as outcome: the
// status (403 for a denial, none for an admission) and the guard's audit
// decision for that very request. Nothing is read from the message.
func (r request) decided(t *testing.T, outcome string) bool {
	t.Helper()
	return suite.Audit.CheckDecided(t, r.Response, suite.webhookName, outcome)
}

// mustDecide fails the test unless the guard decided the request as
// outcome, and returns the guard's audit annotations.
func (r request) mustDecide(t *testing.T, outcome string) map[string]string {
	t.Helper()
	return suite.Audit.MustDecide(t, r.Response, suite.webhookName, outcome)
}

package arrivals

import (
	"context"
	"testing"

	"github.com/mtls-guard/mtls-guard/internal/testenv/audit"
)

// auditEvent is an API server audit record.
type auditEvent struct{ audit.Event }

// arrivals returns the arrivals webhook's audit annotations, without the
// webhook-name prefix the API server adds.
func (e auditEvent) arrivals() map[string]string { return e.WebhookAnnotations(arrivalsWebhook) }

// kubectlCreate finds the audit record of kubectl's create of a pod or
// workload (kubectl prints no Audit-Id; the names are unique per test).
func kubectlCreate(t *testing.T, resource, ns, name string) auditEvent {
	t.Helper()
	return auditEvent{suite.Audit.Kubectl(t, 0, "create", resource, ns, name)}
}

// request is one API call: its error, Audit-Id and warnings.
type request struct{ audit.Response }

// call makes one API request through a client of suite.Client.
func call(fn func(ctx context.Context) error) request { return request{audit.Call(fn)} }

// audit waits for the API server's audit record of the request and returns
// the arrivals webhook's annotations on it.
func (r request) audit(t *testing.T) map[string]string {
	t.Helper()
	a, err := suite.Audit.Annotations(context.Background(), r.Response, arrivalsWebhook)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// decided reports whether the arrivals webhook decided the request as
// outcome: the status (403 for a denial, none otherwise) and the guard's
// audit decision for that very request. Nothing is read from the message.
func (r request) decided(t *testing.T, outcome string) bool {
	t.Helper()
	return suite.Audit.CheckDecided(t, r.Response, arrivalsWebhook, outcome)
}

package arrivals

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/mtls-guard/mtls-guard/internal/testenv/audit"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// auditEvent is an API server audit record.
type auditEvent audit.Event

// arrivals returns the arrivals webhook's audit annotations, without the
// webhook-name prefix the API server adds.
func (e auditEvent) arrivals() map[string]string {
	return audit.Event(e).WebhookAnnotations(arrivalsWebhook)
}

// kubectlCreate finds the audit record of kubectl's create of a pod or
// workload (kubectl prints no Audit-Id; the names are unique per test).
func kubectlCreate(t *testing.T, resource, ns, name string) auditEvent {
	t.Helper()
	return auditEvent(suite.audit.Find(t, 0, fmt.Sprintf("kubectl create %s %s/%s", resource, ns, name), func(e audit.Event) bool {
		return strings.HasPrefix(e.UserAgent, "kubectl/") && e.Verb == "create" && e.ObjectRef != nil &&
			e.ObjectRef.Resource == resource && e.ObjectRef.Namespace == ns && e.ObjectRef.Name == name
	}))
}

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

// audit waits for the API server's audit record of the request and returns
// the arrivals webhook's annotations on it.
func (r request) audit(t *testing.T) map[string]string {
	t.Helper()
	if r.id == "" {
		t.Fatalf("the API server's answer carried no Audit-Id (error: %v)", r.err)
	}
	ev, err := suite.audit.ByAuditID(context.Background(), r.id)
	if err != nil {
		t.Fatal(err)
	}
	return auditEvent(ev).arrivals()
}

// decided reports whether the arrivals webhook decided the request as
// outcome: the status (403 for a denial, none otherwise) and the guard's
// audit decision for that very request. Nothing is read from the message.
func (r request) decided(t *testing.T, outcome string) bool {
	t.Helper()
	if outcome == webhook.OutcomeDenied {
		if !apierrors.IsForbidden(r.err) {
			return false
		}
	} else if r.err != nil {
		return false
	}
	return r.audit(t)[webhook.AuditDecision] == outcome
}

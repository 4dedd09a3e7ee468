package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/mtls-guard/mtls-guard/webhook"
)

// ErrNoAuditID is the error for a call whose answer had no Audit-Id: its
// audit record cannot be found.
var ErrNoAuditID = errors.New("the API server's answer carried no Audit-Id")

// Annotations waits for the audit record of the call r and returns the
// audit annotations that the admission webhook named hook set on it. It
// does not fail a test, so that goroutines may call it.
func (l *Log) Annotations(ctx context.Context, r Response, hook string) (map[string]string, error) {
	if r.AuditID == "" {
		return nil, fmt.Errorf("%w (error: %v)", ErrNoAuditID, r.Err)
	}
	ev, err := l.ByAuditID(ctx, r.AuditID)
	if err != nil {
		return nil, err
	}
	return ev.WebhookAnnotations(hook), nil
}

// Decided reports whether the admission webhook named hook decided the
// call r as outcome: the API server refused it with 403 for a denial and
// admitted it otherwise, and the webhook's audit decision for that very
// request is outcome. Nothing is read from the error's text. It does not
// fail a test, so that goroutines may call it.
func (l *Log) Decided(ctx context.Context, r Response, hook, outcome string) (bool, error) {
	if outcome == webhook.OutcomeDenied {
		if !apierrors.IsForbidden(r.Err) {
			return false, nil
		}
	} else if r.Err != nil {
		return false, nil
	}
	a, err := l.Annotations(ctx, r, hook)
	if err != nil {
		return false, err
	}
	return a[webhook.AuditDecision] == outcome, nil
}

// CheckDecided is Decided for a test: it fails the test when the record
// cannot be read.
func (l *Log) CheckDecided(t testing.TB, r Response, hook, outcome string) bool {
	t.Helper()
	ok, err := l.Decided(context.Background(), r, hook, outcome)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// MustDecide fails the test unless the webhook named hook decided the call
// r as outcome (see Decided), and returns the webhook's audit annotations
// on it.
func (l *Log) MustDecide(t testing.TB, r Response, hook, outcome string) map[string]string {
	t.Helper()
	ok := l.CheckDecided(t, r, hook, outcome)
	var got map[string]string
	if r.AuditID != "" {
		var err error
		if got, err = l.Annotations(context.Background(), r, hook); err != nil {
			t.Fatal(err)
		}
	}
	if !ok {
		t.Fatalf("want %s's decision %q, got error %v (reason %q) and audit annotations %v", hook, outcome, r.Err, apierrors.ReasonForError(r.Err), got)
	}
	return got
}

// Kubectl waits for the audit record of a kubectl request made after
// mark: the newest one with kubectl's user agent, the verb and the object
// ns/name of the resource. kubectl prints no Audit-Id, so the record is
// found this way.
func (l *Log) Kubectl(t testing.TB, mark int, verb, resource, ns, name string) Event {
	t.Helper()
	return l.Find(t, mark, fmt.Sprintf("kubectl %s %s %s/%s", verb, resource, ns, name), func(e Event) bool {
		return strings.HasPrefix(e.UserAgent, "kubectl/") && e.Verb == verb && e.ObjectRef != nil &&
			e.ObjectRef.Resource == resource && e.ObjectRef.Namespace == ns && e.ObjectRef.Name == name
	})
}

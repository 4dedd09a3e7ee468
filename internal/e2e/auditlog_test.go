package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mtls-guard/mtls-guard/webhook"
)

// auditEvent is the part of an audit.k8s.io/v1 Event the tests read.
type auditEvent struct {
	AuditID   string `json:"auditID"`
	Stage     string `json:"stage"`
	Verb      string `json:"verb"`
	UserAgent string `json:"userAgent"`
	User      struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		APIGroup    string `json:"apiGroup"`
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	RequestURI     string `json:"requestURI"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Annotations map[string]string `json:"annotations"`
}

// guardAnnotations are the guard's audit annotations, without the
// webhook-name prefix the API server adds.
func (e auditEvent) guardAnnotations() map[string]string {
	out := map[string]string{}
	prefix := suite.webhookName + "/"
	for k, v := range e.Annotations {
		if key, ok := strings.CutPrefix(k, prefix); ok {
			out[key] = v
		}
	}
	return out
}

// auditLog reads the API server's audit log as it grows: the events at
// stage ResponseComplete, in order, and watches at ResponseStarted (an
// informer's watch may outlive the test; client-go's watch-list streams
// the initial objects through it instead of a LIST).
type auditLog struct {
	path string

	mu      sync.Mutex
	offset  int64
	partial []byte
	events  []auditEvent
	byID    map[string]int
}

// refresh reads what was appended since the last call.
func (a *auditLog) refresh() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.Open(a.path)
	if err != nil {
		return fmt.Errorf("opening the audit log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(a.offset, io.SeekStart); err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("reading the audit log: %w", err)
	}
	a.offset += int64(len(data))
	data = append(a.partial, data...)
	last := bytes.LastIndexByte(data, '\n')
	a.partial = append([]byte(nil), data[last+1:]...)
	if a.byID == nil {
		a.byID = map[string]int{}
	}
	for _, line := range bytes.Split(data[:last+1], []byte{'\n'}) {
		var ev auditEvent
		if len(line) == 0 || json.Unmarshal(line, &ev) != nil || (ev.Stage != "ResponseComplete" && (ev.Stage != "ResponseStarted" || ev.Verb != "watch")) {
			continue
		}
		a.byID[ev.AuditID] = len(a.events)
		a.events = append(a.events, ev)
	}
	return nil
}

// mark is the number of events read so far: events after it are newer
// than anything seen before.
func (a *auditLog) mark(t *testing.T) int {
	t.Helper()
	if err := a.refresh(); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.events)
}

// find waits for the newest event after mark that matches.
func (a *auditLog) find(t *testing.T, mark int, what string, match func(auditEvent) bool) auditEvent {
	t.Helper()
	var found *auditEvent
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		if err := a.refresh(); err != nil {
			return false, err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		for i := len(a.events) - 1; i >= mark; i-- {
			if match(a.events[i]) {
				ev := a.events[i]
				found = &ev
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no audit record of %s: %v", what, err)
	}
	return *found
}

// byAuditID waits for the record of one request. It does not fail the
// test, so that goroutines may call it.
func (a *auditLog) byAuditID(id string) (auditEvent, error) {
	var ev auditEvent
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		if err := a.refresh(); err != nil {
			return false, err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		i, ok := a.byID[id]
		if ok {
			ev = a.events[i]
		}
		return ok, nil
	})
	if err != nil {
		return ev, fmt.Errorf("no audit record with auditID %s: %w", id, err)
	}
	return ev, nil
}

// all returns every event read so far, after a refresh.
func (a *auditLog) all(t *testing.T) []auditEvent {
	t.Helper()
	if err := a.refresh(); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]auditEvent(nil), a.events...)
}

// auditIDs collects the Audit-Id headers of the responses to one call.
type auditIDs struct {
	mu  sync.Mutex
	ids []string
}

type auditIDsKey struct{}

// auditIDRecorder is the RoundTripper of the tests' clients: it records
// each response's Audit-Id in the auditIDs of the request's context.
type auditIDRecorder struct{ next http.RoundTripper }

func (r auditIDRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err == nil {
		if ids, ok := req.Context().Value(auditIDsKey{}).(*auditIDs); ok {
			ids.mu.Lock()
			ids.ids = append(ids.ids, resp.Header.Get("Audit-Id"))
			ids.mu.Unlock()
		}
	}
	return resp, err
}

// request is one API call and the API server's audit record of it.
type request struct {
	err error
	id  string // Audit-Id of the last response
}

// call makes one API request through one of the tests' clients and
// remembers the Audit-Id of its answer.
func call(fn func(ctx context.Context) error) request {
	ids := &auditIDs{}
	ctx := context.WithValue(context.Background(), auditIDsKey{}, ids)
	err := fn(ctx)
	ids.mu.Lock()
	defer ids.mu.Unlock()
	r := request{err: err}
	if n := len(ids.ids); n > 0 {
		r.id = ids.ids[n-1]
	}
	return r
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

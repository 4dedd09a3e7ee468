package plaintext

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
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Annotations map[string]string `json:"annotations"`
}

// guard returns the guard's audit annotations, without the webhook-name
// prefix the API server adds.
func (e auditEvent) guard() map[string]string {
	out := map[string]string{}
	for k, v := range e.Annotations {
		if key, ok := strings.CutPrefix(k, suite.webhookName+"/"); ok {
			out[key] = v
		}
	}
	return out
}

// auditLog reads the API server's audit log (JSON lines) as it grows.
type auditLog struct {
	path string

	mu      sync.Mutex
	offset  int64  // bytes read so far
	partial []byte // a last line not yet complete
	all     []auditEvent
}

// events returns the events at stage ResponseComplete so far, in order,
// after reading what was appended since the last call.
func (a *auditLog) events() ([]auditEvent, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.Open(a.path)
	if err != nil {
		return nil, fmt.Errorf("opening the audit log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(a.offset, io.SeekStart); err != nil {
		return nil, fmt.Errorf("reading the audit log: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading the audit log: %w", err)
	}
	a.offset += int64(len(data))
	data = append(a.partial, data...)
	last := bytes.LastIndexByte(data, '\n')
	a.partial = append([]byte(nil), data[last+1:]...)
	for _, line := range bytes.Split(data[:last+1], []byte{'\n'}) {
		var ev auditEvent
		if len(line) > 0 && json.Unmarshal(line, &ev) == nil && ev.Stage == "ResponseComplete" {
			a.all = append(a.all, ev)
		}
	}
	return a.all[:len(a.all):len(a.all)], nil
}

// mark is the number of events so far; find looks only after it.
func (a *auditLog) mark(t *testing.T) int {
	t.Helper()
	evs, err := a.events()
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// find waits for the newest event after mark that matches.
func (a *auditLog) find(t *testing.T, mark int, what string, match func(auditEvent) bool) auditEvent {
	t.Helper()
	var found auditEvent
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		evs, err := a.events()
		if err != nil {
			return false, err
		}
		for i := len(evs) - 1; i >= mark; i-- {
			if match(evs[i]) {
				found = evs[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no audit record of %s: %v", what, err)
	}
	return found
}

// response is what the tests' clients record of one API call.
type response struct {
	mu       sync.Mutex
	auditID  string
	warnings []string
}

type responseKey struct{}

// recordAuditIDs wraps the tests' transports: it keeps each answer's
// Audit-Id in the response of the request's context.
func recordAuditIDs(next http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(req)
		if r, ok := req.Context().Value(responseKey{}).(*response); ok && err == nil {
			r.mu.Lock()
			r.auditID = resp.Header.Get("Audit-Id")
			r.mu.Unlock()
		}
		return resp, err
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// warningRecorder keeps the warnings of an answer in the response of the
// request's context.
type warningRecorder struct{}

func (warningRecorder) HandleWarningHeaderWithContext(ctx context.Context, _ int, _ string, text string) {
	if r, ok := ctx.Value(responseKey{}).(*response); ok {
		r.mu.Lock()
		r.warnings = append(r.warnings, text)
		r.mu.Unlock()
	}
}

// request is one API call: its error, Audit-Id and warnings.
type request struct {
	err      error
	id       string
	warnings []string
}

// call makes one API request through a client of newClient.
func call(fn func(ctx context.Context) error) request {
	r := &response{}
	err := fn(context.WithValue(context.Background(), responseKey{}, r))
	r.mu.Lock()
	defer r.mu.Unlock()
	return request{err: err, id: r.auditID, warnings: r.warnings}
}

// guardAudit waits for the API server's audit record of the request and
// returns the guard's annotations on it.
func (r request) guardAudit() (map[string]string, error) {
	if r.id == "" {
		return nil, fmt.Errorf("the API server's answer carried no Audit-Id (error: %v)", r.err)
	}
	var found map[string]string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		evs, err := suite.audit.events()
		if err != nil {
			return false, err
		}
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].AuditID == r.id {
				found = evs[i].guard()
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("no audit record with auditID %s: %w", r.id, err)
	}
	return found, nil
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

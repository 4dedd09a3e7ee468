package arrivals

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

// arrivals returns the arrivals webhook's audit annotations, without the
// webhook-name prefix the API server adds.
func (e auditEvent) arrivals() map[string]string {
	out := map[string]string{}
	for k, v := range e.Annotations {
		if key, ok := strings.CutPrefix(k, arrivalsWebhook+"/"); ok {
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

// find waits for the newest event that matches.
func (a *auditLog) find(t *testing.T, what string, match func(auditEvent) bool) auditEvent {
	t.Helper()
	var found auditEvent
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		evs, err := a.events()
		if err != nil {
			return false, err
		}
		for i := len(evs) - 1; i >= 0; i-- {
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

// kubectlCreate finds the audit record of kubectl's create of a pod or
// workload (kubectl prints no Audit-Id; the names are unique per test).
func kubectlCreate(t *testing.T, resource, ns, name string) auditEvent {
	t.Helper()
	return suite.audit.find(t, fmt.Sprintf("kubectl create %s %s/%s", resource, ns, name), func(e auditEvent) bool {
		return strings.HasPrefix(e.UserAgent, "kubectl/") && e.Verb == "create" && e.ObjectRef != nil &&
			e.ObjectRef.Resource == resource && e.ObjectRef.Namespace == ns && e.ObjectRef.Name == name
	})
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

// audit waits for the API server's audit record of the request and returns
// the arrivals webhook's annotations on it.
func (r request) audit(t *testing.T) map[string]string {
	t.Helper()
	if r.id == "" {
		t.Fatalf("the API server's answer carried no Audit-Id (error: %v)", r.err)
	}
	return suite.audit.find(t, "auditID "+r.id, func(e auditEvent) bool { return e.AuditID == r.id }).arrivals()
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

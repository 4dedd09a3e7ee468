// Package audit reads the API server's audit log for the end-to-end tests
// and ties a client's request to its audit record through the Audit-Id
// response header: the API server records the guard's decision only as an
// audit annotation, so that is where the tests read it.
package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Poll bounds for Find and ByAuditID: the API server writes a record a
// moment after it answers; the timeout only bounds a failure.
const (
	pollInterval = 20 * time.Millisecond
	pollTimeout  = 30 * time.Second
)

// Event is the part of an audit.k8s.io/v1 Event the tests read.
type Event struct {
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

// WebhookAnnotations returns the audit annotations that the admission
// webhook named webhook set, without the "<webhook>/" prefix the API
// server adds to them.
func (e Event) WebhookAnnotations(webhook string) map[string]string {
	out := map[string]string{}
	prefix := webhook + "/"
	for k, v := range e.Annotations {
		if key, ok := strings.CutPrefix(k, prefix); ok {
			out[key] = v
		}
	}
	return out
}

// Log reads the API server's audit log (JSON lines) as it grows: the
// events at stage ResponseComplete, in order, and watches at
// ResponseStarted (an informer's watch may outlive the test; client-go's
// watch-list streams the initial objects through it instead of a LIST).
// It is safe for concurrent use.
type Log struct {
	path string

	mu      sync.Mutex
	offset  int64  // bytes read so far
	partial []byte // a last line not yet complete
	events  []Event
	byID    map[string]int // the newest event of each Audit-Id
}

// NewLog reads the audit log at path.
func NewLog(path string) *Log {
	return &Log{path: path, byID: map[string]int{}}
}

// refresh reads what was appended since the last call; l.mu is held.
func (l *Log) refresh() error {
	f, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("opening the audit log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(l.offset, io.SeekStart); err != nil {
		return fmt.Errorf("reading the audit log: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("reading the audit log: %w", err)
	}
	l.offset += int64(len(data))
	data = append(l.partial, data...)
	last := bytes.LastIndexByte(data, '\n')
	l.partial = append([]byte(nil), data[last+1:]...)
	for _, line := range bytes.Split(data[:last+1], []byte{'\n'}) {
		var ev Event
		if len(line) == 0 || json.Unmarshal(line, &ev) != nil || (ev.Stage != "ResponseComplete" && (ev.Stage != "ResponseStarted" || ev.Verb != "watch")) {
			continue
		}
		l.byID[ev.AuditID] = len(l.events)
		l.events = append(l.events, ev)
	}
	return nil
}

// Events returns every event so far, in order, after reading what was
// appended since the last call. The caller may keep the slice.
func (l *Log) Events() ([]Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.refresh(); err != nil {
		return nil, err
	}
	return append([]Event(nil), l.events...), nil
}

// All is Events for a test: it fails the test when the log cannot be read.
func (l *Log) All(t testing.TB) []Event {
	t.Helper()
	evs, err := l.Events()
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// Mark is the number of events read so far: Find after it looks only at
// newer events than anything seen before.
func (l *Log) Mark(t testing.TB) int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.refresh(); err != nil {
		t.Fatal(err)
	}
	return len(l.events)
}

// Find waits for the newest event after mark that matches, and fails the
// test, naming what, when none comes.
func (l *Log) Find(t testing.TB, mark int, what string, match func(Event) bool) Event {
	t.Helper()
	var found Event
	err := l.poll(context.Background(), func() bool {
		for i := len(l.events) - 1; i >= mark; i-- {
			if match(l.events[i]) {
				found = l.events[i]
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("no audit record of %s: %v", what, err)
	}
	return found
}

// ByAuditID waits for the record of the request the API server answered
// with this Audit-Id. It does not fail a test, so that goroutines may
// call it.
func (l *Log) ByAuditID(ctx context.Context, id string) (Event, error) {
	var found Event
	err := l.poll(ctx, func() bool {
		i, ok := l.byID[id]
		if ok {
			found = l.events[i]
		}
		return ok
	})
	if err != nil {
		return found, fmt.Errorf("no audit record with auditID %s: %w", id, err)
	}
	return found, nil
}

// poll refreshes the log until done, called with l.mu held, is true.
func (l *Log) poll(ctx context.Context, done func() bool) error {
	return wait.PollUntilContextTimeout(ctx, pollInterval, pollTimeout, true, func(context.Context) (bool, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if err := l.refresh(); err != nil {
			return false, err
		}
		return done(), nil
	})
}

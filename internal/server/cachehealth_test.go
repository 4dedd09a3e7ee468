package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/mtls-guard/mtls-guard/webhook"
)

// fakeInformer is an informer that has synced or not.
type fakeInformer struct {
	cache.Informer
	synced bool
}

func (f *fakeInformer) HasSynced() bool { return f.synced }

// step is one request of the cache, or a look at the clock.
type step struct {
	after  time.Duration // since the start
	method string        // "" means no request, only Check
	path   string
	status int   // answer, when err is nil
	err    error // transport error
	cancel bool  // the cache cancelled the request
}

func TestCacheHealth(t *testing.T) {
	const bound = 10 * time.Second
	refused := &refusedError{syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name     string
		synced   bool
		steps    []step
		wantErr  error // nil, webhook.ErrNotSynced or webhook.ErrCacheStale
		wantText string
	}{
		{name: "not synced", synced: false, wantErr: webhook.ErrNotSynced},
		{name: "synced and reaching the API server", synced: true, steps: []step{
			{after: time.Second, method: "GET", path: "/api/v1/pods", status: 200},
			{after: time.Hour},
		}},
		{name: "refused, within the bound", synced: true, steps: []step{
			{after: 0, method: "GET", path: "/api/v1/pods", err: refused},
			{after: 9 * time.Second, method: "GET", path: "/api/v1/pods", err: refused},
			{after: bound},
		}},
		{name: "refused, past the bound", synced: true, steps: []step{
			{after: 0, method: "GET", path: "/api/v1/pods", err: refused},
			{after: 5 * time.Second, method: "GET", path: "/api/v1/pods", err: refused},
			{after: bound + time.Millisecond},
		}, wantErr: webhook.ErrCacheStale, wantText: "listing and watching /api/v1/pods has failed for 10.001s, longer than --max-cache-staleness=10s"},
		{name: "recovered", synced: true, steps: []step{
			{after: 0, method: "GET", path: "/api/v1/pods", err: refused},
			{after: 20 * time.Second, method: "GET", path: "/api/v1/pods", status: 200},
			{after: time.Minute},
		}},
		{name: "one resource recovered, another still failing", synced: true, steps: []step{
			{after: 0, method: "GET", path: "/api/v1/pods", err: refused},
			{after: 0, method: "GET", path: "/api/v1/namespaces", err: refused},
			{after: 20 * time.Second, method: "GET", path: "/api/v1/namespaces", status: 200},
			{after: time.Minute},
		}, wantErr: webhook.ErrCacheStale, wantText: "/api/v1/pods"},
		{name: "server errors count", synced: true, steps: []step{
			{after: 0, method: "GET", path: "/apis/security.istio.io/v1/peerauthentications", status: 503},
			{after: time.Minute},
		}, wantErr: webhook.ErrCacheStale, wantText: "503"},
		{name: "forbidden counts", synced: true, steps: []step{
			{after: 0, method: "GET", path: "/api/v1/pods", status: 403},
			{after: time.Minute},
		}, wantErr: webhook.ErrCacheStale, wantText: "403"},
		{name: "an expired resourceVersion does not count", synced: true, steps: []step{
			{after: 0, method: "GET", path: "/api/v1/pods", status: 410},
			{after: time.Minute},
		}},
		{name: "requests the cache cancelled do not count", synced: true, steps: []step{
			{after: 0, method: "GET", path: "/api/v1/pods", err: context.Canceled, cancel: true},
			{after: time.Minute},
		}},
		{name: "only reads count", synced: true, steps: []step{
			{after: 0, method: "POST", path: "/api/v1/namespaces/default/events", err: refused},
			{after: time.Minute},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newCacheHealth(bound, logr.Discard())
			t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			now := t0
			h.now = func() time.Time { return now }
			h.watch(&fakeInformer{synced: true}, &fakeInformer{synced: tc.synced})
			for _, s := range tc.steps {
				now = t0.Add(s.after)
				if s.method == "" {
					continue
				}
				rt := h.roundTripper(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
					if s.err != nil {
						return nil, s.err
					}
					return &http.Response{StatusCode: s.status, Status: fmt.Sprintf("%d %s", s.status, http.StatusText(s.status))}, nil
				}))
				ctx, cancel := context.WithCancel(context.Background())
				if s.cancel {
					cancel()
				}
				req, err := http.NewRequestWithContext(ctx, s.method, "https://apiserver"+s.path+"?watch=true", nil)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = rt.RoundTrip(req)
				cancel()
			}
			err := h.Check(context.Background())
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Check: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("Check: %v, want %v with %q", err, tc.wantErr, tc.wantText)
			}
		})
	}
}

// refusedError is a refused connection, as the dialer reports it.
type refusedError struct{ errno syscall.Errno }

func (e *refusedError) Error() string { return "dial tcp 127.0.0.1:6443: connect: " + e.errno.Error() }
func (e *refusedError) Unwrap() error { return e.errno }

// brokenBody is a watch stream that ends with err.
type brokenBody struct{ err error }

func (b brokenBody) Read([]byte) (int, error) { return 0, b.err }
func (brokenBody) Close() error               { return nil }

// TestCacheHealthWatchStream: the clock runs from the end of a watch,
// however it ended, unless the cache is stopping, and stops at the next
// successful request.
func TestCacheHealthWatchStream(t *testing.T) {
	for _, tc := range []struct {
		name      string
		streamErr error
		close     bool // the informer closes the watch instead of reading its end
		stopping  bool
		rewatch   bool // a new watch succeeds
		wantStale bool
	}{
		{name: "connection reset", streamErr: syscall.ECONNRESET, wantStale: true},
		{name: "ended, not watched again", streamErr: io.EOF, wantStale: true},
		{name: "ended, watched again at once", streamErr: io.EOF, rewatch: true},
		{name: "closed by the informer after an error event", close: true, wantStale: true},
		{name: "the cache is stopping", streamErr: io.EOF, close: true, stopping: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newCacheHealth(time.Second, logr.Discard())
			t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			now := t0
			h.now = func() time.Time { return now }
			rt := h.roundTripper(roundTripperFunc(func(*http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 200, Status: "200 OK", Body: brokenBody{tc.streamErr}}, nil
			}))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			watch := func() *http.Response {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://apiserver/api/v1/pods?watch=true&resourceVersion=7", nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := rt.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				return resp
			}
			resp := watch()
			if tc.stopping {
				cancel()
			}
			if tc.close {
				resp.Body.Close()
			} else {
				_, _ = resp.Body.Read(make([]byte, 1))
			}
			if tc.rewatch {
				watch()
			}
			now = t0.Add(2 * time.Second)
			if err := h.Check(context.Background()); (err != nil) != tc.wantStale {
				t.Fatalf("Check: %v, want stale %v", err, tc.wantStale)
			}
		})
	}
}

package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/mtls-guard/mtls-guard/webhook"
)

// cacheHealth says whether the informer cache can answer: every informer
// has synced, and none has lost the API server for longer than maxStale.
//
// Loss is seen on the wire: the cache's own list and watch requests go
// through roundTripper, and a resource whose requests fail (no connection,
// 5xx, 401, 403, 404...) or whose watch ends is failing from then until one
// of its requests succeeds again. Informers retry refused connections without
// telling their watch error handler, so the handler alone would not see an
// API server that is down; it is used for logging.
type cacheHealth struct {
	maxStale time.Duration
	now      func() time.Time
	log      logr.Logger

	mu        sync.Mutex
	informers []cache.Informer
	// synced are further checks, such as the index's event handlers
	// having seen the initial lists.
	synced  []func() bool
	failing map[string]failure // by request path: one per resource
}

type failure struct {
	since time.Time
	err   error
}

func newCacheHealth(maxStale time.Duration, log logr.Logger) *cacheHealth {
	return &cacheHealth{maxStale: maxStale, now: time.Now, log: log, failing: map[string]failure{}}
}

// watch adds informers that must have synced.
func (h *cacheHealth) watch(infs ...cache.Informer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.informers = append(h.informers, infs...)
}

// requireSynced adds a check that must pass before decisions are made.
func (h *cacheHealth) requireSynced(f func() bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.synced = append(h.synced, f)
}

// Check returns webhook.ErrNotSynced before every informer has synced, an
// error wrapping webhook.ErrCacheStale while a resource has failed for
// longer than maxStale, and nil otherwise.
func (h *cacheHealth) Check(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, inf := range h.informers {
		if !inf.HasSynced() {
			return webhook.ErrNotSynced
		}
	}
	for _, f := range h.synced {
		if !f() {
			return webhook.ErrNotSynced
		}
	}
	paths := make([]string, 0, len(h.failing))
	for p := range h.failing {
		paths = append(paths, p)
	}
	sort.Strings(paths) // one answer for the same state
	now := h.now()
	for _, p := range paths {
		f := h.failing[p]
		if d := now.Sub(f.since); d > h.maxStale {
			return fmt.Errorf("%w: listing and watching %s has failed for %s, longer than --max-cache-staleness=%s (last error: %v); refusing to decide on a stale view",
				webhook.ErrCacheStale, p, d.Round(time.Millisecond), h.maxStale, f.err)
		}
	}
	return nil
}

// observe records the outcome of one request of the cache.
func (h *cacheHealth) observe(path string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, failing := h.failing[path]
	switch {
	case err == nil && failing:
		delete(h.failing, path)
		h.log.Info("the cache reaches the API server again", "path", path, "after", h.now().Sub(f.since).Round(time.Millisecond))
	case err != nil && !failing:
		h.failing[path] = failure{since: h.now(), err: err}
		h.log.Info("the cache lost the API server", "path", path, "error", err.Error())
	case err != nil:
		f.err = err
		h.failing[path] = f
	}
}

// roundTripper observes the cache's requests to the API server.
func (h *cacheHealth) roundTripper(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(r)
		if r.Method != http.MethodGet {
			return resp, err
		}
		switch {
		case err != nil:
			if r.Context().Err() != nil || errors.Is(err, context.Canceled) {
				return resp, err // the cache stopped the request: shutting down
			}
			h.observe(r.URL.Path, err)
		case resp.StatusCode == http.StatusGone:
			// An expired resourceVersion: the informer relists, which
			// says more.
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			h.observe(r.URL.Path, nil)
			if q := r.URL.Query().Get("watch"); q == "true" || q == "1" {
				resp.Body = &watchBody{ReadCloser: resp.Body, ctx: r.Context(), path: r.URL.Path, h: h}
			}
		default:
			h.observe(r.URL.Path, fmt.Errorf("the API server answered %s", resp.Status))
		}
		return resp, err
	})
}

// watchBody notices a watch that ends. Informers watch without end: the
// server closes a watch after some minutes and the informer opens the next
// at once, which clears the mark; but after a broken stream, or an error
// inside it (an expired resourceVersion after an API server restart), the
// informer backs off before it lists again, for up to half a minute, and
// the cache is stale all that time. The clock runs from the end of the
// watch, however it ended, unless the cache is stopping.
type watchBody struct {
	io.ReadCloser
	ctx   context.Context
	path  string
	h     *cacheHealth
	ended atomic.Bool
}

func (b *watchBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.end(err)
	}
	return n, err
}

func (b *watchBody) Close() error {
	b.end(errors.New("closed by the informer"))
	return b.ReadCloser.Close()
}

func (b *watchBody) end(err error) {
	if b.ctx.Err() != nil || !b.ended.CompareAndSwap(false, true) {
		return
	}
	b.h.observe(b.path, fmt.Errorf("watch ended: %w", err))
}

// watchErrorHandler logs why an informer's list and watch ended, then does
// what client-go does by default.
func (h *cacheHealth) watchErrorHandler(ctx context.Context, r *toolscache.Reflector, err error) {
	h.log.Info("informer list and watch failed; retrying", "type", r.TypeDescription(), "error", err.Error())
	toolscache.DefaultWatchErrorHandler(ctx, r, err)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

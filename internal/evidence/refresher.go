package evidence

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
)

// Why the evidence is unavailable.
const (
	// NeverFetched: no fetch has succeeded yet.
	NeverFetched = "never-fetched"
	// RefreshFailed: the last fetch failed.
	RefreshFailed = "refresh-failed"
	// Stale: the last success is older than the maximum age.
	Stale = "stale"
)

// UnavailableError says why the evidence cannot be trusted now.
type UnavailableError struct {
	// Reason is NeverFetched, RefreshFailed or Stale.
	Reason string
	// Age is the age of the last good snapshot; zero when there is none.
	Age time.Duration
	// MaxAge is the configured maximum age.
	MaxAge time.Duration
	// Err is the last fetch's error, if it failed.
	Err error
}

func (e *UnavailableError) Error() string {
	switch e.Reason {
	case NeverFetched:
		if e.Err != nil {
			return fmt.Sprintf("plaintext evidence unavailable: no successful fetch from Prometheus yet: %v", e.Err)
		}
		return "plaintext evidence unavailable: no fetch from Prometheus yet"
	case RefreshFailed:
		return fmt.Sprintf("plaintext evidence unavailable: the last refresh failed (last good evidence %s old): %v", e.Age.Round(time.Second), e.Err)
	default:
		return fmt.Sprintf("plaintext evidence unavailable: the last good evidence is %s old, older than %s", e.Age.Round(time.Second), e.MaxAge)
	}
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Refresher keeps the evidence fresh in the background: it fetches at
// start and then every interval, and keeps the last good snapshot. It is a
// controller-runtime manager.Runnable that runs on every replica (the
// webhook answers on all of them) and never gates readiness.
type Refresher struct {
	fetcher  Fetcher
	interval time.Duration
	maxAge   time.Duration
	log      logr.Logger

	snap atomic.Pointer[Snapshot]
	last atomic.Pointer[error] // the last fetch's error; nil before any fetch
}

// NewRefresher returns a refresher that fetches every interval and calls
// evidence older than maxAge stale. It registers the evidence metrics.
func NewRefresher(f Fetcher, interval, maxAge time.Duration, log logr.Logger) *Refresher {
	registerMetrics()
	return &Refresher{fetcher: f, interval: interval, maxAge: maxAge, log: log}
}

// New validates cfg and returns the refresher that fetches its Prometheus
// every cfg.Refresh and calls evidence older than cfg.MaxAge stale. The
// feature must be on (cfg.Enabled).
func New(cfg Config, log logr.Logger) (*Refresher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p, err := NewPrometheus(cfg, log)
	if err != nil {
		return nil, err
	}
	return NewRefresher(p, cfg.Refresh, cfg.MaxAge, log), nil
}

// NeedLeaderElection is false: every replica answers admission requests
// and needs its own evidence.
func (r *Refresher) NeedLeaderElection() bool { return false }

// Start refreshes now and then every interval until ctx is done. Failures
// are logged and reported by Current, never returned: Prometheus being
// down must not stop the guard.
func (r *Refresher) Start(ctx context.Context) error {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		r.Refresh(ctx) //nolint:errcheck // recorded for Current and logged
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Refresh fetches once, within the refresh interval clamped to 10s..30s,
// and records the outcome. A one-shot command calls it instead of Start.
func (r *Refresher) Refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(max(r.interval, 10*time.Second), 30*time.Second))
	defer cancel()
	snap, err := r.fetcher.Fetch(ctx)
	if err == nil && snap == nil {
		err = errors.New("fetcher returned no snapshot")
	}
	if err != nil {
		r.last.Store(&err)
		refreshes.WithLabelValues(outcomeError).Inc()
		if prev := r.snap.Load(); prev != nil {
			r.log.Error(err, "Refreshing plaintext evidence failed; keeping the last good snapshot",
				"lastSuccess", prev.Fetched, "maxAge", r.maxAge)
		} else {
			r.log.Error(err, "Refreshing plaintext evidence failed; no evidence yet")
		}
		return err
	}
	r.snap.Store(snap)
	var none error
	r.last.Store(&none)
	refreshes.WithLabelValues(outcomeSuccess).Inc()
	lastSuccess.Store(snap)
	r.log.V(1).Info("Refreshed plaintext evidence", "workloads", snap.Len(), "window", snap.Window)
	return nil
}

// Current returns the last good snapshot and, when the evidence cannot be
// trusted at now, an *UnavailableError saying why: no fetch has succeeded,
// the last fetch failed, or the last success is older than maxAge. The
// snapshot is returned even then (nil if none), for messages. It never
// blocks.
func (r *Refresher) Current(now time.Time) (*Snapshot, error) {
	snap := r.snap.Load()
	var lastErr error
	if p := r.last.Load(); p != nil {
		lastErr = *p
	}
	if snap == nil {
		return nil, &UnavailableError{Reason: NeverFetched, MaxAge: r.maxAge, Err: lastErr}
	}
	age := now.Sub(snap.Fetched)
	if lastErr != nil {
		return snap, &UnavailableError{Reason: RefreshFailed, Age: age, MaxAge: r.maxAge, Err: lastErr}
	}
	if age > r.maxAge {
		return snap, &UnavailableError{Reason: Stale, Age: age, MaxAge: r.maxAge}
	}
	return snap, nil
}

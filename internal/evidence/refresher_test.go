package evidence

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var _ manager.LeaderElectionRunnable = (*Refresher)(nil)
var _ manager.Runnable = (*Refresher)(nil)

// script is a Fetcher whose next answer the test sets, on a clock the
// test moves.
type script struct {
	now   time.Time
	err   error
	calls atomic.Int64
}

func (s *script) Fetch(context.Context) (*Snapshot, error) {
	s.calls.Add(1)
	if s.err != nil {
		return nil, s.err
	}
	return NewSnapshot(s.now, time.Hour, 1, model.Vector{sample("istio-demo", "web", "unknown", "unknown", 3)}, nil), nil
}

func TestRefresherCurrent(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	const maxAge = 5 * time.Minute
	down := errors.New("connection refused")
	var logged []string
	log := funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{})
	f := &script{now: t0}
	r := NewRefresher(f, time.Minute, maxAge, log)

	// step: optionally refresh (with the fetcher failing or not), then ask
	// Current at the given time.
	steps := []struct {
		name      string
		refresh   bool
		fail      error
		fetchAt   time.Time
		at        time.Time
		reason    string // "" when available
		age       time.Duration
		wantErr   error
		wantSnap  bool
		wantInMsg string
	}{
		{name: "before any fetch", at: t0, reason: NeverFetched, wantInMsg: "no fetch from Prometheus yet"},
		{name: "first fetch fails", refresh: true, fail: down, at: t0, reason: NeverFetched, wantErr: down,
			wantInMsg: "no successful fetch from Prometheus yet: connection refused"},
		{name: "first success", refresh: true, fetchAt: t0, at: t0.Add(time.Second), wantSnap: true},
		{name: "fresh at max age", at: t0.Add(maxAge), wantSnap: true},
		{name: "stale after max age", at: t0.Add(maxAge + time.Second), reason: Stale, age: maxAge + time.Second, wantSnap: true,
			wantInMsg: "the last good evidence is 5m1s old, older than 5m0s"},
		{name: "refresh fails while fresh", refresh: true, fail: down, at: t0.Add(2 * time.Minute), reason: RefreshFailed,
			age: 2 * time.Minute, wantErr: down, wantSnap: true,
			wantInMsg: "the last refresh failed (last good evidence 2m0s old): connection refused"},
		{name: "recovers", refresh: true, fetchAt: t0.Add(3 * time.Minute), at: t0.Add(3 * time.Minute), wantSnap: true},
	}
	for _, st := range steps {
		if st.refresh {
			f.err, f.now = st.fail, st.fetchAt
			err := r.Refresh(context.Background())
			if !errors.Is(err, st.fail) || (st.fail == nil) != (err == nil) {
				t.Fatalf("%s: Refresh() = %v, want %v", st.name, err, st.fail)
			}
		}
		snap, err := r.Current(st.at)
		if (snap != nil) != st.wantSnap {
			t.Errorf("%s: snapshot = %v, want one: %v", st.name, snap, st.wantSnap)
		}
		if st.reason == "" {
			if err != nil {
				t.Errorf("%s: Current() error = %v, want none", st.name, err)
			}
			if snap.Lookup("istio-demo", "web") == nil {
				t.Errorf("%s: the snapshot lacks the evidence", st.name)
			}
			continue
		}
		var ue *UnavailableError
		if !errors.As(err, &ue) {
			t.Fatalf("%s: Current() error = %v, want an *UnavailableError", st.name, err)
		}
		if ue.Reason != st.reason || ue.Age != st.age || ue.MaxAge != maxAge || !errors.Is(ue.Err, st.wantErr) {
			t.Errorf("%s: %+v, want reason %s age %s err %v", st.name, ue, st.reason, st.age, st.wantErr)
		}
		if !strings.Contains(err.Error(), st.wantInMsg) {
			t.Errorf("%s: message %q lacks %q", st.name, err, st.wantInMsg)
		}
	}
	// Both failures were logged as errors.
	failures := 0
	for _, l := range logged {
		if strings.Contains(l, "connection refused") && strings.Contains(l, `"msg"="Refreshing plaintext evidence failed`) {
			failures++
		}
	}
	if failures != 2 {
		t.Errorf("logged %d failures, want 2:\n%s", failures, strings.Join(logged, "\n"))
	}
}

func TestRefresherNilSnapshotIsAnError(t *testing.T) {
	r := NewRefresher(FetcherFunc(func(context.Context) (*Snapshot, error) { return nil, nil }), time.Minute, time.Minute, logr.Discard())
	if err := r.Refresh(context.Background()); err == nil {
		t.Fatal("a fetcher returning neither snapshot nor error was taken as success")
	}
	if _, err := r.Current(time.Now()); err == nil {
		t.Error("evidence available after a failed fetch")
	}
}

func TestRefresherStart(t *testing.T) {
	f := &script{now: time.Now()}
	r := NewRefresher(f, 10*time.Millisecond, time.Hour, logr.Discard())
	if r.NeedLeaderElection() {
		t.Error("NeedLeaderElection() = true: replicas that are not leader would have no evidence")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	// Start fetches at once and then on every tick.
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return f.calls.Load() >= 3, nil
	})
	if err != nil {
		t.Fatalf("Start fetched %d times: %v", f.calls.Load(), err)
	}
	if _, err := r.Current(f.now); err != nil {
		t.Errorf("Current() after Start's fetches: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start() = %v, want nil on cancel", err)
	}
}

func TestRefresherStartSurvivesFailures(t *testing.T) {
	f := &script{err: errors.New("503 Service Unavailable")}
	r := NewRefresher(f, time.Millisecond, time.Hour, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	err := wait.PollUntilContextTimeout(context.Background(), time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return f.calls.Load() >= 3, nil
	})
	if err != nil {
		t.Fatalf("Start stopped retrying after a failure: %d calls: %v", f.calls.Load(), err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start() = %v, want nil: failures must not stop the manager", err)
	}
}

func TestMetrics(t *testing.T) {
	t0 := time.Now()
	f := &script{now: t0}
	r := NewRefresher(f, time.Minute, time.Hour, logr.Discard())
	success := testutil.ToFloat64(refreshes.WithLabelValues(outcomeSuccess))
	failed := testutil.ToFloat64(refreshes.WithLabelValues(outcomeError))

	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.err = errors.New("boom")
	r.Refresh(context.Background()) //nolint:errcheck // counted below

	if got := testutil.ToFloat64(refreshes.WithLabelValues(outcomeSuccess)) - success; got != 1 {
		t.Errorf("success refreshes grew by %v, want 1", got)
	}
	if got := testutil.ToFloat64(refreshes.WithLabelValues(outcomeError)) - failed; got != 1 {
		t.Errorf("failed refreshes grew by %v, want 1", got)
	}
	if got := testutil.ToFloat64(workloads); got != 1 {
		t.Errorf("workloads = %v, want 1", got)
	}
	if got := evidenceAge(t0.Add(90 * time.Second)); got != 90 {
		t.Errorf("age 90s later = %v", got)
	}
	// The manager serves them: they are on controller-runtime's registry.
	fams, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"mtls_guard_plaintext_refresh_total": false, "mtls_guard_plaintext_evidence_age_seconds": false, "mtls_guard_plaintext_workloads": false}
	for _, f := range fams {
		if _, ok := want[f.GetName()]; ok {
			want[f.GetName()] = true
		}
	}
	for name, found := range want {
		if !found {
			t.Errorf("%s not on controller-runtime's metrics registry", name)
		}
	}
}

func TestEvidenceAgeBeforeSuccess(t *testing.T) {
	prev := lastSuccess.Swap(nil)
	t.Cleanup(func() { lastSuccess.Store(prev) })
	if got := evidenceAge(time.Now()); !math.IsInf(got, 1) {
		t.Errorf("age before any success = %v, want +Inf", got)
	}
}

package evidence_test

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mtls-guard/mtls-guard/internal/evidence"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/internal/testenv/istiometrics"
)

var (
	web      = istiometrics.Workload{Namespace: "istio-demo", Name: "web"}
	api      = istiometrics.Workload{Namespace: "istio-demo", Name: "api"}
	postgres = istiometrics.Workload{Namespace: "db", Name: "postgres"}
	invoicer = istiometrics.Workload{Namespace: "billing", Name: "invoicer"}
)

// startPrometheus runs a real Prometheus scraping the exporter every
// second, stopped when the test ends. Without bin/prometheus the test
// fails, saying to run `make testbin`.
func startPrometheus(t *testing.T, e *istiometrics.Exporter) *testenv.Prometheus {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a Prometheus server; skipped with -short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr, err := e.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := testenv.StartPrometheus(ctx, t.TempDir(), []string{addr}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stopping Prometheus: %v", err)
		}
	})
	return p
}

// waitFor waits until Prometheus has a sample for query.
func waitFor(t *testing.T, p *testenv.Prometheus, query string) {
	t.Helper()
	if err := testenv.WaitForSeries(context.Background(), p.URL, query); err != nil {
		t.Fatalf("%v; Prometheus log: %s", err, p.Log)
	}
}

func config(url string) evidence.Config {
	c := evidence.DefaultConfig()
	c.PrometheusURL = url
	c.Window = time.Hour
	return c
}

func newPrometheus(t *testing.T, c evidence.Config) *evidence.Prometheus {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	f, err := evidence.NewPrometheus(c, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// evidenceOf renders a snapshot for comparison, sorted.
func evidenceOf(s *evidence.Snapshot) []evidence.Evidence {
	var out []evidence.Evidence
	for _, ns := range s.Namespaces() {
		for _, e := range s.ForNamespace(ns) {
			out = append(out, *e)
		}
	}
	slices.SortFunc(out, func(a, b evidence.Evidence) int {
		return strings.Compare(a.Namespace+"/"+a.Workload, b.Namespace+"/"+b.Workload)
	})
	return out
}

// TestFetchFromPrometheus: plaintext from outside the mesh and from a
// known caller in another namespace is found with its counts and sources;
// mTLS traffic, which Prometheus has too, is not.
func TestFetchFromPrometheus(t *testing.T) {
	e := istiometrics.New()
	// A sidecar's counters exist at zero before the first call is counted:
	// Prometheus sees no increase in a counter that appears already at n.
	e.Request(istiometrics.Unknown, web, istiometrics.SecurityNone, 0)
	e.Request(invoicer, web, istiometrics.SecurityNone, 0)
	e.Request(invoicer, web, istiometrics.SecurityMutualTLS, 0)
	e.Request(invoicer, api, istiometrics.SecurityMutualTLS, 0)
	e.Connection(istiometrics.Unknown, postgres, istiometrics.SecurityUnknown, 0)
	p := startPrometheus(t, e)
	waitFor(t, p, `count(istio_requests_total) == 4`)
	waitFor(t, p, istiometrics.TCPConnectionsOpened)

	e.Request(istiometrics.Unknown, web, istiometrics.SecurityNone, 3)
	e.Request(invoicer, web, istiometrics.SecurityNone, 2)
	e.Request(invoicer, web, istiometrics.SecurityMutualTLS, 50)
	e.Request(invoicer, api, istiometrics.SecurityMutualTLS, 7)
	e.Connection(istiometrics.Unknown, postgres, istiometrics.SecurityUnknown, 4)
	// Prometheus has scraped the mTLS calls: their absence below is the
	// query's doing.
	waitFor(t, p, `istio_requests_total{destination_workload="api",connection_security_policy="mutual_tls"} == 7`)

	unknown := evidence.Source{Namespace: "unknown", Workload: "unknown"}
	want := []evidence.Evidence{
		{Namespace: "db", Workload: "postgres", Connections: 4, Sources: []evidence.Source{unknown}},
		{Namespace: "istio-demo", Workload: "web", Requests: 5,
			Sources: []evidence.Source{{Namespace: "billing", Workload: "invoicer"}, unknown}},
	}
	f := newPrometheus(t, config(p.URL))
	// increase() extrapolates to the query time, so a count just scraped
	// reads high for a moment: poll until it is exact (a bound, not a sleep).
	var last *evidence.Snapshot
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		s, err := f.Fetch(ctx)
		if err != nil {
			return false, err
		}
		last = s
		return reflect.DeepEqual(evidenceOf(s), want), nil
	})
	if err != nil {
		t.Fatalf("evidence never became\n%+v\nlast snapshot:\n%+v\n(%v)", want, evidenceOf(last), err)
	}
	if last.Lookup("istio-demo", "api") != nil {
		t.Error("mTLS-only workload istio-demo/api has evidence")
	}
	if last.Window != time.Hour || time.Since(last.Fetched) > time.Minute || last.Len() != 2 {
		t.Errorf("snapshot window %s, fetched %s, len %d", last.Window, last.Fetched, last.Len())
	}

	// A higher minimum drops postgres's 4 connections but keeps web's 5.
	c := config(p.URL)
	c.MinRequests = 5
	s, err := newPrometheus(t, c).Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Lookup("db", "postgres") != nil || s.Lookup("istio-demo", "web") == nil {
		t.Errorf("with --plaintext-min-requests=5: %+v", evidenceOf(s))
	}
}

// authProxy fronts Prometheus with TLS and a bearer token check, like a
// managed Prometheus endpoint. It records the tokens it was sent.
type authProxy struct {
	*httptest.Server
	mu     sync.Mutex
	want   string
	tokens []string
}

func newAuthProxy(t *testing.T, target string) *authProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	a := &authProxy{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	a.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		a.mu.Lock()
		a.tokens = append(a.tokens, tok)
		ok := tok == a.want
		a.mu.Unlock()
		if !ok {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	// The untrusted-CA case below fails handshakes on purpose.
	a.Config.ErrorLog = log.New(io.Discard, "", 0)
	a.StartTLS()
	t.Cleanup(a.Close)
	return a
}

func (a *authProxy) expect(tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.want, a.tokens = tok, nil
}

func (a *authProxy) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Compact(slices.Clone(a.tokens))
}

// TestBearerTokenAndCA: the CA file verifies the server, and the token file
// is read again on each refresh, so that a rotated token is used.
func TestBearerTokenAndCA(t *testing.T) {
	e := istiometrics.New()
	e.Request(istiometrics.Unknown, web, istiometrics.SecurityNone, 1)
	p := startPrometheus(t, e)
	proxy := newAuthProxy(t, p.URL)

	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proxy.Certificate().Raw})
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	writeToken := func(tok string) {
		if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := config(proxy.URL)
	c.CAFile, c.BearerTokenFile = caFile, tokenFile
	writeToken("token-1")
	r := evidence.NewRefresher(newPrometheus(t, c), time.Minute, time.Hour, testr.New(t))

	proxy.expect("token-1")
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatalf("refresh with token-1: %v", err)
	}
	if got := proxy.seen(); !reflect.DeepEqual(got, []string{"token-1"}) {
		t.Errorf("tokens sent = %q, want token-1", got)
	}

	// The token rotates: the next refresh sends the new one.
	writeToken("token-2")
	proxy.expect("token-2")
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatalf("refresh after the token rotated: %v", err)
	}
	if got := proxy.seen(); !reflect.DeepEqual(got, []string{"token-2"}) {
		t.Errorf("tokens sent after rotation = %q, want token-2", got)
	}

	// A token the server refuses fails the refresh with Prometheus's 401,
	// naming the query.
	proxy.expect("token-3")
	err := r.Refresh(context.Background())
	var perr *promv1.Error
	if !errors.As(err, &perr) || perr.Type != promv1.ErrClient || !strings.Contains(err.Error(), evidence.RequestsMetric) {
		t.Errorf("refresh with a refused token = %v, want a client error naming %s", err, evidence.RequestsMetric)
	}
	if _, err := r.Current(time.Now()); err == nil {
		t.Error("evidence available after a refused refresh")
	}

	// Without the CA file the server's certificate is not trusted.
	c.CAFile = ""
	_, err = newPrometheus(t, c).Fetch(context.Background())
	var uerr *url.Error
	if !errors.As(err, &uerr) || !strings.Contains(err.Error(), evidence.RequestsMetric) {
		t.Errorf("fetch without the CA = %v, want a TLS failure naming the query", err)
	}
}

// TestPrometheusStopped: a refresher running against a real Prometheus has
// evidence; once Prometheus stops, Fetch fails and Current says the
// evidence is unavailable because the refresh failed.
func TestPrometheusStopped(t *testing.T) {
	e := istiometrics.New()
	e.Request(istiometrics.Unknown, web, istiometrics.SecurityNone, 0)
	p := startPrometheus(t, e)
	waitFor(t, p, istiometrics.RequestsTotal)
	e.Request(istiometrics.Unknown, web, istiometrics.SecurityNone, 1)
	waitFor(t, p, istiometrics.RequestsTotal+` == 1`)

	r := evidence.NewRefresher(newPrometheus(t, config(p.URL)), 100*time.Millisecond, time.Hour, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	current := func(cond func(*evidence.Snapshot, error) bool) (s *evidence.Snapshot, err error) {
		t.Helper()
		werr := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			s, err = r.Current(time.Now())
			return cond(s, err), nil
		})
		if werr != nil {
			t.Fatalf("Current() = %v, %v: %v", s, err, werr)
		}
		return s, err
	}
	current(func(s *evidence.Snapshot, err error) bool { return err == nil && s.Lookup("istio-demo", "web") != nil })

	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := newPrometheus(t, config(p.URL)).Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), evidence.RequestsMetric) {
		t.Errorf("Fetch from a stopped Prometheus = %v, want an error naming %s", err, evidence.RequestsMetric)
	}
	snap, err := current(func(_ *evidence.Snapshot, err error) bool { return err != nil })
	var ue *evidence.UnavailableError
	if !errors.As(err, &ue) || ue.Reason != evidence.RefreshFailed || ue.Err == nil {
		t.Fatalf("Current() after Prometheus stopped = %v, want %s", err, evidence.RefreshFailed)
	}
	if snap.Lookup("istio-demo", "web") == nil {
		t.Error("the last good snapshot is not returned with the error")
	}
	t.Logf("unavailable: %v", err)
}

package faults

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/webhook"
)

// TestAPIServerRestart stops and restarts the API server under a running
// guard, twice. During each outage /readyz fails once the cache has been
// cut off for --max-cache-staleness, /healthz stays up (a restart would
// not help), and every request gets an error, never an allowance. After
// each restart the informers recover on their own, and a pod created after
// the restart is seen by the guard's decisions.
func TestAPIServerRestart(t *testing.T) {
	const (
		cycles    = 2
		staleness = 2 * time.Second
	)
	ns := "restart"
	mkNamespace(t, ns)
	mkPod(t, ns, "web", true)
	g := startGuard(t, context.Background(), "--max-cache-staleness", staleness.String())
	g.waitProbe(t, "/readyz", true, time.Minute)
	if resp := g.decide(t, strictReview(t, "before", ns)); !resp.Allowed {
		t.Fatalf("STRICT over meshed pods only: %+v", resp.Result)
	}

	errorsDuringOutages := 0
	for i := 1; i <= cycles; i++ {
		apiServer := cluster.Env.ControlPlane.APIServer
		if err := apiServer.Stop(); err != nil {
			t.Fatalf("stopping the API server: %v", err)
		}
		notReady := g.waitProbe(t, "/readyz", false, 30*time.Second)
		if !g.probe("/healthz") {
			t.Error("/healthz fails during an API server outage; restarting the guard would not help")
		}
		for j := 0; j < 10; j++ {
			resp := g.decide(t, strictReview(t, fmt.Sprintf("outage-%d-%d", i, j), ns))
			if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusServiceUnavailable || !strings.Contains(resp.Result.Message, webhook.ErrCacheStale.Error()) {
				t.Fatalf("a stale guard answered allowed=%v %+v, want a 503 error", resp.Allowed, resp.Result)
			}
			errorsDuringOutages++
		}

		if err := apiServer.Start(); err != nil {
			t.Fatalf("starting the API server again: %v", err)
		}
		ready := g.waitProbe(t, "/readyz", true, 2*time.Minute)

		// A pod created after the restart reaches the guard's decisions.
		// Until it does, the guard may answer from its last view only
		// within --max-cache-staleness; after that, only with errors.
		pod := fmt.Sprintf("legacy-%d", i)
		mkPod(t, ns, pod, false)
		created := time.Now()
		var last string
		staleErrors := 0
		err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			resp := g.decide(t, strictReview(t, fmt.Sprintf("after-%d", i), ns))
			last = resp.Result.Message
			if !resp.Allowed && resp.Result.Code == http.StatusServiceUnavailable {
				staleErrors++
			}
			return !resp.Allowed && resp.Result.Code == http.StatusForbidden && strings.Contains(last, "Pod/"+pod+" (1 pod: no-sidecar)"), nil
		})
		if err != nil {
			t.Fatalf("the pod created after restart %d never reached a decision: %v (last: %s)", i, err, last)
		}
		t.Logf("restart %d: not ready %s after the stop, ready %s after the start, pod seen %s after its creation (%d stale errors meanwhile)",
			i, notReady.Round(time.Millisecond), ready.Round(time.Millisecond), time.Since(created).Round(time.Millisecond), staleErrors)

		// And its deletion too: STRICT is allowed again.
		if err := cluster.Admin.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pod}}, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
		err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			return g.decide(t, strictReview(t, fmt.Sprintf("deleted-%d", i), ns)).Allowed, nil
		})
		if err != nil {
			t.Fatalf("the pod deleted after restart %d is still counted: %v", i, err)
		}
	}
	t.Logf("RELIABILITY: API server restarts survived: %d; requests during outages: %d, all errors, 0 allowances", cycles, errorsDuringOutages)
}

// TestSIGTERMDrains sends SIGTERM to the process while requests are in
// flight (their bodies half sent): new connections are refused at once,
// the requests in flight complete with real decisions, and serve returns
// cleanly.
func TestSIGTERMDrains(t *testing.T) {
	denyNS, allowNS := "drain-legacy", "drain-meshed"
	mkNamespace(t, denyNS)
	mkNamespace(t, allowNS)
	mkPod(t, denyNS, "legacy", false)
	mkPod(t, allowNS, "web", true)

	// What ctrl.SetupSignalHandler gives `mtls-guard serve`.
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stopSignals()
	g := startGuard(t, ctx)
	g.waitProbe(t, "/readyz", true, time.Minute)
	// The cache holds both pods once the denial comes.
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return !g.decide(t, strictReview(t, "warm", denyNS)).Allowed, nil
	}); err != nil {
		t.Fatal(err)
	}

	type inflight struct {
		conn    *tls.Conn
		rest    []byte
		uid     string
		allowed bool
	}
	const n = 4
	base := inFlight(t)
	var reqs []inflight
	for i := 0; i < n; i++ {
		ns, allowed := denyNS, false
		if i%2 == 1 {
			ns, allowed = allowNS, true
		}
		uid := fmt.Sprintf("inflight-%d", i)
		body := strictReview(t, uid, ns)
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", g.Port), g.tlsConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		half := len(body) / 2
		if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", webhook.Path, len(body), body[:half]); err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, inflight{conn: conn, rest: body[half:], uid: uid, allowed: allowed})
	}
	// Every request is in the handler, reading its body.
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return inFlight(t) >= base+n, nil
	}); err != nil {
		t.Fatalf("the requests never reached the handler: %v", err)
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", g.Port), time.Second)
		if err != nil {
			return true, nil
		}
		conn.Close()
		return false, nil
	}); err != nil {
		t.Fatal("new connections are still accepted after SIGTERM")
	}
	if g.Exited() {
		t.Fatalf("serve returned with requests in flight: %v", g.Err())
	}

	for _, r := range reqs {
		if _, err := r.conn.Write(r.rest); err != nil {
			t.Fatalf("%s: finishing the body: %v", r.uid, err)
		}
		_ = r.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(r.conn), nil)
		if err != nil {
			t.Fatalf("%s: no answer after SIGTERM: %v", r.uid, err)
		}
		got := readAnswer(t, resp.Body)
		resp.Body.Close()
		if string(got.UID) != r.uid || got.Allowed != r.allowed || got.Result == nil || (got.Result.Code != http.StatusOK && got.Result.Code != http.StatusForbidden) {
			t.Errorf("%s: answer uid %q allowed %v %+v, want the decision (allowed %v)", r.uid, got.UID, got.Allowed, got.Result, r.allowed)
		}
	}
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 40*time.Second, true, func(context.Context) (bool, error) {
		return g.Exited(), nil
	}); err != nil {
		t.Fatal("serve did not return after the drain")
	}
	if err := g.Err(); err != nil {
		t.Errorf("serve returned %v after a clean drain", err)
	}
	t.Logf("RELIABILITY: SIGTERM with %d requests in flight survived: all answered, new connections refused", n)
}

// inFlight reads the guard's in-flight request gauge.
func inFlight(t *testing.T) float64 {
	t.Helper()
	var m dto.Metric
	if err := webhook.RequestsInFlight.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/policy"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// Load settings; the environment overrides them, within bounds.
const (
	loadDurationEnv = "MTLS_GUARD_LOAD_DURATION" // default 20s, at most 10m
	loadClientsEnv  = "MTLS_GUARD_LOAD_CLIENTS"  // default 8, at most 64
)

// TestLoad: concurrent clients send decisions over HTTPS, with -race on,
// while pods come and go in a namespace the decisions do not depend on.
// Every answer must be the engine's answer on a snapshot of the fixed
// namespaces, taken from the API server; there must be no error at all.
func TestLoad(t *testing.T) {
	duration, clients := loadSettings(t)
	ctx := context.Background()
	// Decision logs off: a log line per request would be most of the work.
	g, err := startGuard(ctx, testenv.GuardUser, []string{"--zap-log-level", "error"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.stop)

	fixed := []string{"load-meshed", "load-legacy", "load-carve"}
	const churnNS = "load-churn"
	setupLoadCluster(t, fixed, churnNS)
	cases := loadCases(churnNS)
	snap := loadSnapshot(t, append(fixed, rootNamespace))
	opts, err := engine.NewOptions(rootNamespace, mesh.Native, strings.Split(engine.DefaultExcludedNamespaces, ","), os.Getenv("POD_NAMESPACE"), true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cases {
		cases[i].want = expectLoad(t, snap, opts, cases[i])
	}
	outcomes := map[bool]int{}
	for _, c := range cases {
		outcomes[c.want.Allowed]++
	}
	if outcomes[true] == 0 || outcomes[false] == 0 {
		t.Fatalf("the load mixes no allowances and denials: %v", outcomes)
	}

	// The guard's cache catches up with the setup.
	hc := loadClient(g)
	for _, c := range cases {
		var last string
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			resp, err := postReview(hc, g, c.body)
			if err != nil {
				return false, err
			}
			last = compareAnswer(c, resp)
			return last == "", nil
		})
		if err != nil {
			t.Fatalf("%s: the guard never gave the engine's answer: %v (%s)", c.name, err, last)
		}
	}

	runCtx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var churned atomic.Int64
	churnDone := make(chan error, 1)
	go func() { churnDone <- churn(runCtx, churnNS, &churned) }()

	var (
		requests, wrongAllowances atomic.Int64
		mu                        sync.Mutex
		failures                  []string
		wg                        sync.WaitGroup
	)
	fail := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, s)
		}
	}
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			hc := loadClient(g)
			defer hc.CloseIdleConnections()
			for i := w; runCtx.Err() == nil; i++ {
				c := cases[i%len(cases)]
				resp, err := postReview(hc, g, c.body)
				requests.Add(1)
				if err != nil {
					if runCtx.Err() == nil {
						fail(fmt.Sprintf("client %d, %s: %v", w, c.name, err))
					}
					continue
				}
				if resp.Allowed && !c.want.Allowed {
					wrongAllowances.Add(1)
				}
				if diff := compareAnswer(c, resp); diff != "" {
					fail(fmt.Sprintf("client %d, %s: %s", w, c.name, diff))
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := <-churnDone; err != nil {
		t.Errorf("pod churn: %v", err)
	}
	for _, f := range failures {
		t.Error(f)
	}
	if churned.Load() == 0 {
		t.Error("no pod was added or removed during the load")
	}
	t.Logf("RELIABILITY: load: %d requests from %d clients in %s (%.0f/s) with %d pod changes; %d failures, %d wrong allowances",
		requests.Load(), clients, elapsed.Round(time.Millisecond), float64(requests.Load())/elapsed.Seconds(), churned.Load(), len(failures), wrongAllowances.Load())
	if wrongAllowances.Load() != 0 {
		t.Errorf("%d wrong allowances", wrongAllowances.Load())
	}
}

func loadSettings(t *testing.T) (time.Duration, int) {
	t.Helper()
	duration, clients := 20*time.Second, 8
	if v := os.Getenv(loadDurationEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 10*time.Minute {
			t.Fatalf("%s=%q: want a duration in (0, 10m]", loadDurationEnv, v)
		}
		duration = d
	}
	if v := os.Getenv(loadClientsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 64 {
			t.Fatalf("%s=%q: want 1 to 64", loadClientsEnv, v)
		}
		clients = n
	}
	return duration, clients
}

// setupLoadCluster creates the fixed namespaces, in an order the shared
// guard admits: policies first, while their namespaces are empty.
func setupLoadCluster(t *testing.T, fixed []string, churnNS string) {
	t.Helper()
	for _, ns := range append(fixed, churnNS) {
		namespace(t, ns, injected)
	}
	meshed, legacy, carve := fixed[0], fixed[1], fixed[2]
	create(t, deploymentPod(meshed, "web", "m1", native))
	create(t, deploymentPod(meshed, "web", "m2", native))

	create(t, deploymentPod(legacy, "web", "l1", native))
	create(t, deploymentPod(legacy, "old", "l2", unmeshed))
	create(t, pod(legacy, "debug", map[string]string{"app": "debug"}, unmeshed))

	create(t, pa(carve, "default", "STRICT"))
	web := pa(carve, "web-permissive", "PERMISSIVE")
	web.Spec.Selector = selector("app", "web")
	create(t, web)
	create(t, deploymentPod(carve, "web", "c1", native))
	create(t, deploymentPod(carve, "legacy", "c2", unmeshed))
}

// loadCase is one request of the load and the engine's answer to it.
type loadCase struct {
	name string
	op   engine.Operation
	obj  string // the policy, JSON
	body []byte
	want *engine.Decision
	// churned decides in the churned namespace: the answer is fixed, but
	// a drift warning may come and go with the unmeshed pods there.
	churned bool
}

func loadCases(churnNS string) []loadCase {
	policyJSON := func(ns, name, spec string, annotations string) string {
		return fmt.Sprintf(`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":%q,"namespace":%q%s},"spec":%s}`, name, ns, annotations, spec)
	}
	override := `,"annotations":{"mtls-guard.io/override-reason":"LOAD-1"}`
	cases := []loadCase{
		{name: "STRICT over meshed pods", op: engine.Create, obj: policyJSON("load-meshed", "default", `{"mtls":{"mode":"STRICT"}}`, "")},
		{name: "STRICT next to unmeshed pods", op: engine.Create, obj: policyJSON("load-legacy", "default", `{"mtls":{"mode":"STRICT"}}`, "")},
		{name: "STRICT for the meshed workload only", op: engine.Create, obj: policyJSON("load-legacy", "web", `{"selector":{"matchLabels":{"app":"web"}},"mtls":{"mode":"STRICT"}}`, "")},
		{name: "port-level STRICT next to unmeshed pods", op: engine.Create, obj: policyJSON("load-legacy", "web-8080", `{"selector":{"matchLabels":{"app":"web"}},"portLevelMtls":{"8080":{"mode":"STRICT"}}}`, "")},
		{name: "overridden", op: engine.Create, obj: policyJSON("load-legacy", "default", `{"mtls":{"mode":"STRICT"}}`, override)},
		{name: "delete the carve-out", op: engine.Delete, obj: policyJSON("load-carve", "web-permissive", `{"selector":{"matchLabels":{"app":"web"}},"mtls":{"mode":"PERMISSIVE"}}`, "")},
		{name: "loosen to PERMISSIVE", op: engine.Update, obj: policyJSON("load-carve", "default", `{"mtls":{"mode":"PERMISSIVE"}}`, "")},
		{name: "invalid mode", op: engine.Create, obj: policyJSON("load-meshed", "bad", `{"mtls":{"mode":"STRCT"}}`, "")},
		{name: "PERMISSIVE in the churned namespace", op: engine.Create, obj: policyJSON(churnNS, "default", `{"mtls":{"mode":"PERMISSIVE"}}`, ""), churned: true},
		{name: "a newer mesh-wide PERMISSIVE", op: engine.Create, obj: policyJSON(rootNamespace, "load-mesh", `{"mtls":{"mode":"PERMISSIVE"}}`, "")},
	}
	for i := range cases {
		c := &cases[i]
		object, old := c.obj, ""
		if c.op == engine.Delete {
			object, old = "", c.obj
		}
		var r map[string]any
		if err := json.Unmarshal(review(fmt.Sprintf("load-%d", i), "PeerAuthentication", string(c.op), object, old), &r); err != nil {
			panic(err)
		}
		req := r["request"].(map[string]any)
		var meta struct {
			Metadata struct{ Namespace, Name string } `json:"metadata"`
		}
		if err := json.Unmarshal([]byte(c.obj), &meta); err != nil {
			panic(err)
		}
		req["namespace"], req["name"], req["dryRun"] = meta.Metadata.Namespace, meta.Metadata.Name, true
		b, err := json.Marshal(r)
		if err != nil {
			panic(err)
		}
		c.body = b
	}
	return cases
}

// loadSnapshot reads the given namespaces from the API server.
func loadSnapshot(t *testing.T, namespaces []string) *engine.Snapshot {
	t.Helper()
	ctx := context.Background()
	s := engine.NewSnapshot()
	for _, ns := range namespaces {
		var n corev1.Namespace
		if err := suite.admin.Get(ctx, client.ObjectKey{Name: ns}, &n); err != nil {
			t.Fatal(err)
		}
		s.Add(&n)
		var pods corev1.PodList
		var rss appsv1.ReplicaSetList
		var jobs batchv1.JobList
		var pas securityv1.PeerAuthenticationList
		for _, l := range []client.ObjectList{&pods, &rss, &jobs, &pas} {
			if err := suite.admin.List(ctx, l, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range pods.Items {
			s.Add(&pods.Items[i])
		}
		for i := range rss.Items {
			s.Add(&rss.Items[i])
		}
		for i := range jobs.Items {
			s.Add(&jobs.Items[i])
		}
		for _, p := range pas.Items {
			s.Add(p)
		}
	}
	return s
}

// expectLoad is the engine's answer, as the handler would give it.
func expectLoad(t *testing.T, snap *engine.Snapshot, opts engine.Options, c loadCase) *engine.Decision {
	t.Helper()
	p, err := policy.Decode([]byte(c.obj))
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	d, err := engine.Decide(snap, engine.Change{Operation: c.op, Policy: p}, opts)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return d
}

// compareAnswer returns how an answer differs from the engine's, or "".
func compareAnswer(c loadCase, resp *admissionv1.AdmissionResponse) string {
	want := c.want
	var sent struct {
		Request struct{ UID string } `json:"request"`
	}
	_ = json.Unmarshal(c.body, &sent)
	switch {
	case string(resp.UID) != sent.Request.UID:
		return fmt.Sprintf("UID %q, want %q", resp.UID, sent.Request.UID)
	case resp.Result == nil:
		return "no result"
	case resp.Allowed != want.Allowed || resp.Result.Message != want.Message:
		return fmt.Sprintf("allowed=%v %q (code %d), want allowed=%v %q", resp.Allowed, resp.Result.Message, resp.Result.Code, want.Allowed, want.Message)
	case c.churned:
		return ""
	case len(resp.Warnings) != len(want.Warnings):
		return fmt.Sprintf("warnings %q, want %q", resp.Warnings, want.Warnings)
	}
	for i, w := range want.Warnings {
		if r := []rune(w); len(r) > webhook.MaxWarningLength {
			w = string(r[:webhook.MaxWarningLength-1]) + "…"
		}
		if resp.Warnings[i] != w {
			return fmt.Sprintf("warning %q, want %q", resp.Warnings[i], w)
		}
	}
	if !want.Allowed && !want.Invalid {
		var got []string
		if resp.Result.Details != nil {
			for _, cause := range resp.Result.Details.Causes {
				got = append(got, cause.Field)
			}
		}
		var exp []string
		for _, w := range want.Unmeshed {
			exp = append(exp, w.Namespace+"/"+w.Kind+"/"+w.Name)
		}
		if strings.Join(got, ",") != strings.Join(exp, ",") {
			return fmt.Sprintf("causes %v, want %v", got, exp)
		}
	}
	return ""
}

func loadClient(g *guard) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(g.bundle.CACert)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 2,
	}}
}

func postReview(hc *http.Client, g *guard, body []byte) (*admissionv1.AdmissionResponse, error) {
	resp, err := hc.Post(fmt.Sprintf("https://127.0.0.1:%d%s", g.port, webhook.Path), "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var rv admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&rv); err != nil || rv.Response == nil {
		return nil, fmt.Errorf("not an AdmissionReview: %v", err)
	}
	return rv.Response, nil
}

// churn adds and removes pods, meshed and not, until ctx ends: at most
// one change every 10ms and at most 8 pods at a time.
func churn(ctx context.Context, ns string, changes *atomic.Int64) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var live []string
	bg := context.Background() // a change in progress completes
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			for _, name := range live {
				if err := suite.admin.Delete(bg, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, client.GracePeriodSeconds(0)); err != nil {
					return err
				}
			}
			return nil
		case <-tick.C:
		}
		if len(live) >= 8 || (len(live) > 0 && i%3 == 2) {
			name := live[0]
			live = live[1:]
			if err := suite.admin.Delete(bg, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, client.GracePeriodSeconds(0)); err != nil {
				return fmt.Errorf("deleting pod %s: %w", name, err)
			}
		} else {
			kind := unmeshed
			if i%2 == 0 {
				kind = native
			}
			p := deploymentPod(ns, "churn", strconv.Itoa(i), kind)
			if err := suite.admin.Create(bg, p); err != nil {
				return fmt.Errorf("creating pod %s: %w", p.Name, err)
			}
			live = append(live, p.Name)
		}
		changes.Add(1)
	}
}

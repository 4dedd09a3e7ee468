package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
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
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/engine/enginetest"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/policy"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// Load settings; the environment overrides them, within bounds.
const (
	loadDurationEnv = "MTLS_GUARD_LOAD_DURATION" // default 20s, at most 10m
	loadClientsEnv  = "MTLS_GUARD_LOAD_CLIENTS"  // default 8, at most 64
	loadRounds      = 4
	seedEnv         = "MTLS_GUARD_SEED"
	loadUser        = "e2e-load" // may override in load-legacy
)

var loadSeed = flag.Uint64("load.seed", 0, "seed of TestLoad's pod churn; 0 picks one (also "+seedEnv+")")

// TestLoad: concurrent clients send decisions over HTTPS, with -race on,
// in rounds. During a round, pods are created, deleted and relabelled
// exempt in the very namespaces the decisions read. The guard's informers
// trail the API server and never lead it, so every answer must be the
// engine's answer (engine.Decide) on one of the states the API server
// held between the start of the round and the answer. At the end of each
// round the churn stops, and once the guard has caught up every answer
// must be the engine's on the final state. There must be no error at all.
func TestLoad(t *testing.T) {
	duration, clients := loadSettings(t)
	seed := randomSeed(t, *loadSeed)
	rng := rand.New(rand.NewPCG(seed, 0x6d746c73))
	ctx := context.Background()
	// Decision logs off: a log line per request would be most of the work.
	g := startGuard(t, guardOptions{extra: []string{"--zap-log-level", "error"}})

	fixed := []string{"load-meshed", "load-legacy", "load-carve"}
	setupLoadCluster(t, fixed)
	cases := loadCases()
	opts, err := engine.NewOptions(rootNamespace, mesh.Native, strings.Split(engine.DefaultExcludedNamespaces, ","), os.Getenv("POD_NAMESPACE"), true)
	if err != nil {
		t.Fatal(err)
	}
	m := &loadModel{base: listObjects(t, append(fixed, rootNamespace)), opts: opts, cases: cases, expected: map[[2]int]string{}}
	m.states = [][]*corev1.Pod{nil} // state 0: no churned pod
	outcomes := map[bool]int{}
	for i := range cases {
		outcomes[m.decision(t, i, 0).Allowed]++
	}
	if outcomes[true] == 0 || outcomes[false] == 0 {
		t.Fatalf("the load mixes no allowances and denials: %v", outcomes)
	}

	var requests, changes, wrongAllowances atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, s)
		}
	}
	start := time.Now()
	for round := range loadRounds {
		lo := m.converge(t, g, round)
		if t.Failed() {
			return
		}
		runCtx, cancel := context.WithTimeout(ctx, duration/loadRounds)
		churnDone := make(chan error, 1)
		go func() { churnDone <- m.churn(runCtx, fixed, rng, &changes) }()
		// Each answer, by case, with the number of changes begun when it
		// came back: the guard may have seen at most those.
		type seen struct {
			c   int
			key string
		}
		answers := map[seen]int{}
		var wg sync.WaitGroup
		for w := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hc := loadClient(g)
				defer hc.CloseIdleConnections()
				for i := w; runCtx.Err() == nil; i++ {
					c := i % len(cases)
					resp, err := postReview(hc, g, cases[c].body)
					upper := m.begun()
					requests.Add(1)
					if err != nil {
						if runCtx.Err() == nil {
							fail(fmt.Sprintf("round %d, client %d, %s: %v", round, w, cases[c].name, err))
						}
						continue
					}
					if string(resp.UID) != cases[c].uid {
						fail(fmt.Sprintf("%s: UID %q, want %q", cases[c].name, resp.UID, cases[c].uid))
					}
					k := seen{c, answerOf(resp)}
					mu.Lock()
					if u, ok := answers[k]; !ok || upper < u {
						answers[k] = upper
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		cancel()
		if err := <-churnDone; err != nil {
			t.Fatalf("pod churn: %v", err)
		}
		for a, upper := range answers {
			k, ok := m.matching(t, a.c, a.key, lo, upper)
			if !ok {
				fail(fmt.Sprintf("round %d, %s: answer %s\nmatches no state the API server held (states %d to %d); the last one gives %s",
					round, cases[a.c].name, a.key, lo, upper, m.answer(t, a.c, upper)))
				if strings.HasPrefix(a.key, "allowed=true") {
					wrongAllowances.Add(1)
				}
				continue
			}
			_ = k
		}
	}
	m.converge(t, g, loadRounds)
	elapsed := time.Since(start)
	for _, f := range failures {
		t.Error(f)
	}
	if changes.Load() == 0 {
		t.Error("no pod was added, removed or relabelled during the load")
	}
	t.Logf("RELIABILITY: load: %d requests from %d clients in %d rounds over %s (%.0f/s) with %d pod changes in the decided namespaces (seed %d); %d failures, %d wrong allowances",
		requests.Load(), clients, loadRounds, elapsed.Round(time.Millisecond), float64(requests.Load())/elapsed.Seconds(), changes.Load(), seed, len(failures), wrongAllowances.Load())
}

// randomSeed returns the seed given (flag, then $MTLS_GUARD_SEED) or a new
// one, and logs it for replay.
func randomSeed(t *testing.T, flagged uint64) uint64 {
	t.Helper()
	seed := flagged
	if v := os.Getenv(seedEnv); seed == 0 && v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", seedEnv, v, err)
		}
		seed = n
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay with %s=%d)", seed, seedEnv, seed)
	return seed
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
// guard admits: policies first, while their namespaces are empty. The
// load's user may override in load-legacy.
func setupLoadCluster(t *testing.T, fixed []string) {
	t.Helper()
	for _, ns := range fixed {
		namespace(t, ns, injected)
	}
	meshed, legacy, carve := fixed[0], fixed[1], fixed[2]
	create(t, deploymentPod(meshed, "web", "m1", native))
	create(t, deploymentPod(meshed, "web", "m2", native))

	create(t, deploymentPod(legacy, "web", "l1", native))
	create(t, deploymentPod(legacy, "old", "l2", unmeshed))
	create(t, pod(legacy, "debug", map[string]string{"app": "debug"}, unmeshed))

	carveOut(t, carve, "c1", "c2")

	create(t, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: legacy, Name: "load-override"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: suite.OverrideRole(t)},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: loadUser}},
	})
}

// loadCase is one request of the load.
type loadCase struct {
	name string
	uid  string
	ch   engine.Change
	body []byte
}

func loadCases() []loadCase {
	policyJSON := func(ns, name, spec string, annotations string) string {
		return fmt.Sprintf(`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":%q,"namespace":%q%s},"spec":%s}`, name, ns, annotations, spec)
	}
	override := `,"annotations":{"mtls-guard.io/override-reason":"LOAD-1"}`
	type spec struct {
		name     string
		op       engine.Operation
		obj, old string
	}
	specs := []spec{
		{name: "STRICT over meshed pods", op: engine.Create, obj: policyJSON("load-meshed", "default", `{"mtls":{"mode":"STRICT"}}`, "")},
		{name: "STRICT next to unmeshed pods", op: engine.Create, obj: policyJSON("load-legacy", "default", `{"mtls":{"mode":"STRICT"}}`, "")},
		{name: "STRICT for the meshed workload only", op: engine.Create, obj: policyJSON("load-legacy", "web", `{"selector":{"matchLabels":{"app":"web"}},"mtls":{"mode":"STRICT"}}`, "")},
		{name: "port-level STRICT next to unmeshed pods", op: engine.Create, obj: policyJSON("load-legacy", "web-8080", `{"selector":{"matchLabels":{"app":"web"}},"portLevelMtls":{"8080":{"mode":"STRICT"}}}`, "")},
		{name: "overridden", op: engine.Create, obj: policyJSON("load-legacy", "default", `{"mtls":{"mode":"STRICT"}}`, override)},
		{name: "delete the carve-out", op: engine.Delete, obj: policyJSON("load-carve", "web-permissive", `{"selector":{"matchLabels":{"app":"web"}},"mtls":{"mode":"PERMISSIVE"}}`, "")},
		{name: "loosen to PERMISSIVE", op: engine.Update, obj: policyJSON("load-carve", "default", `{"mtls":{"mode":"PERMISSIVE"}}`, ""),
			old: policyJSON("load-carve", "default", `{"mtls":{"mode":"STRICT"}}`, "")},
		{name: "re-apply STRICT", op: engine.Update, obj: policyJSON("load-carve", "default", `{"mtls":{"mode":"STRICT"}}`, ""),
			old: policyJSON("load-carve", "default", `{"mtls":{"mode":"STRICT"}}`, "")},
		{name: "invalid mode", op: engine.Create, obj: policyJSON("load-meshed", "bad", `{"mtls":{"mode":"STRCT"}}`, "")},
		{name: "a newer mesh-wide PERMISSIVE", op: engine.Create, obj: policyJSON(rootNamespace, "load-mesh", `{"mtls":{"mode":"PERMISSIVE"}}`, "")},
	}
	cases := make([]loadCase, len(specs))
	for i, s := range specs {
		p, err := policy.Decode([]byte(s.obj))
		if err != nil {
			panic(fmt.Sprintf("%s: %v", s.name, err)) // a constant above is broken
		}
		c := loadCase{name: s.name, uid: fmt.Sprintf("load-%d", i), ch: engine.Change{Operation: s.op, Policy: p}}
		req := map[string]any{
			"uid":       c.uid,
			"kind":      map[string]string{"group": "security.istio.io", "version": "v1", "kind": "PeerAuthentication"},
			"resource":  map[string]string{"group": "security.istio.io", "version": "v1", "resource": "peerauthentications"},
			"namespace": p.Namespace, "name": p.Name, "operation": string(s.op),
			"userInfo": map[string]any{"username": loadUser},
			"dryRun":   true,
		}
		switch s.op {
		case engine.Delete:
			req["oldObject"] = json.RawMessage(s.obj)
		case engine.Update:
			req["object"], req["oldObject"] = json.RawMessage(s.obj), json.RawMessage(s.old)
			if c.ch.Old, err = policy.Decode([]byte(s.old)); err != nil {
				panic(fmt.Sprintf("%s: %v", s.name, err))
			}
		default:
			req["object"] = json.RawMessage(s.obj)
		}
		if c.body, err = json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}); err != nil {
			panic(err)
		}
		cases[i] = c
	}
	return cases
}

// listObjects reads the given namespaces from the API server.
func listObjects(t *testing.T, namespaces []string) []runtime.Object {
	t.Helper()
	ctx := context.Background()
	var out []runtime.Object
	for _, ns := range namespaces {
		n := &corev1.Namespace{}
		if err := suite.Admin.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
		var pods corev1.PodList
		var rss appsv1.ReplicaSetList
		var jobs batchv1.JobList
		var pas securityv1.PeerAuthenticationList
		for _, l := range []client.ObjectList{&pods, &rss, &jobs, &pas} {
			if err := suite.Admin.List(ctx, l, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range pods.Items {
			out = append(out, &pods.Items[i])
		}
		for i := range rss.Items {
			out = append(out, &rss.Items[i])
		}
		for i := range jobs.Items {
			out = append(out, &jobs.Items[i])
		}
		for _, p := range pas.Items {
			out = append(out, p)
		}
	}
	return out
}

// loadModel is what the API server held during the load: the objects
// listed before it, plus the churned pods after each change.
type loadModel struct {
	base  []runtime.Object
	opts  engine.Options
	cases []loadCase

	mu       sync.Mutex
	states   [][]*corev1.Pod // churned pods after change i, sorted by name
	started  int             // changes begun
	expected map[[2]int]string
}

// begun is the number of changes begun so far.
func (m *loadModel) begun() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.started
}

// decision is the engine's decision of case c on state k.
func (m *loadModel) decision(t *testing.T, c, k int) *engine.Decision {
	t.Helper()
	m.mu.Lock()
	pods := m.states[k]
	m.mu.Unlock()
	s := enginetest.NewSnapshot()
	for _, o := range m.base {
		s.Add(o)
	}
	for _, p := range pods {
		s.Add(p)
	}
	d, err := engine.Decide(s, m.cases[c].ch, m.opts)
	if err != nil {
		t.Fatalf("%s: %v", m.cases[c].name, err)
	}
	return d
}

// answer is the engine's answer to case c on state k, as answerOf shows
// the guard's.
func (m *loadModel) answer(t *testing.T, c, k int) string {
	t.Helper()
	m.mu.Lock()
	a, ok := m.expected[[2]int{c, k}]
	m.mu.Unlock()
	if ok {
		return a
	}
	d := m.decision(t, c, k)
	var causes []string
	if !d.Allowed {
		for i, w := range d.Unmeshed {
			if i == engine.MaxListed {
				break
			}
			causes = append(causes, w.Namespace+"/"+w.Kind+"/"+w.Name)
		}
	}
	warnings := make([]string, len(d.Warnings))
	for i, w := range d.Warnings {
		if r := []rune(w); len(r) > webhook.MaxWarningLength {
			w = string(r[:webhook.MaxWarningLength-1]) + "…"
		}
		warnings[i] = w
	}
	a = formatAnswer(d.Allowed, d.Message, warnings, causes)
	m.mu.Lock()
	m.expected[[2]int{c, k}] = a
	m.mu.Unlock()
	return a
}

// matching finds a state in [lo, hi] on which the engine answers key.
func (m *loadModel) matching(t *testing.T, c int, key string, lo, hi int) (int, bool) {
	t.Helper()
	for k := hi; k >= lo; k-- {
		if m.answer(t, c, k) == key {
			return k, true
		}
	}
	return 0, false
}

// converge waits until the guard answers every case as the engine does
// on the current state, then has every case answered once more; it
// returns the current state.
func (m *loadModel) converge(t *testing.T, g *guard, round int) int {
	t.Helper()
	m.mu.Lock()
	k := len(m.states) - 1
	m.mu.Unlock()
	hc := loadClient(g)
	defer hc.CloseIdleConnections()
	for c := range m.cases {
		want := m.answer(t, c, k)
		var got string
		err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			resp, err := postReview(hc, g, m.cases[c].body)
			if err != nil {
				return false, err
			}
			got = answerOf(resp)
			return got == want, nil
		})
		if err != nil {
			t.Errorf("after round %d, %s: the guard never gave the engine's answer on the API server's state: %v\ngot  %s\nwant %s", round, m.cases[c].name, err, got, want)
		}
	}
	return k
}

// churn creates, deletes and relabels pods in the given namespaces until
// ctx ends: at most one change every 10ms and at most 8 churned pods.
func (m *loadModel) churn(ctx context.Context, namespaces []string, rng *rand.Rand, changes *atomic.Int64) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	bg := context.Background() // a change in progress completes
	m.mu.Lock()
	live := map[string]*corev1.Pod{}
	for _, p := range m.states[len(m.states)-1] {
		live[p.Namespace+"/"+p.Name] = p
	}
	n := len(m.states)
	m.mu.Unlock()
	for i := n; ctx.Err() == nil; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		keys := make([]string, 0, len(live))
		for k := range live {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		m.mu.Lock()
		m.started++
		m.mu.Unlock()
		switch op := rng.IntN(3); {
		case len(keys) > 0 && (op == 0 || len(keys) >= 8):
			p := live[keys[rng.IntN(len(keys))]]
			if err := suite.Admin.Delete(bg, p.DeepCopy(), client.GracePeriodSeconds(0)); err != nil {
				return fmt.Errorf("deleting pod %s/%s: %w", p.Namespace, p.Name, err)
			}
			delete(live, p.Namespace+"/"+p.Name)
		case len(keys) > 0 && op == 1:
			// Exempt or not, in place: an update, not a new pod.
			k := keys[rng.IntN(len(keys))]
			p := live[k].DeepCopy()
			v := `"true"`
			if p.Labels[mesh.ExemptLabel] == "true" {
				v = "null"
			}
			patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"`+mesh.ExemptLabel+`":`+v+`}}}`))
			if err := suite.Admin.Patch(bg, p, patch); err != nil {
				return fmt.Errorf("relabelling pod %s: %w", k, err)
			}
			live[k] = p
		default:
			ns := namespaces[rng.IntN(len(namespaces))]
			kind := podKind(rng.IntN(2))
			var p *corev1.Pod
			if rng.IntN(2) == 0 {
				p = deploymentPod(ns, "churn", strconv.Itoa(i), kind)
			} else {
				p = pod(ns, "churn-"+strconv.Itoa(i), nil, kind)
			}
			if err := suite.Admin.Create(bg, p); err != nil {
				return fmt.Errorf("creating pod %s/%s: %w", ns, p.Name, err)
			}
			live[ns+"/"+p.Name] = p
		}
		state := make([]*corev1.Pod, 0, len(live))
		for _, p := range live {
			state = append(state, p)
		}
		m.mu.Lock()
		m.states = append(m.states, state)
		m.mu.Unlock()
		changes.Add(1)
	}
	return nil
}

// answerOf is the part of the guard's answer that the engine decides.
func answerOf(resp *admissionv1.AdmissionResponse) string {
	msg := ""
	var causes []string
	if resp.Result != nil {
		msg = resp.Result.Message
		if resp.Result.Details != nil {
			for _, c := range resp.Result.Details.Causes {
				if c.Type == webhook.CauseUnmeshedWorkload {
					causes = append(causes, c.Field)
				}
			}
		}
	}
	return formatAnswer(resp.Allowed, msg, resp.Warnings, causes)
}

func formatAnswer(allowed bool, message string, warnings, causes []string) string {
	return fmt.Sprintf("allowed=%v message=%q warnings=%q causes=%q", allowed, message, warnings, causes)
}

func loadClient(g *guard) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: g.RootCAs(), MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 2,
	}}
}

func postReview(hc *http.Client, g *guard, body []byte) (*admissionv1.AdmissionResponse, error) {
	resp, err := hc.Post(g.URL(webhook.Path), "application/json", bytes.NewReader(body))
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

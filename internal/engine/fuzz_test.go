package engine_test

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	apisecurity "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/engine/enginetest"
	"github.com/mtls-guard/mtls-guard/internal/evidence"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/podrecord"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// FuzzDecide builds a small random cluster and one change to a policy from
// the fuzz bytes, decides it with engine.Decide on a Snapshot, and checks
// the decision against an independent, deliberately naive reading of the
// decision rules (docs/decision-rules.md):
//
//   - Decide never errors on a Snapshot;
//   - an invalid CREATE or UPDATE is denied as invalid;
//   - a change after which no counted pod gains strictness is never denied;
//   - a CREATE or UPDATE to PERMISSIVE or DISABLE (no STRICT port, same
//     selector as the stored object) is never denied;
//   - the touched namespaces are exactly those where a counted pod gains
//     strictness, and a denial (or override) lists exactly the unmeshed
//     counted pods of those namespaces;
//   - the decision is denied exactly when it lists a workload, unless the
//     override annotation is honoured.
//
// The seed corpus is in testdata/fuzz/FuzzDecide; `make fuzz` searches
// further.
func FuzzDecide(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		w := generate(data)
		d, err := engine.Decide(w.snapshot(), w.change, w.opts)
		if err != nil {
			t.Fatalf("Decide on a Snapshot failed: %v\n%s", err, w)
		}
		if d.Message == "" || d.Unmeshed == nil || d.Warnings == nil {
			t.Fatalf("incomplete decision %+v\n%s", d, w)
		}
		want := w.expect()
		check(t, w, d, want)
		// The index, fed pods as the cache hands them over, decides alike.
		got, err := w.index().Decide(w.change)
		if err != nil {
			t.Fatalf("Decide on the index failed: %v\n%s", err, w)
		}
		if !reflect.DeepEqual(got, d) {
			t.Fatalf("the index decided\n%+v\nthe snapshot\n%+v\n%s", got, d, w)
		}
	})
}

// Pools the generator draws from: few enough names that policies collide,
// selectors overlap and creation times tie.
var (
	genNamespaces = []string{engine.DefaultRootNamespace, "a", "b", "kube-system", "guard"}
	genPolicies   = []string{"default", "p1", "p2", "p3"}
	genPorts      = []uint32{80, 8080, 9090}
	genT0         = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
)

// bytesource hands out fuzz bytes; past the end it returns zeros.
type bytesource struct {
	data []byte
	i    int
}

func (b *bytesource) next() byte {
	if b.i >= len(b.data) {
		return 0
	}
	b.i++
	return b.data[b.i-1]
}

func (b *bytesource) intn(n int) int { return int(b.next()) % n }
func (b *bytesource) bool() bool     { return b.next()&1 == 1 }

// world is a generated cluster, options and change.
type world struct {
	opts     engine.Options
	nsObjs   []*corev1.Namespace
	pods     []*corev1.Pod
	rss      []*appsv1.ReplicaSet
	jobs     []*batchv1.Job
	policies []*policy.Policy
	change   engine.Change
	// flows are the destinations (namespace, workload) of plaintext
	// evidence; unavailable says the telemetry source cannot be read.
	flows       [][2]string
	unavailable bool
}

func generate(data []byte) *world {
	b := &bytesource{data: data}
	sidecar := mesh.Native
	if b.bool() {
		sidecar = mesh.Any
	}
	opts, err := engine.NewOptions(engine.DefaultRootNamespace, sidecar, []string{"kube-system"}, "guard", b.bool())
	if err != nil {
		panic(err)
	}
	w := &world{opts: opts}
	for _, ns := range genNamespaces {
		switch b.intn(4) {
		case 0: // no Namespace object
		case 1:
			w.nsObjs = append(w.nsObjs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		case 2:
			w.nsObjs = append(w.nsObjs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"istio-injection": "enabled"}}})
		case 3:
			now := metav1.NewTime(genT0)
			w.nsObjs = append(w.nsObjs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, DeletionTimestamp: &now}})
		}
	}
	for i, n := 0, b.intn(9); i < n; i++ {
		w.addPod(b, i)
	}
	for i, n := 0, b.intn(7); i < n; i++ {
		p := genPolicy(b)
		// One object per namespace and name, as in a cluster.
		w.policies = slices.DeleteFunc(w.policies, func(q *policy.Policy) bool { return q.Key() == p.Key() })
		w.policies = append(w.policies, p)
	}
	op := []engine.Operation{engine.Create, engine.Update, engine.Delete}[b.intn(3)]
	p := genPolicy(b)
	if len(w.policies) > 0 && op != engine.Create && b.intn(4) != 0 {
		// Usually update or delete an object that exists.
		stored := w.policies[b.intn(len(w.policies))]
		cp := *p
		cp.Namespace, cp.Name = stored.Namespace, stored.Name
		if op == engine.Delete && b.bool() {
			cp = *stored // delete the stored object itself
			cp.OverrideReason = p.OverrideReason
		}
		p = &cp
	}
	w.change = engine.Change{Operation: op, Policy: p}
	if op == engine.Update && b.intn(3) == 0 {
		// The request's oldObject, which a lagging view may not hold.
		old := genPolicy(b)
		old.Namespace, old.Name = p.Namespace, p.Name
		w.change.Old = old
	}
	w.genEvidence(b)
	return w
}

// genWorkloads are the Istio workload names the generated pods carry.
var genWorkloads = []string{"web", "api", "nightly", "db", "pod0", "pod1"}

// genEvidence gives most worlds a telemetry source: plaintext flows to a
// few workloads, or evidence that is unavailable.
func (w *world) genEvidence(b *bytesource) {
	switch b.intn(4) {
	case 0:
		return // no telemetry source
	case 1:
		w.unavailable = true
		w.opts.DenyWithoutEvidence = b.bool()
		w.opts.Plaintext = func() (*evidence.Snapshot, error) {
			return nil, &evidence.UnavailableError{Reason: evidence.Stale, Age: time.Hour, MaxAge: time.Minute}
		}
		return
	}
	var reqs model.Vector
	for i, n := 0, b.intn(4); i < n; i++ {
		f := [2]string{genNamespaces[pick(b, len(genNamespaces))], genWorkloads[b.intn(len(genWorkloads))]}
		w.flows = append(w.flows, f)
		reqs = append(reqs, &model.Sample{Value: model.SampleValue(1 + b.intn(3)), Metric: model.Metric{
			"destination_workload_namespace": model.LabelValue(f[0]), "destination_workload": model.LabelValue(f[1]),
			"source_workload_namespace": "unknown", "source_workload": "unknown",
		}})
	}
	snap := evidence.NewSnapshot(genT0, 24*time.Hour, 1, reqs, nil)
	w.opts.Plaintext = func() (*evidence.Snapshot, error) { return snap, nil }
}

// pick returns an index into genNamespaces, favouring the root namespace
// and the two that count.
func pick(b *bytesource, n int) int {
	if i := b.intn(n + 4); i < n {
		return i
	} else {
		return i % 3
	}
}

func genLabels(b *bytesource) map[string]string {
	l := map[string]string{}
	if v := b.intn(3); v > 0 {
		l["app"] = []string{"", "x", "y"}[v]
	}
	if v := b.intn(3); v > 0 {
		l["tier"] = []string{"", "fe", "be"}[v]
	}
	return l
}

func (w *world) addPod(b *bytesource, i int) {
	ns := genNamespaces[pick(b, len(genNamespaces))]
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pod%d", i), Labels: genLabels(b), Annotations: map[string]string{}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
	}
	always := corev1.ContainerRestartPolicyAlways
	switch b.intn(12) {
	case 0, 1, 2:
		p.Spec.InitContainers = []corev1.Container{{Name: mesh.ProxyContainer, RestartPolicy: &always}}
	case 3:
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: mesh.ProxyContainer})
	case 4:
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: mesh.ProxyContainer, Args: []string{"proxy", "router"}})
	case 5:
		p.Annotations[mesh.AmbientRedirectionKey] = "enabled"
	case 6:
		p.Annotations[mesh.AmbientRedirectionKey] = "pending"
	case 7:
		p.Spec.HostNetwork = true
	case 8:
		p.Labels[mesh.InjectKey] = "false"
	}
	switch b.intn(10) {
	case 0:
		p.Labels[mesh.ExemptLabel] = "true"
	case 1:
		p.Status.Phase = corev1.PodSucceeded
	case 2:
		now := metav1.NewTime(genT0)
		p.DeletionTimestamp = &now
	}
	yes := true
	ref := func(kind, name string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{Kind: kind, Name: name, Controller: &yes}}
	}
	switch b.intn(5) {
	case 1: // a Deployment's pod, its ReplicaSet unknown
		p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = "h1"
		p.OwnerReferences = ref("ReplicaSet", "web-h1")
	case 2: // a Deployment's pod through a known ReplicaSet
		p.OwnerReferences = ref("ReplicaSet", "api-h2")
		w.rss = append(w.rss, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api-h2", OwnerReferences: ref("Deployment", "api")}})
	case 3: // a CronJob's pod
		p.OwnerReferences = ref("Job", "nightly-1")
		w.jobs = append(w.jobs, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly-1", OwnerReferences: ref("CronJob", "nightly")}})
	case 4:
		p.OwnerReferences = ref("StatefulSet", "db")
	}
	w.pods = append(w.pods, p)
}

// genPolicy compiles a random PeerAuthentication the way the cache does.
func genPolicy(b *bytesource) *policy.Policy {
	pa := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{
		Namespace: genNamespaces[pick(b, len(genNamespaces))],
		Name:      genPolicies[b.intn(len(genPolicies))],
	}}
	if c := b.intn(4); c > 0 {
		pa.CreationTimestamp = metav1.NewTime(genT0.Add(time.Duration(c) * time.Hour))
	}
	if b.intn(4) == 0 {
		pa.Annotations = map[string]string{policy.OverrideAnnotation: "fuzz"}
	}
	if b.bool() {
		if l := genLabels(b); len(l) > 0 {
			pa.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: l}
		}
	}
	if m := genMode(b); m >= 0 {
		pa.Spec.Mtls = &apisecurity.PeerAuthentication_MutualTLS{Mode: m}
	}
	if b.intn(3) == 2 { // never once the bytes run out: zeros make valid policies
		// Rarely empty, rarely port 0: both make the policy invalid, as
		// does portLevelMtls without a selector.
		pa.Spec.PortLevelMtls = map[uint32]*apisecurity.PeerAuthentication_MutualTLS{}
		for i, n := 0, 1+b.intn(3)-b.intn(8)/7; i < n; i++ {
			port := genPorts[b.intn(len(genPorts))]
			if b.intn(16) == 0 {
				port = 0
			}
			pa.Spec.PortLevelMtls[port] = &apisecurity.PeerAuthentication_MutualTLS{Mode: max(genMode(b), 0)}
		}
	}
	return policy.FromV1(pa)
}

// genMode returns a mode, mostly STRICT or PERMISSIVE; sometimes no
// spec.mtls at all (-1) or an unknown mode (7).
func genMode(b *bytesource) apisecurity.PeerAuthentication_MutualTLS_Mode {
	switch m := b.intn(16); {
	case m < 4:
		return apisecurity.PeerAuthentication_MutualTLS_Mode(m)
	case m < 9:
		return apisecurity.PeerAuthentication_MutualTLS_STRICT
	case m < 13:
		return apisecurity.PeerAuthentication_MutualTLS_PERMISSIVE
	case m < 15:
		return -1
	default:
		return 7
	}
}

// objects lists the world's objects but its policies.
func (w *world) objects() []runtime.Object {
	var out []runtime.Object
	for _, o := range w.nsObjs {
		out = append(out, o)
	}
	for _, o := range w.pods {
		out = append(out, o)
	}
	for _, o := range w.rss {
		out = append(out, o)
	}
	for _, o := range w.jobs {
		out = append(out, o)
	}
	return out
}

func (w *world) snapshot() *enginetest.Snapshot {
	s := enginetest.NewSnapshot()
	for _, o := range w.objects() {
		s.Add(o)
	}
	for _, p := range w.policies {
		s.SetPolicy(p)
	}
	return s
}

// index holds the same world as an internal/index.Index, pods as records.
func (w *world) index() *index.Index {
	ix := index.New(w.opts)
	for _, o := range w.objects() {
		if pod, ok := o.(*corev1.Pod); ok {
			ix.Add(podrecord.New(pod))
			continue
		}
		ix.Add(o)
	}
	for _, p := range w.policies {
		ix.SetPolicy(p)
	}
	return ix
}

func (w *world) String() string {
	s := fmt.Sprintf("options: sidecar %s, allowOverride %v\n", w.opts.SidecarMode, w.opts.AllowOverride)
	for _, ns := range w.nsObjs {
		s += fmt.Sprintf("namespace %s labels %v deleting %v\n", ns.Name, ns.Labels, ns.DeletionTimestamp != nil)
	}
	for _, p := range w.pods {
		meshed, reason := mesh.Classify(p, w.opts.SidecarMode)
		s += fmt.Sprintf("pod %s/%s labels %v counted %v meshed %v %s\n", p.Namespace, p.Name, p.Labels, mesh.Counted(p), meshed, reason)
	}
	for _, p := range w.policies {
		s += "policy " + describe(p) + "\n"
	}
	return s + fmt.Sprintf("change: %s %s", w.change.Operation, describe(w.change.Policy))
}

func describe(p *policy.Policy) string {
	return fmt.Sprintf("%s created %v selector %v mode %v ports %v override %q problems %q",
		p.Key(), p.Created.Unix(), p.Selector, p.Mode, p.Ports, p.OverrideReason, p.Problems)
}

// expected is the oracle's decision.
type expected struct {
	invalid  bool
	allowed  bool
	override bool
	touched  []string
	listed   []string // "namespace/pod" of every pod the decision must list
	// plaintext is "namespace/workload" of every evidence workload a pod
	// of which gains strictness.
	plaintext []string
}

// expect decides the change by the rules, the slow and obvious way: every
// counted pod's mode on every port before and after the change.
func (w *world) expect() expected {
	p, op, o := w.change.Policy, w.change.Operation, w.opts
	if op != engine.Delete && !p.Valid() {
		return expected{invalid: true}
	}
	if p.Namespace != o.RootNamespace && o.Excluded(p.Namespace) {
		return expected{allowed: true}
	}
	if op == engine.Delete {
		for _, ns := range w.nsObjs {
			if ns.Name == p.Namespace && ns.DeletionTimestamp != nil {
				return expected{allowed: true}
			}
		}
	}
	// The change's own object comes from the request: a CREATE has no
	// same-named policy before it; an UPDATE's state before is its
	// oldObject (else the view's), whose creationTimestamp it keeps;
	// before a DELETE the object exists, whatever the view says.
	var rest []*policy.Policy
	var stored *policy.Policy
	for _, q := range w.policies {
		if q.Key() != p.Key() {
			rest = append(rest, q)
		} else {
			stored = q
		}
	}
	before, after := rest, append(slices.Clone(rest), p)
	switch op {
	case engine.Update:
		old := w.change.Old
		if old == nil {
			old = stored
		}
		if old != nil {
			cp := *p
			cp.Created = old.Created
			p = &cp
			before, after = append(slices.Clone(rest), old), append(slices.Clone(rest), p)
		}
	case engine.Delete:
		before, after = after, rest
	}
	ports := map[uint32]bool{}
	for _, q := range append(slices.Clone(w.policies), p) {
		for port := range q.Ports {
			ports[port] = true
		}
	}
	var e expected
	unmeshed := map[string][]string{}
	touched := map[string]bool{}
	plaintext := map[[2]string]bool{}
	for _, pod := range w.pods {
		if !mesh.Counted(pod) || o.Excluded(pod.Namespace) {
			continue
		}
		if meshed, _ := mesh.Classify(pod, o.SidecarMode); !meshed {
			unmeshed[pod.Namespace] = append(unmeshed[pod.Namespace], pod.Namespace+"/"+pod.Name)
		}
		b, a := modes(pod, before, o), modes(pod, after, o)
		gains := a(otherPort) == policy.Strict && b(otherPort) != policy.Strict
		for port := range ports {
			if a(port) == policy.Strict && b(port) != policy.Strict {
				gains = true
			}
		}
		if gains {
			touched[pod.Namespace] = true
			_, name := mesh.WorkloadNameOf(pod)
			if slices.Contains(w.flows, [2]string{pod.Namespace, name}) {
				plaintext[[2]string{pod.Namespace, name}] = true
			}
		}
	}
	for ns := range touched {
		e.touched = append(e.touched, ns)
		e.listed = append(e.listed, unmeshed[ns]...)
	}
	for f := range plaintext {
		e.plaintext = append(e.plaintext, f[0]+"/"+f[1])
	}
	sort.Strings(e.touched)
	sort.Strings(e.listed)
	sort.Strings(e.plaintext)
	e.allowed = len(e.listed) == 0 && len(e.plaintext) == 0 && !(w.unavailable && o.DenyWithoutEvidence && len(e.touched) > 0)
	if !e.allowed && p.OverrideReason != "" && o.AllowOverride {
		e.allowed, e.override = true, true
	}
	return e
}

// otherPort stands for every port that no policy names; generated ports
// never reach it.
const otherPort = 1 << 31

// modes resolves a pod's mode per port (otherPort: every port no policy
// names) under a set of policies, as Istio's ComposePeerAuthentication does.
func modes(pod *corev1.Pod, ps []*policy.Policy, o engine.Options) func(port uint32) policy.Mode {
	oldest := func(match func(*policy.Policy) bool) *policy.Policy {
		var best *policy.Policy
		for _, q := range ps {
			if match(q) && (best == nil || policy.Older(q, best)) {
				best = q
			}
		}
		return best
	}
	level := policy.Permissive
	if m := oldest(func(q *policy.Policy) bool { return q.Namespace == o.RootNamespace && !q.HasSelector() }); m != nil && m.Mode != policy.Unset {
		level = m.Mode
	}
	if n := oldest(func(q *policy.Policy) bool { return q.Namespace == pod.Namespace && !q.HasSelector() }); n != nil && n.Mode != policy.Unset {
		level = n.Mode
	}
	wl := oldest(func(q *policy.Policy) bool {
		if q.Namespace != pod.Namespace || !q.HasSelector() {
			return false
		}
		for k, v := range q.Selector {
			if got, ok := pod.Labels[k]; !ok || got != v {
				return false
			}
		}
		return true
	})
	var portModes map[uint32]policy.Mode
	if wl != nil {
		if wl.Mode != policy.Unset {
			level = wl.Mode
		}
		portModes = wl.Ports
	}
	return func(port uint32) policy.Mode {
		if m, ok := portModes[port]; ok && port != otherPort && m != policy.Unset {
			return m
		}
		return level
	}
}

func check(t *testing.T, w *world, d *engine.Decision, e expected) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\ndecision: allowed %v invalid %v overridden %v touched %v unmeshed %+v\nmessage: %s\n%s",
			fmt.Sprintf(format, args...), d.Allowed, d.Invalid, d.Overridden, d.Touched, d.Unmeshed, d.Message, w)
	}
	if e.invalid {
		if !d.Invalid || d.Allowed {
			fail("an invalid policy must be denied as invalid")
		}
		return
	}
	if d.Invalid {
		fail("a valid change (or a DELETE) decided as invalid")
	}
	if len(e.touched) == 0 && !d.Allowed {
		fail("denied although no counted pod gains strictness")
	}
	p := w.change.Policy
	if w.change.Operation != engine.Delete && (p.Mode == policy.Permissive || p.Mode == policy.Disable) && !p.AnyStrict() && sameSelector(w, p) && !d.Allowed {
		fail("a PERMISSIVE or DISABLE change was denied")
	}
	touched := slices.Clone(d.Touched)
	sort.Strings(touched)
	if !slices.Equal(touched, e.touched) {
		fail("touched %v, want %v", touched, e.touched)
	}
	var listed []string
	for _, wl := range d.Unmeshed {
		if !slices.Contains(e.touched, wl.Namespace) {
			fail("lists %s/%s/%s outside the touched namespaces", wl.Namespace, wl.Kind, wl.Name)
		}
		for _, pod := range wl.Pods {
			listed = append(listed, wl.Namespace+"/"+pod)
		}
	}
	sort.Strings(listed)
	if !slices.Equal(listed, e.listed) {
		fail("lists pods %v, want the unmeshed counted pods of the touched namespaces %v", listed, e.listed)
	}
	var plain []string
	for _, pw := range d.Plaintext {
		plain = append(plain, pw.Namespace+"/"+pw.Name)
	}
	if !slices.Equal(plain, e.plaintext) {
		fail("plaintext workloads %v, want %v", plain, e.plaintext)
	}
	if d.Allowed != e.allowed || d.Overridden != e.override {
		fail("allowed %v overridden %v, want %v %v", d.Allowed, d.Overridden, e.allowed, e.override)
	}
	if d.Allowed && !d.Overridden && len(d.Unmeshed) > 0 {
		fail("allowed without override while listing workloads")
	}
}

// sameSelector reports whether the stored object of the same name, if
// any, keeps its selector and its precedence (creationTimestamp) in the
// change: only then can a PERMISSIVE or DISABLE object not move
// strictness onto other pods.
func sameSelector(w *world, p *policy.Policy) bool {
	for _, q := range w.policies {
		if q.Key() == p.Key() {
			sameAge := w.change.Operation == engine.Update || p.Created.IsZero() || p.Created.Equal(&q.Created)
			return sameAge && sameLabels(q.Selector, p.Selector)
		}
	}
	return true
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

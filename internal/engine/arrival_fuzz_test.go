package engine_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/podrecord"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// FuzzArrival builds a random world (generate, as FuzzDecide does), an
// index of it whose namespace strictness cache is warm, then applies
// random informer events (pods added, relabelled, finished or deleted,
// policies set or deleted, namespaces relabelled) to the index and the
// world alike. After every event it judges a random arriving pod and a
// random workload template three ways, which must agree:
//
//   - index.DecidePod and DecideTemplate, with the cache the events kept;
//   - engine.DecidePod and DecideTemplate on a Snapshot of the world;
//   - a naive oracle of rule 3b (decision-rules.md): a counted, unmeshed
//     pod (a template predicted unmeshed) in a namespace where some
//     counted pod resolves to STRICT on some port, each pod's mode per
//     port resolved the slow way (modes).
//
// The seed corpus is in testdata/fuzz/FuzzArrival.
func FuzzArrival(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte("\x00\x02\x02\x02\x00\x00\x05\x00\x00\x00\x00\x00\x00"), []byte("\x01\x00\x00\x03"))
	f.Fuzz(func(t *testing.T, worldData, eventData []byte) {
		w := generate(worldData)
		b := &bytesource{data: eventData}
		ix := w.index()
		// Warm the cache: judge an arrival in every namespace first.
		for _, ns := range genNamespaces {
			if _, err := ix.DecidePod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "warm"}}); err != nil {
				t.Fatalf("warming the cache in %s: %v", ns, err)
			}
		}
		next := 1000 // names of added pods, unique in the world
		for step := 0; ; step++ {
			pod, ns, tmpl := genArrival(w, b)
			checkArrival(t, w, ix, pod, ns, tmpl, step)
			if step >= 12 || b.i >= len(b.data) {
				return
			}
			w.event(t, ix, b, &next)
		}
	})
}

// event applies one random informer event to the world and the index.
func (w *world) event(t *testing.T, ix *index.Index, b *bytesource, next *int) {
	t.Helper()
	switch b.intn(7) {
	case 0: // a pod is added (with its ReplicaSet or Job, if any)
		scratch := &world{opts: w.opts}
		scratch.addPod(b, *next)
		*next++
		for _, rs := range scratch.rss {
			w.rss = append(w.rss, rs)
			ix.Add(rs)
		}
		for _, j := range scratch.jobs {
			w.jobs = append(w.jobs, j)
			ix.Add(j)
		}
		w.pods = append(w.pods, scratch.pods[0])
		ix.Add(podrecord.New(scratch.pods[0]))
	case 1: // a pod is deleted
		if len(w.pods) == 0 {
			return
		}
		i := b.intn(len(w.pods))
		ix.OnDelete(w.pods[i])
		w.pods = slices.Delete(w.pods, i, i+1)
	case 2: // a pod is relabelled (a new label set, maybe exempt)
		if len(w.pods) == 0 {
			return
		}
		i := b.intn(len(w.pods))
		p := w.pods[i].DeepCopy()
		p.Labels = genLabels(b)
		if b.intn(4) == 0 {
			p.Labels[mesh.ExemptLabel] = "true"
		}
		w.pods[i] = p
		ix.OnUpdate(nil, podrecord.New(p))
	case 3: // a pod finishes
		if len(w.pods) == 0 {
			return
		}
		i := b.intn(len(w.pods))
		p := w.pods[i].DeepCopy()
		p.Status.Phase = corev1.PodSucceeded
		w.pods[i] = p
		ix.OnUpdate(nil, podrecord.New(p))
	case 4, 5: // a policy is created or replaced
		p := genPolicy(b)
		w.policies = slices.DeleteFunc(w.policies, func(q *policy.Policy) bool { return q.Key() == p.Key() })
		w.policies = append(w.policies, p)
		ix.SetPolicy(p)
	case 6: // a policy is deleted, or a namespace relabelled
		if len(w.policies) > 0 && b.bool() {
			i := b.intn(len(w.policies))
			p := w.policies[i]
			ix.OnDelete(&securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}})
			w.policies = slices.Delete(w.policies, i, i+1)
			return
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: genNamespaces[pick(b, len(genNamespaces))], Labels: genNamespaceLabels(b)}}
		w.nsObjs = slices.DeleteFunc(w.nsObjs, func(o *corev1.Namespace) bool { return o.Name == ns.Name })
		w.nsObjs = append(w.nsObjs, ns)
		ix.Add(ns)
	}
}

// genNamespaceLabels returns the labels that enroll a namespace, or not.
func genNamespaceLabels(b *bytesource) map[string]string {
	switch b.intn(6) {
	case 1:
		return map[string]string{"istio-injection": "enabled"}
	case 2:
		return map[string]string{"istio-injection": "disabled"}
	case 3:
		return map[string]string{"istio.io/rev": "canary"}
	case 4:
		return map[string]string{"istio.io/dataplane-mode": "ambient"}
	case 5:
		return map[string]string{"istio.io/dataplane-mode": "none"}
	}
	return nil
}

// genArrival returns a random arriving pod, and a random workload
// template with the namespace it arrives in.
func genArrival(w *world, b *bytesource) (*corev1.Pod, string, *corev1.PodTemplateSpec) {
	scratch := &world{opts: w.opts}
	scratch.addPod(b, 999)
	pod := scratch.pods[0]
	pod.Name = "arriving"
	switch b.intn(4) {
	case 1:
		pod.Labels["istio.io/dataplane-mode"] = "ambient"
	case 2:
		pod.Labels["istio.io/dataplane-mode"] = "none"
	}
	ns := genNamespaces[pick(b, len(genNamespaces))]
	tmpl := &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: genLabels(b), Annotations: map[string]string{}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
	}
	switch b.intn(8) {
	case 0:
		tmpl.Labels[mesh.InjectKey] = "false"
	case 1:
		tmpl.Annotations[mesh.InjectKey] = "false"
	case 2:
		tmpl.Spec.HostNetwork = true
	case 3:
		tmpl.Labels[mesh.ExemptLabel] = "true"
	case 4:
		tmpl.Annotations[mesh.InjectKey] = "true"
	case 5:
		tmpl.Labels[mesh.InjectKey] = "true"
	case 6:
		tmpl.Labels["istio.io/rev"] = "canary"
	case 7:
		tmpl.Labels["istio.io/dataplane-mode"] = "ambient"
	}
	return pod, ns, tmpl
}

// checkArrival judges the arrivals on the index, on a Snapshot and by the
// oracle, and fails unless all three agree.
func checkArrival(t *testing.T, w *world, ix *index.Index, pod *corev1.Pod, ns string, tmpl *corev1.PodTemplateSpec, step int) {
	t.Helper()
	snap := w.snapshot()
	wantPod, wantTmpl := w.oraclePod(pod), w.oracleTemplate(ns, tmpl)
	for _, c := range []struct {
		name string
		pod  func() (engine.Arrival, error)
		tmpl func() (engine.Arrival, error)
	}{
		{"index", func() (engine.Arrival, error) { return ix.DecidePod(pod) },
			func() (engine.Arrival, error) { return ix.DecideTemplate(ns, tmpl) }},
		{"snapshot", func() (engine.Arrival, error) { return engine.DecidePod(snap, pod, w.opts) },
			func() (engine.Arrival, error) { return engine.DecideTemplate(snap, ns, tmpl, w.opts) }},
	} {
		got, err := c.pod()
		if err != nil {
			t.Fatalf("step %d: DecidePod on the %s: %v", step, c.name, err)
		}
		if got != wantPod {
			t.Fatalf("step %d: the %s judged pod %s/%s (labels %v, counted %v) as %+v, the oracle as %+v\n%s",
				step, c.name, pod.Namespace, pod.Name, pod.Labels, mesh.Counted(pod), got, wantPod, w.arrivalString())
		}
		if got, err = c.tmpl(); err != nil {
			t.Fatalf("step %d: DecideTemplate on the %s: %v", step, c.name, err)
		}
		if got != wantTmpl {
			t.Fatalf("step %d: the %s judged a template in %s (labels %v, annotations %v, hostNetwork %v) as %+v, the oracle as %+v\n%s",
				step, c.name, ns, tmpl.Labels, tmpl.Annotations, tmpl.Spec.HostNetwork, got, wantTmpl, w.arrivalString())
		}
	}
}

// strictNamespace is the oracle's reading of "STRICT holds in ns": some
// counted pod there, not excluded, resolves to STRICT on some port.
func (w *world) strictNamespace(ns string) bool {
	if w.opts.Excluded(ns) {
		return false
	}
	ports := []uint32{otherPort}
	for _, p := range w.policies {
		for port := range p.Ports {
			ports = append(ports, port)
		}
	}
	for _, q := range w.pods {
		if q.Namespace != ns || !mesh.Counted(q) {
			continue
		}
		mode := modes(q, w.policies, w.opts)
		for _, port := range ports {
			if mode(port) == policy.Strict {
				return true
			}
		}
	}
	return false
}

// oraclePod: a counted pod without a sidecar is unmeshed unless ambient
// will redirect it (its own label, or its namespace's unless the pod opts
// out with istio.io/dataplane-mode=none): istio-cni marks it only after
// admission.
func (w *world) oraclePod(pod *corev1.Pod) engine.Arrival {
	if w.opts.Excluded(pod.Namespace) || !mesh.Counted(pod) {
		return engine.Arrival{}
	}
	a := engine.Arrival{Judged: true}
	meshed, reason := mesh.Classify(pod, w.opts.SidecarMode)
	if meshed {
		return a
	}
	if reason == mesh.NoSidecar {
		switch pod.Labels["istio.io/dataplane-mode"] {
		case "ambient":
			return a
		case "none":
		default:
			if w.namespaceLabels(pod.Namespace)["istio.io/dataplane-mode"] == "ambient" {
				return a
			}
		}
	}
	a.Unmeshed, a.Reason, a.UnderStrict = true, reason, w.strictNamespace(pod.Namespace)
	return a
}

func (w *world) namespaceLabels(ns string) map[string]string {
	for _, o := range w.nsObjs {
		if o.Name == ns {
			return o.Labels
		}
	}
	return nil
}

// oracleTemplate predicts a template as the rule reads: unmeshed when it
// runs on the host network, opts out of injection (label or annotation),
// or neither its namespace nor its own labels (a revision, inject "true",
// ambient) enroll it in injection or ambient.
func (w *world) oracleTemplate(ns string, t *corev1.PodTemplateSpec) engine.Arrival {
	if w.opts.Excluded(ns) || t.Labels["mtls-guard.io/exempt"] == "true" {
		return engine.Arrival{}
	}
	labels := w.namespaceLabels(ns)
	enrolled := labels["istio-injection"] == "enabled" || labels["istio.io/rev"] != "" || labels["istio.io/dataplane-mode"] == "ambient" ||
		t.Labels["istio.io/rev"] != "" || t.Labels["sidecar.istio.io/inject"] == "true" || t.Labels["istio.io/dataplane-mode"] == "ambient"
	a := engine.Arrival{Judged: true, Unmeshed: true}
	switch {
	case t.Spec.HostNetwork:
		a.Reason = mesh.HostNetwork
	case t.Labels["sidecar.istio.io/inject"] == "false" || t.Annotations["sidecar.istio.io/inject"] == "false":
		a.Reason = mesh.InjectionDisabled
	case !enrolled:
		a.Reason = mesh.NoSidecar
	default:
		return engine.Arrival{Judged: true}
	}
	a.UnderStrict = w.strictNamespace(ns)
	return a
}

func (w *world) arrivalString() string {
	var s strings.Builder
	s.WriteString(fmt.Sprintf("options: sidecar %s\n", w.opts.SidecarMode))
	for _, ns := range w.nsObjs {
		fmt.Fprintf(&s, "namespace %s labels %v\n", ns.Name, ns.Labels)
	}
	for _, p := range w.pods {
		meshed, reason := mesh.Classify(p, w.opts.SidecarMode)
		fmt.Fprintf(&s, "pod %s/%s labels %v counted %v meshed %v %s\n", p.Namespace, p.Name, p.Labels, mesh.Counted(p), meshed, reason)
	}
	for _, p := range w.policies {
		s.WriteString("policy " + describe(p) + "\n")
	}
	for _, ns := range genNamespaces {
		fmt.Fprintf(&s, "oracle: STRICT holds in %s: %v\n", ns, w.strictNamespace(ns))
	}
	return s.String()
}

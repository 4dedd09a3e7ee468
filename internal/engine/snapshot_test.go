package engine_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/engine/enginetest"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

func TestSnapshotFixtures(t *testing.T) {
	s := loadFixtures(t, "cluster.yaml", "mesh-strict.yaml", "optouts.yaml")

	wantNS := []string{"ambient", "batch", "billing", "classic", "dying", "gateways", "istio-system", "kube-system", "legacy", "mtls-guard", "plain", "shop"}
	if got := s.NamespaceNames(); !equalStrings(got, wantNS) {
		t.Errorf("NamespaceNames %v, want %v", got, wantNS)
	}
	podNS, err := s.PodNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	if !equalStrings(podNS, wantNS) {
		t.Errorf("PodNamespaces %v, want %v", podNS, wantNS)
	}
	if got := s.String(); got != "snapshot{namespaces: 12, pods: 35, replicasets: 6, jobs: 2}" {
		t.Errorf("String() = %s", got)
	}

	ns, err := s.Namespace("dying")
	if err != nil || ns == nil || ns.DeletionTimestamp == nil {
		t.Errorf("Namespace(dying) = %v, %v; want one being deleted", ns, err)
	}
	if ns, err := s.Namespace("nowhere"); ns != nil || err != nil {
		t.Errorf("Namespace(nowhere) = %v, %v", ns, err)
	}
	pods, err := s.Pods("billing")
	if err != nil || len(pods) != 3 {
		t.Errorf("Pods(billing) = %d pods, %v", len(pods), err)
	}
	if pods, err := s.Pods("nowhere"); len(pods) != 0 || err != nil {
		t.Errorf("Pods(nowhere) = %v, %v", pods, err)
	}
	if rs, err := s.ReplicaSet("legacy", "legacy-5c6d8"); err != nil || rs == nil || rs.OwnerReferences[0].Name != "legacy" {
		t.Errorf("ReplicaSet(legacy/legacy-5c6d8) = %v, %v", rs, err)
	}
	if rs, err := s.ReplicaSet("legacy", "reporter-6b7c9d"); rs != nil || err != nil {
		t.Errorf("unknown ReplicaSet = %v, %v", rs, err)
	}
	if job, err := s.Job("legacy", "nightly-28700000"); err != nil || job == nil {
		t.Errorf("Job(legacy/nightly-28700000) = %v, %v", job, err)
	}
	if job, err := s.Job("legacy", "migrate"); job != nil || err != nil {
		t.Errorf("unknown Job = %v, %v", job, err)
	}

	// Both API versions are read into the same form.
	for key, want := range map[string]policy.Mode{
		"istio-system/default": policy.Strict,     // v1
		"legacy/default":       policy.Permissive, // v1beta1
		"billing/default":      policy.Permissive, // v1
		"classic/default":      policy.Permissive, // v1beta1
	} {
		ns, name, _ := strings.Cut(key, "/")
		p := s.Policy(ns, name)
		if p == nil {
			t.Errorf("policy %s missing", key)
			continue
		}
		if p.Mode != want || p.Created.IsZero() || p.Key() != key || !p.Valid() {
			t.Errorf("policy %s: %+v", key, p)
		}
	}
	if ps, err := s.Policies("legacy"); err != nil || len(ps) != 1 {
		t.Errorf("Policies(legacy) = %v, %v", ps, err)
	}
	if ps, err := s.Policies("shop"); err != nil || ps == nil || len(ps) != 0 {
		t.Errorf("Policies(shop) = %v, %v; want an empty list", ps, err)
	}
}

func TestSnapshotPolicies(t *testing.T) {
	s := enginetest.NewSnapshot()
	if got := s.NamespaceNames(); len(got) != 0 {
		t.Errorf("empty snapshot: %v", got)
	}
	a := v1("billing/a", jan, strict).typed(t)
	s.SetPolicy(a)
	if s.Policy("billing", "a") != a {
		t.Error("SetPolicy did not store the policy")
	}
	// A v1beta1 object replaces the v1 object of the same name.
	addPolicies(t, s, v1beta1("billing/a", jan, permissive))
	if p := s.Policy("billing", "a"); p == nil || p.Mode != policy.Permissive {
		t.Errorf("replaced policy: %+v", p)
	}
	if ps, _ := s.Policies("billing"); len(ps) != 1 {
		t.Errorf("Policies(billing) holds %d policies, want 1", len(ps))
	}
	if got := s.NamespaceNames(); !equalStrings(got, []string{"billing"}) {
		t.Errorf("NamespaceNames %v", got)
	}
	s.DeletePolicy("billing", "a")
	s.DeletePolicy("billing", "a")       // twice is fine
	s.DeletePolicy("nowhere", "missing") // so is an unknown one
	if s.Policy("billing", "a") != nil {
		t.Error("DeletePolicy did not delete")
	}
	if got := s.NamespaceNames(); len(got) != 0 {
		t.Errorf("a namespace with no policy left is listed: %v", got)
	}

	// Other kinds are not taken.
	if s.Add(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "billing"}}) {
		t.Error("Add took a ConfigMap")
	}
	if !s.Add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "web"}}) {
		t.Error("Add did not take a Pod")
	}
	if ns, _ := s.PodNamespaces(); !equalStrings(ns, []string{"web"}) {
		t.Errorf("PodNamespaces %v", ns)
	}
}

// TestSnapshotPodReplaced checks that adding a pod again replaces it, as
// for every other kind, so that a stale copy is never counted.
func TestSnapshotPodReplaced(t *testing.T) {
	s := loadFixtures(t, "cluster.yaml")
	before, _ := s.Pods("billing")
	n := len(before)

	// invoicer gets its native sidecar: billing may go STRICT.
	objs, err := decodeObjects([]byte(`
apiVersion: v1
kind: Pod
metadata:
  name: invoicer-55d9c7b6f8-i1i1i
  namespace: billing
  labels: {app: invoicer, pod-template-hash: 55d9c7b6f8}
spec:
  initContainers: [{name: istio-proxy, image: istio/proxyv2, restartPolicy: Always}]
  containers: [{name: app, image: invoicer}]
status: {phase: Running}
`))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Add(objs[0]) {
		t.Fatal("Add did not take the pod")
	}
	after, _ := s.Pods("billing")
	if len(after) != n {
		t.Errorf("billing holds %d pods after re-adding one, want %d", len(after), n)
	}
	d, err := engine.Decide(s, engine.Change{Operation: engine.Create, Policy: v1("billing/default", "", strict).typed(t)}, engine.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allowed || len(d.Unmeshed) != 0 {
		t.Errorf("the stale unmeshed copy still counts: %s", d.Message)
	}
}

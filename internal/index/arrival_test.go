package index_test

import (
	"testing"

	apisecurity "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index"
)

// TestStrictnessFollowsEvents: the index's cached namespace strictness,
// which pod decisions read, changes with every policy and pod event that
// changes it.
func TestStrictnessFollowsEvents(t *testing.T) {
	opts := engine.DefaultOptions()
	ix := index.New(opts)
	strictPA := func(ns, name string, selector map[string]string, mode apisecurity.PeerAuthentication_MutualTLS_Mode) *securityv1.PeerAuthentication {
		pa := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		pa.Spec.Mtls = &apisecurity.PeerAuthentication_MutualTLS{Mode: mode}
		if selector != nil {
			pa.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: selector}
		}
		return pa
	}
	pod := func(name string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name, Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
	}
	arriving := pod("arriving", nil)
	step := func(name string, want bool, event func()) {
		t.Helper()
		event()
		got, err := ix.DecidePod(arriving)
		if err != nil {
			t.Fatal(err)
		}
		if got.UnderStrict != want {
			t.Fatalf("%s: under STRICT = %v, want %v", name, got.UnderStrict, want)
		}
		if !got.Problem() && want {
			t.Fatalf("%s: an unmeshed pod under STRICT is no problem: %+v", name, got)
		}
	}
	web := pod("web-1", map[string]string{"app": "web"})
	step("no pods", false, func() { ix.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}}) })
	step("STRICT, no pods yet", false, func() { ix.Add(strictPA("app", "default", nil, apisecurity.PeerAuthentication_MutualTLS_STRICT)) })
	step("a pod arrives under STRICT", true, func() { ix.Add(web) })
	step("the namespace turns PERMISSIVE", false, func() { ix.Add(strictPA("app", "default", nil, apisecurity.PeerAuthentication_MutualTLS_PERMISSIVE)) })
	step("a workload policy for another app", false, func() {
		ix.Add(strictPA("app", "api", map[string]string{"app": "api"}, apisecurity.PeerAuthentication_MutualTLS_STRICT))
	})
	step("a pod of that app arrives", true, func() { ix.Add(pod("api-1", map[string]string{"app": "api"})) })
	step("it leaves", false, func() { ix.OnDelete(pod("api-1", map[string]string{"app": "api"})) })
	step("mesh-wide STRICT, the namespace's PERMISSIVE deleted", true, func() {
		ix.Add(strictPA(opts.RootNamespace, "default", nil, apisecurity.PeerAuthentication_MutualTLS_STRICT))
		ix.OnDelete(strictPA("app", "default", nil, apisecurity.PeerAuthentication_MutualTLS_PERMISSIVE))
	})
	step("mesh-wide PERMISSIVE", false, func() {
		ix.Add(strictPA(opts.RootNamespace, "default", nil, apisecurity.PeerAuthentication_MutualTLS_PERMISSIVE))
	})
}

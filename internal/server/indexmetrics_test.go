package server

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/podrecord"
)

// TestIndexMetrics: the index's gauges count what it holds, the unmeshed
// pods under the guard's sidecar mode.
func TestIndexMetrics(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := func(name, app string, edit func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": app}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		}
		if edit != nil {
			edit(p)
		}
		return p
	}
	ix := index.New(engine.DefaultOptions())
	for _, obj := range []any{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		podrecord.New(pod("native", "a", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: mesh.ProxyContainer, RestartPolicy: &always}}
		})),
		podrecord.New(pod("classic", "b", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: mesh.ProxyContainer})
		})),
		podrecord.New(pod("bare", "b", nil)),
		podrecord.New(pod("done", "c", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })),
		&securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default"}},
	} {
		if !ix.Add(obj) {
			t.Fatalf("the index does not take %T", obj)
		}
	}
	const objects = `
# HELP mtls_guard_index_objects What the guard's decision index holds: namespaces, pods, counted pods, distinct label sets of counted pods, and PeerAuthentications.
# TYPE mtls_guard_index_objects gauge
mtls_guard_index_objects{kind="counted_pods"} 3
mtls_guard_index_objects{kind="label_sets"} 2
mtls_guard_index_objects{kind="namespaces"} 1
mtls_guard_index_objects{kind="peerauthentications"} 1
mtls_guard_index_objects{kind="pods"} 4
`
	const unmeshedHelp = `
# HELP mtls_guard_index_unmeshed_pods Counted pods the decision index holds as unmeshed, under the guard's --sidecar-mode.
# TYPE mtls_guard_index_unmeshed_pods gauge
`
	for _, tc := range []struct {
		mode     mesh.SidecarMode
		unmeshed string
	}{
		{mesh.Native, "mtls_guard_index_unmeshed_pods 2\n"},
		{mesh.Any, "mtls_guard_index_unmeshed_pods 1\n"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			serveIndexMetrics(ix, tc.mode)
			if err := testutil.CollectAndCompare(&indexMetrics, strings.NewReader(objects+unmeshedHelp+tc.unmeshed)); err != nil {
				t.Error(err)
			}
		})
	}
}

package webhook

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/mesh"
)

// TestDecodePod: the lean decode keeps everything that judging a pod
// reads, so a pod classifies and counts exactly as the whole pod does.
func TestDecodePod(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	now := metav1.Now()
	yes := true
	pods := []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "native", Namespace: "a", UID: "u1", Labels: map[string]string{"app": "x"}},
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: mesh.ProxyContainer, RestartPolicy: &always}}, Containers: []corev1.Container{{Name: "app"}}}},
		{ObjectMeta: metav1.ObjectMeta{GenerateName: "gw-", Namespace: "a", OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "gw-1", Controller: &yes}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: mesh.ProxyContainer, Args: []string{"proxy", "router"}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "ambient", Annotations: map[string]string{mesh.AmbientRedirectionKey: "enabled"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "host"}, Spec: corev1.PodSpec{HostNetwork: true}},
		{ObjectMeta: metav1.ObjectMeta{Name: "optout", Annotations: map[string]string{mesh.InjectKey: "false"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "classic"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: mesh.ProxyContainer}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "done"}, Status: corev1.PodStatus{Phase: corev1.PodSucceeded}},
		{ObjectMeta: metav1.ObjectMeta{Name: "going", DeletionTimestamp: &now}},
		{ObjectMeta: metav1.ObjectMeta{Name: "exempt", Labels: map[string]string{mesh.ExemptLabel: "true"}}},
	}
	for _, want := range pods {
		raw, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodePod(raw)
		if err != nil {
			t.Fatalf("%s: %v", want.Name, err)
		}
		for _, mode := range []mesh.SidecarMode{mesh.Native, mesh.Any} {
			gm, gr := mesh.Classify(got, mode)
			wm, wr := mesh.Classify(want, mode)
			if gm != wm || gr != wr {
				t.Errorf("%s/%s: classified %v %q, want %v %q", want.Name, mode, gm, gr, wm, wr)
			}
		}
		if mesh.Counted(got) != mesh.Counted(want) || mesh.ControllerOf(got) != mesh.ControllerOf(want) ||
			got.Name != want.Name || got.GenerateName != want.GenerateName || got.UID != want.UID || got.Namespace != want.Namespace {
			t.Errorf("%s: identity, controller or count differ: %+v", want.Name, got.ObjectMeta)
		}
	}
	if _, err := decodePod([]byte("{")); err == nil {
		t.Error("a truncated pod decoded")
	}
}

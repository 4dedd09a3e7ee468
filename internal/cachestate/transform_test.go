package cachestate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/mtls-guard/mtls-guard/internal/mesh"
)

func TestStripPodKeepsWhatTheEngineReads(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	now := metav1.Now()
	full := func(mut func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: "web-1", Namespace: "shop", UID: "u1", ResourceVersion: "7",
				Labels:          map[string]string{"app": "web", mesh.ExemptLabel: "false"},
				Annotations:     map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...big...}", "prometheus.io/scrape": "true"},
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d8f7"}},
				ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: mesh.ProxyContainer, Image: "proxyv2", RestartPolicy: &always, Args: []string{"proxy", "sidecar"}, Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}},
				Containers:     []corev1.Container{{Name: "web", Image: "nginx", Args: []string{"--port=80"}}},
				Volumes:        []corev1.Volume{{Name: "v"}},
				NodeName:       "node-1",
			},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
		}
		if mut != nil {
			mut(p)
		}
		return p
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
	}{
		{"native sidecar", full(nil)},
		{"classic sidecar", full(func(p *corev1.Pod) {
			p.Spec.InitContainers = nil
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: mesh.ProxyContainer, Args: []string{"proxy", "sidecar"}})
		})},
		{"gateway", full(func(p *corev1.Pod) {
			p.Spec.InitContainers = nil
			p.Spec.Containers = []corev1.Container{{Name: mesh.ProxyContainer, Args: []string{"proxy", "router"}}}
		})},
		{"ambient pending", full(func(p *corev1.Pod) {
			p.Spec.InitContainers = nil
			p.Annotations[mesh.AmbientRedirectionKey] = "pending"
		})},
		{"injection disabled by annotation", full(func(p *corev1.Pod) {
			p.Spec.InitContainers = nil
			p.Annotations[mesh.InjectKey] = "false"
		})},
		{"host network", full(func(p *corev1.Pod) { p.Spec.InitContainers = nil; p.Spec.HostNetwork = true })},
		{"finished", full(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })},
		{"being deleted", full(func(p *corev1.Pod) { p.DeletionTimestamp = &now })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := StripPod(tt.pod)
			if err != nil {
				t.Fatal(err)
			}
			got := out.(*corev1.Pod)
			for _, mode := range []mesh.SidecarMode{mesh.Native, mesh.Any} {
				wm, wr := mesh.Classify(tt.pod, mode)
				gm, gr := mesh.Classify(got, mode)
				if wm != gm || wr != gr {
					t.Errorf("%s: Classify after strip = (%v, %q), before (%v, %q)", mode, gm, gr, wm, wr)
				}
			}
			if mesh.Counted(got) != mesh.Counted(tt.pod) {
				t.Errorf("Counted changed by the strip")
			}
			if got.Name != tt.pod.Name || got.Namespace != tt.pod.Namespace || got.Labels["app"] != "web" || len(got.OwnerReferences) != 1 {
				t.Errorf("identity, labels or owners lost: %+v", got.ObjectMeta)
			}
			if got.ManagedFields != nil || got.Annotations["kubectl.kubernetes.io/last-applied-configuration"] != "" ||
				got.Spec.Volumes != nil || got.Spec.NodeName != "" || got.Status.PodIP != "" {
				t.Errorf("strip kept fields the engine never reads: %+v", got)
			}
			for _, c := range append(got.Spec.InitContainers, got.Spec.Containers...) {
				if c.Image != "" || c.Env != nil || (c.Name != mesh.ProxyContainer && c.Args != nil) {
					t.Errorf("container %s kept more than name, restart policy and proxy args: %+v", c.Name, c)
				}
			}
		})
	}
}

func TestStripPodPassesOtherObjects(t *testing.T) {
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/p"}
	out, err := StripPod(tomb)
	if err != nil || out != any(tomb) {
		t.Errorf("tombstone changed: %v, %v", out, err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}}}}
	out, _ = StripManagedFields(ns)
	if out.(*corev1.Namespace).ManagedFields != nil {
		t.Error("managedFields kept")
	}
}

package podrecord

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/mtls-guard/mtls-guard/internal/mesh"
)

func TestNewKeepsWhatTheEngineReads(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	yes := true
	now := metav1.Now()
	full := func(mut func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: "web-1", Namespace: "shop", UID: "u1", ResourceVersion: "7",
				Labels:      map[string]string{"app": "web", mesh.ExemptLabel: "false", "empty": ""},
				Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...big...}"},
				OwnerReferences: []metav1.OwnerReference{
					{Kind: "ConfigMap", Name: "not-the-controller"},
					{Kind: "ReplicaSet", Name: "web-5d8f7", Controller: &yes},
				},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: mesh.ProxyContainer, Image: "proxyv2", RestartPolicy: &always, Args: []string{"proxy", "sidecar"}}},
				Containers:     []corev1.Container{{Name: "web", Image: "nginx", Args: []string{"--port=80"}}},
			},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
		}
		if mut != nil {
			mut(p)
		}
		return p
	}
	tests := []struct {
		name           string
		pod            *corev1.Pod
		wantController mesh.Owner
	}{
		{"native sidecar", full(nil), mesh.Owner{Kind: "ReplicaSet", Name: "web-5d8f7"}},
		{"classic sidecar", full(func(p *corev1.Pod) {
			p.Spec.InitContainers = nil
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: mesh.ProxyContainer, Args: []string{"proxy", "sidecar"}})
		}), mesh.Owner{Kind: "ReplicaSet", Name: "web-5d8f7"}},
		{"gateway", full(func(p *corev1.Pod) {
			p.Spec.InitContainers = nil
			p.Spec.Containers = []corev1.Container{{Name: mesh.ProxyContainer, Args: []string{"proxy", "router"}}}
		}), mesh.Owner{Kind: "ReplicaSet", Name: "web-5d8f7"}},
		{"ambient", full(func(p *corev1.Pod) {
			p.Spec.InitContainers = nil
			p.Annotations[mesh.AmbientRedirectionKey] = "enabled"
		}), mesh.Owner{Kind: "ReplicaSet", Name: "web-5d8f7"}},
		{"ambient pending", full(func(p *corev1.Pod) {
			p.Spec.InitContainers = nil
			p.Annotations[mesh.AmbientRedirectionKey] = "pending"
		}), mesh.Owner{Kind: "ReplicaSet", Name: "web-5d8f7"}},
		{"injection disabled by annotation", full(func(p *corev1.Pod) {
			p.Spec.InitContainers = nil
			p.Annotations[mesh.InjectKey] = "false"
		}), mesh.Owner{Kind: "ReplicaSet", Name: "web-5d8f7"}},
		{"host network", full(func(p *corev1.Pod) { p.Spec.InitContainers = nil; p.Spec.HostNetwork = true }), mesh.Owner{Kind: "ReplicaSet", Name: "web-5d8f7"}},
		{"finished", full(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), mesh.Owner{Kind: "ReplicaSet", Name: "web-5d8f7"}},
		{"being deleted", full(func(p *corev1.Pod) { p.DeletionTimestamp = &now }), mesh.Owner{Kind: "ReplicaSet", Name: "web-5d8f7"}},
		{"exempt", full(func(p *corev1.Pod) { p.Labels[mesh.ExemptLabel] = "true" }), mesh.Owner{Kind: "ReplicaSet", Name: "web-5d8f7"}},
		{"no controller, no labels", full(func(p *corev1.Pod) { p.OwnerReferences = p.OwnerReferences[:1]; p.Labels = nil }), mesh.Owner{}},
		{"other controller", full(func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: "Workflow", Name: "wf", Controller: &yes}}
		}), mesh.Owner{Kind: "Workflow", Name: "wf"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := New(tt.pod)
			for _, mode := range []mesh.SidecarMode{mesh.Native, mesh.Any} {
				wm, wr := mesh.Classify(tt.pod, mode)
				if gm, gr := rec.Classify(mode); wm != gm || wr != gr {
					t.Errorf("%s: Classify = (%v, %q), of the pod (%v, %q)", mode, gm, gr, wm, wr)
				}
			}
			if rec.Counted != mesh.Counted(tt.pod) {
				t.Errorf("Counted = %v, of the pod %v", rec.Counted, mesh.Counted(tt.pod))
			}
			if rec.Namespace != "shop" || rec.Name != "web-1" || rec.ResourceVersion != "7" {
				t.Errorf("identity %s/%s@%s", rec.Namespace, rec.Name, rec.ResourceVersion)
			}
			if got := ParseLabels(rec.Labels.Value()); !maps.Equal(got, tt.pod.Labels) {
				t.Errorf("labels %v, want %v", got, tt.pod.Labels)
			}
			if rec.Labels != New(tt.pod.DeepCopy()).Labels {
				t.Error("equal label sets are not interned to one handle")
			}
			if rec.Controller != tt.wantController {
				t.Errorf("controller %+v, want %+v", rec.Controller, tt.wantController)
			}
		})
	}
	if m, r := New(full(nil)).Classify("sometimes"); m || r != "" {
		t.Errorf("unknown mode classified (%v, %q)", m, r)
	}
}

func TestLabelKey(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   string
	}{
		{"none", nil, ""},
		{"empty", map[string]string{}, ""},
		{"one", map[string]string{"app": "web"}, "app\x00web\x00"},
		{"sorted", map[string]string{"b": "2", "a": "1", "app.kubernetes.io/name": "x"}, "a\x001\x00app.kubernetes.io/name\x00x\x00b\x002\x00"},
		{"empty values", map[string]string{"a": "", "b": ""}, "a\x00\x00b\x00\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LabelKey(tt.labels); got != tt.want {
				t.Errorf("LabelKey = %q, want %q", got, tt.want)
			}
			back := ParseLabels(tt.want)
			if len(tt.labels) == 0 {
				if back != nil {
					t.Errorf("ParseLabels(%q) = %v, want nil", tt.want, back)
				}
				return
			}
			if !maps.Equal(back, tt.labels) {
				t.Errorf("ParseLabels(%q) = %v, want %v", tt.want, back, tt.labels)
			}
		})
	}
}

// TestStoreKeysRecords checks what client-go's store reads of a record:
// its key, its namespace index and its resourceVersion.
func TestStoreKeysRecords(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", ResourceVersion: "42"}}
	obj, err := Transform(pod)
	if err != nil {
		t.Fatal(err)
	}
	if key, err := toolscache.MetaNamespaceKeyFunc(obj); err != nil || key != "shop/web-1" {
		t.Errorf("key %q, %v", key, err)
	}
	if ns, err := toolscache.MetaNamespaceIndexFunc(obj); err != nil || len(ns) != 1 || ns[0] != "shop" {
		t.Errorf("namespace index %v, %v", ns, err)
	}
	m, err := meta.Accessor(obj)
	if err != nil || m.GetResourceVersion() != "42" {
		t.Errorf("resourceVersion through meta.Accessor: %v, %v", m, err)
	}
	store := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	if err := store.Add(obj); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.ByIndex(toolscache.NamespaceIndex, "shop"); len(got) != 1 || got[0] != obj {
		t.Errorf("by namespace: %v", got)
	}
	tomb := toolscache.DeletedFinalStateUnknown{Key: "shop/web-1", Obj: obj}
	if out, err := Transform(tomb); err != nil || out != any(tomb) {
		t.Errorf("a tombstone was transformed: %v, %v", out, err)
	}
	if out, err := Transform(obj); err != nil || out != obj {
		t.Errorf("a record was transformed again: %v, %v", out, err)
	}
}

package cachestate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/mtls-guard/mtls-guard/internal/podrecord"
)

func TestTransforms(t *testing.T) {
	def, byObject := Transforms()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}}}}
	out, err := def(ns)
	if err != nil || out.(*corev1.Namespace).ManagedFields != nil {
		t.Errorf("default transform kept managedFields: %v, %v", out, err)
	}
	tomb := toolscache.DeletedFinalStateUnknown{Key: "ns/p"}
	if out, err := def(tomb); err != nil || out != any(tomb) {
		t.Errorf("default transform changed a tombstone: %v, %v", out, err)
	}
	if len(byObject) != 1 {
		t.Fatalf("per-kind transforms for %d kinds, want Pods only", len(byObject))
	}
	for obj, o := range byObject {
		if _, ok := obj.(*corev1.Pod); !ok {
			t.Fatalf("per-kind transform for %T, want Pods only", obj)
		}
		out, err := o.Transform(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "p"}})
		if err != nil {
			t.Fatal(err)
		}
		if rec, ok := out.(*podrecord.Pod); !ok || rec.Name != "p" {
			t.Errorf("the pod transform made %T %+v, want a podrecord.Pod", out, out)
		}
	}
}

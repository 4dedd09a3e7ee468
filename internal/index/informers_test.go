package index

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/podrecord"
)

func TestTransforms(t *testing.T) {
	def, byObject := CacheTransforms()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}}}}
	out, err := def(ns)
	if err != nil || out.(*corev1.Namespace).ManagedFields != nil {
		t.Errorf("default transform kept managedFields: %v, %v", out, err)
	}
	tomb := toolscache.DeletedFinalStateUnknown{Key: "ns/p"}
	if out, err := def(tomb); err != nil || out != any(tomb) {
		t.Errorf("default transform changed a tombstone: %v, %v", out, err)
	}
	yes := true
	meta := metav1.ObjectMeta{
		Namespace: "a", Name: "x", UID: "u", ResourceVersion: "9",
		Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"deployment.kubernetes.io/revision": "3"},
		OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: "web", Controller: &yes}},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
	}
	owners := metav1.ObjectMeta{Namespace: "a", Name: "x", UID: "u", ResourceVersion: "9", OwnerReferences: meta.OwnerReferences}
	template := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}}}
	replicas := int32(3)
	tests := []struct {
		name string
		in   client.Object
		want any
	}{
		{"pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "p"}}, podrecord.New(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "p"}})},
		{"replicaset", &appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Template: template}, Status: appsv1.ReplicaSetStatus{Replicas: 3}},
			&appsv1.ReplicaSet{ObjectMeta: owners}},
		{"job", &batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: template}}, &batchv1.Job{ObjectMeta: owners}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr toolscache.TransformFunc
			for obj, o := range byObject {
				if reflect.TypeOf(obj) == reflect.TypeOf(tt.in) {
					tr = o.Transform
				}
			}
			if tr == nil {
				t.Fatalf("no transform for %T", tt.in)
			}
			out, err := tr(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(out, tt.want) {
				t.Errorf("transformed to\n%+v\nwant\n%+v", out, tt.want)
			}
			if out, err := tr(tomb); err != nil || out != any(tomb) {
				t.Errorf("a tombstone was transformed: %v, %v", out, err)
			}
		})
	}
	if len(byObject) != len(tests) {
		t.Errorf("per-kind transforms for %d kinds, tested %d", len(byObject), len(tests))
	}
}

package cachestate

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/mesh"
)

// StripPod is a cache transform that keeps only what the engine reads of a
// pod, so that a cached pod costs a few hundred bytes, not kilobytes.
// Objects that are not pods (tombstones among them) pass through.
func StripPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              pod.Name,
			Namespace:         pod.Namespace,
			UID:               pod.UID,
			ResourceVersion:   pod.ResourceVersion,
			CreationTimestamp: pod.CreationTimestamp,
			DeletionTimestamp: pod.DeletionTimestamp,
			Labels:            pod.Labels,
			OwnerReferences:   pod.OwnerReferences,
		},
		Spec: corev1.PodSpec{
			HostNetwork:    pod.Spec.HostNetwork,
			InitContainers: stripContainers(pod.Spec.InitContainers),
			Containers:     stripContainers(pod.Spec.Containers),
		},
		Status: corev1.PodStatus{Phase: pod.Status.Phase},
	}
	for _, k := range [...]string{mesh.InjectKey, mesh.AmbientRedirectionKey} {
		if v, ok := pod.Annotations[k]; ok {
			if out.Annotations == nil {
				out.Annotations = make(map[string]string, 2)
			}
			out.Annotations[k] = v
		}
	}
	return out, nil
}

// stripContainers keeps names and restart policies, and args only for the
// proxy, the one container whose args the engine reads.
func stripContainers(cs []corev1.Container) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i := range cs {
		out[i] = corev1.Container{Name: cs[i].Name, RestartPolicy: cs[i].RestartPolicy}
		if cs[i].Name == mesh.ProxyContainer {
			out[i].Args = cs[i].Args
		}
	}
	return out
}

// StripManagedFields is the transform for every other cached kind.
func StripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

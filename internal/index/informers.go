package index

// The informer options: which kinds the guard watches, and trimmed how.
// Pods are kept as podrecord records, ReplicaSets and Jobs as their owners,
// every other kind without its managedFields. The index is fed by the same
// informers, so no admission request reads the cache or LISTs the API
// server.

import (
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/podrecord"
)

// WatchedKinds lists the kinds the guard watches and the index holds: the
// informers, the RBAC in deploy/ (list and watch on exactly these), and
// the CLI's live and file loaders all read this list.
func WatchedKinds() []client.Object {
	return []client.Object{
		&corev1.Namespace{}, &corev1.Pod{}, &appsv1.ReplicaSet{}, &batchv1.Job{}, &securityv1.PeerAuthentication{},
	}
}

// CacheTransforms returns the cache's default transform and its per-kind ones.
// The pod informer stores podrecord records, not Pods: reading Pods
// through the cache fails with an error rather than answering.
// ReplicaSets and Jobs keep only their identity and owners, all that
// naming a pod's workload reads of them: a Deployment keeps up to ten old
// ReplicaSets, each with a whole pod template.
func CacheTransforms() (toolscache.TransformFunc, map[client.Object]cache.ByObject) {
	return StripManagedFields, map[client.Object]cache.ByObject{
		&corev1.Pod{}:        {Transform: podrecord.Transform},
		&appsv1.ReplicaSet{}: {Transform: OwnersOnly},
		&batchv1.Job{}:       {Transform: OwnersOnly},
	}
}

// OwnersOnly keeps a ReplicaSet's or a Job's identity, resourceVersion and
// ownerReferences; other objects (tombstones among them) pass through.
func OwnersOnly(obj any) (any, error) {
	switch o := obj.(type) {
	case *appsv1.ReplicaSet:
		return &appsv1.ReplicaSet{TypeMeta: o.TypeMeta, ObjectMeta: ownersOnly(&o.ObjectMeta)}, nil
	case *batchv1.Job:
		return &batchv1.Job{TypeMeta: o.TypeMeta, ObjectMeta: ownersOnly(&o.ObjectMeta)}, nil
	}
	return obj, nil
}

func ownersOnly(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Namespace: m.Namespace, Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion,
		OwnerReferences: m.OwnerReferences,
	}
}

// StripManagedFields is the default transform, for the kinds without
// their own.
func StripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

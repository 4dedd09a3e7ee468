// Package cachestate gives the decision engine its view of the cluster from
// the manager's informer cache, so that no admission request LISTs the API
// server.
package cachestate

import (
	"context"
	"fmt"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// Objects lists the kinds the guard caches; the RBAC in deploy/ grants
// get, list and watch on exactly these.
func Objects() []client.Object {
	return []client.Object{
		&corev1.Pod{}, &corev1.Namespace{}, &appsv1.ReplicaSet{}, &batchv1.Job{}, &securityv1.PeerAuthentication{},
	}
}

// View is an engine.Cluster over a cache reader. The objects it returns
// are shared with the cache and must not be modified.
type View struct {
	ctx context.Context
	r   client.Reader
}

var _ engine.Cluster = (*View)(nil)

// New returns a view that reads through r for the duration of ctx.
func New(ctx context.Context, r client.Reader) *View { return &View{ctx: ctx, r: r} }

// Namespace implements engine.Cluster.
func (v *View) Namespace(name string) (*corev1.Namespace, error) {
	var ns corev1.Namespace
	if err := v.r.Get(v.ctx, client.ObjectKey{Name: name}, &ns); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Namespace %s from cache: %w", name, err)
	}
	return &ns, nil
}

// PodNamespaces implements engine.Cluster. Every pod's namespace exists, so
// the Namespace list stands in for it.
func (v *View) PodNamespaces() ([]string, error) {
	var list corev1.NamespaceList
	if err := v.r.List(v.ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing Namespaces from cache: %w", err)
	}
	out := make([]string, len(list.Items))
	for i := range list.Items {
		out[i] = list.Items[i].Name
	}
	return out, nil
}

// Pods implements engine.Cluster.
func (v *View) Pods(namespace string) ([]*corev1.Pod, error) {
	var list corev1.PodList
	if err := v.r.List(v.ctx, &list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing Pods in %s from cache: %w", namespace, err)
	}
	out := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// ReplicaSet implements engine.Cluster.
func (v *View) ReplicaSet(namespace, name string) (*appsv1.ReplicaSet, error) {
	var rs appsv1.ReplicaSet
	return get(v, namespace, name, &rs)
}

// Job implements engine.Cluster.
func (v *View) Job(namespace, name string) (*batchv1.Job, error) {
	var job batchv1.Job
	return get(v, namespace, name, &job)
}

// Policies implements engine.Cluster.
func (v *View) Policies(namespace string) ([]*policy.Policy, error) {
	var list securityv1.PeerAuthenticationList
	if err := v.r.List(v.ctx, &list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing PeerAuthentications in %s from cache: %w", namespace, err)
	}
	out := make([]*policy.Policy, len(list.Items))
	for i, pa := range list.Items {
		out[i] = policy.FromV1(pa)
	}
	return out, nil
}

func get[T any, PT interface {
	*T
	client.Object
}](v *View, namespace, name string, obj PT) (*T, error) {
	if err := v.r.Get(v.ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading %T %s/%s from cache: %w", obj, namespace, name, err)
	}
	return obj, nil
}

// Package enginetest holds test support for the engine: Snapshot, an
// in-memory engine.Cluster that tests use as a naive oracle to compare the
// production index against. No production code imports it.
package enginetest

import (
	"fmt"
	"maps"
	"slices"
	"sort"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// Snapshot is an in-memory engine.Cluster, built from objects read from files or
// listed from an API server. It is not safe for concurrent mutation.
type Snapshot struct {
	namespaces  map[string]*corev1.Namespace
	pods        map[string][]*corev1.Pod
	podIndex    map[string]int // "namespace/name" -> index in pods[namespace]
	replicaSets map[string]*appsv1.ReplicaSet
	jobs        map[string]*batchv1.Job
	policies    map[string]map[string]*policy.Policy
}

var _ engine.Cluster = (*Snapshot)(nil)

// NewSnapshot returns an empty snapshot.
func NewSnapshot() *Snapshot {
	return &Snapshot{
		namespaces:  map[string]*corev1.Namespace{},
		pods:        map[string][]*corev1.Pod{},
		podIndex:    map[string]int{},
		replicaSets: map[string]*appsv1.ReplicaSet{},
		jobs:        map[string]*batchv1.Job{},
		policies:    map[string]map[string]*policy.Policy{},
	}
}

// Add stores an object of a kind the engine reads and reports whether it
// did; other kinds are ignored.
func (s *Snapshot) Add(obj runtime.Object) bool {
	switch o := obj.(type) {
	case *corev1.Namespace:
		s.namespaces[o.Name] = o
	case *corev1.Pod:
		// Like every other kind, a pod added again replaces the one stored.
		k := o.Namespace + "/" + o.Name
		if i, ok := s.podIndex[k]; ok {
			s.pods[o.Namespace][i] = o
		} else {
			s.podIndex[k] = len(s.pods[o.Namespace])
			s.pods[o.Namespace] = append(s.pods[o.Namespace], o)
		}
	case *appsv1.ReplicaSet:
		s.replicaSets[o.Namespace+"/"+o.Name] = o
	case *batchv1.Job:
		s.jobs[o.Namespace+"/"+o.Name] = o
	case *securityv1.PeerAuthentication, *securityv1beta1.PeerAuthentication:
		s.SetPolicy(policy.From(o))
	default:
		return false
	}
	return true
}

// SetPolicy creates or replaces a policy.
func (s *Snapshot) SetPolicy(p *policy.Policy) {
	m := s.policies[p.Namespace]
	if m == nil {
		m = map[string]*policy.Policy{}
		s.policies[p.Namespace] = m
	}
	m[p.Name] = p
}

// DeletePolicy removes a policy, if present.
func (s *Snapshot) DeletePolicy(namespace, name string) {
	delete(s.policies[namespace], name)
}

// Policy returns one policy, or nil.
func (s *Snapshot) Policy(namespace, name string) *policy.Policy {
	return s.policies[namespace][name]
}

// Namespace implements Cluster.
func (s *Snapshot) Namespace(name string) (*corev1.Namespace, error) {
	return s.namespaces[name], nil
}

// NamespaceNames lists every namespace that has a Namespace object, pods or
// policies, sorted.
func (s *Snapshot) NamespaceNames() []string {
	seen := map[string]bool{}
	for ns := range s.namespaces {
		seen[ns] = true
	}
	for ns := range s.pods {
		seen[ns] = true
	}
	for ns, ps := range s.policies {
		if len(ps) > 0 {
			seen[ns] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// PodNamespaces implements Cluster.
func (s *Snapshot) PodNamespaces() ([]string, error) {
	out := make([]string, 0, len(s.pods))
	for ns, pods := range s.pods {
		if len(pods) > 0 {
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Pods lists the pods of one namespace. Callers must not modify them.
func (s *Snapshot) Pods(namespace string) ([]*corev1.Pod, error) {
	return s.pods[namespace], nil
}

// PodFacts implements Cluster.
func (s *Snapshot) PodFacts(namespace string, mode mesh.SidecarMode) (engine.PodFacts, error) {
	return engine.FactsOf(s.pods[namespace], mode), nil
}

// ReplicaSet implements Cluster.
func (s *Snapshot) ReplicaSet(namespace, name string) (*appsv1.ReplicaSet, error) {
	return s.replicaSets[namespace+"/"+name], nil
}

// Job implements Cluster.
func (s *Snapshot) Job(namespace, name string) (*batchv1.Job, error) {
	return s.jobs[namespace+"/"+name], nil
}

// Policies implements Cluster.
func (s *Snapshot) Policies(namespace string) ([]*policy.Policy, error) {
	m := s.policies[namespace]
	out := make([]*policy.Policy, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	return out, nil
}

// String summarises the snapshot for logs.
func (s *Snapshot) String() string {
	n := 0
	for _, p := range s.pods {
		n += len(p)
	}
	return fmt.Sprintf("snapshot{namespaces: %d, pods: %d, replicasets: %d, jobs: %d}", len(s.namespaces), n, len(s.replicaSets), len(s.jobs))
}

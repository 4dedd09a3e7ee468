package main

import (
	"context"
	"reflect"
	"testing"

	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/index/clustergen"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

type change struct {
	op engine.Operation
	pa *securityv1.PeerAuthentication
}

// testChanges are the benchmarked decisions and others that reach the
// branches the Rego policy implements.
func testChanges(c *clustergen.Cluster) []change {
	var out []change
	for _, d := range clustergen.Decisions {
		if ch, pa, ok := c.Change(d); ok {
			out = append(out, change{ch.Operation, pa})
		}
	}
	strict, permissive := apisecurity.PeerAuthentication_MutualTLS_STRICT, apisecurity.PeerAuthentication_MutualTLS_PERMISSIVE
	for ns := range c.Config().Namespaces {
		name := c.NamespaceName(ns)
		out = append(out,
			change{engine.Create, clustergen.PeerAuthentication(name, "x", strict, map[string]string{"app": clustergen.WorkloadName(c.UnmeshedWorkload(ns))})},
			change{engine.Create, clustergen.PeerAuthentication(name, "y", strict, map[string]string{"team": "team-2"})},
			change{engine.Create, clustergen.PeerAuthentication(name, "default", permissive, nil)},
			change{engine.Create, clustergen.PeerAuthentication(name, "unset", apisecurity.PeerAuthentication_MutualTLS_UNSET, nil)},
		)
	}
	over := clustergen.PeerAuthentication(c.NamespaceName(0), "default", strict, nil)
	over.Annotations = map[string]string{"mtls-guard.io/override-reason": "migration window"}
	out = append(out,
		change{engine.Create, over},
		change{engine.Create, clustergen.PeerAuthentication(clustergen.RootNamespace, "newer", strict, nil)},
		change{engine.Delete, clustergen.PeerAuthentication(clustergen.RootNamespace, clustergen.MeshPolicy, permissive, nil)},
		change{engine.Create, clustergen.PeerAuthentication(clustergen.SystemNamespace, "default", strict, nil)},
	)
	return out
}

// testObjects is a generated cluster and a few pods that reach every
// reason and owner rule.
func testObjects(c *clustergen.Cluster) []runtime.Object {
	out := c.Objects()
	ns := c.NamespaceName(2)
	pod := func(name string, edit func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
		edit(p)
		return p
	}
	yes := true
	out = append(out,
		pod("host", func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
		pod("ambient", func(p *corev1.Pod) { p.Annotations = map[string]string{mesh.AmbientRedirectionKey: "enabled"} }),
		pod("pending", func(p *corev1.Pod) { p.Annotations = map[string]string{mesh.AmbientRedirectionKey: "pending"} }),
		pod("gateway", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: mesh.ProxyContainer, Args: []string{"proxy", "router"}})
		}),
		pod("done", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		pod("exempt", func(p *corev1.Pod) { p.Labels = map[string]string{mesh.ExemptLabel: "true"} }),
		pod("job-pod", func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "nightly-1", UID: "j", Controller: &yes}}
		}),
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly-1",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: "nightly", UID: "c", Controller: &yes}}}},
		pod("db-0", func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: "s", Controller: &yes}}
		}),
		pod("orphan-abc12-x", func(p *corev1.Pod) {
			p.Labels = map[string]string{"pod-template-hash": "abc12"}
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "orphan-abc12", UID: "r", Controller: &yes}}
		}),
	)
	return out
}

// TestRegoDecidesAsTheGuard wants the Rego peer to give the guard's
// answers, so that the benchmark compares equal work.
func TestRegoDecidesAsTheGuard(t *testing.T) {
	ctx := context.Background()
	c := clustergen.New(clustergen.Config{Pods: 400, Namespaces: 10, Seed: 3})
	objs := testObjects(c)
	for _, mode := range []mesh.SidecarMode{mesh.Native, mesh.Any} {
		o := engine.DefaultOptions()
		o.SidecarMode = mode
		ix := index.New(o)
		for _, obj := range objs {
			ix.Add(obj)
		}
		peer, err := NewOPA(ctx, objs, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range testChanges(c) {
			d, err := ix.DecideWith(engine.Change{Operation: ch.op, Policy: policy.FromV1(ch.pa)}, o)
			if err != nil {
				t.Fatal(err)
			}
			in, err := peer.Input(ch.op, ch.pa)
			if err != nil {
				t.Fatal(err)
			}
			got, err := peer.Decide(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if want := OutcomeOf(d); !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s/%s (%s): Rego decided\n%+v\nthe guard\n%+v", ch.op, ch.pa.Namespace, ch.pa.Name, mode, got, want)
			}
		}
	}
}

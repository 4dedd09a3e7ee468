package engine_test

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index/clustergen"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// arrivingExemptPod is an unmeshed pod arriving in the generated cluster's
// ExemptNamespace, which runs STRICT (with a workload exemption, so that
// its strictness has to be resolved over the namespace's label sets): a
// copy of the namespace's first pod without its sidecar.
func arrivingExemptPod(b *testing.B, gen *clustergen.Cluster) *corev1.Pod {
	b.Helper()
	ns := gen.ExemptNamespace()
	for i := range gen.NumPods() {
		if p := gen.Pod(i); p.Namespace == ns {
			p.Name, p.UID, p.Spec.InitContainers = p.Name+"-debug", "", nil
			return p
		}
	}
	b.Fatalf("no pod in %s", ns)
	return nil
}

// namespacePolicy is the ExemptNamespace's STRICT policy as the cache
// compiles it: setting it again is the policy event that empties the
// namespace's cached strictness.
func namespacePolicy(b *testing.B, gen *clustergen.Cluster) *policy.Policy {
	b.Helper()
	for _, pa := range gen.Policies() {
		if pa.Namespace == gen.ExemptNamespace() && pa.Spec.Selector == nil {
			return policy.FromV1(pa)
		}
	}
	b.Fatal("no namespace-wide policy in the exempt namespace")
	return nil
}

// BenchmarkDecidePod judges an unmeshed pod arriving where STRICT holds
// (rule 3b) at every size:
//   - warm: the index's cached strictness of the namespace (the common
//     case: the cache is emptied only by policy and pod events there);
//   - policy-event: re-setting the namespace's policy alone, which empties
//     the cache (the informer's cost, not the request's);
//   - cold: that event and then the decision, which resolves the
//     namespace's strictness again from its label sets; cold minus
//     policy-event is the first decision's cost;
//   - snapshot: engine.DecidePod on a Snapshot, which caches nothing and
//     classifies the namespace's pods on every call.
func BenchmarkDecidePod(b *testing.B) {
	for _, cfg := range benchSizes {
		b.Run(fmt.Sprintf("pods=%d", cfg.Pods), func(b *testing.B) {
			bc := loadBenchCluster(b, cfg)
			pod := arrivingExemptPod(b, bc.gen)
			p := namespacePolicy(b, bc.gen)
			check := func(b *testing.B, a engine.Arrival, err error) {
				if err != nil || !a.Problem() {
					b.Fatalf("DecidePod = %+v, %v; want unmeshed under STRICT", a, err)
				}
			}
			b.Run("warm", func(b *testing.B) {
				a, err := bc.index.DecidePod(pod)
				check(b, a, err)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := bc.index.DecidePod(pod); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("policy-event", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					bc.index.SetPolicy(p)
				}
			})
			b.Run("cold", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					bc.index.SetPolicy(p)
					a, err := bc.index.DecidePod(pod)
					check(b, a, err)
				}
			})
			b.Run("snapshot", func(b *testing.B) {
				a, err := engine.DecidePod(bc.snapshot, pod, engine.DefaultOptions())
				check(b, a, err)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := engine.DecidePod(bc.snapshot, pod, engine.DefaultOptions()); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkDecideTemplate predicts a Deployment's template that opts out
// of injection in the same namespace, from the index's warm cache.
func BenchmarkDecideTemplate(b *testing.B) {
	for _, cfg := range benchSizes {
		b.Run(fmt.Sprintf("pods=%d", cfg.Pods), func(b *testing.B) {
			bc := loadBenchCluster(b, cfg)
			pod := arrivingExemptPod(b, bc.gen)
			tmpl := &corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}
			tmpl.Annotations = map[string]string{"sidecar.istio.io/inject": "false"}
			a, err := bc.index.DecideTemplate(pod.Namespace, tmpl)
			if err != nil || !a.Problem() {
				b.Fatalf("DecideTemplate = %+v, %v; want predicted unmeshed under STRICT", a, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.index.DecideTemplate(pod.Namespace, tmpl); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

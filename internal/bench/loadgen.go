package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/mtls-guard/mtls-guard/internal/index/clustergen"
)

var peerAuthentications = schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"}

// loadStats summarises one load phase.
type loadStats struct {
	requests, admitted, denied, errors int
	rate                               float64
	p50, p99, max                      time.Duration
	// guardMean is the mean time a request spent in the guard's HTTP
	// handler, from its controller_runtime_webhook_latency_seconds; zero
	// when the guard answered nothing.
	guardMean time.Duration
	firstErr  error
}

// loadPhase warms up, then sends server-side dry-run applies from
// workers clients for c.e2eDuration, and summarises their latencies and
// the time the guard's handler spent on them.
func loadPhase(ctx context.Context, dyn dynamic.Interface, gen *clustergen.Cluster, workers int, c config, g *guardProcess) (loadStats, error) {
	if _, err := loadFor(ctx, dyn, gen, workers, c.e2eWarmup); err != nil {
		return loadStats{}, err
	}
	n0, sum0, err := g.handling(ctx)
	if err != nil {
		return loadStats{}, err
	}
	s, err := loadFor(ctx, dyn, gen, workers, c.e2eDuration)
	if err != nil {
		return s, err
	}
	n1, sum1, err := g.handling(ctx)
	if err != nil {
		return s, err
	}
	if n1 > n0 {
		s.guardMean = time.Duration((sum1 - sum0) / float64(n1-n0) * float64(time.Second))
	}
	return s, nil
}

// strictApply is the object of request i: a namespace-wide STRICT or a
// STRICT for one meshed workload, in one of the cluster's namespaces.
func strictApply(gen *clustergen.Cluster, i int) *unstructured.Unstructured {
	ns := gen.NamespaceName(i / 2 % gen.Config().Namespaces)
	spec := map[string]any{"mtls": map[string]any{"mode": "STRICT"}}
	name := "default"
	if i%2 == 1 {
		name = "strict-" + clustergen.WorkloadName(0)
		spec["selector"] = map[string]any{"matchLabels": map[string]any{"app": clustergen.WorkloadName(0)}}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "security.istio.io/v1",
		"kind":       "PeerAuthentication",
		"metadata":   map[string]any{"namespace": ns, "name": name},
		"spec":       spec,
	}}
}

func loadFor(ctx context.Context, dyn dynamic.Interface, gen *clustergen.Cluster, workers int, d time.Duration) (loadStats, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type result struct {
		latencies                []time.Duration
		admitted, denied, errors int
		firstErr                 error
	}
	results := make([]result, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[w]
			for i := w; ctx.Err() == nil; i += workers {
				obj := strictApply(gen, i)
				t := time.Now()
				_, err := dyn.Resource(peerAuthentications).Namespace(obj.GetNamespace()).Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{
					FieldManager: "mtls-guard-bench", Force: true, DryRun: []string{metav1.DryRunAll},
				})
				lat := time.Since(t)
				switch {
				case err == nil:
					r.admitted++
				case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "denied the request"):
					r.denied++
				case ctx.Err() != nil:
					continue // cut off by the end of the phase: not counted
				default:
					r.errors++
					if r.firstErr == nil {
						r.firstErr = err
					}
				}
				r.latencies = append(r.latencies, lat)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var s loadStats
	var all []time.Duration
	for _, r := range results {
		all = append(all, r.latencies...)
		s.admitted += r.admitted
		s.denied += r.denied
		s.errors += r.errors
		if s.firstErr == nil {
			s.firstErr = r.firstErr
		}
	}
	if len(all) == 0 {
		return s, fmt.Errorf("no request completed in %s", d)
	}
	slices.Sort(all)
	s.requests = len(all)
	s.rate = float64(len(all)) / elapsed.Seconds()
	s.p50 = all[len(all)/2]
	s.p99 = all[min(len(all)-1, len(all)*99/100)]
	s.max = all[len(all)-1]
	return s, nil
}

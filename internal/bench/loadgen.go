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

// loadStats summarises the requests of one arm of a comparison.
type loadStats struct {
	latencies
	admitted, denied, errors int
	firstErr                 error
}

// latencies are one arm's pooled request figures.
type latencies struct {
	requests      int
	rate          float64
	p50, p99, max time.Duration
	// guardMean is the mean time a request spent in the guard's HTTP
	// handler, from its controller_runtime_webhook_latency_seconds; zero
	// when the guard answered nothing.
	guardMean time.Duration
}

// pool sums up the latencies of an arm's rounds over their elapsed time,
// with the guard's handler count and seconds in them.
func pool(all []time.Duration, elapsed time.Duration, guardCount uint64, guardSeconds float64) latencies {
	var l latencies
	if guardCount > 0 {
		l.guardMean = time.Duration(guardSeconds / float64(guardCount) * float64(time.Second))
	}
	if len(all) == 0 {
		return l
	}
	slices.Sort(all)
	l.requests = len(all)
	l.rate = float64(len(all)) / elapsed.Seconds()
	l.p50 = all[len(all)/2]
	l.p99 = all[min(len(all)-1, len(all)*99/100)]
	l.max = all[len(all)-1]
	return l
}

// sample is what one timed load produced.
type sample struct {
	latencies                []time.Duration
	elapsed                  time.Duration
	admitted, denied, errors int
	firstErr                 error
	// guardCount and guardSeconds are what the guard's handler served
	// meanwhile, read from its latency histogram.
	guardCount   uint64
	guardSeconds float64
}

// compare measures workers clients without and with the guard registered,
// in c.e2eRounds rounds that alternate the two, each arm warmed up and
// then timed for c.e2eDuration/c.e2eRounds per round, and pools each arm's
// requests. Alternating keeps a drift of the shared machine or the API
// server over the run out of the difference.
func compare(ctx context.Context, dyn dynamic.Interface, gen *clustergen.Cluster, workers int, c config, g *guardProcess, register, unregister func() error) (without, with loadStats, err error) {
	d := c.e2eDuration / time.Duration(c.e2eRounds)
	var offs, ons []sample
	for range c.e2eRounds {
		off, err := timedLoad(ctx, dyn, gen, workers, c.e2eWarmup, d, g)
		if err != nil {
			return without, with, err
		}
		if off.denied > 0 {
			return without, with, fmt.Errorf("%d requests were denied with no webhook registered", off.denied)
		}
		if err := register(); err != nil {
			return without, with, err
		}
		on, err := timedLoad(ctx, dyn, gen, workers, c.e2eWarmup, d, g)
		if err != nil {
			return without, with, err
		}
		if err := unregister(); err != nil {
			return without, with, err
		}
		offs, ons = append(offs, off), append(ons, on)
	}
	return summarize(offs), summarize(ons), nil
}

// timedLoad warms up for warmup, then times d of load and reads what the
// guard's handler served meanwhile.
func timedLoad(ctx context.Context, dyn dynamic.Interface, gen *clustergen.Cluster, workers int, warmup, d time.Duration, g *guardProcess) (sample, error) {
	if _, err := loadFor(ctx, dyn, gen, workers, warmup); err != nil {
		return sample{}, err
	}
	n0, sum0, err := g.handling(ctx)
	if err != nil {
		return sample{}, err
	}
	s, err := loadFor(ctx, dyn, gen, workers, d)
	if err != nil {
		return s, err
	}
	n1, sum1, err := g.handling(ctx)
	if err != nil {
		return s, err
	}
	s.guardCount, s.guardSeconds = n1-n0, sum1-sum0
	return s, nil
}

// summarize pools samples into one arm's figures.
func summarize(samples []sample) loadStats {
	var s loadStats
	var all []time.Duration
	var elapsed time.Duration
	var guardCount uint64
	var guardSeconds float64
	for _, x := range samples {
		all = append(all, x.latencies...)
		elapsed += x.elapsed
		s.admitted += x.admitted
		s.denied += x.denied
		s.errors += x.errors
		if s.firstErr == nil {
			s.firstErr = x.firstErr
		}
		guardCount += x.guardCount
		guardSeconds += x.guardSeconds
	}
	s.latencies = pool(all, elapsed, guardCount, guardSeconds)
	return s
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

// loadFor sends server-side dry-run applies from workers clients for d.
func loadFor(ctx context.Context, dyn dynamic.Interface, gen *clustergen.Cluster, workers int, d time.Duration) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	results := make([]sample, workers)
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
					continue // cut off by the end of the load: not counted
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
	out := sample{elapsed: time.Since(start)}
	for _, r := range results {
		out.latencies = append(out.latencies, r.latencies...)
		out.admitted += r.admitted
		out.denied += r.denied
		out.errors += r.errors
		if out.firstErr == nil {
			out.firstErr = r.firstErr
		}
	}
	if len(out.latencies) == 0 {
		return out, fmt.Errorf("no request completed in %s", d)
	}
	return out, nil
}

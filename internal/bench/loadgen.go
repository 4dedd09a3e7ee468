package main

import (
	"context"
	"fmt"
	"io"
	"slices"
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

// counts are the answers of a load: admitted, denied (403), warned (an
// admission warning, counted by the caller), and other errors.
type counts struct {
	admitted, denied, warned, errors int
	firstErr                         error
}

func (c *counts) add(o counts) {
	c.admitted += o.admitted
	c.denied += o.denied
	c.warned += o.warned
	c.errors += o.errors
	if c.firstErr == nil {
		c.firstErr = o.firstErr
	}
}

// loadStats summarises the requests of one arm of a comparison.
type loadStats struct {
	latencies
	counts
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

// sample is what one timed load produced.
type sample struct {
	latencies []time.Duration
	elapsed   time.Duration
	counts
	// guardCount and guardSeconds are what the guard's handler served
	// meanwhile, read from its latency histogram.
	guardCount   uint64
	guardSeconds float64
}

// summarize pools samples into one arm's figures: the latencies over the
// samples' elapsed time, with the guard's handler count and seconds.
func summarize(samples []sample) loadStats {
	var s loadStats
	var all []time.Duration
	var elapsed time.Duration
	var guardCount uint64
	var guardSeconds float64
	for _, x := range samples {
		all = append(all, x.latencies...)
		elapsed += x.elapsed
		s.add(x.counts)
		guardCount += x.guardCount
		guardSeconds += x.guardSeconds
	}
	if guardCount > 0 {
		s.guardMean = time.Duration(guardSeconds / float64(guardCount) * float64(time.Second))
	}
	if len(all) == 0 {
		return s
	}
	slices.Sort(all)
	s.requests = len(all)
	s.rate = float64(len(all)) / elapsed.Seconds()
	s.p50 = all[len(all)/2]
	s.p99 = all[min(len(all)-1, len(all)*99/100)]
	s.max = all[len(all)-1]
	return s
}

// alternate times run in rounds that alternate without and with the
// guard registered, and pools each arm's samples. Alternating keeps a
// drift of the shared machine or the API server over the run out of the
// difference.
func alternate(rounds int, register, unregister func() error, run func() (sample, error)) (without, with loadStats, err error) {
	var offs, ons []sample
	for range rounds {
		off, err := run()
		if err != nil {
			return without, with, err
		}
		if off.denied > 0 || off.warned > 0 {
			return without, with, fmt.Errorf("%d requests were denied and %d warned with no webhook registered", off.denied, off.warned)
		}
		if err := register(); err != nil {
			return without, with, err
		}
		on, err := run()
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

// timed runs load for warmup untimed, then for d, and reads what the
// guard's handler at path served meanwhile.
func timed(ctx context.Context, g *guardProcess, path string, warmup, d time.Duration, load func(time.Duration) (sample, error)) (sample, error) {
	if _, err := load(warmup); err != nil {
		return sample{}, err
	}
	n0, sum0, err := g.handlingAt(ctx, path)
	if err != nil {
		return sample{}, err
	}
	s, err := load(d)
	if err != nil {
		return s, err
	}
	n1, sum1, err := g.handlingAt(ctx, path)
	if err != nil {
		return s, err
	}
	s.guardCount, s.guardSeconds = n1-n0, sum1-sum0
	return s, nil
}

// runLoad calls op from workers clients for d and times each call; the
// calls of client w are numbered w, w+workers, w+2*workers, … A call cut
// off by the end of the load is not counted.
func runLoad(ctx context.Context, workers int, d time.Duration, op func(ctx context.Context, i int) error) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	results := make([]sample, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			r := &results[w]
			for i := w; ctx.Err() == nil; i += workers {
				t := time.Now()
				err := op(ctx, i)
				lat := time.Since(t)
				switch {
				case err == nil:
					r.admitted++
				case apierrors.IsForbidden(err):
					r.denied++
				case ctx.Err() != nil:
					continue
				default:
					r.errors++
					if r.firstErr == nil {
						r.firstErr = err
					}
				}
				r.latencies = append(r.latencies, lat)
			}
		})
	}
	wg.Wait()
	out := sample{elapsed: time.Since(start)}
	for _, r := range results {
		out.latencies = append(out.latencies, r.latencies...)
		out.add(r.counts)
	}
	if len(out.latencies) == 0 {
		return out, fmt.Errorf("no request completed in %s", d)
	}
	return out, nil
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

// applyLoad sends server-side dry-run applies of strictApply from workers
// clients for d.
func applyLoad(ctx context.Context, dyn dynamic.Interface, gen *clustergen.Cluster, workers int, d time.Duration) (sample, error) {
	return runLoad(ctx, workers, d, func(ctx context.Context, i int) error {
		obj := strictApply(gen, i)
		_, err := dyn.Resource(peerAuthentications).Namespace(obj.GetNamespace()).Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{
			FieldManager: "mtls-guard-bench", Force: true, DryRun: []string{metav1.DryRunAll},
		})
		return err
	})
}

// printArms writes the two rows of one comparison to tw: clients, arm,
// requests, rate, the counts that counted shows, p50, p99, max and, for an
// arm the guard answered in (guarded), what it adds to the arm without.
// It returns each arm's first error, as notes for under the table.
func printArms(tw io.Writer, clients int, without, with loadStats, counted func(counts) string, guarded func(loadStats) bool) (notes []string) {
	for _, a := range []struct {
		name string
		s    loadStats
	}{{"not registered", without}, {"guard registered", with}} {
		added, times, inGuard := "", "", ""
		if guarded(a.s) {
			added = formatDuration(a.s.p50 - without.p50)
			times = fmt.Sprintf("%.2f×", float64(a.s.p50)/float64(without.p50))
			inGuard = formatDuration(a.s.guardMean)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", clients, a.name, a.s.requests, a.s.rate, counted(a.s.counts),
			formatDuration(a.s.p50), formatDuration(a.s.p99), formatDuration(a.s.max), added, times, inGuard)
		if a.s.firstErr != nil {
			notes = append(notes, fmt.Sprintf("   first error (%d clients, %s): %v", clients, a.name, a.s.firstErr))
		}
	}
	return notes
}

package engine_test

import (
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/evidence"
	"github.com/mtls-guard/mtls-guard/internal/index/clustergen"
)

// plaintextBenchSize is the cluster of the plaintext benchmark: 100k pods
// in 1000 namespaces, 20 Deployments of 5 pods in each.
var plaintextBenchSize = clustergen.Config{Pods: 100000, Namespaces: 1000}

// Evidence of the benchmark: plaintextWorkloads destination workloads, of
// which plaintextInDecided are in the decided namespace (namespace 0) and
// the rest one per other namespace.
const (
	plaintextWorkloads = 1000
	plaintextInDecided = 10
)

// plaintextSnapshot is the evidence a refresh would build for
// plaintextWorkloads workloads, inDecided of them in the decided
// namespace: each received plaintext requests from outside the mesh and
// from one known caller.
func plaintextSnapshot(gen *clustergen.Cluster, inDecided int) *evidence.Snapshot {
	var reqs model.Vector
	add := func(ns, workload string) {
		for _, src := range [][2]string{{"unknown", "unknown"}, {"default", "curl"}} {
			reqs = append(reqs, &model.Sample{Value: 3, Metric: model.Metric{
				"destination_workload_namespace": model.LabelValue(ns), "destination_workload": model.LabelValue(workload),
				"source_workload_namespace": model.LabelValue(src[0]), "source_workload": model.LabelValue(src[1]),
			}})
		}
	}
	perNS := plaintextBenchSize.Pods / plaintextBenchSize.Namespaces / 5 // Deployments per namespace
	for w := range inDecided {
		add(gen.NamespaceName(0), clustergen.WorkloadName(w))
	}
	for i := range plaintextWorkloads - inDecided {
		ns := 1 + i%(plaintextBenchSize.Namespaces-1)
		add(gen.NamespaceName(ns), clustergen.WorkloadName(i%perNS))
	}
	return evidence.NewSnapshot(time.Unix(0, 0), 24*time.Hour, 1, reqs, nil)
}

// BenchmarkDecidePlaintext decides the namespace-wide STRICT at 100k pods
// on the index without a telemetry source and with evidence for 1000
// workloads (none, then 10 of them, in the decided namespace), side by
// side: the difference is what rule 3a costs a decision (target: under
// 10µs). Each sub-benchmark reports the
// plaintext workloads its decision lists; "paired" times both decisions
// in alternation and reports their difference as extra-ns/op.
func BenchmarkDecidePlaintext(b *testing.B) {
	bc := loadBenchCluster(b, plaintextBenchSize)
	ch, _, ok := bc.gen.Change(clustergen.NamespaceWide)
	if !ok {
		b.Fatal("no namespace-wide change")
	}
	withEvidence := func(inDecided int) engine.Options {
		snap := plaintextSnapshot(bc.gen, inDecided)
		if snap.Len() != plaintextWorkloads {
			b.Fatalf("the evidence holds %d workloads, want %d", snap.Len(), plaintextWorkloads)
		}
		o := engine.DefaultOptions()
		o.Plaintext = func() (*evidence.Snapshot, error) { return snap, nil }
		return o
	}
	listed := withEvidence(plaintextInDecided)

	for _, tc := range []struct {
		name          string
		opts          engine.Options
		wantPlaintext int
	}{
		{"evidence=none", engine.DefaultOptions(), 0},
		// The evidence of other namespaces is never read.
		{"evidence=1000-workloads,0-listed", withEvidence(0), 0},
		{"evidence=1000-workloads,10-listed", listed, plaintextInDecided},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dec, err := bc.index.DecideWith(ch, tc.opts)
			if err != nil {
				b.Fatal(err)
			}
			// The benchmark must decide what it claims: a denial that
			// lists exactly the evidence of the decided namespace.
			if dec.Allowed || len(dec.Plaintext) != tc.wantPlaintext {
				b.Fatalf("allowed=%v with %d plaintext workloads, want a denial listing %d: %s", dec.Allowed, len(dec.Plaintext), tc.wantPlaintext, dec.Message)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.index.DecideWith(ch, tc.opts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(dec.Plaintext)), "plaintext-workloads")
		})
	}
	// The decisions without evidence and with 10 listed in alternation, each timed: on a shared, noisy
	// machine the load drifts between sub-benchmarks, not within one
	// iteration, so the paired difference is the steadier figure.
	b.Run("paired", func(b *testing.B) {
		without := engine.DefaultOptions()
		var tWithout, tWith time.Duration
		n := 0
		for b.Loop() {
			start := time.Now()
			if _, err := bc.index.DecideWith(ch, without); err != nil {
				b.Fatal(err)
			}
			mid := time.Now()
			if _, err := bc.index.DecideWith(ch, listed); err != nil {
				b.Fatal(err)
			}
			tWithout += mid.Sub(start)
			tWith += time.Since(mid)
			n++
		}
		b.ReportMetric(float64(tWithout.Nanoseconds())/float64(n), "without-ns/op")
		b.ReportMetric(float64(tWith.Nanoseconds())/float64(n), "with-ns/op")
		b.ReportMetric(float64((tWith-tWithout).Nanoseconds())/float64(n), "extra-ns/op")
	})
}

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

// plaintextSnapshot is the evidence a refresh would build for the
// benchmark's workloads: each received plaintext requests from outside
// the mesh and from one known caller.
func plaintextSnapshot(gen *clustergen.Cluster) *evidence.Snapshot {
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
	for w := range plaintextInDecided {
		add(gen.NamespaceName(0), clustergen.WorkloadName(w))
	}
	for i := range plaintextWorkloads - plaintextInDecided {
		ns := 1 + i%(plaintextBenchSize.Namespaces-1)
		add(gen.NamespaceName(ns), clustergen.WorkloadName(i%perNS))
	}
	return evidence.NewSnapshot(time.Unix(0, 0), 24*time.Hour, 1, reqs, nil)
}

// BenchmarkDecidePlaintext decides the namespace-wide STRICT at 100k pods
// on the index without a telemetry source and with evidence for 1000
// workloads, side by side: the difference is what rule 3a costs a
// decision (target: under 10µs). Each sub-benchmark reports the
// plaintext workloads its decision lists.
func BenchmarkDecidePlaintext(b *testing.B) {
	bc := loadBenchCluster(b, plaintextBenchSize)
	ch, _, ok := bc.gen.Change(clustergen.NamespaceWide)
	if !ok {
		b.Fatal("no namespace-wide change")
	}
	snap := plaintextSnapshot(bc.gen)
	if snap.Len() != plaintextWorkloads {
		b.Fatalf("the evidence holds %d workloads, want %d", snap.Len(), plaintextWorkloads)
	}
	withEvidence := engine.DefaultOptions()
	withEvidence.Plaintext = func() (*evidence.Snapshot, error) { return snap, nil }

	for _, tc := range []struct {
		name          string
		opts          engine.Options
		wantPlaintext int
	}{
		{"evidence=none", engine.DefaultOptions(), 0},
		{"evidence=1000-workloads", withEvidence, plaintextInDecided},
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
}

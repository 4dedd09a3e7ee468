package engine_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/engine/enginetest"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/index/clustergen"
	"github.com/mtls-guard/mtls-guard/internal/podrecord"
)

// benchSizes are the generated clusters: 100 pods per namespace, 5% of
// them unmeshed, native sidecars elsewhere, every pod owned by a
// ReplicaSet of a Deployment.
var benchSizes = []clustergen.Config{
	{Pods: 1000, Namespaces: 10},
	{Pods: 10000, Namespaces: 100},
	{Pods: 100000, Namespaces: 1000},
}

// bigNamespaceSizes put every pod in one namespace, to show what a
// namespace-wide decision costs with the namespace's own size.
var bigNamespaceSizes = []clustergen.Config{
	{Pods: 1000, Namespaces: 1},
	{Pods: 10000, Namespaces: 1},
	{Pods: 100000, Namespaces: 1},
}

// benchCluster is a generated cluster loaded once per size into both
// views: the index gets pods as the cache hands them over (records), the
// snapshot the pods themselves.
type benchCluster struct {
	gen      *clustergen.Cluster
	index    *index.Index
	snapshot *enginetest.Snapshot
}

var benchClusters sync.Map // clustergen.Config -> *benchCluster

func loadBenchCluster(b *testing.B, cfg clustergen.Config) *benchCluster {
	b.Helper()
	if v, ok := benchClusters.Load(cfg); ok {
		return v.(*benchCluster)
	}
	gen := clustergen.New(cfg)
	bc := &benchCluster{gen: gen, index: index.New(engine.DefaultOptions()), snapshot: enginetest.NewSnapshot()}
	for _, o := range gen.Objects() {
		bc.snapshot.Add(o)
		if pod, ok := o.(*corev1.Pod); ok {
			bc.index.Add(podrecord.New(pod))
			continue
		}
		bc.index.Add(o)
	}
	benchClusters.Store(cfg, bc)
	return bc
}

// BenchmarkDecide decides each benchmarked change on the index, as the
// webhook does once it reads from internal/index: every size, -benchmem
// for allocations. Each sub-benchmark reports the unmeshed pods its
// decision lists.
func BenchmarkDecide(b *testing.B) {
	benchDecide(b, benchSizes, clustergen.Decisions, func(bc *benchCluster) func(engine.Change) (*engine.Decision, error) {
		return bc.index.Decide
	})
}

// BenchmarkDecideSnapshot makes the same decisions on an enginetest.Snapshot,
// which keeps no facts: every pod of every namespace looked at is
// classified again, as `mtls-guard check` does and as a webhook that read
// pods from its cache per request would.
func BenchmarkDecideSnapshot(b *testing.B) {
	benchDecide(b, benchSizes, clustergen.Decisions, func(bc *benchCluster) func(engine.Change) (*engine.Decision, error) {
		return func(ch engine.Change) (*engine.Decision, error) {
			return engine.Decide(bc.snapshot, ch, engine.DefaultOptions())
		}
	})
}

// BenchmarkDecideBigNamespace decides a namespace-wide STRICT in a
// namespace that holds every pod, on the index and on the snapshot.
func BenchmarkDecideBigNamespace(b *testing.B) {
	b.Run("index", func(b *testing.B) {
		benchDecide(b, bigNamespaceSizes, []clustergen.Decision{clustergen.NamespaceWide}, func(bc *benchCluster) func(engine.Change) (*engine.Decision, error) {
			return bc.index.Decide
		})
	})
	b.Run("snapshot", func(b *testing.B) {
		benchDecide(b, bigNamespaceSizes, []clustergen.Decision{clustergen.NamespaceWide}, func(bc *benchCluster) func(engine.Change) (*engine.Decision, error) {
			return func(ch engine.Change) (*engine.Decision, error) {
				return engine.Decide(bc.snapshot, ch, engine.DefaultOptions())
			}
		})
	})
}

func benchDecide(b *testing.B, sizes []clustergen.Config, decisions []clustergen.Decision, decider func(*benchCluster) func(engine.Change) (*engine.Decision, error)) {
	for _, d := range decisions {
		b.Run(string(d), func(b *testing.B) {
			for _, cfg := range sizes {
				b.Run(fmt.Sprintf("pods=%d", cfg.Pods), func(b *testing.B) {
					bc := loadBenchCluster(b, cfg)
					ch, _, ok := bc.gen.Change(d)
					if !ok {
						b.Skipf("%s needs more than one namespace", d)
					}
					decide := decider(bc)
					dec, err := decide(ch)
					if err != nil {
						b.Fatal(err)
					}
					if dec.Allowed {
						b.Fatalf("%s was allowed; the benchmark wants the denial: %s", d, dec.Message)
					}
					b.ReportAllocs()
					for b.Loop() {
						if _, err := decide(ch); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(listedPods(dec)), "unmeshed-pods")
				})
			}
		})
	}
}

func listedPods(d *engine.Decision) int {
	n := 0
	for _, w := range d.Unmeshed {
		n += len(w.Pods)
	}
	return n
}

// BenchmarkPodStore builds the pod informer's store the way the guard's
// cache does (client-go's indexer with the namespace index, every pod
// through the cache's pod transform) from full generated pods, one at a
// time so that only what the store keeps stays live, and reports the heap
// it holds per pod (B/pod) and what an Index adds on top of that store,
// sharing its records (index-B/pod). Target: under 1 KiB for both.
func BenchmarkPodStore(b *testing.B) {
	for _, cfg := range benchSizes {
		b.Run(fmt.Sprintf("pods=%d", cfg.Pods), func(b *testing.B) {
			cfg.Full = true
			gen := clustergen.New(cfg)
			var store, ix float64
			for b.Loop() {
				store, ix = podStoreBytes(b, gen)
			}
			b.ReportMetric(store, "B/pod")
			b.ReportMetric(ix, "index-B/pod")
		})
	}
}

func podStoreBytes(b *testing.B, gen *clustergen.Cluster) (store, idx float64) {
	n := float64(gen.NumPods())
	before := liveHeap()
	indexer := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	_, byObject := index.CacheTransforms()
	transform := byObject[podKey(byObject)].Transform
	for i := range gen.NumPods() {
		obj, err := transform(gen.Pod(i))
		if err != nil {
			b.Fatal(err)
		}
		if err := indexer.Add(obj); err != nil {
			b.Fatal(err)
		}
	}
	withStore := liveHeap()
	ix := index.New(engine.DefaultOptions())
	for _, obj := range indexer.List() {
		ix.OnAdd(obj, true)
	}
	withIndex := liveHeap()
	runtime.KeepAlive(indexer)
	runtime.KeepAlive(ix)
	return (withStore - before) / n, (withIndex - withStore) / n
}

// podKey finds the Pod entry of the cache's per-kind options.
func podKey(byObject map[client.Object]cache.ByObject) client.Object {
	for obj := range byObject {
		if _, ok := obj.(*corev1.Pod); ok {
			return obj
		}
	}
	return nil
}

// liveHeap collects garbage and returns the bytes of live heap objects.
func liveHeap() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc)
}

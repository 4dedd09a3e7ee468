package server

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
)

var (
	indexObjectsDesc = prometheus.NewDesc("mtls_guard_index_objects",
		"What the guard's decision index holds: namespaces, pods, counted pods, distinct label sets of counted pods, and PeerAuthentications.",
		[]string{"kind"}, nil)
	indexUnmeshedDesc = prometheus.NewDesc("mtls_guard_index_unmeshed_pods",
		"Counted pods the decision index holds as unmeshed, under the guard's --sidecar-mode.", nil, nil)
)

// indexCollector reports the stats of the index the guard serves from.
// It is registered once per process, with the manager's registry, and
// reads whichever index the last New built.
type indexCollector struct {
	ix   atomic.Pointer[index.Index]
	mode atomic.Value // mesh.SidecarMode
}

var (
	indexMetrics         indexCollector
	registerIndexMetrics sync.Once
)

// serveIndexMetrics makes the metrics report ix, classified under mode.
func serveIndexMetrics(ix *index.Index, mode mesh.SidecarMode) {
	indexMetrics.ix.Store(ix)
	indexMetrics.mode.Store(mode)
	registerIndexMetrics.Do(func() { metrics.Registry.MustRegister(&indexMetrics) })
}

// Describe implements prometheus.Collector.
func (c *indexCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- indexObjectsDesc
	ch <- indexUnmeshedDesc
}

// Collect implements prometheus.Collector.
func (c *indexCollector) Collect(ch chan<- prometheus.Metric) {
	ix := c.ix.Load()
	if ix == nil {
		return
	}
	s := ix.Stats()
	for kind, n := range map[string]int{
		"namespaces": s.Namespaces, "pods": s.Pods, "counted_pods": s.Counted, "label_sets": s.LabelSets, "peerauthentications": s.Policies,
	} {
		ch <- prometheus.MustNewConstMetric(indexObjectsDesc, prometheus.GaugeValue, float64(n), kind)
	}
	unmeshed := s.Unmeshed
	if c.mode.Load() == mesh.Any {
		unmeshed = s.UnmeshedAny
	}
	ch <- prometheus.MustNewConstMetric(indexUnmeshedDesc, prometheus.GaugeValue, float64(unmeshed))
}

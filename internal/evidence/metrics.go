package evidence

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Outcomes of a refresh, the values of the outcome label.
const (
	outcomeSuccess = "success"
	outcomeError   = "error"
)

var (
	refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mtls_guard_plaintext_refresh_total",
		Help: "Refreshes of the plaintext evidence from Prometheus, by outcome.",
	}, []string{"outcome"})
	// lastSuccess is the snapshot of the last successful refresh of any
	// Refresher in the process (there is one outside tests).
	lastSuccess atomic.Pointer[Snapshot]
	age         = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mtls_guard_plaintext_evidence_age_seconds",
		Help: "Age of the last successfully fetched plaintext evidence; +Inf before the first success.",
	}, func() float64 { return evidenceAge(time.Now()) })
	workloads = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mtls_guard_plaintext_workloads",
		Help: "Workloads with plaintext callers in the last successfully fetched evidence.",
	}, func() float64 { return float64(lastSuccess.Load().Len()) })

	registerOnce sync.Once
)

func evidenceAge(now time.Time) float64 {
	s := lastSuccess.Load()
	if s == nil {
		return math.Inf(1)
	}
	return now.Sub(s.Fetched).Seconds()
}

// registerMetrics registers the evidence metrics on controller-runtime's
// registry, which the manager serves, once and only when the feature is
// on.
func registerMetrics() {
	registerOnce.Do(func() {
		refreshes.WithLabelValues(outcomeSuccess)
		refreshes.WithLabelValues(outcomeError)
		// Errors are name clashes with another collector, which the
		// metrics test catches; the guard runs on without these metrics.
		for _, c := range []prometheus.Collector{refreshes, age, workloads} {
			_ = metrics.Registry.Register(c)
		}
	})
}

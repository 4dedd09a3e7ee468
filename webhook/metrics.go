package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/mtls-guard/mtls-guard/internal/engine"
)

// Outcomes of a decision, the values of the outcome label: the engine's,
// and an error when there was no decision.
const (
	OutcomeAllowed = string(engine.OutcomeAllowed)
	// OutcomeAllowedWithoutEvidence is an allowance that the plaintext
	// evidence would have judged but could not (--plaintext-unavailable=allow).
	OutcomeAllowedWithoutEvidence = string(engine.OutcomeAllowedWithoutEvidence)
	OutcomeDenied                 = string(engine.OutcomeDenied)
	OutcomeOverridden             = string(engine.OutcomeOverridden)
	OutcomeInvalid                = string(engine.OutcomeInvalid)
	OutcomeError                  = "error"
)

var (
	// Decisions counts decisions by operation and outcome.
	Decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mtls_guard_decisions_total",
		Help: "PeerAuthentication admission decisions by operation and outcome.",
	}, []string{"operation", "outcome"})
	// DecisionSeconds observes the time to decide, from decode to answer.
	DecisionSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mtls_guard_decision_duration_seconds",
		Help:    "Time to decide a PeerAuthentication admission request.",
		Buckets: []float64{0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5},
	}, []string{"operation"})
	// EventsSuppressed counts Events left out as duplicates of a recent
	// one for the same policy and reason.
	EventsSuppressed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mtls_guard_events_suppressed_total",
		Help: "Events not recorded because one for the same policy and reason was recorded recently.",
	})
	// Arrivals counts judged pods and workloads by kind and outcome.
	Arrivals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mtls_guard_arrivals_total",
		Help: "Pods and workloads judged as they arrive, by kind and outcome (allowed, warned, denied, unjudged).",
	}, []string{"kind", "outcome"})
	// ArrivalSeconds observes the time to judge an arrival.
	ArrivalSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mtls_guard_arrival_duration_seconds",
		Help:    "Time to judge a pod or workload admission request.",
		Buckets: []float64{0.000005, 0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05},
	}, []string{"kind"})
	// RequestsInFlight counts the webhook requests being served, body
	// reading included: what a graceful shutdown drains.
	RequestsInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mtls_guard_webhook_requests_in_flight",
		Help: "Webhook HTTP requests being served.",
	})
)

func init() {
	// The manager serves metrics.Registry, next to controller-runtime's own
	// webhook metrics.
	metrics.Registry.MustRegister(Decisions, DecisionSeconds, RequestsInFlight, EventsSuppressed, Arrivals, ArrivalSeconds)
}

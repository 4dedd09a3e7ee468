// Package istiometrics stands in for an Envoy sidecar's stats endpoint: it
// serves Istio's standard request and TCP connection counters, with the
// labels Istio puts on them, from a client_golang registry of its own. The
// tests and `make demo` let a real Prometheus scrape it, in place of the
// destination workload's sidecar.
package istiometrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names and label values, as Istio's standard metrics have them.
const (
	RequestsTotal        = "istio_requests_total"
	TCPConnectionsOpened = "istio_tcp_connections_opened_total"
	ReporterDestination  = "destination"
	SecurityMutualTLS    = "mutual_tls" // the server saw mTLS
	SecurityNone         = "none"       // a sidecar saw plaintext
	SecurityUnknown      = "unknown"    // ztunnel's plaintext, or not known

	unknown     = "unknown"
	trustDomain = "cluster.local"
	clusterID   = "Kubernetes"
)

// Workload is one side of a call: Istio's workload name and namespace.
// The zero Workload is a caller outside the mesh, which sidecars report as
// "unknown".
type Workload struct {
	Namespace, Name string
}

// Unknown is a caller the sidecar cannot name: not in the mesh.
var Unknown = Workload{}

func (w Workload) namespace() string {
	if w.Namespace == "" {
		return unknown
	}
	return w.Namespace
}

func (w Workload) name() string {
	if w.Name == "" {
		return unknown
	}
	return w.Name
}

// principal is the SPIFFE identity Istio reports for a workload under mTLS
// (default ServiceAccount assumed); callers seen in plaintext have none.
func (w Workload) principal(security string) string {
	if security != SecurityMutualTLS || w.Name == "" {
		return unknown
	}
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/default", trustDomain, w.Namespace)
}

// labels common to Istio's HTTP and TCP metrics (Istio's "Standard
// Metrics" reference).
var commonLabels = []string{
	"reporter",
	"source_workload", "source_workload_namespace", "source_principal",
	"source_app", "source_version", "source_canonical_service", "source_canonical_revision", "source_cluster",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_app", "destination_version", "destination_service", "destination_service_name",
	"destination_service_namespace", "destination_canonical_service", "destination_canonical_revision",
	"destination_cluster",
	"request_protocol", "response_flags", "connection_security_policy",
}

// Exporter serves Istio-labelled counters as the destination's sidecar
// would report them (reporter="destination").
type Exporter struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	connections *prometheus.CounterVec
}

// New returns an exporter with no series yet.
func New() *Exporter {
	e := &Exporter{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: RequestsTotal,
			Help: "Requests received, as an Istio sidecar reports them.",
		}, append(append([]string{}, commonLabels...), "response_code", "grpc_response_status")),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: TCPConnectionsOpened,
			Help: "TCP connections opened, as an Istio sidecar reports them.",
		}, commonLabels),
	}
	e.reg.MustRegister(e.requests, e.connections)
	return e
}

func common(src, dst Workload, security, protocol string) prometheus.Labels {
	return prometheus.Labels{
		"reporter":                       ReporterDestination,
		"source_workload":                src.name(),
		"source_workload_namespace":      src.namespace(),
		"source_principal":               src.principal(security),
		"source_app":                     src.name(),
		"source_version":                 unknown,
		"source_canonical_service":       src.name(),
		"source_canonical_revision":      "latest",
		"source_cluster":                 clusterID,
		"destination_workload":           dst.name(),
		"destination_workload_namespace": dst.namespace(),
		"destination_principal":          dst.principal(security),
		"destination_app":                dst.name(),
		"destination_version":            unknown,
		"destination_service":            dst.name() + "." + dst.namespace() + ".svc.cluster.local",
		"destination_service_name":       dst.name(),
		"destination_service_namespace":  dst.namespace(),
		"destination_canonical_service":  dst.name(),
		"destination_canonical_revision": "latest",
		"destination_cluster":            clusterID,
		"request_protocol":               protocol,
		"response_flags":                 "-",
		"connection_security_policy":     security,
	}
}

// Request counts n HTTP requests from src to dst, answered 200, received
// with the given connection_security_policy (SecurityNone for plaintext).
// n = 0 creates the series at zero, as a sidecar's first scrape would: a
// counter Prometheus first sees at n shows no increase.
func (e *Exporter) Request(src, dst Workload, security string, n int) {
	l := common(src, dst, security, "http")
	l["response_code"] = strconv.Itoa(http.StatusOK)
	l["grpc_response_status"] = ""
	e.requests.With(l).Add(float64(max(n, 0)))
}

// Connection counts n TCP connections opened from src to dst, with the
// given connection_security_policy. n = 0 creates the series at zero.
func (e *Exporter) Connection(src, dst Workload, security string, n int) {
	e.connections.With(common(src, dst, security, "tcp")).Add(float64(max(n, 0)))
}

// Handler serves the counters in the Prometheus exposition formats, as a
// sidecar's /stats/prometheus does.
func (e *Exporter) Handler() http.Handler {
	return promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{})
}

// Serve serves Handler at MetricsPath and /metrics on l until l is closed,
// which ends it without an error.
func (e *Exporter) Serve(l net.Listener) error {
	srv := &http.Server{Handler: e.mux(), ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serving Istio metrics on %s: %w", l.Addr(), err)
	}
	return nil
}

// Start serves on a free port of 127.0.0.1 until ctx is done, and returns
// the host:port to scrape.
func (e *Exporter) Start(ctx context.Context) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listening for Istio metrics: %w", err)
	}
	srv := &http.Server{Handler: e.mux(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go srv.Serve(l) //nolint:errcheck // ends with ErrServerClosed when ctx is done
	return l.Addr().String(), nil
}

// MetricsPath is where Start and Serve serve the counters: Envoy's path.
const MetricsPath = "/stats/prometheus"

func (e *Exporter) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle(MetricsPath, e.Handler())
	mux.Handle("/metrics", e.Handler())
	return mux
}

package evidence

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/common/model"
)

// Istio's metrics and the labels the queries read.
const (
	RequestsMetric    = "istio_requests_total"
	ConnectionsMetric = "istio_tcp_connections_opened_total"

	labelDstNamespace = "destination_workload_namespace"
	labelDstWorkload  = "destination_workload"
	labelSrcNamespace = "source_workload_namespace"
	labelSrcWorkload  = "source_workload"

	// UnknownWorkload is what Istio reports for a caller outside the mesh.
	UnknownWorkload = "unknown"
)

// Query returns the instant query for one of Istio's counters: its
// increase over window on the server side (reporter="destination") without
// mutual TLS (sidecars report "none", ztunnel "unknown"), summed by
// destination and source workload. It holds exactly one metric name, as
// Azure Monitor managed Prometheus requires.
func Query(metric string, window time.Duration) string {
	return fmt.Sprintf(`sum by (%s, %s, %s, %s) (increase(%s{reporter="destination",connection_security_policy!="mutual_tls"}[%s]))`,
		labelDstNamespace, labelDstWorkload, labelSrcNamespace, labelSrcWorkload, metric, model.Duration(window))
}

// Source is a caller of a destination workload, as Istio names it;
// "unknown" for callers outside the mesh.
type Source struct {
	Namespace, Workload string
}

// Evidence is one destination workload's plaintext traffic in the window.
type Evidence struct {
	Namespace, Workload string
	// Requests and Connections are the rounded increases of
	// istio_requests_total and istio_tcp_connections_opened_total.
	Requests, Connections int64
	// Sources are the callers, sorted by namespace and workload.
	Sources []Source
}

// Snapshot is the evidence of one refresh. It is never modified once
// built, so readers share it without locks.
type Snapshot struct {
	// Fetched is the time the queries were evaluated at.
	Fetched time.Time
	// Window is the range the queries covered.
	Window time.Duration

	// byNamespace indexes the evidence by namespace, then workload, so
	// that a decision reads only the namespaces it touches.
	byNamespace map[string]map[string]*Evidence
	n           int
}

// NewSnapshot builds a snapshot from the results of Query for
// RequestsMetric and ConnectionsMetric. Each sample's value is rounded,
// and a sample that rounds below one, is not a number, or has no
// destination is ignored, its source included. A workload is kept when its
// requests or its connections reach minRequests.
func NewSnapshot(fetched time.Time, window time.Duration, minRequests int64, requests, connections model.Vector) *Snapshot {
	type dest struct{ ns, workload string }
	type acc struct {
		ev      *Evidence
		sources map[Source]struct{}
	}
	all := map[dest]*acc{}
	add := func(v model.Vector, conns bool) {
		for _, s := range v {
			n, ok := count(s)
			if !ok {
				continue
			}
			d := dest{string(s.Metric[labelDstNamespace]), string(s.Metric[labelDstWorkload])}
			if d.ns == "" || d.workload == "" {
				continue
			}
			a := all[d]
			if a == nil {
				a = &acc{ev: &Evidence{Namespace: d.ns, Workload: d.workload}, sources: map[Source]struct{}{}}
				all[d] = a
			}
			if conns {
				a.ev.Connections = saturatingAdd(a.ev.Connections, n)
			} else {
				a.ev.Requests = saturatingAdd(a.ev.Requests, n)
			}
			a.sources[Source{orUnknown(s.Metric[labelSrcNamespace]), orUnknown(s.Metric[labelSrcWorkload])}] = struct{}{}
		}
	}
	add(requests, false)
	add(connections, true)

	snap := &Snapshot{Fetched: fetched, Window: window, byNamespace: map[string]map[string]*Evidence{}}
	for d, a := range all {
		if a.ev.Requests < minRequests && a.ev.Connections < minRequests {
			continue
		}
		a.ev.Sources = make([]Source, 0, len(a.sources))
		for src := range a.sources {
			a.ev.Sources = append(a.ev.Sources, src)
		}
		slices.SortFunc(a.ev.Sources, func(x, y Source) int {
			return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Workload, y.Workload))
		})
		ns := snap.byNamespace[d.ns]
		if ns == nil {
			ns = map[string]*Evidence{}
			snap.byNamespace[d.ns] = ns
		}
		ns[d.workload] = a.ev
		snap.n++
	}
	return snap
}

// count rounds a sample's value to a count of at least one.
func count(s *model.Sample) (int64, bool) {
	if s == nil || s.Histogram != nil {
		return 0, false
	}
	v := math.Round(float64(s.Value))
	switch {
	case math.IsNaN(v) || v < 1:
		return 0, false
	case v >= math.MaxInt64:
		return math.MaxInt64, true
	}
	return int64(v), true
}

func saturatingAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func orUnknown(v model.LabelValue) string {
	if v == "" {
		return UnknownWorkload
	}
	return string(v)
}

// ForNamespace returns the evidence of a namespace's workloads, by
// workload name; nil when there is none. Callers must not modify it.
func (s *Snapshot) ForNamespace(namespace string) map[string]*Evidence {
	if s == nil {
		return nil
	}
	return s.byNamespace[namespace]
}

// Lookup returns the evidence of one workload, or nil.
func (s *Snapshot) Lookup(namespace, workload string) *Evidence {
	return s.ForNamespace(namespace)[workload]
}

// Len returns the number of workloads with evidence.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Namespaces returns the namespaces with evidence, sorted.
func (s *Snapshot) Namespaces() []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.byNamespace))
	for ns := range s.byNamespace {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out
}

package evidence

import (
	"maps"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

func TestQuery(t *testing.T) {
	tests := []struct {
		metric string
		window time.Duration
		want   string
	}{
		{RequestsMetric, 24 * time.Hour,
			`sum by (destination_workload_namespace, destination_workload, source_workload_namespace, source_workload) (increase(istio_requests_total{reporter="destination",connection_security_policy!="mutual_tls"}[1d]))`},
		{ConnectionsMetric, 24 * time.Hour,
			`sum by (destination_workload_namespace, destination_workload, source_workload_namespace, source_workload) (increase(istio_tcp_connections_opened_total{reporter="destination",connection_security_policy!="mutual_tls"}[1d]))`},
		{RequestsMetric, 90 * time.Minute,
			`sum by (destination_workload_namespace, destination_workload, source_workload_namespace, source_workload) (increase(istio_requests_total{reporter="destination",connection_security_policy!="mutual_tls"}[1h30m]))`},
		{RequestsMetric, 7 * 24 * time.Hour,
			`sum by (destination_workload_namespace, destination_workload, source_workload_namespace, source_workload) (increase(istio_requests_total{reporter="destination",connection_security_policy!="mutual_tls"}[1w]))`},
		{ConnectionsMetric, 1500 * time.Millisecond,
			`sum by (destination_workload_namespace, destination_workload, source_workload_namespace, source_workload) (increase(istio_tcp_connections_opened_total{reporter="destination",connection_security_policy!="mutual_tls"}[1s500ms]))`},
	}
	for _, tt := range tests {
		if got := Query(tt.metric, tt.window); got != tt.want {
			t.Errorf("Query(%s, %s) =\n%s\nwant\n%s", tt.metric, tt.window, got, tt.want)
		}
	}
}

// sample is a query result row: destination, source, value.
func sample(dstNS, dst, srcNS, src string, v float64) *model.Sample {
	m := model.Metric{}
	for k, val := range map[model.LabelName]string{
		labelDstNamespace: dstNS, labelDstWorkload: dst, labelSrcNamespace: srcNS, labelSrcWorkload: src,
	} {
		if val != "" {
			m[k] = model.LabelValue(val)
		}
	}
	return &model.Sample{Metric: m, Value: model.SampleValue(v)}
}

func TestNewSnapshot(t *testing.T) {
	fetched := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	unknown := Source{"unknown", "unknown"}
	tests := []struct {
		name        string
		min         int64
		requests    model.Vector
		connections model.Vector
		want        []Evidence
	}{
		{name: "nothing"},
		{name: "an unknown caller, rounded", min: 1,
			requests: model.Vector{sample("istio-demo", "web", "unknown", "unknown", 3.4)},
			want:     []Evidence{{Namespace: "istio-demo", Workload: "web", Requests: 3, Sources: []Source{unknown}}}},
		{name: "sources aggregated and sorted across both metrics", min: 1,
			requests: model.Vector{
				sample("istio-demo", "web", "unknown", "unknown", 2),
				sample("istio-demo", "web", "billing", "invoicer", 1.6),
				sample("istio-demo", "web", "a-team", "zeta", 1),
			},
			connections: model.Vector{
				sample("istio-demo", "web", "billing", "invoicer", 4),
				sample("istio-demo", "web", "a-team", "alpha", 1),
			},
			want: []Evidence{{Namespace: "istio-demo", Workload: "web", Requests: 5, Connections: 5,
				Sources: []Source{{"a-team", "alpha"}, {"a-team", "zeta"}, {"billing", "invoicer"}, unknown}}}},
		{name: "missing source labels are unknown", min: 1,
			connections: model.Vector{sample("db", "postgres", "", "", 2)},
			want:        []Evidence{{Namespace: "db", Workload: "postgres", Connections: 2, Sources: []Source{unknown}}}},
		{name: "min requests: either count reaches it", min: 3,
			requests: model.Vector{
				sample("a", "two-requests", "x", "y", 2),
				sample("a", "three-requests", "x", "y", 3),
				sample("a", "split-below", "x", "y", 2),
				sample("b", "summed", "x", "y", 2),
				sample("b", "summed", "x", "z", 1),
			},
			connections: model.Vector{
				sample("a", "split-below", "x", "y", 2),
				sample("a", "three-connections", "x", "y", 3),
			},
			want: []Evidence{
				{Namespace: "a", Workload: "three-connections", Connections: 3, Sources: []Source{{"x", "y"}}},
				{Namespace: "a", Workload: "three-requests", Requests: 3, Sources: []Source{{"x", "y"}}},
				{Namespace: "b", Workload: "summed", Requests: 3, Sources: []Source{{"x", "y"}, {"x", "z"}}},
			}},
		{name: "no increase, bad values and no destination are ignored", min: 1,
			requests: model.Vector{
				sample("quiet", "web", "unknown", "unknown", 0),
				sample("quiet", "web", "x", "rounds-to-zero", 0.49),
				sample("quiet", "web", "x", "negative", -5),
				sample("quiet", "web", "x", "nan", math.NaN()),
				sample("quiet", "web", "x", "inf", math.Inf(-1)),
				sample("", "web", "x", "y", 7),
				sample("ns", "", "x", "y", 7),
				nil,
				{Metric: model.Metric{labelDstNamespace: "h", labelDstWorkload: "h"}, Histogram: &model.SampleHistogram{Count: 9}},
			}},
		{name: "a huge value saturates", min: 1,
			requests: model.Vector{sample("big", "web", "x", "y", math.Inf(1)), sample("big", "web", "x", "z", 1e300)},
			want:     []Evidence{{Namespace: "big", Workload: "web", Requests: math.MaxInt64, Sources: []Source{{"x", "y"}, {"x", "z"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSnapshot(fetched, time.Hour, tt.min, tt.requests, tt.connections)
			if !s.Fetched.Equal(fetched) || s.Window != time.Hour {
				t.Errorf("Fetched, Window = %s, %s", s.Fetched, s.Window)
			}
			if s.Len() != len(tt.want) {
				t.Errorf("Len() = %d, want %d", s.Len(), len(tt.want))
			}
			var got []Evidence
			for _, ns := range s.Namespaces() {
				for _, w := range sortedKeys(s.ForNamespace(ns)) {
					got = append(got, *s.ForNamespace(ns)[w])
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("evidence =\n%+v\nwant\n%+v", got, tt.want)
			}
			for _, w := range tt.want {
				if e := s.Lookup(w.Namespace, w.Workload); e == nil || e.Workload != w.Workload {
					t.Errorf("Lookup(%s, %s) = %v", w.Namespace, w.Workload, e)
				}
			}
		})
	}
}

func sortedKeys(m map[string]*Evidence) []string {
	return slices.Sorted(maps.Keys(m))
}

func TestSnapshotNilAndMisses(t *testing.T) {
	var s *Snapshot
	if s.Len() != 0 || s.ForNamespace("a") != nil || s.Lookup("a", "b") != nil || s.Namespaces() != nil {
		t.Error("a nil snapshot is not empty")
	}
	s = NewSnapshot(time.Now(), time.Hour, 1, model.Vector{sample("a", "web", "x", "y", 1)}, nil)
	if s.Lookup("a", "api") != nil || s.Lookup("b", "web") != nil || s.ForNamespace("b") != nil {
		t.Error("lookups of other workloads or namespaces found evidence")
	}
}

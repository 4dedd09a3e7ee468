package evidence

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/common/model"
)

// benchSeries is the number of series each query returns in the refresh
// benchmark: a refresh handles twice as many.
const benchSeries = 10_000

// realVector is a query result shaped like a mesh's: 1,000 destination
// workloads in 100 namespaces, ten callers each, a third of them unknown.
func realVector(seed uint64, n int) model.Vector {
	rng := rand.New(rand.NewPCG(seed, 0))
	v := make(model.Vector, 0, n)
	ts := model.TimeFromUnix(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).Unix())
	for i := range n {
		dst := i / 10
		srcNS, src := "unknown", "unknown"
		if i%3 != 0 {
			srcNS, src = fmt.Sprintf("team-%02d", rng.IntN(100)), fmt.Sprintf("caller-%04d", rng.IntN(1000))
		}
		v = append(v, &model.Sample{
			Metric: model.Metric{
				labelDstNamespace: model.LabelValue(fmt.Sprintf("team-%02d", dst%100)),
				labelDstWorkload:  model.LabelValue(fmt.Sprintf("service-%04d", dst)),
				labelSrcNamespace: model.LabelValue(srcNS),
				labelSrcWorkload:  model.LabelValue(src),
			},
			Value:     model.SampleValue(rng.Float64() * 100),
			Timestamp: ts,
		})
	}
	return v
}

// apiBody is the Prometheus HTTP API's answer to an instant query.
func apiBody(b *testing.B, v model.Vector) []byte {
	body, err := json.Marshal(map[string]any{
		"status": "success",
		"data":   map[string]any{"resultType": "vector", "result": v},
	})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// cpu returns the process's user and system CPU time so far.
func cpu(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSnapshotBuild measures one refresh of benchSeries series per
// query: "fetch" is Prometheus.Fetch end to end against an HTTP server
// answering with recorded API bodies (HTTP, JSON decoding by client_golang,
// building; the server's own CPU counts too), "build" only NewSnapshot.
// Both report cpu-ms/refresh: all of the process's CPU, GC included.
func BenchmarkSnapshotBuild(b *testing.B) {
	requests, connections := realVector(1, benchSeries), realVector(2, benchSeries)
	b.Run("fetch", func(b *testing.B) {
		bodies := map[string][]byte{
			RequestsMetric:    apiBody(b, requests),
			ConnectionsMetric: apiBody(b, connections),
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.FormValue("query")
			for metric, body := range bodies {
				if strings.Contains(q, metric+"{") {
					w.Header().Set("Content-Type", "application/json")
					w.Write(body)
					return
				}
			}
			http.Error(w, "unexpected query "+q, http.StatusBadRequest)
		}))
		b.Cleanup(srv.Close)
		c := DefaultConfig()
		c.PrometheusURL = srv.URL
		p, err := NewPrometheus(c, logr.Discard())
		if err != nil {
			b.Fatal(err)
		}
		var s *Snapshot
		b.ReportAllocs()
		start := cpu(b)
		for b.Loop() {
			if s, err = p.Fetch(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpu(b)-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/refresh")
		b.ReportMetric(float64(s.Len()), "workloads")
	})
	b.Run("build", func(b *testing.B) {
		var s *Snapshot
		b.ReportAllocs()
		start := cpu(b)
		for b.Loop() {
			s = NewSnapshot(time.Now(), 24*time.Hour, 1, requests, connections)
		}
		b.ReportMetric(float64(cpu(b)-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/refresh")
		b.ReportMetric(float64(s.Len()), "workloads")
	})
}

// BenchmarkLookup measures what a decision pays per workload it checks,
// on the snapshot of BenchmarkSnapshotBuild (1,000 workloads).
func BenchmarkLookup(b *testing.B) {
	s := NewSnapshot(time.Now(), 24*time.Hour, 1, realVector(1, benchSeries), realVector(2, benchSeries))
	if s.Len() != 1000 {
		b.Fatalf("snapshot has %d workloads, want 1000", s.Len())
	}
	b.Run("hit", func(b *testing.B) {
		for b.Loop() {
			if s.Lookup("team-42", "service-0142") == nil {
				b.Fatal("miss")
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		for b.Loop() {
			if s.Lookup("team-42", "service-9999") != nil {
				b.Fatal("hit")
			}
		}
	})
	b.Run("namespace-without-evidence", func(b *testing.B) {
		for b.Loop() {
			if s.ForNamespace("quiet") != nil {
				b.Fatal("evidence")
			}
		}
	})
}

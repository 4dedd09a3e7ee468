package istiometrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches url and parses the text exposition.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestExporter(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	web := Workload{Namespace: "istio-demo", Name: "web"}
	invoicer := Workload{Namespace: "billing", Name: "invoicer"}

	e := New()
	e.Request(Unknown, web, SecurityNone, 2)
	e.Request(Unknown, web, SecurityNone, 1)
	e.Request(invoicer, web, SecurityMutualTLS, 5)
	e.Connection(invoicer, web, SecurityUnknown, 0)
	e.Request(invoicer, web, SecurityNone, -3) // ignored: counters only grow

	addr, err := e.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, fmt.Sprintf("http://%s%s", addr, MetricsPath))

	type series struct {
		metric, src, srcNS, security, protocol string
		value                                  float64
	}
	want := map[series]bool{
		{RequestsTotal, "unknown", "unknown", SecurityNone, "http", 3}:           true,
		{RequestsTotal, "invoicer", "billing", SecurityMutualTLS, "http", 5}:     true,
		{RequestsTotal, "invoicer", "billing", SecurityNone, "http", 0}:          true,
		{TCPConnectionsOpened, "invoicer", "billing", SecurityUnknown, "tcp", 0}: true,
	}
	got := map[series]bool{}
	for _, name := range []string{RequestsTotal, TCPConnectionsOpened} {
		fam := fams[name]
		if fam == nil || fam.GetType() != dto.MetricType_COUNTER {
			t.Fatalf("%s: missing or not a counter: %v", name, fam)
		}
		for _, m := range fam.GetMetric() {
			l := labelsOf(m)
			if l["reporter"] != ReporterDestination || l["destination_workload"] != "web" ||
				l["destination_workload_namespace"] != "istio-demo" ||
				l["destination_service"] != "web.istio-demo.svc.cluster.local" {
				t.Errorf("%s: destination labels %v", name, l)
			}
			if _, ok := l["response_code"]; ok != (name == RequestsTotal) {
				t.Errorf("%s: response_code present = %v", name, ok)
			}
			wantPrincipal := "unknown"
			if l["connection_security_policy"] == SecurityMutualTLS {
				wantPrincipal = "spiffe://cluster.local/ns/billing/sa/default"
			}
			if l["source_principal"] != wantPrincipal {
				t.Errorf("%s: source_principal %q, want %q", name, l["source_principal"], wantPrincipal)
			}
			got[series{name, l["source_workload"], l["source_workload_namespace"], l["connection_security_policy"],
				l["request_protocol"], m.GetCounter().GetValue()}] = true
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d series, want %d: %v", len(got), len(want), got)
	}
	for s := range want {
		if !got[s] {
			t.Errorf("missing series %+v; got %v", s, got)
		}
	}

	// /metrics serves the same.
	if fams := scrape(t, fmt.Sprintf("http://%s/metrics", addr)); fams[RequestsTotal] == nil {
		t.Errorf("/metrics lacks %s", RequestsTotal)
	}
}

func TestServe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := New()
	e.Connection(Unknown, Workload{Namespace: "db", Name: "postgres"}, SecurityUnknown, 4)
	done := make(chan error, 1)
	go func() { done <- e.Serve(l) }()
	fams := scrape(t, fmt.Sprintf("http://%s%s", l.Addr(), MetricsPath))
	if got := fams[TCPConnectionsOpened].GetMetric()[0].GetCounter().GetValue(); got != 4 {
		t.Errorf("connections = %v, want 4", got)
	}
	l.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve after the listener closed: %v", err)
	}
}

package engine_test

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/evidence"
)

// flow is one series of plaintext traffic to a destination workload.
type flow struct {
	dstNS, dst, srcNS, src string
	requests, conns        float64
}

// withEvidence returns the default options with a telemetry source that
// holds these flows, over a 24h window, as a refresh would build them.
func withEvidence(flows ...flow) func() engine.Options {
	return func() engine.Options {
		var reqs, conns model.Vector
		for _, f := range flows {
			m := model.Metric{
				"destination_workload_namespace": model.LabelValue(f.dstNS), "destination_workload": model.LabelValue(f.dst),
				"source_workload_namespace": model.LabelValue(f.srcNS), "source_workload": model.LabelValue(f.src),
			}
			if f.requests > 0 {
				reqs = append(reqs, &model.Sample{Metric: m, Value: model.SampleValue(f.requests)})
			}
			if f.conns > 0 {
				conns = append(conns, &model.Sample{Metric: m, Value: model.SampleValue(f.conns)})
			}
		}
		snap := evidence.NewSnapshot(time.Unix(0, 0), 24*time.Hour, 1, reqs, conns)
		o := engine.DefaultOptions()
		o.Plaintext = func() (*evidence.Snapshot, error) { return snap, nil }
		return o
	}
}

// withoutEvidence returns options whose telemetry source is unavailable.
func withoutEvidence(deny bool) func() engine.Options {
	return func() engine.Options {
		o := engine.DefaultOptions()
		o.Plaintext = func() (*evidence.Snapshot, error) {
			return nil, &evidence.UnavailableError{Reason: evidence.RefreshFailed, Err: errors.New("connection refused")}
		}
		o.DenyWithoutEvidence = deny
		return o
	}
}

// unknownCaller is a plaintext flow from outside the mesh.
func unknownCaller(ns, dst string, requests float64) flow {
	return flow{dstNS: ns, dst: dst, srcNS: "unknown", src: "unknown", requests: requests}
}

// plaintextCases are decideCases of section 3a, in the shop namespace,
// whose pods are all meshed: Deployment frontend, StatefulSet cart.
var plaintextCases = []decideCase{
	{
		name:   "plaintext: STRICT over a workload that received plaintext requests is denied, every pod meshed",
		op:     engine.Create,
		change: v1("shop/default", "", strict),
		opts:   withEvidence(unknownCaller("shop", "frontend", 3)),
		scope:  engine.NamespaceWide, touched: []string{"shop"},
		plaintext: []string{"shop/Deployment/frontend"},
		message: []string{
			"CREATE of PeerAuthentication shop/default (namespace-wide) denied",
			"1 workload accepted plaintext traffic in the last 24h",
			"any port counts",
			"  Deployment/frontend: 3 plaintext requests in the last 24h (from: unknown)\n",
			"move their plaintext callers into the mesh",
		},
	},
	{
		name:   "plaintext: TCP connections count too, and a known caller in another namespace is named",
		op:     engine.Create,
		change: v1("shop/default", "", strict),
		opts: withEvidence(flow{dstNS: "shop", dst: "cart", srcNS: "default", src: "mtls-test", conns: 2},
			unknownCaller("shop", "cart", 1)),
		scope: engine.NamespaceWide, touched: []string{"shop"},
		plaintext: []string{"shop/StatefulSet/cart"},
		message:   []string{"StatefulSet/cart: 1 plaintext request and 2 plaintext TCP connections in the last 24h (from: default/mtls-test, unknown)"},
	},
	{
		name:    "plaintext: a selector policy over a workload without evidence is allowed",
		op:      engine.Create,
		change:  v1("shop/cart-strict", "", "{selector: {matchLabels: {app: cart}}, mtls: {mode: STRICT}}"),
		opts:    withEvidence(unknownCaller("shop", "frontend", 3)),
		allowed: true,
		scope:   engine.WorkloadScope, touched: []string{"shop"},
		warnings: []string{},
	},
	{
		name:    "plaintext: evidence in another namespace does not count",
		op:      engine.Create,
		change:  v1("shop/default", "", strict),
		opts:    withEvidence(unknownCaller("billing", "payments", 9)),
		allowed: true, scope: engine.NamespaceWide, touched: []string{"shop"},
	},
	{
		name:    "plaintext: PERMISSIVE over a workload with evidence changes nothing",
		op:      engine.Create,
		change:  v1("shop/default", "", permissive),
		opts:    withEvidence(unknownCaller("shop", "frontend", 3)),
		allowed: true, scope: engine.NamespaceWide,
	},
	{
		name:    "plaintext: an override admits it, still naming the workload",
		op:      engine.Create,
		change:  v1("shop/default", "", strict).override("CHG-9: callers move tonight"),
		opts:    withEvidence(unknownCaller("shop", "frontend", 3)),
		allowed: true, overridden: true,
		scope: engine.NamespaceWide, touched: []string{"shop"},
		plaintext: []string{"shop/Deployment/frontend"},
		warnings:  []string{"override: admitted with 1 plaintext-called workload cut off"},
		message:   []string{"allowed by override", "Deployment/frontend: 3 plaintext requests"},
	},
	{
		name:    "plaintext: evidence unavailable, --plaintext-unavailable=allow: admitted with a warning",
		op:      engine.Create,
		change:  v1("shop/default", "", strict),
		opts:    withoutEvidence(false),
		allowed: true, scope: engine.NamespaceWide, touched: []string{"shop"},
		warnings:            []string{"plaintext evidence unavailable: the last refresh failed"},
		evidenceUnavailable: true,
	},
	{
		name:   "plaintext: evidence unavailable, --plaintext-unavailable=deny: denied",
		op:     engine.Create,
		change: v1("shop/default", "", strict),
		opts:   withoutEvidence(true),
		scope:  engine.NamespaceWide, touched: []string{"shop"},
		message:             []string{"denied", "the plaintext evidence that would judge it is unavailable", "restore the plaintext evidence"},
		evidenceUnavailable: true,
	},
	{
		name:    "plaintext: evidence unavailable does not matter when nothing becomes stricter",
		op:      engine.Create,
		change:  v1("shop/default", "", permissive),
		opts:    withoutEvidence(true),
		allowed: true, scope: engine.NamespaceWide,
	},
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		24 * time.Hour: "24h", 90 * time.Minute: "1h30m", 20 * time.Second: "20s", 30 * time.Second: "30s",
		90 * time.Second: "1m30s", 5 * time.Minute: "5m", time.Hour + time.Second: "1h0m1s", 0: "0s",
	} {
		if got := engine.ShortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

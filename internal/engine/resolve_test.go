package engine

import (
	"testing"

	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// TestResolve checks the effective mode of one pod against Istio's
// ComposePeerAuthentication, for both API versions of every policy.
func TestResolve(t *testing.T) {
	const (
		S = policy.Strict
		P = policy.Permissive
		D = policy.Disable
	)
	payments := map[string]string{"app": "payments", "tier": "backend"}
	tests := []struct {
		name   string
		root   []pa // policies of the root namespace
		ns     []pa // policies of the pod's namespace
		labels map[string]string
		want   map[uint32]policy.Mode // port -> mode; 0 is "any other port"
	}{
		{name: "no policy is PERMISSIVE", want: map[uint32]policy.Mode{0: P}},
		{name: "mesh STRICT", root: []pa{v1("istio-system/default", jan, strict)}, want: map[uint32]policy.Mode{0: S}},
		{name: "mesh UNSET is PERMISSIVE", root: []pa{v1("istio-system/default", jan, "")}, want: map[uint32]policy.Mode{0: P}},
		{name: "mesh DISABLE", root: []pa{v1("istio-system/default", jan, disable)}, want: map[uint32]policy.Mode{0: D}},
		{
			name: "mesh: the oldest wins",
			root: []pa{v1("istio-system/a-new", feb, strict), v1beta1("istio-system/z-old", jan, disable)},
			want: map[uint32]policy.Mode{0: D},
		},
		{
			name: "mesh: the oldest UNSET is PERMISSIVE, not the next one",
			root: []pa{v1("istio-system/new", feb, strict), v1beta1("istio-system/old", jan, unset)},
			want: map[uint32]policy.Mode{0: P},
		},
		{
			name: "mesh: ties by name",
			root: []pa{v1("istio-system/b", jan, disable), v1beta1("istio-system/a", jan, strict)},
			want: map[uint32]policy.Mode{0: S},
		},
		{
			name: "mesh: no creationTimestamp is newest",
			root: []pa{v1("istio-system/a", "", disable), v1beta1("istio-system/z", "2030-01-01T00:00:00Z", strict)},
			want: map[uint32]policy.Mode{0: S},
		},
		{
			name:   "mesh: root selector policies are ignored",
			root:   []pa{v1("istio-system/payments", t2023, "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}}")},
			labels: payments,
			want:   map[uint32]policy.Mode{0: P},
		},
		{
			name: "mesh: an empty selector in the root is mesh-wide",
			root: []pa{v1("istio-system/default", jan, "{selector: {matchLabels: {}}, mtls: {mode: STRICT}}")},
			want: map[uint32]policy.Mode{0: S},
		},
		{
			name: "namespace over mesh",
			root: []pa{v1("istio-system/default", jan, strict)},
			ns:   []pa{v1beta1("billing/default", feb, permissive)},
			want: map[uint32]policy.Mode{0: P},
		},
		{
			name: "namespace UNSET inherits mesh",
			root: []pa{v1("istio-system/default", jan, strict)},
			ns:   []pa{v1beta1("billing/default", feb, "")},
			want: map[uint32]policy.Mode{0: S},
		},
		{
			name: "namespace: the oldest wins",
			ns:   []pa{v1("billing/a", feb, strict), v1beta1("billing/b", jan, disable)},
			want: map[uint32]policy.Mode{0: D},
		},
		{
			name: "namespace: the oldest UNSET inherits mesh, not the next one",
			root: []pa{v1("istio-system/default", jan, permissive)},
			ns:   []pa{v1("billing/a", mar, strict), v1beta1("billing/b", feb, unset)},
			want: map[uint32]policy.Mode{0: P},
		},
		{
			name: "namespace: portLevelMtls of a namespace policy is not applied",
			ns:   []pa{v1("billing/default", jan, "{mtls: {mode: PERMISSIVE}, portLevelMtls: {8080: {mode: STRICT}}}")},
			want: map[uint32]policy.Mode{0: P, 8080: P},
		},
		{
			name:   "workload over namespace",
			ns:     []pa{v1("billing/default", jan, strict), v1beta1("billing/payments", feb, "{selector: {matchLabels: {app: payments}}, mtls: {mode: DISABLE}}")},
			labels: payments,
			want:   map[uint32]policy.Mode{0: D},
		},
		{
			name:   "workload: every label must match",
			ns:     []pa{v1("billing/default", jan, strict), v1beta1("billing/payments", feb, "{selector: {matchLabels: {app: payments, tier: web}}, mtls: {mode: DISABLE}}")},
			labels: payments,
			want:   map[uint32]policy.Mode{0: S},
		},
		{
			name:   "workload UNSET inherits namespace",
			ns:     []pa{v1("billing/default", jan, strict), v1beta1("billing/payments", feb, "{selector: {matchLabels: {app: payments}}}")},
			labels: payments,
			want:   map[uint32]policy.Mode{0: S},
		},
		{
			name:   "workload UNSET inherits mesh through namespace UNSET",
			root:   []pa{v1("istio-system/default", jan, strict)},
			ns:     []pa{v1("billing/default", jan, unset), v1beta1("billing/payments", feb, "{selector: {matchLabels: {app: payments}}}")},
			labels: payments,
			want:   map[uint32]policy.Mode{0: S},
		},
		{
			name: "workload: the oldest matching wins",
			ns: []pa{
				v1("billing/a-new", mar, "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}}"),
				v1beta1("billing/z-old", feb, "{selector: {matchLabels: {tier: backend}}, mtls: {mode: DISABLE}}"),
			},
			labels: payments,
			want:   map[uint32]policy.Mode{0: D},
		},
		{
			name: "workload: an older policy that does not match is skipped",
			ns: []pa{
				v1("billing/new", mar, "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}}"),
				v1beta1("billing/old", jan, "{selector: {matchLabels: {app: invoicer}}, mtls: {mode: DISABLE}}"),
			},
			labels: payments,
			want:   map[uint32]policy.Mode{0: S},
		},
		{
			name: "workload: ties by name",
			ns: []pa{
				v1("billing/b", jan, "{selector: {matchLabels: {app: payments}}, mtls: {mode: DISABLE}}"),
				v1beta1("billing/a", jan, "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}}"),
			},
			labels: payments,
			want:   map[uint32]policy.Mode{0: S},
		},
		{
			name:   "port level: a mode per port",
			ns:     []pa{v1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: PERMISSIVE}, 9090: {mode: DISABLE}}}")},
			labels: payments,
			want:   map[uint32]policy.Mode{0: S, 443: S, 8080: P, 9090: D},
		},
		{
			name:   "port level: an UNSET port inherits the workload's resolved mode",
			ns:     []pa{v1("billing/default", jan, strict), v1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, portLevelMtls: {8080: {mode: UNSET}, 9090: {}, 7070: {mode: PERMISSIVE}}}")},
			labels: payments,
			want:   map[uint32]policy.Mode{0: S, 8080: S, 9090: S, 7070: P},
		},
		{
			name:   "port level: a STRICT port under PERMISSIVE",
			ns:     []pa{v1beta1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, mtls: {mode: PERMISSIVE}, portLevelMtls: {8080: {mode: STRICT}}}")},
			labels: payments,
			want:   map[uint32]policy.Mode{0: P, 8080: S},
		},
		{
			name:   "port level: only the winning workload policy's ports count",
			ns:     []pa{v1("billing/old", jan, "{selector: {matchLabels: {app: payments}}}"), v1("billing/new", feb, "{selector: {matchLabels: {app: payments}}, portLevelMtls: {8080: {mode: STRICT}}}")},
			labels: payments,
			want:   map[uint32]policy.Mode{0: P, 8080: P},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var root, ns []*policy.Policy
			for _, p := range tt.root {
				root = append(root, p.typed(t))
			}
			for _, p := range tt.ns {
				ns = append(ns, p.typed(t))
			}
			l := resolveLevel(meshMode(root), ns)
			e := l.forPod(tt.labels)
			for port, want := range tt.want {
				got := e.def
				if port != 0 {
					got = e.at(port)
				}
				if got != want {
					t.Errorf("port %d: %v, want %v", port, got, want)
				}
			}
			if e.def == policy.Unset || l.mode == policy.Unset {
				t.Errorf("resolved mode is UNSET: %+v", e)
			}
		})
	}
}

func TestGains(t *testing.T) {
	const (
		S = policy.Strict
		P = policy.Permissive
		D = policy.Disable
		U = policy.Unset
	)
	e := func(def policy.Mode, ports map[uint32]policy.Mode) effective {
		return effective{def: def, ports: ports}
	}
	tests := []struct {
		name          string
		before, after effective
		want          bool
	}{
		{"PERMISSIVE to STRICT", e(P, nil), e(S, nil), true},
		{"DISABLE to STRICT", e(D, nil), e(S, nil), true},
		{"STRICT to STRICT", e(S, nil), e(S, nil), false},
		{"STRICT to PERMISSIVE", e(S, nil), e(P, nil), false},
		{"PERMISSIVE to DISABLE", e(P, nil), e(D, nil), false},
		{"a STRICT port", e(P, nil), e(P, map[uint32]policy.Mode{8080: S}), true},
		{"a STRICT port on STRICT", e(S, nil), e(S, map[uint32]policy.Mode{8080: S}), false},
		{"a PERMISSIVE port on STRICT", e(S, nil), e(S, map[uint32]policy.Mode{8080: P}), false},
		{"the PERMISSIVE port goes", e(S, map[uint32]policy.Mode{8080: P}), e(S, nil), true},
		{"the PERMISSIVE port becomes UNSET", e(S, map[uint32]policy.Mode{8080: P}), e(S, map[uint32]policy.Mode{8080: U}), true},
		{"the STRICT port moves", e(P, map[uint32]policy.Mode{8080: S}), e(P, map[uint32]policy.Mode{9090: S}), true},
		{"the STRICT port stays", e(P, map[uint32]policy.Mode{8080: S}), e(D, map[uint32]policy.Mode{8080: S}), false},
		{"every other port becomes STRICT", e(P, map[uint32]policy.Mode{8080: S}), e(S, map[uint32]policy.Mode{8080: S}), true},
		{"all but the STRICT port loosen", e(S, nil), e(P, map[uint32]policy.Mode{8080: S}), false},
		{"an UNSET port follows its default", e(P, map[uint32]policy.Mode{8080: U}), e(P, map[uint32]policy.Mode{8080: U}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gains(tt.before, tt.after); got != tt.want {
				t.Errorf("gains = %v, want %v", got, tt.want)
			}
			if tt.want && !tt.after.anyStrict() {
				t.Errorf("gains without anything STRICT after")
			}
		})
	}
}

package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"

	apisecurity "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

const wantModes = "(want UNSET, DISABLE, PERMISSIVE or STRICT)"

func TestParseMode(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"", Unset, false},
		{"UNSET", Unset, false},
		{"DISABLE", Disable, false},
		{"PERMISSIVE", Permissive, false},
		{"STRICT", Strict, false},
		{"strict", Unset, true},
		{"STRCT", Unset, true},
		{" STRICT", Unset, true},
	} {
		got, err := ParseMode(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && tt.in != "" && got.String() != tt.in {
			t.Errorf("ParseMode(%q).String() = %q", tt.in, got.String())
		}
	}
	if got := Mode(9).String(); got != "Mode(9)" {
		t.Errorf("Mode(9).String() = %q", got)
	}
	if got := Mode(-1).String(); got != "Mode(-1)" {
		t.Errorf("Mode(-1).String() = %q", got)
	}
	// The enum follows Istio's numbering.
	for m, want := range map[Mode]apisecurity.PeerAuthentication_MutualTLS_Mode{
		Unset: apisecurity.PeerAuthentication_MutualTLS_UNSET, Disable: apisecurity.PeerAuthentication_MutualTLS_DISABLE,
		Permissive: apisecurity.PeerAuthentication_MutualTLS_PERMISSIVE, Strict: apisecurity.PeerAuthentication_MutualTLS_STRICT,
	} {
		if int32(m) != int32(want) || m.String() != want.String() {
			t.Errorf("mode %v does not match Istio's %v", m, want)
		}
	}
}

func doc(apiVersion, spec string) string {
	return `{"apiVersion":"` + apiVersion + `","kind":"PeerAuthentication","metadata":{"name":"pa","namespace":"ns"},"spec":` + spec + `}`
}

func TestDecodeValid(t *testing.T) {
	created := metav1.NewTime(time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC))
	tests := []struct {
		name string
		json string // for both versions, with APIVERSION
		want Policy
	}{
		{
			name: "no spec",
			json: `{"apiVersion":"APIVERSION","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"istio-system"}}`,
			want: Policy{Namespace: "istio-system", Name: "default"},
		},
		{
			name: "empty mtls is UNSET",
			json: doc("APIVERSION", `{"mtls":{}}`),
			want: Policy{Namespace: "ns", Name: "pa"},
		},
		{
			name: "mesh STRICT with timestamp and override",
			json: `{"apiVersion":"APIVERSION","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"istio-system",
				"creationTimestamp":"2024-03-01T12:00:00Z","annotations":{"mtls-guard.io/override-reason":"  CHG-123 approved  "}},
				"spec":{"mtls":{"mode":"STRICT"}}}`,
			want: Policy{Namespace: "istio-system", Name: "default", Created: created, Mode: Strict, OverrideReason: "CHG-123 approved"},
		},
		{
			name: "workload with ports",
			json: doc("APIVERSION", `{"selector":{"matchLabels":{"app":"payments","tier":"backend"}},"mtls":{"mode":"PERMISSIVE"},
				"portLevelMtls":{"8080":{"mode":"STRICT"},"9090":{"mode":"DISABLE"},"1":{},"65535":{"mode":"UNSET"}}}`),
			want: Policy{Namespace: "ns", Name: "pa", Selector: labels.Set{"app": "payments", "tier": "backend"}, Mode: Permissive,
				Ports: map[uint32]Mode{8080: Strict, 9090: Disable, 1: Unset, 65535: Unset}},
		},
		{
			name: "empty matchLabels is namespace-wide",
			json: doc("APIVERSION", `{"selector":{"matchLabels":{}},"mtls":{"mode":"DISABLE"}}`),
			want: Policy{Namespace: "ns", Name: "pa", Mode: Disable},
		},
		{
			name: "empty selector is namespace-wide",
			json: doc("APIVERSION", `{"selector":{},"mtls":{"mode":"STRICT"}}`),
			want: Policy{Namespace: "ns", Name: "pa", Mode: Strict},
		},
		{
			name: "numeric mode",
			json: doc("APIVERSION", `{"mtls":{"mode":3}}`),
			want: Policy{Namespace: "ns", Name: "pa", Mode: Strict},
		},
		{
			name: "unknown fields are tolerated",
			json: doc("APIVERSION", `{"mtls":{"mode":"STRICT"},"futureField":true}`),
			want: Policy{Namespace: "ns", Name: "pa", Mode: Strict},
		},
		{
			name: "empty override annotation is no override",
			json: `{"apiVersion":"APIVERSION","kind":"PeerAuthentication","metadata":{"name":"pa","namespace":"ns","annotations":{"mtls-guard.io/override-reason":"   "}},"spec":{}}`,
			want: Policy{Namespace: "ns", Name: "pa"},
		},
	}
	for _, tt := range tests {
		for _, v := range []string{"security.istio.io/v1", "security.istio.io/v1beta1"} {
			t.Run(tt.name+"/"+v, func(t *testing.T) {
				p, err := Decode([]byte(strings.ReplaceAll(tt.json, "APIVERSION", v)))
				if err != nil {
					t.Fatal(err)
				}
				assertPolicy(t, p, &tt.want)
			})
		}
	}
}

func assertPolicy(t *testing.T, got, want *Policy) {
	t.Helper()
	if got.Namespace != want.Namespace || got.Name != want.Name {
		t.Errorf("key %s, want %s", got.Key(), want.Key())
	}
	if !got.Created.Equal(&want.Created) {
		t.Errorf("Created %v, want %v", got.Created, want.Created)
	}
	if len(got.Selector) != len(want.Selector) || (len(want.Selector) > 0 && !reflect.DeepEqual(got.Selector, want.Selector)) {
		t.Errorf("Selector %v, want %v", got.Selector, want.Selector)
	}
	if got.Mode != want.Mode {
		t.Errorf("Mode %v, want %v", got.Mode, want.Mode)
	}
	if len(got.Ports) != len(want.Ports) || (len(want.Ports) > 0 && !reflect.DeepEqual(got.Ports, want.Ports)) {
		t.Errorf("Ports %v, want %v", got.Ports, want.Ports)
	}
	if got.OverrideReason != want.OverrideReason {
		t.Errorf("OverrideReason %q, want %q", got.OverrideReason, want.OverrideReason)
	}
	if !reflect.DeepEqual(got.Problems, want.Problems) && (len(got.Problems) > 0 || len(want.Problems) > 0) {
		t.Errorf("Problems\n got %q\nwant %q", got.Problems, want.Problems)
	}
	if got.Valid() != (len(want.Problems) == 0) {
		t.Errorf("Valid() = %v with problems %q", got.Valid(), got.Problems)
	}
}

func TestDecodeInvalid(t *testing.T) {
	const sel = `"selector":{"matchLabels":{"app":"a"}}`
	const needsSelector = "spec.portLevelMtls needs a workload selector (spec.selector.matchLabels)"
	tests := []struct {
		name      string
		spec      string
		problems  []string
		wantMode  Mode
		wantPorts map[uint32]Mode
	}{
		{
			name:     "unknown mode",
			spec:     `{"mtls":{"mode":"STRCT"}}`,
			problems: []string{`spec.mtls.mode: unknown mTLS mode "STRCT" ` + wantModes},
		},
		{
			name:     "lower-case mode",
			spec:     `{"mtls":{"mode":"strict"}}`,
			problems: []string{`spec.mtls.mode: unknown mTLS mode "strict" ` + wantModes},
		},
		{
			name:     "numeric mode out of range",
			spec:     `{"mtls":{"mode":7}}`,
			problems: []string{`spec.mtls.mode: unknown mTLS mode 7 ` + wantModes},
		},
		{
			name:     "fractional mode",
			spec:     `{"mtls":{"mode":2.5}}`,
			problems: []string{`spec.mtls.mode: unknown mTLS mode 2.5 ` + wantModes},
		},
		{
			name:     "mode of the wrong type",
			spec:     `{"mtls":{"mode":true}}`,
			problems: []string{`spec.mtls.mode: mode must be a string, got bool`},
		},
		{
			name:      "portLevelMtls without selector",
			spec:      `{"mtls":{"mode":"PERMISSIVE"},"portLevelMtls":{"8080":{"mode":"STRICT"}}}`,
			problems:  []string{needsSelector},
			wantMode:  Permissive,
			wantPorts: map[uint32]Mode{8080: Strict},
		},
		{
			name:      "portLevelMtls with empty matchLabels",
			spec:      `{"selector":{"matchLabels":{}},"portLevelMtls":{"8080":{"mode":"STRICT"}}}`,
			problems:  []string{needsSelector},
			wantPorts: map[uint32]Mode{8080: Strict},
		},
		{
			name:      "empty portLevelMtls",
			spec:      `{` + sel + `,"mtls":{"mode":"STRICT"},"portLevelMtls":{}}`,
			problems:  []string{"spec.portLevelMtls is empty"},
			wantMode:  Strict,
			wantPorts: map[uint32]Mode{},
		},
		{
			name:      "empty portLevelMtls without selector",
			spec:      `{"portLevelMtls":{}}`,
			problems:  []string{"spec.portLevelMtls is empty", needsSelector},
			wantPorts: map[uint32]Mode{},
		},
		{
			name:      "port 0",
			spec:      `{` + sel + `,"portLevelMtls":{"0":{"mode":"STRICT"}}}`,
			problems:  []string{`spec.portLevelMtls: port "0" is outside 1..65535`},
			wantPorts: map[uint32]Mode{},
		},
		{
			name:      "port 70000",
			spec:      `{` + sel + `,"portLevelMtls":{"70000":{"mode":"STRICT"}}}`,
			problems:  []string{`spec.portLevelMtls: port "70000" is outside 1..65535`},
			wantPorts: map[uint32]Mode{},
		},
		{
			name:      "port 65536",
			spec:      `{` + sel + `,"portLevelMtls":{"65536":{"mode":"STRICT"}}}`,
			problems:  []string{`spec.portLevelMtls: port "65536" is outside 1..65535`},
			wantPorts: map[uint32]Mode{},
		},
		{
			name:      "port abc",
			spec:      `{` + sel + `,"portLevelMtls":{"abc":{"mode":"STRICT"}}}`,
			problems:  []string{`spec.portLevelMtls: port "abc" is outside 1..65535`},
			wantPorts: map[uint32]Mode{},
		},
		{
			name:      "negative port",
			spec:      `{` + sel + `,"portLevelMtls":{"-1":{"mode":"STRICT"}}}`,
			problems:  []string{`spec.portLevelMtls: port "-1" is outside 1..65535`},
			wantPorts: map[uint32]Mode{},
		},
		{
			name:      "one bad port among good ones",
			spec:      `{` + sel + `,"portLevelMtls":{"0":{"mode":"STRICT"},"8080":{"mode":"STRICT"}}}`,
			problems:  []string{`spec.portLevelMtls: port "0" is outside 1..65535`},
			wantPorts: map[uint32]Mode{8080: Strict},
		},
		{
			name:      "unknown port mode",
			spec:      `{` + sel + `,"portLevelMtls":{"8080":{"mode":"STRCT"},"9090":{"mode":"STRICT"}}}`,
			problems:  []string{`spec.portLevelMtls[8080].mode: unknown mTLS mode "STRCT" ` + wantModes},
			wantPorts: map[uint32]Mode{8080: Unset, 9090: Strict},
		},
		{
			name: "every problem at once",
			spec: `{"mtls":{"mode":"STRCT"},"portLevelMtls":{"0":{"mode":"STRICT"},"abc":{},"8080":{"mode":"NOPE"}}}`,
			problems: []string{
				`spec.mtls.mode: unknown mTLS mode "STRCT" ` + wantModes,
				`spec.portLevelMtls: port "0" is outside 1..65535`,
				`spec.portLevelMtls[8080].mode: unknown mTLS mode "NOPE" ` + wantModes,
				`spec.portLevelMtls: port "abc" is outside 1..65535`,
				needsSelector,
			},
			wantPorts: map[uint32]Mode{8080: Unset},
		},
	}
	for _, tt := range tests {
		for _, v := range []string{"security.istio.io/v1", "security.istio.io/v1beta1"} {
			t.Run(tt.name+"/"+v, func(t *testing.T) {
				p, err := Decode([]byte(doc(v, tt.spec)))
				if err != nil {
					t.Fatalf("Decode: %v (an invalid policy must decode with Problems)", err)
				}
				if p.Valid() {
					t.Fatalf("Valid() = true, want problems %q", tt.problems)
				}
				if !reflect.DeepEqual(p.Problems, tt.problems) {
					t.Errorf("Problems\n got %q\nwant %q", p.Problems, tt.problems)
				}
				if p.Key() != "ns/pa" || p.Mode != tt.wantMode {
					t.Errorf("got %s mode %v, want ns/pa mode %v", p.Key(), p.Mode, tt.wantMode)
				}
				if tt.wantPorts != nil && !reflect.DeepEqual(p.Ports, tt.wantPorts) {
					t.Errorf("Ports %v, want %v", p.Ports, tt.wantPorts)
				}
			})
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"not JSON", `apiVersion: security.istio.io/v1`, "not a JSON object"},
		{"truncated JSON", `{"apiVersion":"security.istio.io/v1"`, "not a JSON object"},
		{"JSON array", `[]`, "not a JSON object"},
		{"JSON string", `"PeerAuthentication"`, "not a JSON object"},
		{"null", `null`, "empty document"},
		{"empty", ``, "not a JSON object"},
		{"no apiVersion", `{"kind":"PeerAuthentication","metadata":{"name":"x"}}`, "wrong kind"},
		{"no kind", `{"apiVersion":"security.istio.io/v1","metadata":{"name":"x"}}`, "wrong kind"},
		{"AuthorizationPolicy", `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"x"}}`, "wrong kind"},
		{"unknown version", `{"apiVersion":"security.istio.io/v2","kind":"PeerAuthentication","metadata":{"name":"x"}}`, "wrong kind"},
		{"alpha version", `{"apiVersion":"security.istio.io/v1alpha1","kind":"PeerAuthentication","metadata":{"name":"x"}}`, "wrong kind"},
		{"wrong group", `{"apiVersion":"networking.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"x"}}`, "wrong kind"},
		{"core kind", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}`, "wrong kind"},
		{"malformed apiVersion", `{"apiVersion":"a/b/c","kind":"PeerAuthentication","metadata":{"name":"x"}}`, "wrong kind"},
		{"kind of the wrong type", `{"apiVersion":"security.istio.io/v1","kind":7,"metadata":{"name":"x"}}`, "wrong kind"},
		{"no metadata", `{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","spec":{}}`, "no metadata.name"},
		{"no name", `{"apiVersion":"security.istio.io/v1beta1","kind":"PeerAuthentication","metadata":{"namespace":"ns"}}`, "no metadata.name"},
		{"selector of the wrong type", doc("security.istio.io/v1", `{"selector":{"matchLabels":{"app":1}}}`), "decoding PeerAuthentication"},
		{"spec of the wrong type", doc("security.istio.io/v1", `[]`), "decoding PeerAuthentication"},
		{"port entry of the wrong type", doc("security.istio.io/v1", `{"selector":{"matchLabels":{"app":"a"}},"portLevelMtls":{"8080":"STRICT"}}`), "decoding PeerAuthentication"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode succeeded: %+v", p)
			}
			if p != nil {
				t.Errorf("Decode returned a policy with the error %v", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestIsPeerAuthentication(t *testing.T) {
	for gvk, want := range map[schema.GroupVersionKind]bool{
		{Group: "security.istio.io", Version: "v1", Kind: "PeerAuthentication"}:          true,
		{Group: "security.istio.io", Version: "v1beta1", Kind: "PeerAuthentication"}:     true,
		{Group: "security.istio.io", Version: "v1alpha1", Kind: "PeerAuthentication"}:    false,
		{Group: "security.istio.io", Version: "v1", Kind: "RequestAuthentication"}:       false,
		{Group: "networking.istio.io", Version: "v1", Kind: "PeerAuthentication"}:        false,
		{Group: "security.istio.io", Version: "v1", Kind: "peerauthentication"}:          false,
		{Group: "", Version: "v1", Kind: "PeerAuthentication"}:                           false,
		{Group: "security.istio.io", Version: "v1beta1", Kind: "PeerAuthenticationList"}: false,
	} {
		if got := IsPeerAuthentication(gvk); got != want {
			t.Errorf("IsPeerAuthentication(%v) = %v, want %v", gvk, got, want)
		}
	}
}

// spec builds a typed spec; the fields are pointers so that the proto
// messages are never copied.
func spec(sel map[string]string, mode *apisecurity.PeerAuthentication_MutualTLS, ports map[uint32]*apisecurity.PeerAuthentication_MutualTLS) *apisecurity.PeerAuthentication {
	s := &apisecurity.PeerAuthentication{Mtls: mode, PortLevelMtls: ports}
	if sel != nil {
		s.Selector = &typev1beta1.WorkloadSelector{MatchLabels: sel}
	}
	return s
}

func mtls(m apisecurity.PeerAuthentication_MutualTLS_Mode) *apisecurity.PeerAuthentication_MutualTLS {
	return &apisecurity.PeerAuthentication_MutualTLS{Mode: m}
}

func TestFromTyped(t *testing.T) {
	const (
		strict     = apisecurity.PeerAuthentication_MutualTLS_STRICT
		permissive = apisecurity.PeerAuthentication_MutualTLS_PERMISSIVE
		unset      = apisecurity.PeerAuthentication_MutualTLS_UNSET
	)
	created := metav1.NewTime(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	tests := []struct {
		name string
		spec *apisecurity.PeerAuthentication
		want Policy
	}{
		{"empty", spec(nil, nil, nil), Policy{}},
		{"namespace STRICT", spec(nil, mtls(strict), nil), Policy{Mode: Strict}},
		{"empty selector", spec(map[string]string{}, mtls(strict), nil), Policy{Mode: Strict}},
		{
			"workload ports", spec(map[string]string{"app": "a"}, mtls(permissive), map[uint32]*apisecurity.PeerAuthentication_MutualTLS{8080: mtls(strict), 9090: nil, 7070: mtls(unset)}),
			Policy{Selector: labels.Set{"app": "a"}, Mode: Permissive, Ports: map[uint32]Mode{8080: Strict, 9090: Unset, 7070: Unset}},
		},
		{
			"ports without selector", spec(nil, nil, map[uint32]*apisecurity.PeerAuthentication_MutualTLS{8080: mtls(strict)}),
			Policy{Ports: map[uint32]Mode{8080: Strict}, Problems: []string{"spec.portLevelMtls needs a workload selector (spec.selector.matchLabels)"}},
		},
		{
			"empty ports", spec(map[string]string{"app": "a"}, nil, map[uint32]*apisecurity.PeerAuthentication_MutualTLS{}),
			Policy{Selector: labels.Set{"app": "a"}, Ports: map[uint32]Mode{}, Problems: []string{"spec.portLevelMtls is empty"}},
		},
		{
			"port 0 and 70000", spec(map[string]string{"app": "a"}, nil, map[uint32]*apisecurity.PeerAuthentication_MutualTLS{0: mtls(strict), 70000: mtls(strict), 80: mtls(strict)}),
			Policy{Selector: labels.Set{"app": "a"}, Ports: map[uint32]Mode{0: Strict, 70000: Strict, 80: Strict}, Problems: []string{
				"spec.portLevelMtls: port 0 is outside 1..65535",
				"spec.portLevelMtls: port 70000 is outside 1..65535",
			}},
		},
		{
			"unknown mode number", spec(map[string]string{"app": "a"}, mtls(7), map[uint32]*apisecurity.PeerAuthentication_MutualTLS{80: mtls(-1)}),
			Policy{Selector: labels.Set{"app": "a"}, Ports: map[uint32]Mode{80: Unset}, Problems: []string{
				"spec.mtls.mode: unknown mTLS mode 7 " + wantModes,
				"spec.portLevelMtls[80].mode: unknown mTLS mode -1 " + wantModes,
			}},
		},
		{
			// 259 is STRICT (3) plus 256: an int8 conversion before the
			// range check would read it as STRICT.
			"mode number that wraps to STRICT", spec(map[string]string{"app": "a"}, mtls(259), map[uint32]*apisecurity.PeerAuthentication_MutualTLS{80: mtls(-253)}),
			Policy{Selector: labels.Set{"app": "a"}, Ports: map[uint32]Mode{80: Unset}, Problems: []string{
				"spec.mtls.mode: unknown mTLS mode 259 " + wantModes,
				"spec.portLevelMtls[80].mode: unknown mTLS mode -253 " + wantModes,
			}},
		},
	}
	for _, tt := range tests {
		meta := metav1.ObjectMeta{Name: "pa", Namespace: "ns", CreationTimestamp: created,
			Annotations: map[string]string{OverrideAnnotation: "ticket 7"}}
		want := tt.want
		want.Namespace, want.Name, want.Created, want.OverrideReason = "ns", "pa", created, "ticket 7"
		t.Run(tt.name+"/v1", func(t *testing.T) {
			pa := &securityv1.PeerAuthentication{ObjectMeta: meta}
			setSpec(&pa.Spec, tt.spec)
			assertPolicy(t, FromV1(pa), &want)
		})
		t.Run(tt.name+"/v1beta1", func(t *testing.T) {
			pa := &securityv1beta1.PeerAuthentication{ObjectMeta: meta}
			setSpec(&pa.Spec, tt.spec)
			assertPolicy(t, FromV1beta1(pa), &want)
		})
	}
}

func setSpec(dst, src *apisecurity.PeerAuthentication) {
	dst.Selector, dst.Mtls, dst.PortLevelMtls = src.Selector, src.Mtls, src.PortLevelMtls
}

func TestOlder(t *testing.T) {
	at := func(day int) metav1.Time { return metav1.NewTime(time.Date(2024, 1, day, 0, 0, 0, 0, time.UTC)) }
	p := func(ns, name string, created metav1.Time) *Policy {
		return &Policy{Namespace: ns, Name: name, Created: created}
	}
	tests := []struct {
		name string
		a, b *Policy
		want bool
	}{
		{"earlier timestamp", p("ns", "z", at(1)), p("ns", "a", at(2)), true},
		{"later timestamp", p("ns", "a", at(2)), p("ns", "z", at(1)), false},
		{"tie broken by name", p("ns", "a", at(1)), p("ns", "b", at(1)), true},
		{"tie broken by name, reversed", p("ns", "b", at(1)), p("ns", "a", at(1)), false},
		{"same name, tie broken by namespace", p("a", "x", at(1)), p("b", "x", at(1)), true},
		{"no timestamp is newest", p("ns", "a", metav1.Time{}), p("ns", "z", at(28)), false},
		{"timestamp beats none", p("ns", "z", at(28)), p("ns", "a", metav1.Time{}), true},
		{"both without timestamp: by name", p("ns", "a", metav1.Time{}), p("ns", "b", metav1.Time{}), true},
		{"identical", p("ns", "a", at(1)), p("ns", "a", at(1)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Older(tt.a, tt.b); got != tt.want {
				t.Errorf("Older = %v, want %v", got, tt.want)
			}
		})
	}

	ps := []*Policy{p("ns", "new", metav1.Time{}), p("ns", "b", at(3)), p("ns", "a", at(3)), p("ns", "first", at(1)), p("ns", "also-new", metav1.Time{})}
	SortOldestFirst(ps)
	var got []string
	for _, x := range ps {
		got = append(got, x.Name)
	}
	if want := []string{"first", "a", "b", "also-new", "new"}; !reflect.DeepEqual(got, want) {
		t.Errorf("SortOldestFirst = %v, want %v", got, want)
	}
}

func TestPolicyHelpers(t *testing.T) {
	wl := &Policy{Namespace: "ns", Name: "wl", Selector: labels.Set{"app": "a", "tier": "web"}}
	for _, tt := range []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"app": "a", "tier": "web"}, true},
		{map[string]string{"app": "a", "tier": "web", "extra": "x"}, true},
		{map[string]string{"app": "a"}, false},
		{map[string]string{"app": "a", "tier": "db"}, false},
		{map[string]string{"app": "a", "tier": ""}, false},
		{nil, false},
	} {
		if got := wl.Matches(tt.labels); got != tt.want {
			t.Errorf("Matches(%v) = %v, want %v", tt.labels, got, tt.want)
		}
	}
	if !wl.HasSelector() || wl.Key() != "ns/wl" || !wl.Valid() {
		t.Errorf("HasSelector %v Key %q Valid %v", wl.HasSelector(), wl.Key(), wl.Valid())
	}
	if (&Policy{Selector: labels.Set{}}).HasSelector() {
		t.Error("an empty selector is not a workload selector")
	}
	for _, tt := range []struct {
		p    Policy
		want bool
	}{
		{Policy{Mode: Strict}, true},
		{Policy{Mode: Permissive}, false},
		{Policy{Mode: Unset, Ports: map[uint32]Mode{80: Permissive, 443: Strict}}, true},
		{Policy{Mode: Disable, Ports: map[uint32]Mode{80: Permissive, 443: Unset}}, false},
	} {
		if got := tt.p.AnyStrict(); got != tt.want {
			t.Errorf("AnyStrict(%+v) = %v, want %v", tt.p, got, tt.want)
		}
	}
}

package cli

import (
	"slices"
	"testing"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// TestStrictAdmitted checks that the report decides an UPDATE of the
// namespace-wide policy Istio applies, where a new policy would be ignored.
func TestStrictAdmitted(t *testing.T) {
	cl, err := input.LoadFiles([]string{reportCluster}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := engine.DefaultOptions()
	rep, err := buildReport(cl, o)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]namespaceRow{}
	for _, row := range rep.namespaces {
		rows[row.Namespace] = row
	}
	tests := []struct {
		namespace string
		wide      string // the applied namespace-wide policy
		want      bool
	}{
		{"legacy", "default", false},
		{"shop", "default", true},
		{"istio-demo", "", false},
		{"quiet", "", true},
	}
	for _, tt := range tests {
		row, ok := rows[tt.namespace]
		if !ok {
			t.Fatalf("no row for %s", tt.namespace)
		}
		if name := ""; row.Wide != nil {
			name = row.Wide.Name
			if name != tt.wide {
				t.Errorf("%s: applied policy %q, want %q", tt.namespace, name, tt.wide)
			}
		} else if tt.wide != "" {
			t.Errorf("%s: no applied policy, want %q", tt.namespace, tt.wide)
		}
		if row.strictAdmitted != tt.want {
			t.Errorf("%s: strictAdmitted = %v, want %v", tt.namespace, row.strictAdmitted, tt.want)
		}
	}

	// The trap the UPDATE avoids: a new STRICT policy in legacy is newer
	// than default, so Istio ignores it and it passes.
	s := newStore(cl, o)
	d, err := s.ix.Decide(engine.Change{Operation: engine.Create, Policy: &policy.Policy{
		Namespace: "legacy", Name: reportPolicyName, Mode: policy.Strict,
	}})
	if err != nil || !d.Allowed {
		t.Errorf("a new namespace-wide policy in legacy: %+v, %v; want it allowed (ignored by Istio)", d, err)
	}
	// The report leaves the store as it was.
	if p := s.policies["legacy/default"]; p == nil || p.Mode != policy.Permissive {
		t.Errorf("legacy/default changed: %+v", p)
	}
}

func TestUnusedName(t *testing.T) {
	s := newStore(&input.Cluster{}, engine.DefaultOptions())
	if got := s.unusedName("ns"); got != reportPolicyName {
		t.Errorf("unusedName() = %q", got)
	}
	s.apply(engine.Change{Operation: engine.Create, Policy: &policy.Policy{Namespace: "ns", Name: reportPolicyName}})
	s.apply(engine.Change{Operation: engine.Create, Policy: &policy.Policy{Namespace: "ns", Name: reportPolicyName + "-2"}})
	if got, want := s.unusedName("ns"), reportPolicyName+"-3"; got != want {
		t.Errorf("unusedName() = %q, want %q", got, want)
	}
}

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"two\nlines", "two\nlines"},
		{"red\x1b[31m", `red\x1b[31m`},
		{"tab\there", `tab\there`},
		{"bidi\u202eevil", `bidi\u202eevil`},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := oneLine("a\n  b\x1b"); got != `a b\x1b` {
		t.Errorf("oneLine() = %q", got)
	}
}

// TestDrift: the report lists, per namespace, the unmeshed workloads under
// STRICT now (rule 3b): where a namespace-wide or a workload policy makes
// some counted pod STRICT, and nowhere else.
func TestDrift(t *testing.T) {
	cl, err := input.LoadFiles([]string{reportCluster}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := buildReport(cl, engine.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		strictNow bool
		drift     []string // Kind/name
	}{
		"payments":   {true, []string{"CronJob/settle"}}, // namespace-wide STRICT
		"orders":     {true, []string{"Pod/debug"}},      // a workload policy's STRICT pod next to it
		"ambient":    {true, nil},                        // STRICT, its only unmeshed pod exempt
		"istio-demo": {false, nil},                       // unmeshed, but nothing STRICT yet
		"legacy":     {false, nil},
		"quiet":      {false, nil},
		"shop":       {false, nil}, // DISABLE
	}
	if len(rep.namespaces) != len(tests) {
		t.Errorf("%d rows, want %d", len(rep.namespaces), len(tests))
	}
	for _, row := range rep.namespaces {
		want, ok := tests[row.Namespace]
		if !ok {
			t.Errorf("unexpected row %s", row.Namespace)
			continue
		}
		var got []string
		for _, w := range row.drift() {
			got = append(got, w.Kind+"/"+w.Name)
		}
		if row.strictNow != want.strictNow || !slices.Equal(got, want.drift) {
			t.Errorf("%s: strictNow %v, drift %v; want %v, %v", row.Namespace, row.strictNow, got, want.strictNow, want.drift)
		}
		if row.drift() == nil {
			t.Errorf("%s: drift() is nil, want an empty list", row.Namespace)
		}
	}
}

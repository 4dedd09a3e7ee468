package cli

import (
	"testing"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// TestStrictAdmitted checks that the report decides an UPDATE of the
// namespace-wide policy Istio applies, where a new policy would be ignored.
func TestStrictAdmitted(t *testing.T) {
	s, err := input.LoadFiles([]string{reportCluster}, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := engine.DefaultOptions()
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
		st, err := engine.DescribeNamespace(s, tt.namespace, o)
		if err != nil {
			t.Fatal(err)
		}
		if name := ""; st.Wide != nil {
			name = st.Wide.Name
			if name != tt.wide {
				t.Errorf("%s: applied policy %q, want %q", tt.namespace, name, tt.wide)
			}
		} else if tt.wide != "" {
			t.Errorf("%s: no applied policy, want %q", tt.namespace, tt.wide)
		}
		got, err := strictAdmitted(s, st, o)
		if err != nil || got != tt.want {
			t.Errorf("%s: strictAdmitted() = %v, %v; want %v", tt.namespace, got, err, tt.want)
		}
	}

	// The trap the UPDATE avoids: a new STRICT policy in legacy is newer
	// than default, so Istio ignores it and it passes.
	d, err := engine.Decide(s, engine.Change{Operation: engine.Create, Policy: &policy.Policy{
		Namespace: "legacy", Name: reportPolicyName, Mode: policy.Strict,
	}}, o)
	if err != nil || !d.Allowed {
		t.Errorf("a new namespace-wide policy in legacy: %+v, %v; want it allowed (ignored by Istio)", d, err)
	}
	// The report leaves the snapshot as it was.
	if p := s.Policy("legacy", "default"); p == nil || p.Mode != policy.Permissive {
		t.Errorf("legacy/default changed: %+v", p)
	}
}

func TestUnusedName(t *testing.T) {
	s := engine.NewSnapshot()
	if got := unusedName(s, "ns"); got != reportPolicyName {
		t.Errorf("unusedName() = %q", got)
	}
	s.SetPolicy(&policy.Policy{Namespace: "ns", Name: reportPolicyName})
	s.SetPolicy(&policy.Policy{Namespace: "ns", Name: reportPolicyName + "-2"})
	if got, want := unusedName(s, "ns"), reportPolicyName+"-3"; got != want {
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

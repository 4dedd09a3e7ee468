package engine

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// MaxListed bounds the workloads a message names, so that a denial fits
// one screen of kubectl output.
const MaxListed = 10

// Namespace labels that make new pods join the mesh.
const (
	InjectionLabel   = "istio-injection"
	RevisionLabel    = "istio.io/rev"
	DataplaneModeKey = "istio.io/dataplane-mode"
	ExemptHint       = mesh.ExemptLabel + "=true"
	ambientDataplane = "ambient"
	injectionEnabled = "enabled"
)

func subject(d *Decision) string {
	return fmt.Sprintf("%s of PeerAuthentication %s (%s)", d.Operation, d.Policy, d.Scope)
}

func invalidMessage(p *policy.Policy) string {
	return fmt.Sprintf("PeerAuthentication %s is invalid: %s", p.Key(), strings.Join(p.Problems, "; "))
}

// ListWorkloads renders up to max workloads, one per line with the given
// indent, then "and N more". Workloads carry their namespace only when they
// span several.
func ListWorkloads(ws []Workload, max int, indent string) string {
	var b strings.Builder
	many := len(ws) > 0 && ws[0].Namespace != ws[len(ws)-1].Namespace // sorted by namespace
	for i, w := range ws {
		if i == max {
			fmt.Fprintf(&b, "%sand %d more\n", indent, len(ws)-max)
			break
		}
		if many {
			fmt.Fprintf(&b, "%s%s/", indent, w.Namespace)
		} else {
			b.WriteString(indent)
		}
		fmt.Fprintf(&b, "%s\n", w.String())
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func message(d *Decision, p *policy.Policy, o Options) string {
	n := len(d.Unmeshed)
	switch {
	case d.Allowed && !d.Overridden && len(d.Touched) == 0:
		return fmt.Sprintf("%s allowed: no pod becomes stricter", subject(d))
	case d.Allowed && !d.Overridden:
		return fmt.Sprintf("%s allowed: every pod it makes stricter is in the mesh (namespaces: %s)",
			subject(d), strings.Join(d.Touched, ", "))
	case d.Overridden:
		return fmt.Sprintf("%s allowed by override (%s: %q), although %d unmeshed %s would be cut off by STRICT mTLS:\n%s",
			subject(d), policy.OverrideAnnotation, d.OverrideReason, n, plural(n, "workload", "workloads"), ListWorkloads(d.Unmeshed, MaxListed, "  "))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s denied: it makes pods in %s STRICT mTLS while %d %s there %s no Istio sidecar and would be cut off:\n%s\n",
		subject(d), strings.Join(d.Touched, ", "), n, plural(n, "workload", "workloads"), plural(n, "has", "have"),
		ListWorkloads(d.Unmeshed, MaxListed, "  "))
	if p.OverrideReason != "" && !o.AllowOverride {
		fmt.Fprintf(&b, "The %s annotation is ignored: overrides are disabled (--allow-override=false).\n", policy.OverrideAnnotation)
	}
	fmt.Fprintf(&b, "To proceed: add these workloads to the mesh (native sidecar or ambient), label their pods %s, or roll out with mode PERMISSIVE first.", ExemptHint)
	return b.String()
}

func overrideWarning(d *Decision) string {
	return fmt.Sprintf("override: admitted with %d unmeshed %s cut off (reason: %q)",
		len(d.Unmeshed), plural(len(d.Unmeshed), "workload", "workloads"), truncate(d.OverrideReason, 50))
}

// addWarnings appends the spec's warnings: a policy Istio ignores, a
// selector that matches no counted pod, drift, and a STRICT namespace
// without injection.
func (d *Decision) addWarnings(c Cluster, p *policy.Policy, o Options, nsAfter []*policy.Policy, matched int, drift []UnmeshedPod) error {
	if d.Operation != Delete {
		switch {
		case d.Scope == Ignored:
			d.Warnings = append(d.Warnings, fmt.Sprintf("Istio ignores %s: selector policies in the root namespace %s have no effect", p.Key(), o.RootNamespace))
		case !p.HasSelector():
			if oldest := oldestWide(nsAfter); oldest != nil && oldest.Name != p.Name {
				d.Warnings = append(d.Warnings, fmt.Sprintf("Istio ignores %s: the older %s policy %s takes precedence", p.Key(), d.Scope, oldest.Key()))
			}
		case matched == 0:
			d.Warnings = append(d.Warnings, fmt.Sprintf("the selector of %s matches no counted pod in %s", p.Key(), p.Namespace))
		}
	}
	if len(drift) > 0 {
		ws, err := group(c, drift)
		if err != nil {
			return err
		}
		d.Warnings = append(d.Warnings, fmt.Sprintf("drift: %d unmeshed %s in %s already under STRICT: %s",
			len(drift), plural(len(drift), "pod", "pods"), p.Namespace, workloadNames(ws, 3)))
	}
	if d.Operation != Delete && d.Scope != MeshWide && d.Scope != Ignored && p.AnyStrict() {
		ns, err := c.Namespace(p.Namespace)
		if err != nil {
			return fmt.Errorf("reading namespace %s: %w", p.Namespace, err)
		}
		if !enrolled(ns) {
			d.Warnings = append(d.Warnings, fmt.Sprintf("namespace %s has no injection or ambient label: new pods may start unmeshed under STRICT", p.Namespace))
		}
	}
	return nil
}

// enrolled reports whether new pods in the namespace join the mesh.
func enrolled(ns *corev1.Namespace) bool {
	if ns == nil {
		return false
	}
	l := ns.Labels
	return l[InjectionLabel] == injectionEnabled || l[RevisionLabel] != "" || l[DataplaneModeKey] == ambientDataplane
}

// workloadNames renders at most max "Kind/name" entries.
func workloadNames(ws []Workload, max int) string {
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.Kind + "/" + w.Name
	}
	return listNames(names, max)
}

// listNames renders at most max names, then how many more.
func listNames(names []string, max int) string {
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:max], ", ") + fmt.Sprintf(", and %d more", len(names)-max)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

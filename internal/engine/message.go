package engine

import (
	"fmt"
	"strings"

	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// MaxListed bounds the workloads a message names, so that a denial fits
// one screen of kubectl output.
const MaxListed = 10

// ExemptHint is the label that exempts a pod, as a user writes it.
const ExemptHint = mesh.ExemptLabel + "=true"

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
	switch {
	case d.Allowed && !d.Overridden && len(d.Touched) == 0:
		return fmt.Sprintf("%s allowed: no pod becomes stricter", subject(d))
	case d.Allowed && !d.Overridden:
		return fmt.Sprintf("%s allowed: every pod it makes stricter is in the mesh (namespaces: %s)",
			subject(d), strings.Join(d.Touched, ", "))
	case d.Overridden:
		return fmt.Sprintf("%s allowed by override (%s: %q), although %s:\n%s",
			subject(d), policy.OverrideAnnotation, d.OverrideReason, cutOff(d, "would be cut off by STRICT mTLS"), lists(d))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s denied: it makes pods in %s STRICT mTLS while %s:\n", subject(d), strings.Join(d.Touched, ", "), cutOff(d, "and would be cut off"))
	if l := lists(d); l != "" {
		b.WriteString(l + "\n")
	}
	if p.OverrideReason != "" && !o.AllowOverride {
		fmt.Fprintf(&b, "The %s annotation is ignored: overrides are disabled (--allow-override=false).\n", policy.OverrideAnnotation)
	}
	var steps []string
	if len(d.Unmeshed) > 0 {
		steps = append(steps, fmt.Sprintf("add these workloads to the mesh (native sidecar or ambient), label their pods %s", ExemptHint))
	}
	if len(d.Plaintext) > 0 {
		steps = append(steps, "move their plaintext callers into the mesh (or wait until they have been silent for the window)")
	}
	if d.EvidenceUnavailable != "" && len(d.Plaintext) == 0 {
		steps = append(steps, "restore the plaintext evidence (Prometheus)")
	}
	fmt.Fprintf(&b, "To proceed: %s, or roll out with mode PERMISSIVE first.", strings.Join(steps, "; "))
	return b.String()
}

// cutOff says what the change cuts off: unmeshed workloads (ending with
// unmeshedTail, their own wording of the verdict), workloads with
// plaintext callers, and evidence that could not be read.
func cutOff(d *Decision, unmeshedTail string) string {
	var parts []string
	if n := len(d.Unmeshed); n > 0 {
		if d.Overridden {
			parts = append(parts, fmt.Sprintf("%d unmeshed %s %s", n, plural(n, "workload", "workloads"), unmeshedTail))
		} else {
			parts = append(parts, fmt.Sprintf("%d %s there %s no Istio sidecar %s", n, plural(n, "workload", "workloads"), plural(n, "has", "have"), unmeshedTail))
		}
	}
	if n := len(d.Plaintext); n > 0 {
		parts = append(parts, fmt.Sprintf("%d %s accepted plaintext traffic in the last %s, from callers STRICT would refuse (metrics carry no port, so any port counts)",
			n, plural(n, "workload", "workloads"), shortDuration(d.Window)))
	}
	if d.EvidenceUnavailable != "" && len(d.Plaintext) == 0 {
		parts = append(parts, fmt.Sprintf("the plaintext evidence that would judge it is unavailable (--plaintext-unavailable=deny): %s", d.EvidenceUnavailable))
	}
	return strings.Join(parts, ", and ")
}

// lists renders the unmeshed workloads, then the plaintext ones.
func lists(d *Decision) string {
	var parts []string
	if len(d.Unmeshed) > 0 {
		parts = append(parts, ListWorkloads(d.Unmeshed, MaxListed, "  "))
	}
	if len(d.Plaintext) > 0 {
		parts = append(parts, listPlaintext(d.Plaintext, d.Window, MaxListed, "  "))
	}
	return strings.Join(parts, "\n")
}

func overrideWarning(d *Decision) string {
	what := fmt.Sprintf("%d unmeshed %s", len(d.Unmeshed), plural(len(d.Unmeshed), "workload", "workloads"))
	if n := len(d.Plaintext); n > 0 {
		what = fmt.Sprintf("%d plaintext-called %s", n, plural(n, "workload", "workloads"))
		if len(d.Unmeshed) > 0 {
			what = fmt.Sprintf("%d unmeshed and %d plaintext-called workloads", len(d.Unmeshed), n)
		}
	} else if len(d.Unmeshed) == 0 {
		what = "the plaintext evidence unavailable"
		return fmt.Sprintf("override: admitted with %s (reason: %q)", what, truncate(d.OverrideReason, 50))
	}
	return fmt.Sprintf("override: admitted with %s cut off (reason: %q)", what, truncate(d.OverrideReason, 50))
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
		if !mesh.Enrolled(ns) {
			d.Warnings = append(d.Warnings, fmt.Sprintf("namespace %s has no injection or ambient label: new pods may start unmeshed under STRICT", p.Namespace))
		}
	}
	return nil
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

package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

const reportUsage = `Usage: mtls-guard report [--cluster FILE]... [flags]

Shows, per namespace, the effective namespace-level mTLS mode, the meshed
and unmeshed pods, and whether a namespace-wide STRICT policy would be
admitted now (an UPDATE of the namespace-wide policy Istio applies, where
there is one). Excluded namespaces are left out. Overrides never count here:
--allow-override is accepted only so that check and report share flags.
Exit status: 0, or 2 on unusable input or usage.

Flags:
`

// reportPolicyName names the hypothetical STRICT policy the report decides
// in a namespace that has no namespace-wide policy yet.
const reportPolicyName = "mtls-guard-report"

// maxWorkloadsShown bounds the workloads of one text row.
const maxWorkloadsShown = 5

// Report runs "mtls-guard report" and returns the exit status. On exit 2
// it writes one line on stderr and nothing on stdout.
func Report(args []string, stdout, stderr io.Writer) int {
	const name = "mtls-guard report"
	var c commonFlags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	c.register(fs)
	if code, ok := parseFlags(fs, args, stderr, reportUsage); !ok {
		return code
	}
	if stdinUses(c.clusters) > 1 {
		return fail(stderr, name, errors.New("stdin (-) can be read only once"))
	}
	opts, err := c.options()
	if err != nil {
		return fail(stderr, name, err)
	}
	snap, err := c.snapshot(context.Background())
	if err != nil {
		return fail(stderr, name, err)
	}
	rep, err := buildReport(snap, opts)
	if err != nil {
		return fail(stderr, name, err)
	}

	var out bytes.Buffer
	if c.output == formatJSON {
		err = writeJSON(&out, rep.json())
	} else {
		rep.writeText(&out, opts)
	}
	if err != nil {
		return fail(stderr, name, fmt.Errorf("rendering the output: %w", err))
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		return fail(stderr, name, fmt.Errorf("writing the output: %w", err))
	}
	return exitOK
}

// report is the per-namespace plan.
type report struct {
	meshMode   policy.Mode
	namespaces []namespaceRow
	excluded   []string
}

type namespaceRow struct {
	*engine.NamespaceStatus
	strictAdmitted bool
}

func buildReport(s *engine.Snapshot, o engine.Options) (*report, error) {
	meshMode, err := engine.MeshMode(s, o)
	if err != nil {
		return nil, err
	}
	r := &report{meshMode: meshMode}
	for _, ns := range s.NamespaceNames() {
		if o.Excluded(ns) {
			r.excluded = append(r.excluded, ns)
			continue
		}
		st, err := engine.DescribeNamespace(s, ns, o)
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", ns, err)
		}
		admitted, err := strictAdmitted(s, st, o)
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", ns, err)
		}
		r.namespaces = append(r.namespaces, namespaceRow{NamespaceStatus: st, strictAdmitted: admitted})
	}
	return r, nil
}

// strictAdmitted asks the engine whether a namespace-wide STRICT policy
// would be admitted now, leaving the override annotation out.
func strictAdmitted(s *engine.Snapshot, st *engine.NamespaceStatus, o engine.Options) (bool, error) {
	var ch engine.Change
	if st.Wide != nil {
		// A new namespace-wide policy would be newer than the one Istio
		// applies, so Istio would ignore it and it would pass trivially:
		// ask about making the applied one STRICT instead.
		p := *st.Wide
		p.Mode, p.Ports, p.Problems, p.OverrideReason = policy.Strict, nil, nil, ""
		ch = engine.Change{Operation: engine.Update, Policy: &p}
	} else {
		ch = engine.Change{Operation: engine.Create, Policy: &policy.Policy{
			Namespace: st.Namespace,
			Name:      unusedName(s, st.Namespace),
			Mode:      policy.Strict,
		}}
	}
	d, err := engine.Decide(s, ch, o)
	if err != nil {
		return false, fmt.Errorf("deciding a namespace-wide STRICT policy: %w", err)
	}
	return d.Allowed, nil
}

// unusedName picks a policy name that replaces no existing policy.
func unusedName(s *engine.Snapshot, namespace string) string {
	name := reportPolicyName
	for i := 2; s.Policy(namespace, name) != nil; i++ {
		name = reportPolicyName + "-" + strconv.Itoa(i)
	}
	return name
}

// reportOutput is the JSON output.
type reportOutput struct {
	Namespaces []namespaceOutput `json:"namespaces"`
}

type namespaceOutput struct {
	Namespace         string            `json:"namespace"`
	Mode              string            `json:"mode"`
	Meshed            int               `json:"meshed"`
	Unmeshed          int               `json:"unmeshed"`
	UnmeshedWorkloads []engine.Workload `json:"unmeshedWorkloads"`
	StrictAdmitted    bool              `json:"strictAdmitted"`
}

func (r *report) json() reportOutput {
	out := reportOutput{Namespaces: make([]namespaceOutput, 0, len(r.namespaces))}
	for _, ns := range r.namespaces {
		out.Namespaces = append(out.Namespaces, namespaceOutput{
			Namespace:         ns.Namespace,
			Mode:              ns.Mode.String(),
			Meshed:            ns.Meshed,
			Unmeshed:          ns.Unmeshed,
			UnmeshedWorkloads: workloads(ns.Workloads),
			StrictAdmitted:    ns.strictAdmitted,
		})
	}
	return out
}

func (r *report) writeText(w io.Writer, o engine.Options) {
	fmt.Fprintf(w, "mesh-wide mode: %s (root namespace %s)\n\n", r.meshMode, o.RootNamespace)
	if len(r.namespaces) == 0 {
		fmt.Fprintln(w, "no namespaces to report")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAMESPACE\tMODE\tMESHED\tUNMESHED\tSTRICT NOW\tUNMESHED WORKLOADS")
		for _, ns := range r.namespaces {
			strict := "denied"
			if ns.strictAdmitted {
				strict = "admitted"
			}
			names := make([]string, 0, len(ns.Workloads))
			for _, wl := range ns.Workloads {
				names = append(names, wl.Kind+"/"+wl.Name)
			}
			list := "-"
			if len(names) > 0 {
				list = joinMax(names, ", ", maxWorkloadsShown)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", oneLine(ns.Namespace), ns.Mode, ns.Meshed, ns.Unmeshed, strict, oneLine(list))
		}
		tw.Flush()
	}
	admitted := 0
	for _, ns := range r.namespaces {
		if ns.strictAdmitted {
			admitted++
		}
	}
	denied := len(r.namespaces) - admitted
	fmt.Fprintf(w, "\nsummary: %d %s, %d %s namespace-wide STRICT now, %d would deny it\n",
		len(r.namespaces), plural(len(r.namespaces), "namespace", "namespaces"),
		admitted, plural(admitted, "admits", "admit"), denied)
	if len(r.excluded) > 0 {
		fmt.Fprintf(w, "excluded, not counted: %s\n", oneLine(strings.Join(r.excluded, ", ")))
	}
}

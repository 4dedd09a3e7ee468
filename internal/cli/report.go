package cli

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/evidence"
	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

const reportLong = `Shows, per namespace, the effective namespace-level mTLS mode, the meshed
and unmeshed pods, and whether a namespace-wide STRICT policy would be
admitted now (an UPDATE of the namespace-wide policy Istio applies, where
there is one). Then the drift: the unmeshed pods, by workload, of the
namespaces where some counted pod is already STRICT on some port, whose
plaintext calls to those pods are refused now. Excluded namespaces are left
out. Overrides never count here: --allow-override is accepted only so that
check and report share flags.
Exit status: 0, or 2 on unusable input or usage.`

// reportPolicyName names the hypothetical STRICT policy the report decides
// in a namespace that has no namespace-wide policy yet.
const reportPolicyName = "mtls-guard-report"

// maxWorkloadsShown bounds the workloads of one text row.
const maxWorkloadsShown = 5

// NewReportCommand returns "mtls-guard report".
func NewReportCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := newCommonOptions(streams)
	cmd := &cobra.Command{
		Use:   "report [flags]",
		Short: "Per-namespace migration plan for STRICT mTLS",
		Long:  reportLong,
		Example: `  mtls-guard report
  kubectl get pods,replicasets,jobs,namespaces,peerauthentications -A -o yaml | mtls-guard report --from-file - -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runReport(cmd, o) },
	}
	o.addFlags(cmd)
	return cmd
}

func runReport(cmd *cobra.Command, o *commonOptions) error {
	if stdinUses(o.fromFiles) > 1 {
		return errors.New("stdin (-) can be read only once")
	}
	opts, err := o.options(cmd)
	if err != nil {
		return err
	}
	cl, err := o.cluster(cmd.Context())
	if err != nil {
		return err
	}
	rep, err := buildReport(cl, opts)
	if err != nil {
		return err
	}
	return writeOutput(o.streams.Out, func(w io.Writer) error {
		if o.output == formatJSON {
			return writeJSON(w, rep.json())
		}
		rep.writeText(w, opts)
		return nil
	})
}

// report is the per-namespace plan.
type report struct {
	meshMode   policy.Mode
	namespaces []namespaceRow
	excluded   []string
	// evidence is the plaintext evidence when a telemetry source is
	// configured, and evidenceErr why it cannot be trusted.
	evidence    *evidence.Snapshot
	evidenceErr error
	withSource  bool
}

type namespaceRow struct {
	*engine.NamespaceStatus
	strictAdmitted bool
	// strictNow says some counted pod of the namespace is STRICT on some
	// port now (engine.NamespaceStrict).
	strictNow bool
}

// drift returns the unmeshed workloads under STRICT now (rule 3b): every
// unmeshed workload of a namespace where STRICT holds; never nil.
func (r namespaceRow) drift() []engine.Workload {
	if !r.strictNow {
		return []engine.Workload{}
	}
	return r.Workloads
}

func buildReport(cl *input.Cluster, o engine.Options) (*report, error) {
	st := newStore(cl, o)
	r := &report{}
	if o.Plaintext != nil {
		r.withSource = true
		r.evidence, r.evidenceErr = o.Plaintext()
	}
	// Describe every namespace on one consistent view of the index; the
	// decisions below take its lock themselves.
	err := st.ix.View(func(view engine.Cluster) error {
		var err error
		if r.meshMode, err = engine.MeshMode(view, o); err != nil {
			return err
		}
		for _, ns := range namespaceNames(cl) {
			if o.Excluded(ns) {
				r.excluded = append(r.excluded, ns)
				continue
			}
			desc, err := engine.DescribeNamespace(view, ns, o)
			if err != nil {
				return fmt.Errorf("namespace %s: %w", ns, err)
			}
			strict, err := engine.NamespaceStrict(view, ns, o)
			if err != nil {
				return fmt.Errorf("namespace %s: %w", ns, err)
			}
			r.namespaces = append(r.namespaces, namespaceRow{NamespaceStatus: desc, strictNow: strict})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range r.namespaces {
		row := &r.namespaces[i]
		if row.strictAdmitted, err = st.strictAdmitted(row.NamespaceStatus); err != nil {
			return nil, fmt.Errorf("namespace %s: %w", row.Namespace, err)
		}
	}
	return r, nil
}

// namespaceNames lists, sorted, the namespaces that exist or hold pods or
// policies.
func namespaceNames(cl *input.Cluster) []string {
	seen := sets.New[string]()
	for _, obj := range cl.Objects {
		switch obj.(type) {
		case *corev1.Namespace:
			seen.Insert(obj.GetName())
		case *corev1.Pod, *securityv1.PeerAuthentication, *securityv1beta1.PeerAuthentication:
			seen.Insert(obj.GetNamespace())
		}
	}
	return sets.List(seen)
}

// strictAdmitted asks the index whether a namespace-wide STRICT policy
// would be admitted now, leaving the override annotation out.
func (s *store) strictAdmitted(desc *engine.NamespaceStatus) (bool, error) {
	var ch engine.Change
	if desc.Wide != nil {
		// A new namespace-wide policy would be newer than the one Istio
		// applies, so Istio would ignore it and it would pass trivially:
		// ask about making the applied one STRICT instead.
		p := *desc.Wide
		p.Mode, p.Ports, p.Problems, p.OverrideReason = policy.Strict, nil, nil, ""
		ch = engine.Change{Operation: engine.Update, Policy: &p, Old: desc.Wide}
	} else {
		ch = engine.Change{Operation: engine.Create, Policy: &policy.Policy{
			Namespace: desc.Namespace,
			Name:      s.unusedName(desc.Namespace),
			Mode:      policy.Strict,
		}}
	}
	d, err := s.ix.Decide(ch)
	if err != nil {
		return false, fmt.Errorf("deciding a namespace-wide STRICT policy: %w", err)
	}
	return d.Allowed, nil
}

// unusedName picks a policy name that replaces no existing policy.
func (s *store) unusedName(namespace string) string {
	name := reportPolicyName
	for i := 2; s.policies[namespace+"/"+name] != nil; i++ {
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
	// StrictNow: some counted pod is STRICT on some port now.
	StrictNow bool `json:"strictNow"`
	// UnmeshedUnderStrict is the drift: the unmeshed workloads when
	// StrictNow, else empty.
	UnmeshedUnderStrict []engine.Workload `json:"unmeshedUnderStrict"`
	// PlaintextCallers are the namespace's workloads that accepted
	// plaintext traffic in the evidence's window; absent without a
	// telemetry source.
	PlaintextCallers []plaintextOutput `json:"plaintextCallers,omitempty"`
}

type plaintextOutput struct {
	Workload    string   `json:"workload"`
	Requests    int64    `json:"requests"`
	Connections int64    `json:"connections"`
	Sources     []string `json:"sources"`
}

// plaintext lists a namespace's evidence, sorted by workload.
func (r *report) plaintext(ns string) []plaintextOutput {
	if r.evidence == nil {
		return nil
	}
	byWorkload := r.evidence.ForNamespace(ns)
	out := make([]plaintextOutput, 0, len(byWorkload))
	for _, name := range slices.Sorted(maps.Keys(byWorkload)) {
		ev := byWorkload[name]
		p := plaintextOutput{Workload: name, Requests: ev.Requests, Connections: ev.Connections, Sources: []string{}}
		for _, src := range ev.Sources {
			p.Sources = append(p.Sources, src.Namespace+"/"+src.Workload)
		}
		out = append(out, p)
	}
	return out
}

func (r *report) json() reportOutput {
	out := reportOutput{Namespaces: make([]namespaceOutput, 0, len(r.namespaces))}
	for _, ns := range r.namespaces {
		out.Namespaces = append(out.Namespaces, namespaceOutput{
			Namespace:           ns.Namespace,
			Mode:                ns.Mode.String(),
			Meshed:              ns.Meshed,
			Unmeshed:            ns.Unmeshed,
			UnmeshedWorkloads:   workloads(ns.Workloads),
			StrictAdmitted:      ns.strictAdmitted,
			StrictNow:           ns.strictNow,
			UnmeshedUnderStrict: workloads(ns.drift()),
			PlaintextCallers:    r.plaintext(ns.Namespace),
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
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", oneLine(ns.Namespace), ns.Mode, ns.Meshed, ns.Unmeshed, strict, workloadList(ns.Workloads))
		}
		tw.Flush()
	}
	r.writePlaintext(w)
	drifting := r.writeDrift(w)
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
	if drifting > 0 {
		fmt.Fprintf(w, "drift: %d %s unmeshed pods under STRICT now\n", drifting, plural(drifting, "namespace has", "namespaces have"))
	}
	if len(r.excluded) > 0 {
		fmt.Fprintf(w, "excluded, not counted: %s\n", oneLine(strings.Join(r.excluded, ", ")))
	}
}

// writePlaintext writes, per namespace, the workloads that Istio's
// telemetry shows with plaintext callers: what STRICT would cut off that
// no pod list shows.
func (r *report) writePlaintext(w io.Writer) {
	if !r.withSource {
		return
	}
	if r.evidenceErr != nil {
		fmt.Fprintf(w, "\nplaintext callers: %s\n", oneLine(r.evidenceErr.Error()))
		if r.evidence == nil {
			return
		}
	}
	fmt.Fprintf(w, "\nplaintext callers (Istio telemetry, last %s):\n", r.evidence.Window)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tPLAINTEXT CALLERS")
	for _, ns := range r.namespaces {
		var callers []string
		for _, p := range r.plaintext(ns.Namespace) {
			callers = append(callers, fmt.Sprintf("%s: %d req, %d conn (from %s)", p.Workload, p.Requests, p.Connections, strings.Join(p.Sources, " ")))
		}
		list := "-"
		if len(callers) > 0 {
			list = oneLine(joinMax(callers, ", ", maxWorkloadsShown))
		}
		fmt.Fprintf(tw, "%s\t%s\n", oneLine(ns.Namespace), list)
	}
	tw.Flush()
}

// writeDrift writes the namespaces with unmeshed pods under STRICT now,
// if any, and returns how many there are.
func (r *report) writeDrift(w io.Writer) int {
	var rows []namespaceRow
	for _, ns := range r.namespaces {
		if len(ns.drift()) > 0 {
			rows = append(rows, ns)
		}
	}
	if len(rows) == 0 {
		return 0
	}
	fmt.Fprintln(w, "\nunmeshed under STRICT now (their plaintext calls to the STRICT pods are refused):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tPODS\tWORKLOADS")
	for _, ns := range rows {
		pods := 0
		for _, wl := range ns.drift() {
			pods += len(wl.Pods)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", oneLine(ns.Namespace), pods, workloadList(ns.drift()))
	}
	tw.Flush()
	return len(rows)
}

// workloadList names workloads as Kind/name, at most maxWorkloadsShown,
// on one line; "-" for none.
func workloadList(ws []engine.Workload) string {
	if len(ws) == 0 {
		return "-"
	}
	names := make([]string, 0, len(ws))
	for _, wl := range ws {
		names = append(names, wl.Kind+"/"+wl.Name)
	}
	return oneLine(joinMax(names, ", ", maxWorkloadsShown))
}

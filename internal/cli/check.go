package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/input"
)

const checkLong = `Decides PeerAuthentications as the admission webhook would, in order, each
against the cluster state with the earlier allowed ones applied (as a
sequence of kubectl apply calls would). A policy that exists in the cluster
is an UPDATE, any other a CREATE; with --delete, deleting the named policies
is decided instead. When the cluster holds Istio's PeerAuthentication CRD,
policies are first validated against its schema as the API server would.
Exit status: 0 all allowed, 1 any denied (invalid included), 2 unusable
input or usage.`

const checkExample = `  # against the live cluster (kubeconfig as kubectl finds it)
  mtls-guard check -f strict.yaml
  # a directory of policies, recursively, against another context
  kubectl mtls-guard check -f policies/ -R --context staging
  # against a snapshot, e.g. in CI
  mtls-guard check -f strict.yaml --from-file cluster.yaml -o json`

// Verdicts of the text output.
const (
	verdictAllowed    = "ALLOWED"
	verdictDenied     = "DENIED"
	verdictInvalid    = "INVALID"
	verdictOverridden = "OVERRIDDEN"
)

type checkOptions struct {
	*commonOptions
	filenames []string
	del       bool
}

// NewCheckCommand returns "mtls-guard check". It returns ExitCode(1) when
// a policy is denied; any other error is unusable input or usage.
func NewCheckCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &checkOptions{commonOptions: newCommonOptions(streams)}
	cmd := &cobra.Command{
		Use:     "check -f FILENAME [flags]",
		Short:   "Decide PeerAuthentications offline or against a cluster",
		Long:    checkLong,
		Example: checkExample,
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	cmd.Flags().StringSliceVarP(&o.filenames, "filename", "f", nil, "the PeerAuthentications to decide: files, directories or URLs (YAML, JSON, multi-document YAML or a kind List); - for stdin; repeatable")
	cmd.Flags().BoolVar(&o.del, "delete", false, "decide deleting the named policies instead of applying them")
	o.addFlags(cmd)
	return cmd
}

func (o *checkOptions) run(cmd *cobra.Command) error {
	if len(o.filenames) == 0 {
		return fmt.Errorf("-f is required (see %s -h)", cmd.CommandPath())
	}
	if stdinUses(o.filenames, o.fromFiles) > 1 {
		return errors.New("stdin (-) can be read only once")
	}
	opts, err := o.options(cmd)
	if err != nil {
		return err
	}
	namespace, err := o.namespace()
	if err != nil {
		return err
	}
	// Policies first: a bad file should fail before the cluster is read.
	objs, err := input.ReadPolicies(o.filenames, o.recursive, o.streams.In)
	if err != nil {
		return err
	}
	cl, err := o.cluster(cmd.Context())
	if err != nil {
		return err
	}
	var schema *input.Schema
	if cl.CRD != nil {
		if schema, err = input.NewSchema(cl.CRD); err != nil {
			return err
		}
	}
	policies, err := input.Policies(objs, namespace, schema)
	if err != nil {
		return err
	}
	decisions, err := evaluate(newStore(cl, opts), policies, o.del)
	if err != nil {
		return err
	}
	err = writeOutput(o.streams.Out, func(w io.Writer) error {
		if o.output == formatJSON {
			return writeJSON(w, checkJSON(decisions))
		}
		writeCheckText(w, decisions)
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range decisions {
		if !d.Allowed {
			return ExitCode(exitDenied)
		}
	}
	return nil
}

// noArgs refuses positional arguments: the inputs are flags.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %q (see %s -h)", args[0], cmd.CommandPath())
	}
	return nil
}

// evaluate decides the policies in order, applying each allowed change to
// the store so that the next one sees it.
func evaluate(s *store, policies []input.Policy, del bool) ([]*engine.Decision, error) {
	decisions := make([]*engine.Decision, 0, len(policies))
	for _, ip := range policies {
		p := ip.Policy
		existing := s.policies[p.Key()]
		var ch engine.Change
		switch {
		case del:
			if existing == nil {
				return nil, &input.Error{Loc: ip.Loc, Err: fmt.Errorf("PeerAuthentication %s does not exist in the cluster, so it cannot be deleted", p.Key())}
			}
			// The object being deleted carries the override annotation
			// that counts, not the file's copy.
			ch = engine.Change{Operation: engine.Delete, Policy: existing}
		case existing != nil:
			// The API server keeps the creationTimestamp on update,
			// whatever the file says, and it decides which policy is oldest.
			cp := *p
			cp.Created = existing.Created
			ch = engine.Change{Operation: engine.Update, Policy: &cp, Old: existing}
		default:
			// The API server stamps a new object now: it is the newest.
			cp := *p
			cp.Created = metav1.Time{}
			ch = engine.Change{Operation: engine.Create, Policy: &cp}
		}
		d, err := s.ix.Decide(ch)
		if err != nil {
			return nil, fmt.Errorf("%s: deciding %s of %s: %w", ip.Loc, ch.Operation, p.Key(), err)
		}
		if d.Allowed {
			s.apply(ch)
		}
		decisions = append(decisions, d)
	}
	return decisions, nil
}

// checkOutput is the JSON output, in the spec's field order.
type checkOutput struct {
	Allowed bool          `json:"allowed"`
	Results []checkResult `json:"results"`
}

type checkResult struct {
	Policy    string            `json:"policy"`
	Operation engine.Operation  `json:"operation"`
	Allowed   bool              `json:"allowed"`
	Message   string            `json:"message"`
	Unmeshed  []engine.Workload `json:"unmeshed"`
	Warnings  []string          `json:"warnings"`
}

func checkJSON(decisions []*engine.Decision) checkOutput {
	out := checkOutput{Allowed: true, Results: make([]checkResult, 0, len(decisions))}
	for _, d := range decisions {
		out.Allowed = out.Allowed && d.Allowed
		warnings := append([]string{}, d.Warnings...)
		out.Results = append(out.Results, checkResult{
			Policy:    d.Policy,
			Operation: d.Operation,
			Allowed:   d.Allowed,
			Message:   d.Message,
			Unmeshed:  workloads(d.Unmeshed),
			Warnings:  warnings,
		})
	}
	return out
}

// verdicts name the outcomes in check's text: an allowance without
// evidence is one too, and its warning says so.
var verdicts = map[engine.Outcome]string{
	engine.OutcomeAllowed:                verdictAllowed,
	engine.OutcomeAllowedWithoutEvidence: verdictAllowed,
	engine.OutcomeDenied:                 verdictDenied,
	engine.OutcomeOverridden:             verdictOverridden,
	engine.OutcomeInvalid:                verdictInvalid,
}

func verdict(d *engine.Decision) string { return verdicts[d.Outcome()] }

// maxPodsShown bounds the pod names of one table row.
const maxPodsShown = 3

func writeCheckText(w io.Writer, decisions []*engine.Decision) {
	counts := map[string]int{}
	for i, d := range decisions {
		if i > 0 {
			fmt.Fprintln(w)
		}
		v := verdict(d)
		counts[v]++
		fmt.Fprintf(w, "%s %s (%s)\n", v, printable(d.Policy), d.Operation)
		for _, line := range strings.Split(printable(d.Message), "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
		if len(d.Unmeshed) > 0 {
			fmt.Fprintln(w)
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "  NAMESPACE\tKIND\tNAME\tPODS\tREASONS")
			for _, wl := range d.Unmeshed {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", oneLine(wl.Namespace), oneLine(wl.Kind), oneLine(wl.Name),
					oneLine(joinMax(wl.Pods, ",", maxPodsShown)), oneLine(strings.Join(wl.Reasons, ",")))
			}
			tw.Flush()
		}
		if len(d.Warnings) > 0 {
			fmt.Fprintln(w)
			for _, warning := range d.Warnings {
				fmt.Fprintf(w, "  warning: %s\n", oneLine(warning))
			}
		}
	}
	fmt.Fprintf(w, "\nsummary: %d checked, %d allowed, %d overridden, %d denied, %d invalid\n",
		len(decisions), counts[verdictAllowed], counts[verdictOverridden], counts[verdictDenied], counts[verdictInvalid])
}

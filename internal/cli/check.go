package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/input"
)

const checkUsage = `Usage: mtls-guard check -f FILE [-f FILE]... [--cluster FILE]... [flags]

Decides PeerAuthentications as the admission webhook would, in order, each
against the cluster state with the earlier allowed ones applied (as a
sequence of kubectl apply calls would). A policy that exists in the cluster
is an UPDATE, any other a CREATE; with --delete, deleting the named policies
is decided instead. Exit status: 0 all allowed, 1 any denied (invalid
included), 2 unusable input or usage.

Flags:
`

// Verdicts of the text output.
const (
	verdictAllowed    = "ALLOWED"
	verdictDenied     = "DENIED"
	verdictInvalid    = "INVALID"
	verdictOverridden = "OVERRIDDEN"
)

// Check runs "mtls-guard check" and returns the exit status. On exit 2 it
// writes one line on stderr and nothing on stdout.
func Check(args []string, stdout, stderr io.Writer) int {
	const name = "mtls-guard check"
	var (
		c     commonFlags
		files stringList
		del   bool
	)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Var(&files, "f", "read the PeerAuthentications to decide from `FILE` (YAML, multi-document YAML, JSON or a kind List; - for stdin); repeatable")
	fs.Var(&files, "filename", "same as -f")
	fs.BoolVar(&del, "delete", false, "decide deleting the named policies instead of applying them")
	c.register(fs)
	if code, ok := parseFlags(fs, args, stderr, checkUsage); !ok {
		return code
	}
	if len(files) == 0 {
		return fail(stderr, name, fmt.Errorf("-f is required (see %s -h)", name))
	}
	if stdinUses(files, c.clusters) > 1 {
		return fail(stderr, name, errors.New("stdin (-) can be read only once"))
	}
	opts, err := c.options()
	if err != nil {
		return fail(stderr, name, err)
	}
	// Policies first: a bad file should fail before the cluster is read.
	policies, err := input.ReadPolicies(files, stdin)
	if err != nil {
		return fail(stderr, name, err)
	}
	snap, err := c.snapshot(context.Background())
	if err != nil {
		return fail(stderr, name, err)
	}
	decisions, err := evaluate(snap, policies, opts, del)
	if err != nil {
		return fail(stderr, name, err)
	}

	// Buffered, so that a late failure leaves stdout empty.
	var out bytes.Buffer
	if c.output == formatJSON {
		err = writeJSON(&out, checkJSON(decisions))
	} else {
		writeCheckText(&out, decisions)
	}
	if err != nil {
		return fail(stderr, name, fmt.Errorf("rendering the output: %w", err))
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		return fail(stderr, name, fmt.Errorf("writing the output: %w", err))
	}
	for _, d := range decisions {
		if !d.Allowed {
			return exitDenied
		}
	}
	return exitOK
}

// evaluate decides the policies in order, applying each allowed change to
// the snapshot so that the next one sees it.
func evaluate(s *engine.Snapshot, policies []input.Policy, o engine.Options, del bool) ([]*engine.Decision, error) {
	decisions := make([]*engine.Decision, 0, len(policies))
	for _, ip := range policies {
		p := ip.Policy
		existing := s.Policy(p.Namespace, p.Name)
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
			ch = engine.Change{Operation: engine.Update, Policy: &cp}
		default:
			// The API server stamps a new object now: it is the newest.
			cp := *p
			cp.Created = metav1.Time{}
			ch = engine.Change{Operation: engine.Create, Policy: &cp}
		}
		d, err := engine.Decide(s, ch, o)
		if err != nil {
			return nil, fmt.Errorf("%s: deciding %s of %s: %w", ip.Loc, ch.Operation, p.Key(), err)
		}
		if d.Allowed {
			if ch.Operation == engine.Delete {
				s.DeletePolicy(p.Namespace, p.Name)
			} else {
				s.SetPolicy(ch.Policy)
			}
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

func verdict(d *engine.Decision) string {
	switch {
	case d.Invalid:
		return verdictInvalid
	case d.Overridden:
		return verdictOverridden
	case d.Allowed:
		return verdictAllowed
	}
	return verdictDenied
}

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

// Package cli implements the offline commands as cobra commands, the way
// kubectl plugins are written: check, which decides PeerAuthentications
// against a cluster state the way the webhook would, and report, which
// shows per namespace whether STRICT mTLS can be turned on now. Both read
// the cluster from manifests (--from-file) or from the API server
// (genericclioptions: --kubeconfig, --context, --namespace, ...), load it
// into the webhook's index and decide through it.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/evidence"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// Exit statuses.
const (
	exitOK     = 0
	exitDenied = 1
	exitUsage  = 2
)

// Output formats.
const (
	formatText = "text"
	formatJSON = "json"
)

// podNamespaceEnv names the guard's own namespace, which is excluded.
const podNamespaceEnv = "POD_NAMESPACE"

// ExitCode is an error that only sets the exit status: what there was to
// say is said.
type ExitCode int

func (e ExitCode) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// Execute runs a command tree and returns its exit status: 0; an ExitCode
// the command returned; or 2 with the error as one line on stderr, after
// the path of the command that failed ("mtls-guard check: ...").
func Execute(root *cobra.Command, stderr io.Writer) int {
	root.SilenceErrors, root.SilenceUsage = true, true
	cmd, err := root.ExecuteC()
	var code ExitCode
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &code):
		return int(code)
	}
	fmt.Fprintf(stderr, "%s: %s\n", cmd.CommandPath(), oneLine(err.Error()))
	return exitUsage
}

// FlagError points a flag error at the command's help; set it as the
// root's FlagErrorFunc.
func FlagError(cmd *cobra.Command, err error) error {
	return fmt.Errorf("%w (see %s -h)", err, cmd.CommandPath())
}

// commonOptions are the inputs and options that check and report share.
type commonOptions struct {
	streams       genericiooptions.IOStreams
	config        *genericclioptions.ConfigFlags
	fromFiles     []string
	recursive     bool
	root          string
	sidecarMode   string
	exclude       []string
	allowOverride bool
	output        string
	// evidence is plaintext evidence from Prometheus, read once per run.
	evidence evidence.Config
}

// newLiveReader returns what reads the live cluster; tests replace it.
var newLiveReader = func(cfg *rest.Config) (client.Reader, error) { return input.NewClient(cfg) }

func newCommonOptions(streams genericiooptions.IOStreams) *commonOptions {
	return &commonOptions{
		streams: streams,
		config:  genericclioptions.NewConfigFlags(false),
	}
}

func (c *commonOptions) addFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringArrayVar(&c.fromFiles, "from-file", nil, "read the cluster state from manifests instead of the live cluster: files, directories or URLs holding what kubectl get -A -o yaml prints for pods, replicasets, jobs, namespaces and peerauthentications, and optionally crd/peerauthentications.security.istio.io for Istio's schema; - for stdin; repeatable")
	fs.BoolVarP(&c.recursive, "recursive", "R", false, "read the directories of -f and --from-file recursively")
	fs.StringVar(&c.root, "root-namespace", engine.DefaultRootNamespace, "Istio root namespace, where a policy without a selector is mesh-wide")
	fs.StringVar(&c.sidecarMode, "sidecar-mode", string(mesh.Native), "which sidecars count as meshed: native or any (any also counts classic istio-proxy containers)")
	fs.StringSliceVar(&c.exclude, "exclude-namespaces", strings.Split(engine.DefaultExcludedNamespaces, ","), "namespaces whose pods are never counted (the root namespace and $POD_NAMESPACE always are)")
	fs.BoolVar(&c.allowOverride, "allow-override", true, "honour the mtls-guard.io/override-reason annotation")
	fs.StringVarP(&c.output, "output", "o", formatText, "output format: text or json")
	gfs := flag.NewFlagSet(cmd.Name(), flag.ContinueOnError)
	c.evidence.AddFlags(gfs)
	fs.AddGoFlagSet(gfs)
	c.config.AddFlags(fs)
}

// options validates the flags and builds the engine's options.
func (c *commonOptions) options(cmd *cobra.Command) (engine.Options, error) {
	switch c.output {
	case formatText, formatJSON:
	default:
		return engine.Options{}, fmt.Errorf("invalid -o %q: want text or json", c.output)
	}
	if len(c.fromFiles) > 0 {
		for _, name := range []string{"kubeconfig", "context", "cluster", "server"} {
			if cmd.Flags().Changed(name) {
				return engine.Options{}, fmt.Errorf("--from-file and --%s are exclusive: give the cluster state from files or from a live cluster", name)
			}
		}
	}
	sidecar, err := mesh.ParseSidecarMode(c.sidecarMode)
	if err != nil {
		return engine.Options{}, fmt.Errorf("invalid --sidecar-mode: %w", err)
	}
	if errs := validation.IsDNS1123Label(c.root); len(errs) > 0 {
		return engine.Options{}, fmt.Errorf("invalid --root-namespace %q: %s", c.root, strings.Join(errs, "; "))
	}
	var excluded []string
	for _, ns := range c.exclude {
		if ns = strings.TrimSpace(ns); ns == "" {
			continue
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return engine.Options{}, fmt.Errorf("invalid --exclude-namespaces entry %q: %s", ns, strings.Join(errs, "; "))
		}
		excluded = append(excluded, ns)
	}
	o, err := engine.NewOptions(c.root, sidecar, excluded, os.Getenv(podNamespaceEnv), c.allowOverride)
	if err != nil {
		return engine.Options{}, fmt.Errorf("invalid options: %w", err)
	}
	if c.evidence.Enabled() {
		// One refresh for the run; a failure makes the evidence
		// unavailable, which the decisions then say.
		r, err := evidence.New(c.evidence, logr.Discard())
		if err != nil {
			return engine.Options{}, err
		}
		_ = r.Refresh(cmd.Context())
		o.Plaintext = func() (*evidence.Snapshot, error) { return r.Current(time.Now()) }
		o.DenyWithoutEvidence = c.evidence.Unavailable == evidence.UnavailableDeny
	} else if err := c.evidence.Validate(); err != nil {
		return engine.Options{}, err
	}
	return o, nil
}

// namespace is the namespace of a policy that names none: --namespace, or
// the kubeconfig context's when reading a live cluster, as kubectl does.
func (c *commonOptions) namespace() (string, error) {
	if len(c.fromFiles) > 0 {
		if c.config.Namespace != nil && *c.config.Namespace != "" {
			return *c.config.Namespace, nil
		}
		return input.DefaultNamespace, nil
	}
	ns, _, err := c.config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("loading the kubeconfig: %w", err)
	}
	return ns, nil
}

// cluster reads the cluster state from the --from-file manifests, or from
// the API server when there are none.
func (c *commonOptions) cluster(ctx context.Context) (*input.Cluster, error) {
	if len(c.fromFiles) > 0 {
		return input.LoadFiles(c.fromFiles, c.recursive, c.streams.In)
	}
	cfg, err := c.config.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	r, err := newLiveReader(cfg)
	if err != nil {
		return nil, err
	}
	cl, err := input.Load(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("reading the cluster at %s: %w", cfg.Host, err)
	}
	return cl, nil
}

// store is the cluster loaded into the webhook's index, with its policies
// by key: a change's own object comes from the change, never from the
// index.
type store struct {
	ix       *index.Index
	policies map[string]*policy.Policy
}

func newStore(cl *input.Cluster, o engine.Options) *store {
	s := &store{ix: index.New(o), policies: map[string]*policy.Policy{}}
	for _, obj := range cl.Objects {
		s.ix.Add(obj)
		if p := policy.From(obj); p != nil {
			s.policies[p.Key()] = p
		}
	}
	return s
}

// apply applies an allowed change, so that the next decision sees it.
func (s *store) apply(ch engine.Change) {
	p := ch.Policy
	if ch.Operation == engine.Delete {
		s.ix.OnDelete(&securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}})
		delete(s.policies, p.Key())
		return
	}
	s.ix.SetPolicy(p)
	s.policies[p.Key()] = p
}

// stdinUses counts the inputs that read stdin, which can serve one only.
func stdinUses(lists ...[]string) int {
	n := 0
	for _, l := range lists {
		for _, v := range l {
			if v == "-" {
				n++
			}
		}
	}
	return n
}

// writeOutput renders into a buffer first, so that a late failure leaves
// stdout empty.
func writeOutput(w io.Writer, render func(io.Writer) error) error {
	var out bytes.Buffer
	if err := render(&out); err != nil {
		return fmt.Errorf("rendering the output: %w", err)
	}
	if _, err := w.Write(out.Bytes()); err != nil {
		return fmt.Errorf("writing the output: %w", err)
	}
	return nil
}

// oneLine folds a message onto one line, so that the error is one line
// whatever the API server or a parser said.
func oneLine(s string) string {
	return strings.Join(strings.Fields(printable(s)), " ")
}

// printable escapes control characters (say, an escape sequence in a pod
// name read from a file) so that they cannot act on the terminal. Newlines
// stay.
func printable(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			b.WriteString(strings.Trim(strconv.QuoteRune(r), "'"))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool {
	return r != '\n' && (unicode.IsControl(r) || unicode.In(r, unicode.Bidi_Control))
}

// writeJSON writes v indented by two spaces, without escaping <, > and &
// in messages.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// workloads returns ws with every slice non-nil, so that JSON shows [].
func workloads(ws []engine.Workload) []engine.Workload {
	out := make([]engine.Workload, 0, len(ws))
	for _, w := range ws {
		if w.Pods == nil {
			w.Pods = []string{}
		}
		if w.Reasons == nil {
			w.Reasons = []string{}
		}
		out = append(out, w)
	}
	return out
}

// joinMax joins at most max items, then "+N more".
func joinMax(items []string, sep string, max int) string {
	if len(items) <= max {
		return strings.Join(items, sep)
	}
	return fmt.Sprintf("%s +%d more", strings.Join(items[:max], sep), len(items)-max)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Check runs "mtls-guard check" with args, as the binary does, and returns
// the exit status.
func Check(args []string, stdout, stderr io.Writer) int {
	return runAlone(NewCheckCommand, args, stdout, stderr)
}

// Report runs "mtls-guard report" with args, as the binary does, and
// returns the exit status.
func Report(args []string, stdout, stderr io.Writer) int {
	return runAlone(NewReportCommand, args, stdout, stderr)
}

// stdin is what Check and Report read for "-"; tests replace it.
var stdin io.Reader = os.Stdin

func runAlone(newCmd func(genericiooptions.IOStreams) *cobra.Command, args []string, stdout, stderr io.Writer) int {
	streams := genericiooptions.IOStreams{In: stdin, Out: stdout, ErrOut: stderr}
	root := &cobra.Command{Use: "mtls-guard"}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(FlagError)
	cmd := newCmd(streams)
	root.AddCommand(cmd)
	root.SetArgs(append([]string{cmd.Name()}, args...))
	return Execute(root, stderr)
}

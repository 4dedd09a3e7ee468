// Package cli implements the offline commands: check, which decides
// PeerAuthentications against a cluster state the way the webhook would,
// and report, which shows per namespace whether STRICT mTLS can be turned
// on now. Both read the cluster from files (--cluster) or from the API
// server, and share the webhook's decision engine.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
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

// stdin is read for the file name "-"; tests replace it.
var stdin io.Reader = os.Stdin

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	*l = append(*l, v)
	return nil
}

// commonFlags are the inputs and options that check and report share.
type commonFlags struct {
	clusters      stringList
	kubeconfig    string
	root          string
	sidecarMode   string
	exclude       string
	allowOverride bool
	output        string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.Var(&c.clusters, "cluster", "read the cluster state from `FILE` (YAML, JSON or a kind List as `kubectl get pods,replicasets,jobs,namespaces,peerauthentications -A -o yaml` prints; - for stdin); repeatable. Without it, the cluster is read live")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig `PATH` for reading the live cluster (default: KUBECONFIG, in-cluster, ~/.kube/config)")
	fs.StringVar(&c.root, "root-namespace", engine.DefaultRootNamespace, "Istio root `NAMESPACE`, where a policy without a selector is mesh-wide")
	fs.StringVar(&c.sidecarMode, "sidecar-mode", string(mesh.Native), "which sidecars count as meshed: native or any (any also counts classic istio-proxy containers)")
	fs.StringVar(&c.exclude, "exclude-namespaces", engine.DefaultExcludedNamespaces, "comma-separated `namespaces` whose pods are never counted (the root namespace and $POD_NAMESPACE always are)")
	fs.BoolVar(&c.allowOverride, "allow-override", true, "honour the mtls-guard.io/override-reason annotation")
	fs.StringVar(&c.output, "o", formatText, "output `format`: text or json")
	fs.StringVar(&c.output, "output", formatText, "output `format`: text or json")
}

// options validates the flags and builds the engine's options.
func (c *commonFlags) options() (engine.Options, error) {
	switch c.output {
	case formatText, formatJSON:
	default:
		return engine.Options{}, fmt.Errorf("invalid -o %q: want text or json", c.output)
	}
	if len(c.clusters) > 0 && c.kubeconfig != "" {
		return engine.Options{}, errors.New("--cluster and --kubeconfig are exclusive: give the cluster state from files or from a live cluster")
	}
	sidecar, err := mesh.ParseSidecarMode(c.sidecarMode)
	if err != nil {
		return engine.Options{}, fmt.Errorf("invalid --sidecar-mode: %w", err)
	}
	if errs := validation.IsDNS1123Label(c.root); len(errs) > 0 {
		return engine.Options{}, fmt.Errorf("invalid --root-namespace %q: %s", c.root, strings.Join(errs, "; "))
	}
	var excluded []string
	for _, ns := range strings.Split(c.exclude, ",") {
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
	return o, nil
}

// snapshot reads the cluster state from the --cluster files, or from the
// API server when there are none.
func (c *commonFlags) snapshot(ctx context.Context) (*engine.Snapshot, error) {
	if len(c.clusters) > 0 {
		return input.LoadFiles(c.clusters, stdin)
	}
	cfg, err := input.RESTConfig(c.kubeconfig)
	if err != nil {
		return nil, err
	}
	s, err := input.LoadLive(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("reading the cluster at %s: %w", cfg.Host, err)
	}
	return s, nil
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

// parseFlags parses args and reports whether the command should go on;
// when not, code is the exit status. Errors become one line on stderr.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, usage string) (code int, ok bool) {
	fs.SetOutput(io.Discard) // the flag package's own report spans lines
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stderr)
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
		return exitOK, false
	case err != nil:
		return fail(stderr, fs.Name(), fmt.Errorf("%w (see %s -h)", err, fs.Name())), false
	case fs.NArg() > 0:
		return fail(stderr, fs.Name(), fmt.Errorf("unexpected argument %q (see %s -h)", fs.Arg(0), fs.Name())), false
	}
	return exitOK, true
}

// fail prints err as one line on stderr and returns the usage status.
func fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "%s: %s\n", cmd, oneLine(err.Error()))
	return exitUsage
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

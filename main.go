// Command mtls-guard is a validating admission webhook that refuses Istio
// STRICT mTLS PeerAuthentications while unmeshed pods would be cut off, and
// the offline tools that make the same decision. Installed as
// kubectl-mtls_guard, it is also a kubectl plugin: kubectl mtls-guard check.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/mtls-guard/mtls-guard/certs"
	"github.com/mtls-guard/mtls-guard/internal/cli"
	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/internal/version"
)

func main() {
	os.Exit(run(filepath.Base(os.Args[0]), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run runs a command line with the given streams and returns the exit
// status; invokedAs is the program's name.
func run(invokedAs string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand(invokedAs, genericiooptions.IOStreams{In: stdin, Out: stdout, ErrOut: stderr})
	root.SetArgs(args)
	return cli.Execute(root, stderr)
}

// newRootCommand builds the command tree. Invoked as a kubectl plugin
// (kubectl-mtls_guard), the usage says "kubectl mtls-guard".
func newRootCommand(invokedAs string, streams genericiooptions.IOStreams) *cobra.Command {
	root := &cobra.Command{
		Use:     "mtls-guard",
		Short:   "mtls-guard keeps Istio STRICT mTLS from cutting off unmeshed pods.",
		Version: version.Version,
		Args:    cobra.NoArgs,
		// Without a command: the usage on stderr, and the usage status.
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(streams.ErrOut)
			_ = cmd.Usage()
			return cli.ExitCode(2)
		},
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	if strings.HasPrefix(invokedAs, "kubectl-") {
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl mtls-guard"}
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(cli.FlagError)
	root.AddCommand(
		&cobra.Command{
			Use:                "serve [flags]",
			Short:              "Run the admission webhook",
			DisableFlagParsing: true, // serve parses its own flags
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := server.Main(ctrl.SetupSignalHandler(), args, streams.ErrOut); err != nil {
					fmt.Fprintf(streams.ErrOut, "%s: %v\n", cmd.CommandPath(), err)
					return cli.ExitCode(1)
				}
				return nil
			},
		},
		cli.NewCheckCommand(streams),
		cli.NewReportCommand(streams),
		&cobra.Command{
			Use:                "certs [flags]",
			Short:              "Issue a serving certificate for clusters without cert-manager",
			DisableFlagParsing: true, // certs parses its own flags
			RunE: func(_ *cobra.Command, args []string) error {
				if code := certs.Command(args, streams.Out, streams.ErrOut); code != 0 {
					return cli.ExitCode(code)
				}
				return nil
			},
		},
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  cobra.NoArgs,
			Run: func(cmd *cobra.Command, _ []string) {
				fmt.Fprintln(cmd.OutOrStdout(), version.Version)
			},
		},
	)
	return root
}

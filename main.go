// Command mtls-guard is a validating admission webhook that refuses Istio
// STRICT mTLS PeerAuthentications while unmeshed pods would be cut off, and
// the offline tools that make the same decision.
package main

import (
	"fmt"
	"io"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/mtls-guard/mtls-guard/certs"
	"github.com/mtls-guard/mtls-guard/internal/cli"
	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/internal/version"
)

const usage = `mtls-guard keeps Istio STRICT mTLS from cutting off unmeshed pods.

Usage:
  mtls-guard serve   [flags]   run the admission webhook
  mtls-guard check   -f FILE   decide PeerAuthentications offline or against a cluster
  mtls-guard report            per-namespace migration plan for STRICT mTLS
  mtls-guard certs   [flags]   issue a serving certificate for clusters without cert-manager
  mtls-guard version           print the version

Run "mtls-guard COMMAND -h" for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		if err := server.Main(ctrl.SetupSignalHandler(), rest, stderr); err != nil {
			fmt.Fprintf(stderr, "mtls-guard serve: %v\n", err)
			return 1
		}
		return 0
	case "check":
		return cli.Check(rest, stdout, stderr)
	case "report":
		return cli.Report(rest, stdout, stderr)
	case "certs":
		return certs.Command(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, version.Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "mtls-guard: unknown command %q\n\n%s", cmd, usage)
	return 2
}

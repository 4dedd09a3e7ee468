package certs

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
)

// Exit codes of Command.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// Command implements `mtls-guard certs`: it issues a serving certificate
// and its CA, writes them to the --out directory as CAFile, CertFile and
// KeyFile, and prints the CA as a base64 caBundle on one line of stdout.
// args are the arguments after "certs". It returns the process exit code:
// 0 on success (and for -h), 1 if issuing or writing fails, and 2 for a
// usage error; errors go to stderr.
func Command(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mtls-guard certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: mtls-guard certs --out DIR [flags]

Issues a private CA and a webhook serving certificate signed by it, writes
ca.crt, tls.crt and tls.key to DIR, and prints the base64 caBundle for the
ValidatingWebhookConfiguration on stdout.

Flags:
`)
		fs.PrintDefaults()
	}
	service := fs.String("service", "mtls-guard", "name of the webhook `Service`")
	namespace := fs.String("namespace", "mtls-guard", "`namespace` of the webhook Service")
	out := fs.String("out", "", "`directory` to write "+CAFile+", "+CertFile+" and "+KeyFile+" to (required)")
	duration := fs.Duration("duration", ServingDuration, "validity of the serving certificate")
	var opts []Option
	fs.Func("dns", "extra DNS `name` for the serving certificate (repeatable)", func(s string) error {
		if s == "" {
			return errors.New("empty DNS name")
		}
		opts = append(opts, WithDNSNames(s))
		return nil
	})
	fs.Func("ip", "extra IP `address` for the serving certificate, e.g. 127.0.0.1 (repeatable)", func(s string) error {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("not an IP address: %q", s)
		}
		opts = append(opts, WithIPAddresses(ip))
		return nil
	})

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage // fs has already printed the error and the usage.
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "mtls-guard certs: "+format+"\n", a...)
		fs.Usage()
		return exitUsage
	}
	switch {
	case fs.NArg() > 0:
		return usageErr("unexpected arguments: %q", fs.Args())
	case *out == "":
		return usageErr("--out is required")
	case *duration <= 0 || *duration > CADuration:
		return usageErr("--duration must be in (0, %v]", CADuration)
	}
	if err := validateNames(*service, *namespace); err != nil {
		return usageErr("%v", err)
	}

	bundle, err := Issue(*service, *namespace, append(opts, WithDuration(*duration))...)
	if err != nil {
		fmt.Fprintf(stderr, "mtls-guard certs: %v\n", err)
		return exitError
	}
	if err := bundle.WriteDir(*out); err != nil {
		fmt.Fprintf(stderr, "mtls-guard certs: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, bundle.CABundle())
	return exitOK
}

package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mtls-guard/mtls-guard/internal/version"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name      string
		invokedAs string
		args      []string
		code      int
		stdout    string // a substring; "" means nothing
		stderr    string // a substring; "" means nothing
	}{
		{name: "no command", invokedAs: "mtls-guard", code: 2, stderr: "Usage:\n  mtls-guard [flags]\n  mtls-guard [command]"},
		{name: "version", invokedAs: "mtls-guard", args: []string{"version"}, stdout: version.Version + "\n"},
		{name: "--version", invokedAs: "mtls-guard", args: []string{"--version"}, stdout: version.Version + "\n"},
		{name: "help", invokedAs: "mtls-guard", args: []string{"--help"}, stdout: "  check       Decide PeerAuthentications offline or against a cluster\n"},
		{name: "unknown command", invokedAs: "mtls-guard", args: []string{"nope"}, code: 2, stderr: `mtls-guard: unknown command "nope" for "mtls-guard"`},
		{name: "plugin usage", invokedAs: "kubectl-mtls_guard", args: []string{"check", "-h"}, stdout: "Usage:\n  kubectl mtls-guard check -f FILENAME [flags]\n"},
		{name: "plugin error", invokedAs: "kubectl-mtls_guard", args: []string{"check"}, code: 2,
			stderr: "kubectl mtls-guard check: -f is required (see kubectl mtls-guard check -h)\n"},
		// serve and certs parse their own flags.
		{name: "certs flags", invokedAs: "mtls-guard", args: []string{"certs", "--nope"}, code: 2, stderr: "flag provided but not defined: -nope"},
		{name: "serve flags", invokedAs: "mtls-guard", args: []string{"serve", "--nope"}, code: 1, stderr: "mtls-guard serve: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.invokedAs, tt.args, strings.NewReader(""), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, stderr.String())
			}
			for _, c := range []struct {
				name, got, want string
			}{{"stdout", stdout.String(), tt.stdout}, {"stderr", stderr.String(), tt.stderr}} {
				if (c.want == "" && c.got != "") || !strings.Contains(c.got, c.want) {
					t.Errorf("%s %q, want %q in it", c.name, c.got, c.want)
				}
			}
		})
	}
}

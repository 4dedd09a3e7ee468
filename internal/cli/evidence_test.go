package cli

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckWithoutEvidence: check reads plaintext evidence with the same
// flags as serve; when Prometheus cannot be reached the evidence is
// unavailable, and --plaintext-unavailable decides a change it would have
// judged: allow with a warning, or deny.
func TestCheckWithoutEvidence(t *testing.T) {
	// A port that refuses connections: a listener closed at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	policy := filepath.Join(t.TempDir(), "web.yaml")
	// STRICT over the meshed web pods only: admitted without evidence.
	if err := os.WriteFile(policy, []byte(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: istio-demo}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: STRICT}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	// Only meshed pods: without evidence, STRICT is admitted.
	cluster := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(cluster, []byte(`apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: istio-demo, labels: {istio-injection: enabled}}
- apiVersion: v1
  kind: Pod
  metadata: {name: web-1, namespace: istio-demo, labels: {app: web}}
  spec:
    initContainers: [{name: istio-proxy, image: proxyv2, restartPolicy: Always}]
    containers: [{name: app, image: web}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		flags    []string
		wantCode int
		warning  bool
	}{
		{"no telemetry source", nil, 0, false},
		{"unavailable, allow", []string{"--prometheus-url", url}, 0, true},
		{"unavailable, deny", []string{"--prometheus-url", url, "--plaintext-unavailable", "deny"}, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-f", policy, "--from-file", cluster, "-o", "json"}, tc.flags...)
			r := run(Check, args, nil)
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.wantCode, r.stdout, r.stderr)
			}
			var out struct {
				Results []struct {
					Warnings []string `json:"warnings"`
				} `json:"results"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Results) != 1 {
				t.Fatalf("output %q: %v", r.stdout, err)
			}
			warned := false
			for _, w := range out.Results[0].Warnings {
				warned = warned || strings.HasPrefix(w, "plaintext evidence unavailable")
			}
			if warned != tc.warning {
				t.Errorf("warnings %q: evidence warning %v, want %v", out.Results[0].Warnings, warned, tc.warning)
			}
		})
	}
}

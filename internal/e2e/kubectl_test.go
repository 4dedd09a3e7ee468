package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtls-guard/mtls-guard/webhook"
)

// kubectl runs the real kubectl binary built by `make testbin`.
func kubectl(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	r, err := suite.Kubectl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return r.Stdout, r.Stderr, r.Code
}

// kubectlRecord finds the audit record of a kubectl request on a
// PeerAuthentication made after mark (kubectl prints no Audit-Id).
func kubectlRecord(t *testing.T, mark int, verb, ns, name string) auditEvent {
	t.Helper()
	return auditEvent{suite.Audit.Kubectl(t, mark, verb, "peerauthentications", ns, name)}
}

// TestKubectl drives the guard through the real kubectl binary: apply and
// server-side dry run are denied with the workload named and the warnings
// printed, and admitted once the namespace is meshed.
func TestKubectl(t *testing.T) {
	// No injection label, so the guard also warns that new pods may start
	// unmeshed.
	ns := namespace(t, "kubectl-demo", nil)
	create(t, deploymentPod(ns, "web", "k1", native))
	create(t, deploymentPod(ns, "legacy", "k2", unmeshed))
	eventually(t, pa(ns, "default", "STRICT"), true)

	manifest := filepath.Join(t.TempDir(), "strict.yaml")
	yaml := "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: " + ns + "\nspec:\n  mtls:\n    mode: STRICT\n"
	if err := os.WriteFile(manifest, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"apply", []string{"apply", "-f", manifest}},
		{"dry-run=server", []string{"apply", "--dry-run=server", "-f", manifest}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := suite.Audit.Mark(t)
			stdout, stderr, code := kubectl(t, tc.args...)
			if code != 1 {
				t.Fatalf("kubectl %v: exit %d, want 1\nstdout: %s\nstderr: %s", tc.args, code, stdout, stderr)
			}
			ev := kubectlRecord(t, mark, "create", ns, "default")
			if ev.ResponseStatus.Code != 403 || ev.guardAnnotations()[webhook.AuditDecision] != webhook.OutcomeDenied {
				t.Fatalf("kubectl %v: the API server answered %d with the guard's decision %q, want 403 and %q",
					tc.args, ev.ResponseStatus.Code, ev.guardAnnotations()[webhook.AuditDecision], webhook.OutcomeDenied)
			}
			for _, want := range []string{
				"Deployment/legacy (1 pod: no-sidecar)",
				"Warning: namespace " + ns + " has no injection or ambient label",
			} {
				if !strings.Contains(stderr, want) {
					t.Errorf("kubectl stderr lacks %q:\n%s", want, stderr)
				}
			}
			for _, line := range strings.Split(stderr, "\n") {
				if strings.HasPrefix(line, "Warning: ") && len(line)-len("Warning: ") >= 120 {
					t.Errorf("warning longer than 119 characters: %q", line)
				}
			}
			if strings.Contains(stderr, "Deployment/web") {
				t.Errorf("kubectl stderr names the meshed Deployment/web:\n%s", stderr)
			}
		})
	}

	// Exempt the legacy pod: the same apply is admitted.
	_, stderr, code := kubectl(t, "label", "pod", "-n", ns, "legacy-5d8f7c9b4-k2", "mtls-guard.io/exempt=true")
	if code != 0 {
		t.Fatalf("kubectl label: exit %d: %s", code, stderr)
	}
	eventually(t, pa(ns, "default", "STRICT"), false)
	mark := suite.Audit.Mark(t)
	stdout, stderr, code := kubectl(t, "apply", "-f", manifest)
	if code != 0 || !strings.Contains(stdout, "peerauthentication.security.istio.io/default created") {
		t.Fatalf("kubectl apply after exemption: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	// The exemption is not silent: the warning and the audit record name
	// the exempt pod.
	const exempt = "legacy-5d8f7c9b4-k2"
	if !strings.Contains(stderr, "Warning: exempt:") || !strings.Contains(stderr, exempt) {
		t.Errorf("kubectl printed no warning naming the exempt pod:\n%s", stderr)
	}
	got := kubectlRecord(t, mark, "create", ns, "default").guardAnnotations()
	if got[webhook.AuditDecision] != webhook.OutcomeAllowed || got[webhook.AuditExempt] != ns+"/"+exempt {
		t.Errorf("audit annotations %v, want decision %q and %s %q", got, webhook.OutcomeAllowed, webhook.AuditExempt, ns+"/"+exempt)
	}
}

package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// kubectl runs the real kubectl binary built by `make testbin`.
func kubectl(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(suite.env.BinDir, "kubectl"), append([]string{"--kubeconfig", suite.adminConfig}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("running kubectl: %v", err)
	}
	return out.String(), errb.String(), code
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
			stdout, stderr, code := kubectl(t, tc.args...)
			if code != 1 {
				t.Fatalf("kubectl %v: exit %d, want 1\nstdout: %s\nstderr: %s", tc.args, code, stdout, stderr)
			}
			for _, want := range []string{
				`admission webhook "` + suite.webhookName + `" denied the request`,
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
	stdout, stderr, code := kubectl(t, "apply", "-f", manifest)
	if code != 0 || !strings.Contains(stdout, "peerauthentication.security.istio.io/default created") {
		t.Fatalf("kubectl apply after exemption: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

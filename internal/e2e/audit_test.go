package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtls-guard/mtls-guard/webhook"
)

// TestOverrideIsAudited: an override admits the change with a warning, and
// leaves an Event and audit annotations naming the workloads and reason.
func TestOverrideIsAudited(t *testing.T) {
	ns := namespace(t, "override", injected)
	create(t, pod(ns, "bare", nil, unmeshed))
	eventually(t, pa(ns, "probe", "STRICT"), true)

	const reason = "CHG-1234: bare retires tonight"
	manifest := filepath.Join(t.TempDir(), "override.yaml")
	yaml := "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: " + ns +
		"\n  annotations:\n    mtls-guard.io/override-reason: \"" + reason + "\"\nspec:\n  mtls:\n    mode: STRICT\n"
	if err := os.WriteFile(manifest, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	// The admin (system:masters) holds every verb, override included.
	mark := suite.Audit.Mark(t)
	stdout, stderr, code := kubectl(t, "apply", "-f", manifest)
	if code != 0 {
		t.Fatalf("override apply: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "Warning: override:") || !strings.Contains(stderr, "CHG-1234") {
		t.Errorf("kubectl printed no override warning:\n%s", stderr)
	}

	got := kubectlRecord(t, mark, "create", ns, "default").guardAnnotations()
	want := map[string]string{
		webhook.AuditDecision:       webhook.OutcomeOverridden,
		webhook.AuditUnmeshed:       ns + "/Pod/bare",
		webhook.AuditOverrideReason: reason,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("audit annotation %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}

	waitOverrideEvent(t, ns, reason)

	// Denials are audited too. (A second STRICT in ns would change
	// nothing now, so use a namespace without the override.)
	ns2 := namespace(t, "override-denied", injected)
	create(t, pod(ns2, "bare", nil, unmeshed))
	eventually(t, pa(ns2, "default", "STRICT"), true)
	got = createAs(suite.Admin, pa(ns2, "default", "STRICT")).mustDecide(t, webhook.OutcomeDenied)
	if got[webhook.AuditUnmeshed] != ns2+"/Pod/bare" {
		t.Errorf("denial audit annotations = %v", got)
	}
}

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mtls-guard/mtls-guard/webhook"
)

// auditEvent is the part of an audit.k8s.io/v1 Event the tests read.
type auditEvent struct {
	Verb      string `json:"verb"`
	Stage     string `json:"stage"`
	ObjectRef struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	Annotations map[string]string `json:"annotations"`
}

// auditAnnotations waits for the API server's audit record of a request on
// a policy and returns the guard's annotations, without the webhook prefix.
func auditAnnotations(t *testing.T, ns, name, verb string) map[string]string {
	t.Helper()
	prefix := suite.webhookName + "/"
	var found map[string]string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		f, err := os.Open(suite.env.AuditLog)
		if err != nil {
			return false, nil
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev auditEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Stage != "ResponseComplete" || ev.Verb != verb ||
				ev.ObjectRef.Namespace != ns || ev.ObjectRef.Name != name {
				continue
			}
			out := map[string]string{}
			for k, v := range ev.Annotations {
				if key, ok := strings.CutPrefix(k, prefix); ok {
					out[key] = v
				}
			}
			if len(out) > 0 {
				found = out
				return true, nil
			}
		}
		return false, sc.Err()
	})
	if err != nil {
		t.Fatalf("no audit record with the guard's annotations for %s %s/%s: %v", verb, ns, name, err)
	}
	return found
}

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
	stdout, stderr, code := kubectl(t, "apply", "-f", manifest)
	if code != 0 || !strings.Contains(stdout, "created") {
		t.Fatalf("override apply: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "Warning: override:") || !strings.Contains(stderr, "CHG-1234") {
		t.Errorf("kubectl printed no override warning:\n%s", stderr)
	}

	got := auditAnnotations(t, ns, "default", "create")
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

	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var list eventsv1.EventList
		if err := suite.admin.List(ctx, &list); err != nil {
			return false, err
		}
		for _, ev := range list.Items {
			if ev.Regarding.Name == ns && ev.Reason == webhook.ReasonOverridden && strings.Contains(ev.Note, reason) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s Event on namespace %s: %v", webhook.ReasonOverridden, ns, err)
	}

	// Denials are audited too. (A second STRICT in ns would change
	// nothing now, so use a namespace without the override.)
	ns2 := namespace(t, "override-denied", injected)
	create(t, pod(ns2, "bare", nil, unmeshed))
	eventually(t, pa(ns2, "default", "STRICT"), true)
	if err := suite.admin.Create(context.Background(), pa(ns2, "default", "STRICT")); !isDenial(err) {
		t.Fatalf("want denial, got %v", err)
	}
	if got := auditAnnotations(t, ns2, "default", "create"); got[webhook.AuditDecision] != webhook.OutcomeDenied || got[webhook.AuditUnmeshed] != ns2+"/Pod/bare" {
		t.Errorf("denial audit annotations = %v", got)
	}
}

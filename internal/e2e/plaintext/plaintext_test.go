package plaintext

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/demo/seed"
	"github.com/mtls-guard/mtls-guard/internal/policy"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/internal/testenv/istiometrics"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// web is the seed's destination as the guard names it.
const web = seed.Namespace + "/Deployment/" + seed.Server

// TestSeedStory is the seed: every pod of istio-demo is meshed and the
// caller is gone, so no pod list shows it; its one plaintext request, seen
// by Prometheus, makes `kubectl apply` of STRICT fail.
func TestSeedStory(t *testing.T) {
	useGuard(t, defaultFlags()...)
	// Wait until the guard's evidence has settled on the requests made
	// (increase() reads high right after a scrape): the seed's one, unless
	// -count repeats the suite.
	eventually(t, suite.Admin, strict(seed.Namespace, "default"), webhook.OutcomeDenied, time.Minute,
		deniedFor(web, fmt.Sprintf("Deployment/web: %d plaintext request", suite.webRequests), "in the last 10m (from: unknown)"))

	manifest := filepath.Join(t.TempDir(), "strict.yaml")
	if err := os.WriteFile(manifest, []byte(seed.StrictYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	mark := suite.Audit.Mark(t)
	r := kubectl(t, "apply", "-f", manifest)
	if r.code == 0 {
		t.Fatalf("kubectl apply of STRICT succeeded:\n%s%s", r.stdout, r.stderr)
	}
	ev, got := kubectlRecord(t, mark, "create", seed.Namespace, "default")
	if ev.ResponseStatus.Code != 403 || got[webhook.AuditDecision] != webhook.OutcomeDenied {
		t.Fatalf("the API server answered %d with the guard's decision %q; want 403 and %q", ev.ResponseStatus.Code, got[webhook.AuditDecision], webhook.OutcomeDenied)
	}
	// The denial is the evidence's alone: no unmeshed pod is left.
	if got[webhook.AuditPlaintext] != web || got[webhook.AuditUnmeshed] != "" {
		t.Errorf("audit annotations %v; want %s=%s and no unmeshed workloads", got, webhook.AuditPlaintext, web)
	}
	for _, want := range []string{"Deployment/web", "plaintext"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("kubectl's error lacks %q:\n%s", want, r.stderr)
		}
	}
}

// TestKnownSourceNamed: a caller that Istio names (in another namespace
// than its destination) is named in the denial.
func TestKnownSourceNamed(t *testing.T) {
	useGuard(t, defaultFlags()...)
	const ns = "shop"
	// Kept when the test ends: without a namespace controller a deleted
	// namespace would stay terminating and refuse a repeated run's pods.
	if err := suite.Admin.Create(context.Background(), nsObject(ns)); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	create(t, meshedDeploymentPod(ns, "orders"))
	curl := istiometrics.Workload{Namespace: "default", Name: "curl"}
	if err := seed.Request(context.Background(), suite.exporter, suite.prometheus.URL, curl, istiometrics.Workload{Namespace: ns, Name: "orders"}, 2); err != nil {
		t.Fatal(err)
	}
	const orders = ns + "/Deployment/orders"
	r := eventually(t, suite.Admin, strict(ns, "default"), webhook.OutcomeDenied, time.Minute, deniedFor(orders))
	if c, _ := plaintextCause(r.Err, orders); !strings.Contains(c.Message, "default/curl") {
		t.Errorf("the cause for %s does not name the caller default/curl: %q", orders, c.Message)
	}
	if got := r.mustDecide(t, webhook.OutcomeDenied); got[webhook.AuditPlaintext] != orders {
		t.Errorf("%s = %q, want %s", webhook.AuditPlaintext, got[webhook.AuditPlaintext], orders)
	}
}

// TestSelectorWithoutEvidence: STRICT for a workload without plaintext
// callers is admitted next to web, which has them.
func TestSelectorWithoutEvidence(t *testing.T) {
	useGuard(t, defaultFlags()...)
	create(t, meshedDeploymentPod(seed.Namespace, "api"))
	// The contrast: the same kind of policy for web is denied.
	eventually(t, suite.Admin, strictFor(seed.Namespace, "web-strict", "web"), webhook.OutcomeDenied, time.Minute, deniedFor(web))
	// Admitted once the guard sees api's pod (no "matches no counted pod"
	// warning), so that it was judged, not skipped.
	r := eventually(t, suite.Admin, strictFor(seed.Namespace, "api-strict", "api"), webhook.OutcomeAllowed, time.Minute, func(r request) bool {
		return !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "matches no counted pod") })
	})
	if got := r.mustDecide(t, webhook.OutcomeAllowed); got[webhook.AuditPlaintext] != "" {
		t.Errorf("admitted, yet %s = %q", webhook.AuditPlaintext, got[webhook.AuditPlaintext])
	}
}

// TestOverride: the seed's STRICT with an override reason is admitted for
// a user whom RBAC grants the verb override (deploy/'s ClusterRole
// mtls-guard-override, bound in istio-demo), and still denied without.
func TestOverride(t *testing.T) {
	useGuard(t, defaultFlags()...)
	const user = "istio-demo-admin"
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	create(t, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: seed.Namespace, Name: "pa-editor"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{policy.GroupName}, Resources: []string{"peerauthentications"},
			Verbs: []string{"get", "list", "create", "update", "patch", "delete"}}},
	})
	create(t, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: seed.Namespace, Name: "pa-editor"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pa-editor"},
		Subjects:   subject,
	})
	const reason = "CHG-12: the last plaintext caller moves into the mesh tonight"
	p := strict(seed.Namespace, "default")
	p.Annotations = map[string]string{policy.OverrideAnnotation: reason}
	c := suite.UserClient(t, user)

	got := eventuallyDecided(t, c, p, webhook.OutcomeDenied).mustDecide(t, webhook.OutcomeDenied)
	if got[webhook.AuditOverrideIgnored] == "" || got[webhook.AuditPlaintext] != web {
		t.Errorf("without the grant: audit annotations %v; want the override ignored and %s listed", got, web)
	}

	create(t, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: seed.Namespace, Name: "override"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: suite.OverrideRole(t)},
		Subjects:   subject,
	})
	got = eventuallyDecided(t, c, p, webhook.OutcomeOverridden).mustDecide(t, webhook.OutcomeOverridden)
	// The audit trail keeps what was overridden.
	if got[webhook.AuditOverrideReason] != reason || got[webhook.AuditPlaintext] != web {
		t.Errorf("with the grant: audit annotations %v; want the reason %q and %s listed", got, reason, web)
	}
}

// nsObject is an injection-enabled namespace.
func nsObject(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"istio-injection": "enabled"}}}
}

// TestWindowPassed: with a 20s window, a fresh plaintext request to web
// denies STRICT, and the same STRICT is admitted once the request has left
// the window.
func TestWindowPassed(t *testing.T) {
	useGuard(t, evidenceFlags(suite.prometheus.URL, "20s", "allow")...)
	if err := requestWeb(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := strict(seed.Namespace, "default")
	r := eventually(t, suite.Admin, p, webhook.OutcomeDenied, time.Minute, deniedFor(web))
	if c, _ := plaintextCause(r.Err, web); !strings.Contains(c.Message, "in the last 20s") {
		t.Errorf("the cause for %s does not state the 20s window: %q", web, c.Message)
	}
	// 20s of window, a scrape and a refresh: two minutes only bound a
	// failure.
	got := eventually(t, suite.Admin, p, webhook.OutcomeAllowed, 2*time.Minute, nil).mustDecide(t, webhook.OutcomeAllowed)
	if got[webhook.AuditPlaintext] != "" || got[webhook.AuditEvidence] != "" {
		t.Errorf("admitted with audit annotations %v; want neither plaintext workloads nor unavailable evidence", got)
	}
}

// TestPrometheusStopped: once Prometheus stops answering, the evidence is
// unavailable and --plaintext-unavailable decides the seed's STRICT,
// which the (empty) evidence admitted while Prometheus ran.
func TestPrometheusStopped(t *testing.T) {
	for _, tc := range []struct {
		setting, outcome string
	}{
		{"allow", webhook.OutcomeAllowedWithoutEvidence},
		{"deny", webhook.OutcomeDenied},
	} {
		t.Run(tc.setting, func(t *testing.T) {
			// A Prometheus of this test's own, started after the seed's
			// request: it has evidence of nothing.
			prom, err := testenv.StartPrometheus(context.Background(), t.TempDir(), []string{suite.target}, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := prom.Stop(); err != nil {
					t.Error(err)
				}
			})
			useGuard(t, evidenceFlags(prom.URL, longWindow, tc.setting)...)
			p := strict(seed.Namespace, "default")
			eventuallyDecided(t, suite.Admin, p, webhook.OutcomeAllowed)

			if err := prom.Stop(); err != nil {
				t.Fatal(err)
			}
			r := eventuallyDecided(t, suite.Admin, p, tc.outcome)
			got := r.mustDecide(t, tc.outcome)
			why, ok := strings.CutPrefix(got[webhook.AuditEvidence], "unavailable: ")
			if !ok || why == "" || got[webhook.AuditPlaintext] != "" {
				t.Fatalf("audit annotations %v; want %s saying why the evidence is unavailable, and no plaintext workloads", got, webhook.AuditEvidence)
			}
			// Admitted, the user is told the same reason (in a warning cut
			// to one kubectl line).
			says := func(w string) bool {
				w = strings.TrimSuffix(w, "…")
				return strings.HasPrefix(w, why) || strings.HasPrefix(why, w)
			}
			if tc.setting == "allow" && !slices.ContainsFunc(r.Warnings, says) {
				t.Errorf("admitted without a warning saying %q: %q", why, r.Warnings)
			}
		})
	}
}

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/policy"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// The users of the override tests. All may edit PeerAuthentications in
// the test's namespace; only the override grant differs.
const (
	granted   = "e2e-alice" // RoleBinding of deploy/'s ClusterRole mtls-guard-override
	ungranted = "e2e-bob"   // no grant
	elsewhere = "e2e-carol" // the override verb, for another policy's name only
)

// TestOverrideNeedsRBAC: the override annotation counts only for a user
// whom the API server's RBAC allows the verb override on
// peerauthentications.mtls-guard.io for that policy. The guard asks with
// a SubjectAccessReview as its own ServiceAccount, with deploy/'s RBAC.
func TestOverrideNeedsRBAC(t *testing.T) {
	ns := namespace(t, "override-rbac", injected)
	create(t, pod(ns, "legacy", nil, unmeshed))
	grantOverrides(t, ns)

	const reason = "CHG-7: legacy callers are being migrated"
	strict := pa(ns, "default", "STRICT")
	strict.Annotations = map[string]string{policy.OverrideAnnotation: reason}

	for _, tc := range []struct{ name, user string }{
		{"a user without the grant is denied", ungranted},
		{"a grant for another policy does not count", elsewhere},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := suite.UserClient(t, tc.user)
			eventuallyAs(t, c, strict, webhook.OutcomeDenied)
			got := createAs(c, strict).mustDecide(t, webhook.OutcomeDenied)
			ignored := got[webhook.AuditOverrideIgnored]
			if !strings.Contains(ignored, `"`+tc.user+`"`) || !strings.Contains(ignored, "mtls-guard-override") {
				t.Errorf("%s = %q, want why the override of %s did not count", webhook.AuditOverrideIgnored, ignored, tc.user)
			}
			if got[webhook.AuditOverrideReason] != "" || got[webhook.AuditUnmeshed] != ns+"/Pod/legacy" {
				t.Errorf("audit annotations %v, want no override reason and %s/Pod/legacy listed", got, ns)
			}
		})
	}

	t.Run("a user with the grant overrides", func(t *testing.T) {
		c := suite.UserClient(t, granted)
		eventuallyAs(t, c, strict, webhook.OutcomeOverridden)
		got := createAs(c, strict).mustDecide(t, webhook.OutcomeOverridden)
		if got[webhook.AuditOverrideReason] != reason || got[webhook.AuditUnmeshed] != ns+"/Pod/legacy" || got[webhook.AuditOverrideIgnored] != "" {
			t.Errorf("audit annotations %v, want the reason %q and %s/Pod/legacy", got, reason, ns)
		}
		waitOverrideEvent(t, ns, reason, client.InNamespace("default"))
	})
}

// TestReplaceForceAfterOverride is the lagging-cache walk-around through
// the real API server: a STRICT policy that a granted user overrode is
// replaced with `kubectl replace --force` (a DELETE, then a CREATE within
// the informer's lag) by a user without the grant. The CREATE is decided
// with no same-named policy before it, so it is denied.
func TestReplaceForceAfterOverride(t *testing.T) {
	ns := namespace(t, "replace-force", injected)
	create(t, pod(ns, "legacy", nil, unmeshed))
	grantOverrides(t, ns)
	strict := pa(ns, "default", "STRICT")
	strict.Annotations = map[string]string{policy.OverrideAnnotation: "CHG-8"}
	alice := suite.UserClient(t, granted)
	eventuallyAs(t, alice, strict, webhook.OutcomeOverridden)
	createAs(alice, strict).mustDecide(t, webhook.OutcomeOverridden)
	eventuallyAs(t, suite.UserClient(t, ungranted), strict, webhook.OutcomeDenied)

	manifest := filepath.Join(t.TempDir(), "strict.yaml")
	yaml := "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: " + ns +
		"\n  annotations:\n    " + policy.OverrideAnnotation + ": CHG-8\nspec:\n  mtls:\n    mode: STRICT\n"
	if err := os.WriteFile(manifest, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	mark := suite.Audit.Mark(t)
	stdout, stderr, code := kubectl(t, "--as", ungranted, "replace", "--force", "-f", manifest)
	if code == 0 {
		t.Errorf("kubectl replace --force as %s succeeded:\n%s%s", ungranted, stdout, stderr)
	}
	del := kubectlRecord(t, mark, "delete", ns, "default")
	if del.ResponseStatus.Code != 200 || del.guardAnnotations()[webhook.AuditDecision] != webhook.OutcomeAllowed {
		t.Fatalf("the DELETE of replace --force: %d, decision %q; want it admitted", del.ResponseStatus.Code, del.guardAnnotations()[webhook.AuditDecision])
	}
	cr := kubectlRecord(t, mark, "create", ns, "default")
	if got := cr.guardAnnotations(); cr.ResponseStatus.Code != 403 || got[webhook.AuditDecision] != webhook.OutcomeDenied || got[webhook.AuditOverrideIgnored] == "" {
		t.Fatalf("the CREATE of replace --force: %d, annotations %v; want 403, denied, the override ignored", cr.ResponseStatus.Code, got)
	}
}

// grantOverrides lets every override test user edit PeerAuthentications in
// ns, binds deploy/'s mtls-guard-override to the granted user there, and
// grants the override verb for another policy's name to elsewhere.
func grantOverrides(t *testing.T, ns string) {
	t.Helper()
	user := func(name string) rbacv1.Subject {
		return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
	}
	create(t, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pa-editor"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{policy.GroupName}, Resources: []string{"peerauthentications"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"},
		}},
	})
	create(t, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pa-editors"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pa-editor"},
		Subjects:   []rbacv1.Subject{user(granted), user(ungranted), user(elsewhere)},
	})
	create(t, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "override"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: suite.OverrideRole(t)},
		Subjects:   []rbacv1.Subject{user(granted)},
	})
	create(t, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "override-other"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{webhook.OverrideGroup}, Resources: []string{webhook.OverrideResource},
			Verbs: []string{webhook.OverrideVerb}, ResourceNames: []string{"other"},
		}},
	})
	create(t, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "override-other"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "override-other"},
		Subjects:   []rbacv1.Subject{user(elsewhere)},
	})
}

// waitOverrideEvent waits for the guard's Event, among those listed with
// opts, that an override of a policy in ns with reason was admitted.
func waitOverrideEvent(t *testing.T, ns, reason string, opts ...client.ListOption) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var list eventsv1.EventList
		if err := suite.Admin.List(ctx, &list, opts...); err != nil {
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
}

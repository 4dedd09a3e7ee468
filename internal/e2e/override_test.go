package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/mtls-guard/mtls-guard/internal/policy"
	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// TestOverrideGroups runs a second guard with --override-groups behind its
// own webhook configuration, limited to one namespace, and applies an
// overridden STRICT policy as two envtest users whose groups the API server
// puts in the AdmissionRequest's userInfo: the member's override counts,
// the other's is ignored and the denial says why. (The shared guard, with
// no --override-groups, honours both overrides, so the second guard's
// answer decides.)
func TestOverrideGroups(t *testing.T) {
	ctx := context.Background()
	const label = "mtls-guard-e2e/override-groups"
	ns := namespace(t, "override-groups", map[string]string{"istio-injection": "enabled", label: "true"})
	create(t, pod(ns, "legacy", nil, unmeshed))

	// Both users may edit PeerAuthentications in the namespace; only the
	// groups differ.
	create(t, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pa-editor"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{policy.GroupName}, Resources: []string{"peerauthentications"},
			Verbs: []string{"get", "list", "create", "update", "delete"},
		}},
	})
	create(t, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pa-editors"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pa-editor"},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "mesh-admins"},
			{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "app-devs"},
		},
	})
	alice := userClient(t, "e2e-alice", "mesh-admins")
	bob := userClient(t, "e2e-bob", "app-devs")

	g, err := startGuard(ctx, testenv.GuardUser, []string{"--override-groups", "platform-sre, mesh-admins"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.stop)
	registerScopedWebhook(t, g, "override-groups.e2e.mtls-guard.io", label)

	strict := pa(ns, "default", "STRICT")
	strict.Annotations = map[string]string{policy.OverrideAnnotation: "CHG-7: legacy callers are being migrated"}
	const note = `The mtls-guard.io/override-reason annotation is ignored: user "e2e-bob" is not in an override group (platform-sre, mesh-admins).`

	// Until the second guard is registered and has seen the pod, bob's
	// dry run passes on the shared guard's override.
	var last error
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		last = bob.Create(ctx, strict.DeepCopy(), client.DryRunAll)
		return isDenial(last), nil
	})
	if err != nil {
		t.Fatalf("bob's overridden STRICT was never denied: %v (last answer: %v)", err, last)
	}
	for _, want := range []string{`"override-groups.e2e.mtls-guard.io" denied the request`, "Pod/legacy (1 pod: no-sidecar)", note} {
		if !strings.Contains(last.Error(), want) {
			t.Errorf("bob's denial lacks %q:\n%v", want, last)
		}
	}
	if err := bob.Create(ctx, strict.DeepCopy()); !isDenial(err) || !strings.Contains(err.Error(), note) {
		t.Fatalf("bob's real create: want the denial with the note, got %v", err)
	}
	if err := alice.Create(ctx, strict.DeepCopy()); err != nil {
		t.Fatalf("alice is in mesh-admins; her override must count: %v", err)
	}
}

// userClient is a client for a new envtest user in the given groups.
func userClient(t *testing.T, name string, groups ...string) client.Client {
	t.Helper()
	u, err := suite.env.AddUser(envtest.User{Name: name, Groups: groups}, suite.env.Config)
	if err != nil {
		t.Fatalf("adding envtest user %s: %v", name, err)
	}
	c, err := client.New(u.Config(), client.Options{Scheme: server.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// registerScopedWebhook registers a copy of deploy/'s webhook configuration
// that calls g for the namespaces labelled label=true only, and removes it
// when the test ends.
func registerScopedWebhook(t *testing.T, g *guard, name, label string) {
	t.Helper()
	ctx := context.Background()
	var list admissionregistrationv1.ValidatingWebhookConfigurationList
	if err := suite.admin.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	var vwc *admissionregistrationv1.ValidatingWebhookConfiguration
	for i := range list.Items {
		for _, w := range list.Items[i].Webhooks {
			if w.Name == suite.webhookName {
				vwc = list.Items[i].DeepCopy()
			}
		}
	}
	if vwc == nil || len(vwc.Webhooks) != 1 {
		t.Fatalf("no webhook configuration holds %s", suite.webhookName)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", g.port, webhook.Path)
	vwc.ObjectMeta = metav1.ObjectMeta{Name: name}
	w := &vwc.Webhooks[0]
	w.Name = name
	w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: g.bundle.CACert}
	w.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{label: "true"}}
	create(t, vwc)
	t.Cleanup(func() {
		if err := suite.admin.Delete(context.Background(), vwc); err != nil {
			t.Errorf("removing webhook configuration %s: %v", name, err)
		}
	})
}

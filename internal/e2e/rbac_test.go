package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/policy"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// grant is one permission deploy/ gives the guard's ServiceAccount.
type grant struct {
	namespace string // "" for cluster-wide
	rule      rbacv1.PolicyRule
}

// guardGrants are the rules of every role deploy/ binds to the guard's
// ServiceAccount, with the scope of the binding.
func guardGrants(t *testing.T) []grant {
	t.Helper()
	isGuard := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Namespace == guardNamespace && s.Name == "mtls-guard"
		})
	}
	clusterRoles, roles := map[string]*rbacv1.ClusterRole{}, map[string]*rbacv1.Role{}
	for _, o := range suite.Deploy.RBAC {
		switch r := o.(type) {
		case *rbacv1.ClusterRole:
			clusterRoles[r.Name] = r
		case *rbacv1.Role:
			roles[r.Namespace+"/"+r.Name] = r
		}
	}
	var out []grant
	add := func(ns string, ref rbacv1.RoleRef) {
		var rules []rbacv1.PolicyRule
		switch ref.Kind {
		case "ClusterRole":
			if r := clusterRoles[ref.Name]; r != nil {
				rules = r.Rules
			}
		case "Role":
			if r := roles[ns+"/"+ref.Name]; r != nil {
				rules = r.Rules
			}
		}
		if rules == nil {
			t.Fatalf("deploy/ binds the guard to %s %s, which it does not ship", ref.Kind, ref.Name)
		}
		for _, r := range rules {
			out = append(out, grant{namespace: ns, rule: r})
		}
	}
	for _, o := range suite.Deploy.RBAC {
		switch b := o.(type) {
		case *rbacv1.ClusterRoleBinding:
			if isGuard(b.Subjects) {
				add("", b.RoleRef)
			}
		case *rbacv1.RoleBinding:
			if isGuard(b.Subjects) {
				add(b.Namespace, b.RoleRef)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("deploy/ grants the guard's ServiceAccount nothing")
	}
	return out
}

// allows reports whether the grant covers a request.
func (g grant) allows(verb, group, resource, namespace, name string) bool {
	in := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	return (g.namespace == "" || g.namespace == namespace) && in(g.rule.Verbs, verb) && in(g.rule.APIGroups, group) &&
		in(g.rule.Resources, resource) && (len(g.rule.ResourceNames) == 0 || slices.Contains(g.rule.ResourceNames, name))
}

// TestGuardUsesOnlyShippedRBAC reads the API server's audit log: every
// request the guard made as its ServiceAccount was allowed, and covered,
// verb and scope, by a rule deploy/ binds to it; and every resource those
// rules name was used.
func TestGuardUsesOnlyShippedRBAC(t *testing.T) {
	ctx := context.Background()
	// Make the guard use every permission: a denial records an Event, an
	// override asks for a SubjectAccessReview, a scrape of /metrics for a
	// TokenReview (and another SubjectAccessReview). The self-check read
	// the webhook configuration at start.
	ns := namespace(t, "rbac", injected)
	create(t, pod(ns, "bare", nil, unmeshed))
	eventually(t, pa(ns, "default", "STRICT"), true)
	createAs(suite.Admin, pa(ns, "default", "STRICT")).mustDecide(t, webhook.OutcomeDenied)
	override := pa(ns, "default", "STRICT")
	override.Annotations = map[string]string{policy.OverrideAnnotation: "RBAC-1"}
	createAs(suite.Admin, override, client.DryRunAll).mustDecide(t, webhook.OutcomeOverridden)
	scrapeUntil(t, suite.guard, metricsReaderToken(t), http.StatusOK)

	grants := guardGrants(t)
	granted := sets.New[string]()
	for _, g := range grants {
		for _, grp := range g.rule.APIGroups {
			for _, res := range g.rule.Resources {
				granted.Insert(grp + "/" + res)
			}
		}
	}
	var used sets.Set[string]
	var refused, uncovered []string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		used, refused, uncovered = sets.New[string](), nil, nil
		for _, ev := range suite.Audit.All(t) {
			if ev.User.Username != testenv.GuardUser || ev.ObjectRef == nil {
				continue
			}
			r := ev.ObjectRef
			key := r.APIGroup + "/" + r.Resource
			used.Insert(key)
			what := fmt.Sprintf("%s %s %s/%s (HTTP %d)", ev.Verb, key, r.Namespace, r.Name, ev.ResponseStatus.Code)
			if ev.ResponseStatus.Code == 401 || ev.ResponseStatus.Code == 403 {
				refused = append(refused, what)
			}
			if !slices.ContainsFunc(grants, func(g grant) bool { return g.allows(ev.Verb, r.APIGroup, r.Resource, r.Namespace, r.Name) }) {
				uncovered = append(uncovered, what)
			}
		}
		// The Event and the reviews are written asynchronously; wait.
		return used.HasAll("events.k8s.io/events", "authentication.k8s.io/tokenreviews", "authorization.k8s.io/subjectaccessreviews"), nil
	})
	if err != nil {
		t.Fatalf("the guard never used all it was granted (used: %v): %v", sorted(used), err)
	}
	if len(refused) > 0 {
		t.Errorf("the API server refused the guard: %v; the shipped RBAC is not enough", refused)
	}
	if len(uncovered) > 0 {
		t.Errorf("the guard made requests no shipped rule covers (verb and scope): %v", uncovered)
	}
	if unused := granted.Difference(used); unused.Len() > 0 {
		t.Errorf("deploy/ grants resources the guard never used: %v", sorted(unused))
	}
	t.Logf("the guard used exactly %s", strings.Join(sorted(used), ", "))
}

// TestGuardRBACScope asks the API server, as the guard's ServiceAccount
// (impersonated), what it may do: every permission the guard needs, and
// nothing around it.
func TestGuardRBACScope(t *testing.T) {
	sa := suite.UserClient(t, testenv.GuardUser, testenv.GuardGroups...)
	type attrs = authorizationv1.ResourceAttributes
	for _, tc := range []struct {
		attrs attrs
		want  bool
	}{
		// What the informers, the reviews, the self-check and the Events need.
		{attrs{Verb: "list", Resource: "pods"}, true},
		{attrs{Verb: "watch", Resource: "pods"}, true},
		{attrs{Verb: "list", Resource: "namespaces"}, true},
		{attrs{Verb: "watch", Resource: "namespaces"}, true},
		{attrs{Verb: "list", Group: "apps", Resource: "replicasets"}, true},
		{attrs{Verb: "watch", Group: "apps", Resource: "replicasets"}, true},
		{attrs{Verb: "list", Group: "batch", Resource: "jobs"}, true},
		{attrs{Verb: "watch", Group: "batch", Resource: "jobs"}, true},
		{attrs{Verb: "list", Group: policy.GroupName, Resource: "peerauthentications"}, true},
		{attrs{Verb: "watch", Group: policy.GroupName, Resource: "peerauthentications"}, true},
		{attrs{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews"}, true},
		{attrs{Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews"}, true},
		{attrs{Verb: "get", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: "mtls-guard"}, true},
		{attrs{Verb: "create", Group: "events.k8s.io", Resource: "events", Namespace: "default"}, true},
		{attrs{Verb: "patch", Group: "events.k8s.io", Resource: "events", Namespace: "default"}, true},
		// Nothing more.
		{attrs{Verb: "get", Resource: "pods", Namespace: "default"}, false},
		{attrs{Verb: "get", Resource: "namespaces", Name: "default"}, false},
		{attrs{Verb: "delete", Resource: "pods", Namespace: "default"}, false},
		{attrs{Verb: "get", Group: "apps", Resource: "replicasets", Namespace: "default"}, false},
		{attrs{Verb: "get", Group: policy.GroupName, Resource: "peerauthentications", Namespace: "default"}, false},
		{attrs{Verb: "create", Group: policy.GroupName, Resource: "peerauthentications", Namespace: "default"}, false},
		{attrs{Verb: "update", Group: policy.GroupName, Resource: "peerauthentications", Namespace: "default"}, false},
		{attrs{Verb: webhook.OverrideVerb, Group: webhook.OverrideGroup, Resource: webhook.OverrideResource, Namespace: "default", Name: "default"}, false},
		// The arrivals webhook (on by default) puts its Events on pods'
		// and workloads' own namespaces.
		{attrs{Verb: "create", Group: "events.k8s.io", Resource: "events", Namespace: "istio-demo"}, true},
		{attrs{Verb: "patch", Group: "events.k8s.io", Resource: "events", Namespace: guardNamespace}, true},
		{attrs{Verb: "create", Resource: "events", Namespace: "default"}, false},
		{attrs{Verb: "list", Group: "events.k8s.io", Resource: "events", Namespace: "default"}, false},
		{attrs{Verb: "delete", Group: "events.k8s.io", Resource: "events", Namespace: "default"}, false},
		{attrs{Verb: "get", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: "other"}, false},
		{attrs{Verb: "list", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations"}, false},
		{attrs{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: "mtls-guard"}, false},
		{attrs{Verb: "get", Resource: "secrets", Namespace: guardNamespace}, false},
		{attrs{Verb: "list", Resource: "secrets"}, false},
		{attrs{Verb: "create", Group: "coordination.k8s.io", Resource: "leases", Namespace: guardNamespace}, false},
		{attrs{Verb: "create", Resource: "serviceaccounts/token", Namespace: guardNamespace}, false},
	} {
		a := tc.attrs
		name := fmt.Sprintf("%s %s/%s %s/%s", a.Verb, a.Group, a.Resource, a.Namespace, a.Name)
		t.Run(name, func(t *testing.T) {
			if strings.Contains(a.Resource, "/") {
				a.Resource, a.Subresource, _ = strings.Cut(a.Resource, "/")
			}
			review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a}}
			if err := sa.Create(context.Background(), review); err != nil {
				t.Fatal(err)
			}
			if review.Status.Allowed != tc.want {
				t.Errorf("allowed = %v, want %v (%s)", review.Status.Allowed, tc.want, review.Status.Reason)
			}
		})
	}
	t.Run("get /metrics", func(t *testing.T) {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"}}}
		if err := sa.Create(context.Background(), review); err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed {
			t.Error("the guard may read /metrics; it needs no such right")
		}
	})
}

// serviceAccountToken mints a token for a ServiceAccount in the guard's
// namespace through the TokenRequest API, creating the account.
func serviceAccountToken(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: guardNamespace, Name: name}}
	if err := suite.Admin.Create(ctx, sa); client.IgnoreAlreadyExists(err) != nil {
		t.Fatalf("creating ServiceAccount %s: %v", name, err)
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}
	if err := suite.Admin.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatalf("requesting a token for %s: %v", name, err)
	}
	return tr.Status.Token
}

// metricsReaderToken is a token of a ServiceAccount bound to deploy/'s
// ClusterRole mtls-guard-metrics-reader.
func metricsReaderToken(t *testing.T) string {
	t.Helper()
	const name = "metrics-reader"
	token := serviceAccountToken(t, name)
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "mtls-guard-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: guardNamespace, Name: name}},
	}
	if err := suite.Admin.Create(context.Background(), b); client.IgnoreAlreadyExists(err) != nil {
		t.Fatalf("binding the metrics reader: %v", err)
	}
	return token
}

func ptr[T any](v T) *T { return &v }

func sorted(s sets.Set[string]) []string {
	out := s.UnsortedList()
	sort.Strings(out)
	return out
}

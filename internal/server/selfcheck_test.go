package server

import (
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/manifests"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
)

// aksEnforcer rewrites a namespaceSelector the way AKS's admissions
// enforcer does for a webhook configuration without the annotation
// admissions.enforcer/disabled: "true".
func aksEnforcer(sel *metav1.LabelSelector) *metav1.LabelSelector {
	sel = sel.DeepCopy()
	if sel == nil {
		sel = &metav1.LabelSelector{}
	}
	sel.MatchExpressions = append(sel.MatchExpressions,
		metav1.LabelSelectorRequirement{Key: "control-plane", Operator: metav1.LabelSelectorOpDoesNotExist},
		metav1.LabelSelectorRequirement{Key: "kubernetes.azure.com/managedby", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"aks"}},
	)
	return sel
}

// renderedWebhook is the ValidatingWebhookConfiguration deploy/overlays/aks
// installs.
func renderedWebhook(t *testing.T) *admissionregistrationv1.ValidatingWebhookConfiguration {
	t.Helper()
	objs, err := manifests.Render("../../deploy/overlays/aks")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if vwc, ok := o.(*admissionregistrationv1.ValidatingWebhookConfiguration); ok {
			return vwc
		}
	}
	t.Fatal("deploy/overlays/aks renders no ValidatingWebhookConfiguration")
	return nil
}

func TestConfigProblems(t *testing.T) {
	opts, err := engine.NewOptions("aks-istio-system", mesh.Native, strings.Split(engine.DefaultExcludedNamespaces, ","), "mtls-guard", true)
	if err != nil {
		t.Fatal(err)
	}
	ns := func(name string, labels map[string]string) corev1.Namespace {
		return corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	}
	namespaces := []corev1.Namespace{
		ns("aks-istio-system", map[string]string{"kubernetes.azure.com/managedby": "aks"}),
		ns("kube-system", map[string]string{"kubernetes.azure.com/managedby": "aks", "control-plane": "true"}),
		ns("mtls-guard", nil),
		ns("istio-demo", map[string]string{"istio.io/rev": "asm-1-26"}),
		ns("payments", map[string]string{"control-plane": "tenant"}),
	}
	for _, tc := range []struct {
		name   string
		mutate func(*admissionregistrationv1.ValidatingWebhookConfiguration)
		want   []string // one substring per problem, in order
	}{
		{name: "as deployed", mutate: func(*admissionregistrationv1.ValidatingWebhookConfiguration) {}},
		{
			name: "AKS's admissions enforcer rewrote the selector",
			mutate: func(v *admissionregistrationv1.ValidatingWebhookConfiguration) {
				v.Webhooks[0].NamespaceSelector = aksEnforcer(v.Webhooks[0].NamespaceSelector)
			},
			want: []string{"keeps PeerAuthentications in aks-istio-system, payments from the guard"},
		},
		{
			name: "DELETE dropped from the rules",
			mutate: func(v *admissionregistrationv1.ValidatingWebhookConfiguration) {
				v.Webhooks[0].Rules[0].Operations = []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
			},
			want: []string{"is not called for DELETE of PeerAuthentications"},
		},
		{
			name: "an objectSelector",
			mutate: func(v *admissionregistrationv1.ValidatingWebhookConfiguration) {
				v.Webhooks[0].ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
			},
			want: []string{"has an objectSelector"},
		},
		{
			name: "no rule for PeerAuthentications",
			mutate: func(v *admissionregistrationv1.ValidatingWebhookConfiguration) {
				v.Webhooks[0].Rules[0].Resources = []string{"authorizationpolicies"}
			},
			want: []string{"no webhook has a rule for security.istio.io peerauthentications"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vwc := renderedWebhook(t)
			tc.mutate(vwc)
			got := configProblems(vwc, namespaces, opts)
			if len(got) != len(tc.want) {
				t.Fatalf("problems %q, want %d: %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %q lacks %q", got[i], w)
				}
			}
		})
	}
}

// TestRenderedWebhookDisablesAKSEnforcer: deploy/ annotates its webhook
// configuration so that AKS's admissions enforcer leaves it alone.
func TestRenderedWebhookDisablesAKSEnforcer(t *testing.T) {
	if got := renderedWebhook(t).Annotations["admissions.enforcer/disabled"]; got != "true" {
		t.Fatalf("admissions.enforcer/disabled = %q, want \"true\"", got)
	}
}

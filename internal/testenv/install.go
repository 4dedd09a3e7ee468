package testenv

import (
	"context"
	"fmt"
	neturl "net/url"
	"path/filepath"
	"time"

	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/manifests"
)

// GuardNamespace is deploy/'s namespace, the guard's own; RootNamespace
// is Istio's root namespace, as the guard runs by default.
const (
	GuardNamespace = "mtls-guard"
	RootNamespace  = "istio-system"
)

// GuardUser is the user the guard authenticates as: the ServiceAccount of
// deploy/, so that the shipped RBAC is what it runs with.
const GuardUser = "system:serviceaccount:mtls-guard:mtls-guard"

// GuardGroups are the groups the API server gives that ServiceAccount.
var GuardGroups = []string{"system:serviceaccounts", "system:serviceaccounts:mtls-guard", "system:authenticated"}

// Deploy is what the tests and the demo take from deploy/.
type Deploy struct {
	Webhook *admissionregistrationv1.ValidatingWebhookConfiguration
	// ClusterRole is the guard's own ClusterRole (the one its
	// ClusterRoleBinding of the same name binds).
	ClusterRole string
	// RBAC is every RBAC object deploy/ ships, as installed.
	RBAC []client.Object
}

// InstallRBAC renders deploy/ and creates its Namespace, ServiceAccount
// and every RBAC object it ships: ClusterRoles, ClusterRoleBindings, and
// Roles and RoleBindings in whatever namespace they name (Events are
// written through a Role in "default").
func InstallRBAC(ctx context.Context, c client.Client) (*Deploy, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	objs, err := manifests.Render(filepath.Join(root, "deploy"))
	if err != nil {
		return nil, fmt.Errorf("rendering deploy/: %w", err)
	}
	ns, err := manifests.One[*corev1.Namespace](objs)
	if err != nil {
		return nil, err
	}
	sa, err := manifests.One[*corev1.ServiceAccount](objs)
	if err != nil {
		return nil, err
	}
	vwc, err := manifests.One[*admissionregistrationv1.ValidatingWebhookConfiguration](objs)
	if err != nil {
		return nil, err
	}
	// The guard's own role is the one bound by the binding that shares
	// the ServiceAccount's name.
	binding, err := manifests.Named[*rbacv1.ClusterRoleBinding](objs, "", sa.Name)
	if err != nil {
		return nil, fmt.Errorf("deploy/ has no ClusterRoleBinding for the guard: %w", err)
	}
	var rbac []client.Object
	for _, o := range manifests.All[*rbacv1.ClusterRole](objs) {
		rbac = append(rbac, o)
	}
	for _, o := range manifests.All[*rbacv1.Role](objs) {
		rbac = append(rbac, o)
	}
	for _, o := range manifests.All[*rbacv1.ClusterRoleBinding](objs) {
		rbac = append(rbac, o)
	}
	for _, o := range manifests.All[*rbacv1.RoleBinding](objs) {
		rbac = append(rbac, o)
	}
	for _, o := range append([]client.Object{ns, sa}, rbac...) {
		// A fresh API server creates "default" shortly after it is ready;
		// a Role there waits for it.
		var last error
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			last = c.Create(ctx, o)
			return last == nil, client.IgnoreNotFound(last)
		})
		if err != nil {
			if last != nil {
				err = last
			}
			return nil, fmt.Errorf("creating %T %s from deploy/: %w", o, client.ObjectKeyFromObject(o), err)
		}
	}
	return &Deploy{Webhook: vwc, ClusterRole: binding.RoleRef.Name, RBAC: rbac}, nil
}

// RegisterWebhook installs deploy/'s webhook configuration with only the
// client config rewritten to the guard at url (each webhook keeps its own
// path), then waits until the API server calls the guard: a server-side
// dry run of STRICT next to an unmeshed pod in a probe namespace is denied.
func RegisterWebhook(ctx context.Context, c client.Client, d *Deploy, url string, caBundle []byte) error {
	base, err := neturl.Parse(url)
	if err != nil {
		return fmt.Errorf("parsing the guard's URL: %w", err)
	}
	vwc := d.Webhook.DeepCopy()
	for i := range vwc.Webhooks {
		u := *base
		if svc := vwc.Webhooks[i].ClientConfig.Service; svc != nil && svc.Path != nil {
			u.Path = *svc.Path
		}
		hook := u.String()
		vwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &hook, CABundle: caBundle}
	}
	if err := c.Create(ctx, vwc); err != nil {
		return fmt.Errorf("registering the webhook configuration: %w", err)
	}
	const probe = "mtls-guard-probe"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: probe}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating probe namespace: %w", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: probe, Name: "unmeshed"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
	if err := c.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating probe pod: %w", err)
	}
	strict := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: probe, Name: "probe"}}
	strict.Spec.Mtls = &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_STRICT}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		last = c.Create(ctx, strict.DeepCopy(), client.DryRunAll)
		return last != nil && apierrors.IsForbidden(last), nil
	})
	if err != nil {
		return fmt.Errorf("the API server never called the guard: %w (last answer: %v)", err, last)
	}
	return nil
}

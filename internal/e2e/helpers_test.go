package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	apisecurity "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/webhook"
)

// podKind says how a test pod joins the mesh.
type podKind int

const (
	unmeshed podKind = iota
	native
)

// createNamespace creates a namespace unless it exists.
func createNamespace(ctx context.Context, name string, labels map[string]string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := suite.Admin.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// namespace creates a fresh namespace for one test.
func namespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	if err := createNamespace(context.Background(), name, labels); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}

func pod(ns, name string, labels map[string]string, kind podKind) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
	if kind == native {
		always := corev1.ContainerRestartPolicyAlways
		p.Spec.InitContainers = []corev1.Container{{Name: "istio-proxy", Image: "istio/proxyv2", RestartPolicy: &always}}
	}
	return p
}

// deploymentPod is a pod of Deployment name through a ReplicaSet the
// cluster does not hold, as the engine infers it from pod-template-hash.
func deploymentPod(ns, deploy, suffix string, kind podKind) *corev1.Pod {
	const hash = "5d8f7c9b4"
	p := pod(ns, deploy+"-"+hash+"-"+suffix, map[string]string{"app": deploy, "pod-template-hash": hash}, kind)
	yes := true
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: deploy + "-" + hash, UID: "00000000-0000-0000-0000-000000000001", Controller: &yes}}
	return p
}

func pa(ns, name, mode string) *securityv1.PeerAuthentication {
	p := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	p.Spec.Mtls = &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_Mode(apisecurity.PeerAuthentication_MutualTLS_Mode_value[mode])}
	return p
}

// paV1beta1 is the same policy as an unstructured v1beta1 object.
func paV1beta1(ns, name, mode string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "security.istio.io/v1beta1",
		"kind":       "PeerAuthentication",
		"metadata":   map[string]any{"namespace": ns, "name": name},
		"spec":       map[string]any{"mtls": map[string]any{"mode": mode}},
	}}
	return u
}

// carveOut creates, in the empty namespace ns, a namespace-wide STRICT
// and a PERMISSIVE carve-out for app=web, then a pod of the meshed
// Deployment web and one of the unmeshed Deployment legacy, named with
// these suffixes. It returns the carve-out.
func carveOut(t *testing.T, ns, webSuffix, legacySuffix string) *securityv1.PeerAuthentication {
	t.Helper()
	create(t, pa(ns, "default", "STRICT"))
	carve := pa(ns, "web-permissive", "PERMISSIVE")
	carve.Spec.Selector = selector("app", "web")
	create(t, carve)
	create(t, deploymentPod(ns, "web", webSuffix, native))
	create(t, deploymentPod(ns, "legacy", legacySuffix, unmeshed))
	return carve
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := suite.Admin.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
}

// createAs creates obj as c and returns the request for the audit log.
func createAs(c client.Client, obj client.Object, opts ...client.CreateOption) request {
	return call(func(ctx context.Context) error { return c.Create(ctx, obj.DeepCopyObject().(client.Object), opts...) })
}

func deletePod(t *testing.T, ns, name string) {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := suite.Admin.Delete(context.Background(), p, client.GracePeriodSeconds(0)); err != nil {
		t.Fatalf("deleting pod %s/%s: %v", ns, name, err)
	}
}

// eventually polls until a server-side dry run of obj, by the admin, is
// decided by the guard as wanted: denied (403 and the guard's audit
// decision "denied") or allowed (no error and the decision "allowed").
// The guard's informer sees a change a few milliseconds after the API
// server does; this waits for that without sleeping a fixed time.
func eventually(t *testing.T, obj client.Object, wantDenied bool) error {
	t.Helper()
	want := webhook.OutcomeAllowed
	if wantDenied {
		want = webhook.OutcomeDenied
	}
	return eventuallyAs(t, suite.Admin, obj, want).Err
}

// eventuallyAs polls until a server-side dry run of obj by c is decided
// as outcome, and returns that request. A 403 of RBAC (the guard was not
// asked) is waited out too: new RBAC bindings take a moment to count.
func eventuallyAs(t *testing.T, c client.Client, obj client.Object, outcome string) request {
	t.Helper()
	var last request
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		last = createAs(c, obj, client.DryRunAll)
		if last.Err != nil && !apierrors.IsForbidden(last.Err) {
			return false, last.Err // not an answer of the guard's
		}
		return last.decidedAs(t, outcome), nil
	})
	if err != nil {
		t.Fatalf("waiting for the guard to decide %q for %s/%s: %v (last answer: %v)", outcome, obj.GetNamespace(), obj.GetName(), err, last.Err)
	}
	return last
}

// statusOf extracts the API status of a denial.
func statusOf(t *testing.T, err error) metav1.Status {
	t.Helper()
	var se *apierrors.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("want an API status error, got %T: %v", err, err)
	}
	return se.ErrStatus
}

func selector(k, v string) *typev1beta1.WorkloadSelector {
	return &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{k: v}}
}

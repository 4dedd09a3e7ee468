package plaintext

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apisecurity "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/demo/seed"
	"github.com/mtls-guard/mtls-guard/internal/testenv/audit"
	"github.com/mtls-guard/mtls-guard/internal/testenv/istiometrics"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// setupSeed plays the seed story before any test: istio-demo with the
// meshed Deployment web only, and the caller mtls-test in default, outside
// the mesh, that made one plaintext request to web and is gone.
func setupSeed(ctx context.Context) error {
	// In order: the namespace before the Deployment in it.
	for _, f := range []struct{ name, body string }{{"namespace.yaml", seed.NamespaceYAML}, {"web.yaml", seed.WebYAML}} {
		path := filepath.Join(suite.Dir, f.name)
		if err := os.WriteFile(path, []byte(f.body), 0o600); err != nil {
			return err
		}
		if _, err := runKubectl("apply", "-f", path); err != nil {
			return err
		}
	}
	if err := seed.StartWeb(ctx, suite.Admin); err != nil {
		return err
	}
	if _, err := runKubectl(seed.RunCaller...); err != nil {
		return err
	}
	if err := requestWeb(ctx); err != nil {
		return err
	}
	if _, err := runKubectl(seed.DeleteCaller...); err != nil {
		return err
	}
	return seed.WaitCallerGone(ctx, suite.Admin)
}

// requestWeb makes one more plaintext request from outside the mesh to
// web visible to Prometheus, and counts it.
func requestWeb(ctx context.Context) error {
	if err := seed.Request(ctx, suite.exporter, suite.prometheus.URL, istiometrics.Unknown, seed.WebWorkload, 1); err != nil {
		return err
	}
	suite.webRequests++
	return nil
}

// kubectlResult is what a run of the real kubectl printed and returned.
type kubectlResult struct {
	stdout, stderr string
	code           int
}

// runKubectl runs bin/kubectl as the cluster admin; a non-zero exit is an
// error.
func runKubectl(args ...string) (kubectlResult, error) {
	res, err := suite.Kubectl(args...)
	r := kubectlResult{stdout: res.Stdout, stderr: res.Stderr, code: res.Code}
	if err == nil && r.code != 0 {
		err = fmt.Errorf("exit status %d", r.code)
	}
	if err != nil {
		return r, fmt.Errorf("kubectl %s: %w\n%s%s", strings.Join(args, " "), err, r.stdout, r.stderr)
	}
	return r, nil
}

// kubectl runs bin/kubectl for a test; only a failure to run it fails
// the test.
func kubectl(t *testing.T, args ...string) kubectlResult {
	t.Helper()
	r, err := runKubectl(args...)
	if err != nil && r.code == 0 {
		t.Fatal(err)
	}
	return r
}

// kubectlRecord finds the audit record of a kubectl request on a
// PeerAuthentication made after mark (kubectl prints no Audit-Id), and
// returns it and the guard's annotations on it.
func kubectlRecord(t *testing.T, mark int, verb, ns, name string) (audit.Event, map[string]string) {
	t.Helper()
	ev := suite.Audit.Kubectl(t, mark, verb, "peerauthentications", ns, name)
	return ev, ev.WebhookAnnotations(suite.webhookName)
}

// strict is a namespace-wide STRICT policy.
func strict(ns, name string) *securityv1.PeerAuthentication {
	p := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	p.Spec.Mtls = &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_STRICT}
	return p
}

// strictFor is a STRICT policy for the pods labelled app=app.
func strictFor(ns, name, app string) *securityv1.PeerAuthentication {
	p := strict(ns, name)
	p.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": app}}
	return p
}

// meshedDeploymentPod is a pod of Deployment name with a native sidecar,
// through a ReplicaSet the cluster does not hold: Istio and the guard
// derive the Deployment from the ReplicaSet's name and pod-template-hash.
func meshedDeploymentPod(ns, name string) *corev1.Pod {
	const hash = "6b9f8d7c5"
	controller := true
	always := corev1.ContainerRestartPolicyAlways
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name + "-" + hash + "-q4z7w",
			Labels:          map[string]string{"app": name, "pod-template-hash": hash},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: name + "-" + hash, UID: "00000000-0000-0000-0000-00000000000a", Controller: &controller}},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "istio-proxy", Image: "istio/proxyv2", RestartPolicy: &always}},
			Containers:     []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
}

// create creates obj as the admin and deletes it when the test ends.
func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := suite.Admin.Create(context.Background(), obj); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
	t.Cleanup(func() {
		if err := suite.Admin.Delete(context.Background(), obj, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
			t.Errorf("deleting %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
		}
	})
}

// dryRun creates obj as c with a server-side dry run: the guard decides,
// nothing is stored.
func dryRun(c client.Client, obj client.Object) request {
	return call(func(ctx context.Context) error {
		return c.Create(ctx, obj.DeepCopyObject().(client.Object), client.DryRunAll)
	})
}

// eventually polls server-side dry runs of obj by c until the guard
// decides outcome and ok accepts the request, and returns that request.
// The guard's evidence refreshes every second and its cache lags the API
// server by milliseconds: this waits for them without a fixed sleep; the
// timeout only bounds a failure.
func eventually(t *testing.T, c client.Client, obj client.Object, outcome string, timeout time.Duration, ok func(request) bool) request {
	t.Helper()
	var last request
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		last = dryRun(c, obj)
		if last.Err != nil && !apierrors.IsForbidden(last.Err) && !apierrors.IsInternalError(last.Err) {
			return false, last.Err // no answer of a guard's
		}
		return last.decided(t, outcome) && (ok == nil || ok(last)), nil
	})
	if err != nil {
		var got map[string]string
		if last.AuditID != "" {
			got, _ = last.guardAudit()
		}
		t.Fatalf("waiting for the guard to decide %q for %s/%s: %v\nlast answer: %v\nlast audit annotations: %v\nlast warnings: %q",
			outcome, obj.GetNamespace(), obj.GetName(), err, last.Err, got, last.Warnings)
	}
	return last
}

// eventuallyDecided is eventually with a minute's bound and no more
// condition.
func eventuallyDecided(t *testing.T, c client.Client, obj client.Object, outcome string) request {
	t.Helper()
	return eventually(t, c, obj, outcome, time.Minute, nil)
}

// plaintextCause returns the denial's cause of type PlaintextCallers for
// the workload ns/Kind/name, if any.
func plaintextCause(err error, workload string) (metav1.StatusCause, bool) {
	var se *apierrors.StatusError
	if !errors.As(err, &se) || se.ErrStatus.Details == nil {
		return metav1.StatusCause{}, false
	}
	for _, c := range se.ErrStatus.Details.Causes {
		if c.Type == webhook.CausePlaintextWorkload && c.Field == workload {
			return c, true
		}
	}
	return metav1.StatusCause{}, false
}

// deniedFor is a condition of eventually: the denial names workload as a
// plaintext destination, with a cause message that contains every want.
func deniedFor(workload string, want ...string) func(request) bool {
	return func(r request) bool {
		c, ok := plaintextCause(r.Err, workload)
		if !ok {
			return false
		}
		for _, w := range want {
			if !strings.Contains(c.Message, w) {
				return false
			}
		}
		return true
	}
}

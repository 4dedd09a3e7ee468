// Package seed is the product's seed story, shared by `make demo` and the
// plaintext end-to-end tests: a meshed Deployment `web` in istio-demo, and
// a caller `mtls-test` in default, outside the mesh, started with
// `kubectl run --rm`, that made one plaintext request to web and is gone.
// The request reaches Prometheus through an istiometrics exporter that
// stands in for web's sidecar stats endpoint.
package seed

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/prometheus/common/model"

	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/internal/testenv/istiometrics"
)

// The story's names.
const (
	Namespace       = "istio-demo"
	Server          = "web"
	CallerNamespace = "default"
	Caller          = "mtls-test"
	// templateHash is the pod-template-hash the Deployment controller
	// would give web's ReplicaSet.
	templateHash = "7c5ddbdf54"
)

// The story's objects, as a user writes them.
const (
	NamespaceYAML = `apiVersion: v1
kind: Namespace
metadata:
  name: istio-demo
  labels:
    istio-injection: enabled
`
	StrictYAML = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-demo
spec:
  mtls:
    mode: STRICT
`
)

// WebYAML is the Deployment as applied after injection: the AKS Istio
// add-on runs Envoy as a native sidecar (an initContainer that keeps
// running).
var WebYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: istio-demo
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
` + WebPodSpecYAML("      ")

// webPodSpec is the spec of web's pods.
const webPodSpec = `initContainers:
- name: istio-proxy
  image: mcr.microsoft.com/oss/istio/proxyv2:1.26
  restartPolicy: Always
containers:
- name: web
  image: registry.k8s.io/pause:3.10
`

// WebPodSpecYAML returns the spec of web's meshed pods with each line
// indented by indent: "  " under a Pod's spec, deeper under a template's,
// so that the demo's bare pod and the Deployment's pods stay the same.
func WebPodSpecYAML(indent string) string {
	return indent + strings.ReplaceAll(strings.TrimSuffix(webPodSpec, "\n"), "\n", "\n"+indent) + "\n"
}

// Strict is StrictYAML's namespace-wide STRICT policy, in namespace ns.
func Strict(ns string) *securityv1.PeerAuthentication {
	p := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}
	p.Spec.Mtls = &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_STRICT}
	return p
}

// RunCaller is the kubectl command line that starts the caller in
// default, outside the mesh (default has no injection label). The seed
// runs it with --rm -it, which needs a kubelet; without one the caller is
// started, then deleted, to the same end.
var RunCaller = []string{"run", Caller, "-n", CallerNamespace, "--image=curlimages/curl:8.11.1", "--restart=Never",
	"--", "curl", "-s", "http://" + Server + "." + Namespace}

// DeleteCaller is the kubectl command line that removes the caller, as
// --rm does when the command ends.
var DeleteCaller = []string{"delete", "pod", Caller, "-n", CallerNamespace, "--wait=true"}

// WebWorkload is web as Istio's telemetry names it.
var WebWorkload = istiometrics.Workload{Namespace: Namespace, Name: Server}

// StartWeb does what the Deployment and ReplicaSet controllers would do
// for the applied Deployment web (a local control plane runs none): it
// creates web's ReplicaSet and its one pod, owned as they would be. The
// pod's name and labels are the ones Istio derives the workload "web"
// from.
func StartWeb(ctx context.Context, c client.Client) error {
	dep := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: Server}, dep); err != nil {
		return fmt.Errorf("reading Deployment %s/%s: %w", Namespace, Server, err)
	}
	controller := true
	labels := map[string]string{"app": Server, appsv1.DefaultDeploymentUniqueLabelKey: templateHash}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: Namespace, Name: Server + "-" + templateHash, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: &controller}},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: dep.Spec.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: *dep.Spec.Template.DeepCopy(),
		},
	}
	rs.Spec.Template.Labels = labels
	if err := c.Create(ctx, rs); err != nil {
		return fmt.Errorf("creating ReplicaSet %s: %w", rs.Name, err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: Namespace, Name: rs.Name + "-x7k2p", Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &controller}},
		},
		Spec: *rs.Spec.Template.Spec.DeepCopy(),
	}
	if err := c.Create(ctx, pod); err != nil {
		return fmt.Errorf("creating pod %s: %w", pod.Name, err)
	}
	return nil
}

// WaitCallerGone waits until the caller's pod no longer exists.
func WaitCallerGone(ctx context.Context, c client.Client) error {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Namespace: CallerNamespace, Name: Caller}, &corev1.Pod{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

// Request makes n plaintext requests from src to dst visible to the
// Prometheus at prometheusURL, as dst's sidecar reports them
// (connection_security_policy="none"). A new series is first served at 0
// and scraped, because increase() ignores a counter's first value; Request
// returns once Prometheus has scraped the new count.
func Request(ctx context.Context, e *istiometrics.Exporter, prometheusURL string, src, dst istiometrics.Workload, n int) error {
	if n <= 0 {
		return errors.New("seed.Request: n must be positive")
	}
	sel := Selector(src, dst)
	e.Request(src, dst, istiometrics.SecurityNone, 0)
	if err := testenv.WaitForSeries(ctx, prometheusURL, istiometrics.RequestsTotal+sel); err != nil {
		return err
	}
	// The exporter's counter, hence what Prometheus must reach.
	before, err := current(ctx, prometheusURL, sel)
	if err != nil {
		return err
	}
	e.Request(src, dst, istiometrics.SecurityNone, n)
	return testenv.WaitForSeries(ctx, prometheusURL, fmt.Sprintf("%s%s >= %d", istiometrics.RequestsTotal, sel, before+n))
}

// Selector matches the plaintext request series from src to dst.
func Selector(src, dst istiometrics.Workload) string {
	name := func(s string) string {
		if s == "" {
			return "unknown"
		}
		return s
	}
	return fmt.Sprintf(`{reporter="destination",connection_security_policy="none",source_workload_namespace=%q,source_workload=%q,destination_workload_namespace=%q,destination_workload=%q}`,
		name(src.Namespace), name(src.Name), name(dst.Namespace), name(dst.Name))
}

// current returns the value Prometheus last scraped of the series.
func current(ctx context.Context, prometheusURL, sel string) (int, error) {
	papi, err := testenv.PrometheusAPI(prometheusURL)
	if err != nil {
		return 0, err
	}
	v, _, _, err := papi.Query(ctx, istiometrics.RequestsTotal+sel, time.Now())
	if err != nil {
		return 0, fmt.Errorf("querying %s: %w", sel, err)
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 {
		return 0, fmt.Errorf("querying %s: want one sample, got %v", sel, v)
	}
	return int(vec[0].Value), nil
}

package arrivals

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mtls-guard/mtls-guard/webhook"
)

const image = "registry.k8s.io/pause:3.10"

// injected is the namespace label under which injection would mesh a
// workload's pods, so that only a template's own opt-out predicts it
// unmeshed.
var injected = map[string]string{"istio-injection": "enabled"}

// denyFlags make a guard refuse both pods and workloads.
var denyFlags = []string{"--unmeshed-pods=deny", "--unmeshed-workloads=deny"}

func unmeshedPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

// meshedPod has Istio's native sidecar, as injection leaves it.
func meshedPod(ns, name string) *corev1.Pod {
	p := unmeshedPod(ns, name)
	p.Spec.InitContainers = []corev1.Container{{Name: "istio-proxy", Image: "docker.io/istio/proxyv2:1.28.0",
		Args: []string{"proxy", "sidecar"}, RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}}
	return p
}

// deployment is a Deployment whose template opts out of injection or not.
func deployment(ns, name string, optOut bool) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	if optOut {
		tmpl.Annotations = map[string]string{"sidecar.istio.io/inject": "false"}
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl},
	}
}

func peerAuthentication(ns, mode string) *securityv1.PeerAuthentication {
	p := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}
	p.Spec.Mtls = &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_Mode(apisecurity.PeerAuthentication_MutualTLS_Mode_value[mode])}
	return p
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := suite.Admin.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
}

// createAs creates a copy of obj and returns the request.
func createAs(obj client.Object, opts ...client.CreateOption) request {
	return call(func(ctx context.Context) error {
		return suite.Admin.Create(ctx, obj.DeepCopyObject().(client.Object), opts...)
	})
}

// namespaces numbers the tests' namespaces, so that -count repeats them
// on the same control plane (and the guard's per-workload Event
// deduplication never spans two runs).
var namespaces atomic.Int64

// namespace creates a fresh namespace named after name and returns its
// name.
func namespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	name = fmt.Sprintf("%s-%d", name, namespaces.Add(1))
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
	return name
}

// makeStrict puts a meshed pod and a STRICT PeerAuthentication into ns
// (the policy webhook admits it: every pod is meshed) and waits until the
// guard answers from that view: a server-side dry run of an unmeshed pod
// is warned.
func makeStrict(t *testing.T, ns string) {
	t.Helper()
	create(t, meshedPod(ns, "web-0"))
	create(t, peerAuthentication(ns, "STRICT"))
	waitDecided(t, unmeshedPod(ns, "probe"), webhook.OutcomeWarned)
}

// strictNamespace is a fresh namespace where STRICT holds.
func strictNamespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	ns := namespace(t, name, labels)
	makeStrict(t, ns)
	return ns
}

// waitDecided polls server-side dry runs of obj until the arrivals webhook
// decides one as outcome (the guard's informers and the API server's view
// of the webhook configuration take a moment).
func waitDecided(t *testing.T, obj client.Object, outcome string) request {
	t.Helper()
	var last request
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		last = createAs(obj, client.DryRunAll)
		if last.Err != nil && !apierrors.IsForbidden(last.Err) {
			return false, last.Err
		}
		return last.decided(t, outcome), nil
	})
	if err != nil {
		t.Fatalf("waiting for the arrivals webhook to decide %q for a dry run of %s/%s: %v (last: %v, audit %v)",
			outcome, obj.GetNamespace(), obj.GetName(), err, last.Err, last.audit(t))
	}
	return last
}

// kubectlResult is what a run of the real kubectl printed and returned.
type kubectlResult struct {
	stdout, stderr string
	code           int
}

// kubectl runs bin/kubectl as the cluster admin.
func kubectl(t *testing.T, args ...string) kubectlResult {
	t.Helper()
	r, err := suite.Kubectl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return kubectlResult{stdout: r.Stdout, stderr: r.Stderr, code: r.Code}
}

// mustSucceed fails the test unless kubectl exited 0.
func (r kubectlResult) mustSucceed(t *testing.T, what string) kubectlResult {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.stdout, r.stderr)
	}
	return r
}

// manifest writes objects as a YAML file for kubectl apply -f.
func manifest(t *testing.T, obj any) string {
	t.Helper()
	data, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// arrivalEvents lists the guard's UnmeshedUnderStrict Events in ns.
func arrivalEvents(t *testing.T, ns string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := suite.Admin.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatalf("listing Events in %s: %v", ns, err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Reason == webhook.ReasonUnmeshedUnderStrict {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits for the guard's Warning Event about the object kind/name.
func waitEvent(t *testing.T, ns, kind, name string) eventsv1.Event {
	t.Helper()
	var found *eventsv1.Event
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		for _, e := range arrivalEvents(t, ns) {
			if e.Regarding.Kind == kind && e.Regarding.Name == name {
				found = &e
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s Event regarding %s %s/%s: %v (Events there: %v)", webhook.ReasonUnmeshedUnderStrict, kind, ns, name, err, regarding(arrivalEvents(t, ns)))
	}
	if found.Type != corev1.EventTypeWarning {
		t.Errorf("Event type %s, want Warning", found.Type)
	}
	return *found
}

func regarding(evs []eventsv1.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Regarding.Kind+"/"+e.Regarding.Name)
	}
	return out
}

func get(t *testing.T, obj client.Object) error {
	t.Helper()
	return suite.Admin.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
}

// TestKubectlRunWarns: in a STRICT namespace, `kubectl run` of an unmeshed
// pod prints the guard's warning, the pod is created, and a Warning Event
// regards the pod itself (it has no owner).
func TestKubectlRunWarns(t *testing.T) {
	ns := strictNamespace(t, "run-strict", nil)
	r := kubectl(t, "run", "debug", "-n", ns, "--image="+image, "--restart=Never").mustSucceed(t, "kubectl run")
	if !strings.Contains(r.stderr, "Warning:") || !strings.Contains(r.stderr, "Pod "+ns+"/debug") {
		t.Errorf("kubectl run printed no warning naming the pod:\nstderr: %s", r.stderr)
	}
	rec := kubectlCreate(t, "pods", ns, "debug")
	if a := rec.arrivals(); rec.ResponseStatus.Code != 201 || a[webhook.AuditDecision] != webhook.OutcomeWarned ||
		!strings.HasPrefix(a[webhook.AuditArrival], "Pod "+ns+"/debug ") {
		t.Errorf("the API server answered %d with the guard's annotations %v; want 201, decision %q naming the pod",
			rec.ResponseStatus.Code, a, webhook.OutcomeWarned)
	}
	pod := unmeshedPod(ns, "debug")
	if err := get(t, pod); err != nil {
		t.Fatalf("the warned pod was not created: %v", err)
	}
	ev := waitEvent(t, ns, "Pod", "debug")
	if ev.Regarding.UID != pod.UID || ev.Regarding.Namespace != ns {
		t.Errorf("the Event regards %+v, want the pod %s/debug with UID %s", ev.Regarding, ns, pod.UID)
	}
}

// TestPodEventGoesToDeployment: a pod created by a ReplicaSet of a known
// Deployment warns, and its Event regards the Deployment, with its UID,
// where `kubectl describe deployment` shows it.
func TestPodEventGoesToDeployment(t *testing.T) {
	ns := namespace(t, "owner-strict", injected)
	d := deployment(ns, "web", false)
	create(t, d)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-7c5d9f", Labels: map[string]string{"app": "web", "pod-template-hash": "7c5d9f"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: d.UID, Controller: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{Selector: d.Spec.Selector, Template: d.Spec.Template},
	}
	create(t, rs)
	// The ReplicaSet is in the guard's cache before STRICT: makeStrict
	// waits for the guard's view of the later policy.
	makeStrict(t, ns)

	pod := unmeshedPod(ns, "web-7c5d9f-x2k8p")
	pod.Labels = rs.Labels
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}
	r := createAs(pod)
	if !r.decided(t, webhook.OutcomeWarned) || len(r.Warnings) == 0 {
		t.Fatalf("creating the ReplicaSet's pod: error %v, warnings %q, audit %v; want it warned", r.Err, r.Warnings, r.audit(t))
	}
	ev := waitEvent(t, ns, "Deployment", "web")
	if ev.Regarding.UID != d.UID || ev.Regarding.APIVersion != "apps/v1" {
		t.Errorf("the Event regards %+v, want Deployment web with UID %s", ev.Regarding, d.UID)
	}
	if got := regarding(arrivalEvents(t, ns)); len(got) != 1 {
		t.Errorf("Events regard %v, want only the Deployment", got)
	}
	r2 := kubectl(t, "describe", "deployment", "web", "-n", ns).mustSucceed(t, "kubectl describe deployment")
	if !strings.Contains(r2.stdout, webhook.ReasonUnmeshedUnderStrict) {
		t.Errorf("kubectl describe deployment shows no %s Event:\n%s", webhook.ReasonUnmeshedUnderStrict, r2.stdout)
	}
}

// TestDeploymentWarnsAtApply: a Deployment whose template opts out of
// injection warns at `kubectl apply --dry-run=server` (no Event: the
// webhook is NoneOnDryRun) and at `kubectl apply` (an Event on it); the
// same Deployment without the opt-out gets nothing.
func TestDeploymentWarnsAtApply(t *testing.T) {
	ns := strictNamespace(t, "apply-strict", injected)

	preview := deployment(ns, "preview", true)
	r := kubectl(t, "apply", "--dry-run=server", "-f", manifest(t, preview)).mustSucceed(t, "kubectl apply --dry-run=server")
	if !strings.Contains(r.stderr, "Warning:") || !strings.Contains(r.stderr, "Deployment "+ns+"/preview") {
		t.Errorf("kubectl apply --dry-run=server printed no warning naming the Deployment:\nstderr: %s", r.stderr)
	}
	if a := kubectlCreate(t, "deployments", ns, "preview").arrivals(); a[webhook.AuditDecision] != webhook.OutcomeWarned {
		t.Errorf("the guard's audit annotations on the dry run: %v, want decision %q", a, webhook.OutcomeWarned)
	}
	if err := get(t, deployment(ns, "preview", true)); !apierrors.IsNotFound(err) {
		t.Errorf("the dry run created the Deployment: %v", err)
	}

	legacy := deployment(ns, "legacy", true)
	r = kubectl(t, "apply", "-f", manifest(t, legacy)).mustSucceed(t, "kubectl apply")
	if !strings.Contains(r.stderr, "Warning:") || !strings.Contains(r.stderr, "Deployment "+ns+"/legacy") {
		t.Errorf("kubectl apply printed no warning naming the Deployment:\nstderr: %s", r.stderr)
	}
	if a := kubectlCreate(t, "deployments", ns, "legacy").arrivals(); a[webhook.AuditDecision] != webhook.OutcomeWarned {
		t.Errorf("the guard's audit annotations on the apply: %v, want decision %q", a, webhook.OutcomeWarned)
	}
	if err := get(t, legacy); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, ns, "Deployment", "legacy"); ev.Regarding.UID != legacy.UID {
		t.Errorf("the Event regards %+v, want UID %s", ev.Regarding, legacy.UID)
	}
	// The guard records its Events in order, so the dry run's would be
	// there by now.
	if got := regarding(arrivalEvents(t, ns)); len(got) != 1 {
		t.Errorf("Events regard %v, want Deployment/legacy only (none for the dry run)", got)
	}

	r = kubectl(t, "apply", "-f", manifest(t, deployment(ns, "meshed", false))).mustSucceed(t, "kubectl apply of a meshed Deployment")
	if strings.Contains(r.stderr, "Warning:") {
		t.Errorf("a Deployment that injection will mesh was warned:\n%s", r.stderr)
	}
	if a := kubectlCreate(t, "deployments", ns, "meshed").arrivals(); a[webhook.AuditDecision] != "" {
		t.Errorf("the guard's audit annotations on a meshed Deployment: %v, want none", a)
	}
}

// TestDenySettings: a guard with --unmeshed-pods=deny and
// --unmeshed-workloads=deny refuses both: 403 and the guard's audit
// decision "denied" of that very request, and nothing is created.
func TestDenySettings(t *testing.T) {
	ns := strictNamespace(t, "deny-strict", injected)
	use(t, startGuard(t, denyFlags...))
	waitDecided(t, unmeshedPod(ns, "probe"), webhook.OutcomeDenied)

	for _, obj := range []client.Object{unmeshedPod(ns, "debug"), deployment(ns, "legacy", true)} {
		kind := obj.GetObjectKind().GroupVersionKind().Kind
		t.Run(kind, func(t *testing.T) {
			r := createAs(obj)
			if !r.decided(t, webhook.OutcomeDenied) {
				t.Fatalf("creating %s %s: error %v (reason %q), audit %v; want 403 and decision %q",
					kind, obj.GetName(), r.Err, apierrors.ReasonForError(r.Err), r.audit(t), webhook.OutcomeDenied)
			}
			if err := get(t, obj.DeepCopyObject().(client.Object)); !apierrors.IsNotFound(err) {
				t.Errorf("the denied %s exists: %v", kind, err)
			}
		})
	}
	// A meshed pod is still admitted under deny.
	if r := createAs(meshedPod(ns, "web-1")); r.Err != nil {
		t.Errorf("a meshed pod was refused under deny: %v", r.Err)
	}
}

// TestNothingForMeshedOrPermissive: a meshed pod in a STRICT namespace is
// not even sent to the guard (matchConditions), and an unmeshed pod in a
// PERMISSIVE namespace is judged and admitted: neither gets a warning, an
// audit decision or an Event.
func TestNothingForMeshedOrPermissive(t *testing.T) {
	strictNS := strictNamespace(t, "quiet-strict", injected)
	permNS := namespace(t, "quiet-permissive", injected)
	create(t, meshedPod(permNS, "web-0"))
	create(t, peerAuthentication(permNS, "PERMISSIVE"))
	allowed := func() float64 {
		return testutil.ToFloat64(webhook.Arrivals.WithLabelValues("Pod", webhook.OutcomeAllowed))
	}

	before := allowed()
	r := kubectl(t, "apply", "-f", manifest(t, meshedPod(strictNS, "web-1"))).mustSucceed(t, "kubectl apply of a meshed pod")
	if strings.Contains(r.stderr, "Warning:") {
		t.Errorf("a meshed pod was warned:\n%s", r.stderr)
	}
	if a := kubectlCreate(t, "pods", strictNS, "web-1").arrivals(); len(a) != 0 {
		t.Errorf("the guard's audit annotations on a meshed pod: %v, want none", a)
	}
	if got := allowed(); got != before {
		t.Errorf("the guard judged the meshed pod (allowed count %v -> %v); matchConditions should keep it out", before, got)
	}

	r = kubectl(t, "run", "debug", "-n", permNS, "--image="+image, "--restart=Never").mustSucceed(t, "kubectl run in a PERMISSIVE namespace")
	if strings.Contains(r.stderr, "Warning:") {
		t.Errorf("an unmeshed pod in a PERMISSIVE namespace was warned:\n%s", r.stderr)
	}
	if a := kubectlCreate(t, "pods", permNS, "debug").arrivals(); len(a) != 0 {
		t.Errorf("the guard's audit annotations on a PERMISSIVE namespace's pod: %v, want none", a)
	}
	if got := allowed(); got != before+1 {
		t.Errorf("allowed pods %v -> %v, want the PERMISSIVE namespace's pod judged and allowed once", before, got)
	}

	// A warned pod after them: once its Event is there, the guard has
	// sent every Event it would have for the two above.
	kubectl(t, "run", "sentinel", "-n", strictNS, "--image="+image, "--restart=Never").mustSucceed(t, "kubectl run of the sentinel")
	waitEvent(t, strictNS, "Pod", "sentinel")
	if got := regarding(arrivalEvents(t, strictNS)); len(got) != 1 {
		t.Errorf("Events in %s regard %v, want the sentinel only", strictNS, got)
	}
	if got := regarding(arrivalEvents(t, permNS)); len(got) != 0 {
		t.Errorf("Events in the PERMISSIVE namespace regard %v, want none", got)
	}
}

// TestGuardDownPodsCreated: with the guard stopped (its port closed), pods
// and workloads are still created in a STRICT namespace, even though that
// guard denied them: failurePolicy Ignore.
func TestGuardDownPodsCreated(t *testing.T) {
	ns := strictNamespace(t, "down-strict", injected)
	g := startGuard(t, denyFlags...)
	use(t, g)
	waitDecided(t, unmeshedPod(ns, "probe"), webhook.OutcomeDenied)
	g.Stop()

	for _, obj := range []client.Object{unmeshedPod(ns, "after-stop"), deployment(ns, "legacy", true)} {
		r := createAs(obj)
		if r.Err != nil {
			t.Errorf("creating %s with the guard down: %v; want it admitted (failurePolicy Ignore)", obj.GetName(), r.Err)
			continue
		}
		if a := r.audit(t); len(a) != 0 {
			t.Errorf("audit annotations %v from a stopped guard", a)
		}
	}
	r := kubectl(t, "run", "debug", "-n", ns, "--image="+image, "--restart=Never")
	if r.code != 0 {
		t.Errorf("kubectl run with the guard down: exit %d: %s", r.code, r.stderr)
	}
}

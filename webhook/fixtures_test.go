package webhook_test

import (
	"encoding/json"
	"testing"
	"time"

	apisecurity "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/engine/enginetest"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// The fixture cluster: one namespace per situation a decision meets.
//
//	istio-system  root namespace, no mesh-wide policy
//	kube-system   excluded: an unmeshed pod that never counts
//	meshed        injection enabled, only meshed pods
//	legacy        injection enabled: meshed "web", unmeshed Deployment "old"
//	carve         namespace STRICT with a PERMISSIVE carve-out for app=web,
//	              which is meshed, next to an unmeshed pod
//	dying         being deleted, with an unmeshed pod
const (
	nsRoot   = "istio-system"
	nsMeshed = "meshed"
	nsLegacy = "legacy"
	nsCarve  = "carve"
	nsDying  = "dying"
)

var (
	t0       = metav1.NewTime(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	injected = map[string]string{"istio-injection": "enabled"}
)

func fixtureScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(securityv1.AddToScheme(s))
	return s
}

func namespaceObj(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, CreationTimestamp: t0}}
}

func podObj(ns, name string, labels map[string]string, meshed bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, CreationTimestamp: t0},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	if meshed {
		always := corev1.ContainerRestartPolicyAlways
		p.Spec.InitContainers = []corev1.Container{{Name: "istio-proxy", Image: "proxyv2", RestartPolicy: &always}}
	}
	return p
}

// deploymentPod is a pod of a Deployment through a ReplicaSet that the
// cluster holds.
func deploymentPod(ns, deploy string, meshed bool) (*corev1.Pod, *appsv1.ReplicaSet) {
	const hash = "7d9f8"
	yes := true
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: deploy + "-" + hash, CreationTimestamp: t0,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: deploy, UID: "d", Controller: &yes}},
	}}
	p := podObj(ns, deploy+"-"+hash+"-x1", map[string]string{"app": deploy, "pod-template-hash": hash}, meshed)
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: "r", Controller: &yes}}
	return p, rs
}

// paObj builds a PeerAuthentication; an empty mode is UNSET and an empty
// selector makes it namespace- or mesh-wide.
func paObj(ns, name, mode string, created metav1.Time, selector map[string]string, annotations map[string]string) *securityv1.PeerAuthentication {
	p := &securityv1.PeerAuthentication{
		TypeMeta:   metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "PeerAuthentication"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: created, Annotations: annotations},
	}
	if mode != "" {
		p.Spec.Mtls = &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_Mode(apisecurity.PeerAuthentication_MutualTLS_Mode_value[mode])}
	}
	if len(selector) > 0 {
		p.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: selector}
	}
	return p
}

// fixtureObjects returns the fixture cluster, fresh on every call.
func fixtureObjects() []client.Object {
	oldPod, oldRS := deploymentPod(nsLegacy, "old", false)
	webPod, webRS := deploymentPod(nsLegacy, "web", true)
	dying := namespaceObj(nsDying, injected)
	dying.DeletionTimestamp = &t0
	dying.Finalizers = []string{"kubernetes"}
	return []client.Object{
		namespaceObj(nsRoot, nil),
		namespaceObj("kube-system", nil),
		namespaceObj(nsMeshed, injected),
		namespaceObj(nsLegacy, injected),
		namespaceObj(nsCarve, injected),
		dying,
		podObj("kube-system", "kube-proxy", nil, false),
		podObj(nsMeshed, "web-1", map[string]string{"app": "web"}, true),
		podObj(nsMeshed, "web-2", map[string]string{"app": "web"}, true),
		oldPod, oldRS, webPod, webRS,
		podObj(nsCarve, "web", map[string]string{"app": "web"}, true),
		podObj(nsCarve, "legacy", map[string]string{"app": "legacy"}, false),
		podObj(nsDying, "bare", nil, false),
		paObj(nsCarve, "default", "STRICT", t0, nil, nil),
		paObj(nsCarve, "web-permissive", "PERMISSIVE", metav1.NewTime(t0.Add(time.Hour)), map[string]string{"app": "web"}, nil),
		paObj(nsDying, "default", "PERMISSIVE", t0, nil, nil),
	}
}

// fixtureReader is a fake cache over the fixture cluster.
func fixtureReader(t testing.TB) client.Reader {
	t.Helper()
	return fake.NewClientBuilder().WithScheme(fixtureScheme()).WithObjects(fixtureObjects()...).Build()
}

// fixtureDecide decides on an index of the fixture cluster, as the guard
// serves.
// Extra objects replace the fixture's of the same name.
func fixtureDecide(t testing.TB, o engine.Options, extra ...client.Object) func(engine.Change) (*engine.Decision, error) {
	t.Helper()
	ix := index.New(o)
	for _, obj := range append(fixtureObjects(), extra...) {
		if !ix.Add(obj) {
			t.Fatalf("the index does not take %T", obj)
		}
	}
	return ix.Decide
}

// fixtureSnapshot is the same cluster as an engine snapshot, for the
// engine's own answer.
func fixtureSnapshot(t testing.TB) *enginetest.Snapshot {
	t.Helper()
	s := enginetest.NewSnapshot()
	for _, o := range fixtureObjects() {
		if !s.Add(o) {
			t.Fatalf("snapshot does not take %T", o)
		}
	}
	return s
}

// request builds an admission request for a policy.
func request(t testing.TB, op admissionv1.Operation, user string, groups []string, obj *securityv1.PeerAuthentication) admission.Request {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	req := admissionv1.AdmissionRequest{
		UID:       types.UID("uid-" + string(op) + "-" + obj.Name),
		Kind:      metav1.GroupVersionKind{Group: policy.GroupName, Version: "v1", Kind: policy.Kind},
		Resource:  metav1.GroupVersionResource{Group: policy.GroupName, Version: "v1", Resource: "peerauthentications"},
		Namespace: obj.Namespace,
		Name:      obj.Name,
		Operation: op,
		UserInfo:  authenticationv1.UserInfo{Username: user, Groups: groups},
	}
	switch op {
	case admissionv1.Delete:
		req.OldObject.Raw = raw
	case admissionv1.Update:
		// A re-apply; tests of other updates set OldObject themselves.
		req.Object.Raw, req.OldObject.Raw = raw, raw
	default:
		req.Object.Raw = raw
	}
	return admission.Request{AdmissionRequest: req}
}

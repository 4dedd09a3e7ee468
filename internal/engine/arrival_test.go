package engine_test

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
)

func arrivingPod(ns string, labels map[string]string, meshed bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "new", Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
	}
	if meshed {
		always := corev1.ContainerRestartPolicyAlways
		p.Spec.InitContainers = []corev1.Container{{Name: mesh.ProxyContainer, RestartPolicy: &always}}
	}
	return p
}

func template(labels, annotations map[string]string, hostNetwork bool) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{HostNetwork: hostNetwork, Containers: []corev1.Container{{Name: "app"}}},
	}
}

// TestDecidePod: a counted, unmeshed pod is unmeshed under STRICT exactly
// when its namespace already has a counted pod STRICT on some port.
func TestDecidePod(t *testing.T) {
	optOut := map[string]string{mesh.InjectKey: "false"}
	for _, tc := range []struct {
		name     string
		existing []pa
		pod      *corev1.Pod
		want     engine.Arrival
	}{
		{"unmeshed pod where the namespace is STRICT", []pa{v1("shop/default", jan, strict)}, arrivingPod("shop", optOut, false),
			engine.Arrival{Judged: true, Unmeshed: true, Reason: mesh.InjectionDisabled, UnderStrict: true}},
		{"unmeshed pod, no STRICT", nil, arrivingPod("shop", nil, false),
			engine.Arrival{Judged: true, Unmeshed: true, Reason: mesh.NoSidecar}},
		{"meshed pod where the namespace is STRICT", []pa{v1("shop/default", jan, strict)}, arrivingPod("shop", nil, true),
			engine.Arrival{Judged: true}},
		{"exempt pod: not judged", []pa{v1("shop/default", jan, strict)}, arrivingPod("shop", map[string]string{mesh.ExemptLabel: "true"}, false),
			engine.Arrival{}},
		{"excluded namespace: not judged", []pa{v1("kube-system/default", jan, strict)}, arrivingPod("kube-system", nil, false),
			engine.Arrival{}},
		{"a workload policy makes one pod STRICT", []pa{v1("shop/cart", jan, "{selector: {matchLabels: {app: cart}}, portLevelMtls: {8080: {mode: STRICT}}}")},
			arrivingPod("shop", nil, false), engine.Arrival{Judged: true, Unmeshed: true, Reason: mesh.NoSidecar, UnderStrict: true}},
		{"a workload policy that selects no counted pod", []pa{v1("shop/ghost", jan, "{selector: {matchLabels: {app: ghost}}, mtls: {mode: STRICT}}")},
			arrivingPod("shop", nil, false), engine.Arrival{Judged: true, Unmeshed: true, Reason: mesh.NoSidecar}},
		{"a pod of an ambient namespace, not redirected yet: meshed", []pa{v1("ambient/default", jan, strict)}, arrivingPod("ambient", nil, false),
			engine.Arrival{Judged: true}},
		{"a pod of an ambient namespace that opts out", []pa{v1("ambient/default", jan, strict)}, arrivingPod("ambient", map[string]string{"istio.io/dataplane-mode": "none"}, false),
			engine.Arrival{Judged: true, Unmeshed: true, Reason: mesh.NoSidecar, UnderStrict: true}},
		{"mesh-wide STRICT", []pa{v1("istio-system/default", jan, strict)}, arrivingPod("shop", nil, false),
			engine.Arrival{Judged: true, Unmeshed: true, Reason: mesh.NoSidecar, UnderStrict: true}},
		{"mesh-wide STRICT, the namespace PERMISSIVE", []pa{v1("istio-system/default", jan, strict), v1("shop/default", jan, permissive)},
			arrivingPod("shop", nil, false), engine.Arrival{Judged: true, Unmeshed: true, Reason: mesh.NoSidecar}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := loadFixtures(t, "cluster.yaml")
			addPolicies(t, s, tc.existing...)
			got, err := engine.DecidePod(s, tc.pod, engine.DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if got.Problem() != (tc.want.Judged && tc.want.Unmeshed && tc.want.UnderStrict) {
				t.Fatalf("Problem() = %v", got.Problem())
			}
		})
	}
}

// TestDecideTemplate: a workload's template is predicted the way
// injection will decide it.
func TestDecideTemplate(t *testing.T) {
	strictShop := []pa{v1("shop/default", jan, strict)}
	strictPlain := []pa{v1("plain/default", jan, strict)}
	for _, tc := range []struct {
		name     string
		existing []pa
		ns       string
		obj      any
		want     engine.Arrival
	}{
		{"Deployment opting out by label", strictShop, "shop",
			&appsv1.Deployment{Spec: appsv1.DeploymentSpec{Template: template(map[string]string{mesh.InjectKey: "false"}, nil, false)}},
			engine.Arrival{Judged: true, Unmeshed: true, Reason: mesh.InjectionDisabled, UnderStrict: true}},
		{"StatefulSet opting out by annotation", strictShop, "shop",
			&appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{Template: template(nil, map[string]string{mesh.InjectKey: "false"}, false)}},
			engine.Arrival{Judged: true, Unmeshed: true, Reason: mesh.InjectionDisabled, UnderStrict: true}},
		{"DaemonSet on the host network", strictShop, "shop",
			&appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{Template: template(nil, nil, true)}},
			engine.Arrival{Judged: true, Unmeshed: true, Reason: mesh.HostNetwork, UnderStrict: true}},
		{"Job in a namespace without injection", strictPlain, "plain",
			&batchv1.Job{Spec: batchv1.JobSpec{Template: template(nil, nil, false)}},
			engine.Arrival{Judged: true, Unmeshed: true, Reason: mesh.NoSidecar, UnderStrict: true}},
		{"a template that opts in by its revision label", strictPlain, "plain",
			&appsv1.Deployment{Spec: appsv1.DeploymentSpec{Template: template(map[string]string{"istio.io/rev": "asm-1-26"}, nil, false)}},
			engine.Arrival{Judged: true}},
		{"CronJob injected", strictShop, "shop",
			&batchv1.CronJob{Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: template(nil, nil, false)}}}},
			engine.Arrival{Judged: true}},
		{"exempt template", strictShop, "shop",
			&appsv1.Deployment{Spec: appsv1.DeploymentSpec{Template: template(map[string]string{mesh.ExemptLabel: "true", mesh.InjectKey: "false"}, nil, false)}},
			engine.Arrival{}},
		{"opting out where nothing is STRICT", nil, "shop",
			&appsv1.Deployment{Spec: appsv1.DeploymentSpec{Template: template(map[string]string{mesh.InjectKey: "false"}, nil, false)}},
			engine.Arrival{Judged: true, Unmeshed: true, Reason: mesh.InjectionDisabled}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := loadFixtures(t, "cluster.yaml")
			addPolicies(t, s, tc.existing...)
			tmpl := engine.TemplateOf(tc.obj)
			if tmpl == nil {
				t.Fatalf("no template in %T", tc.obj)
			}
			got, err := engine.DecideTemplate(s, tc.ns, tmpl, engine.DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if engine.TemplateOf(&corev1.Pod{}) != nil {
		t.Error("a Pod has no workload template")
	}
}

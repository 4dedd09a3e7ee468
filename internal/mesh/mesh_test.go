package mesh

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var always = corev1.ContainerRestartPolicyAlways

// podSpec is a compact pod description for the tables below.
type podSpec struct {
	labels, annotations map[string]string
	hostNetwork         bool
	init, containers    []corev1.Container
	phase               corev1.PodPhase
	deleting            bool
}

func (s podSpec) pod() *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: s.labels, Annotations: s.annotations},
		Spec: corev1.PodSpec{
			HostNetwork:    s.hostNetwork,
			InitContainers: s.init,
			Containers:     append([]corev1.Container{{Name: "app", Image: "app"}}, s.containers...),
		},
		Status: corev1.PodStatus{Phase: s.phase},
	}
	if s.deleting {
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	return p
}

var (
	nativeSidecar  = corev1.Container{Name: ProxyContainer, Image: "proxyv2", RestartPolicy: &always}
	plainInitProxy = corev1.Container{Name: ProxyContainer, Image: "proxyv2"} // old-style init, not a sidecar
	classicSidecar = corev1.Container{Name: ProxyContainer, Image: "proxyv2", Args: []string{"proxy", "sidecar", "--domain", "ns.svc.cluster.local"}}
	gateway        = corev1.Container{Name: ProxyContainer, Image: "proxyv2", Args: []string{"proxy", "router", "--domain", "ns.svc.cluster.local"}}
	otherInit      = corev1.Container{Name: "istio-validation", Image: "proxyv2", RestartPolicy: &always}
	otherRouter    = corev1.Container{Name: "envoy", Image: "envoy", Args: []string{"router"}}
)

func TestClassify(t *testing.T) {
	onlyAny := func(r Reason) [2]Reason { return [2]Reason{r, ""} } // unmeshed in native, meshed in any
	same := func(r Reason) [2]Reason { return [2]Reason{r, r} }
	meshed := [2]Reason{"", ""}

	tests := []struct {
		name string
		pod  podSpec
		// want is the reason under --sidecar-mode native and any; "" is meshed.
		want [2]Reason
	}{
		{"native sidecar", podSpec{init: []corev1.Container{nativeSidecar}}, meshed},
		{"native sidecar after another init container", podSpec{init: []corev1.Container{{Name: "istio-init"}, nativeSidecar}}, meshed},
		{"gateway", podSpec{containers: []corev1.Container{gateway}}, meshed},
		{"ambient enabled", podSpec{annotations: map[string]string{AmbientRedirectionKey: "enabled"}}, meshed},
		{"classic sidecar", podSpec{containers: []corev1.Container{classicSidecar}}, onlyAny(ClassicSidecar)},
		{"classic sidecar without args", podSpec{containers: []corev1.Container{{Name: ProxyContainer}}}, onlyAny(ClassicSidecar)},
		{"no sidecar", podSpec{}, same(NoSidecar)},
		{"istio-proxy init container without restartPolicy Always", podSpec{init: []corev1.Container{plainInitProxy}}, same(NoSidecar)},
		{"restartPolicy Always on another init container", podSpec{init: []corev1.Container{otherInit}}, same(NoSidecar)},
		{"router args on another container", podSpec{containers: []corev1.Container{otherRouter}}, same(NoSidecar)},
		{"host network", podSpec{hostNetwork: true}, same(HostNetwork)},
		{"injection disabled by label", podSpec{labels: map[string]string{InjectKey: "false"}}, same(InjectionDisabled)},
		{"injection disabled by annotation", podSpec{annotations: map[string]string{InjectKey: "false"}}, same(InjectionDisabled)},
		{"injection label true is not disabled", podSpec{labels: map[string]string{InjectKey: "true"}}, same(NoSidecar)},
		{"ambient pending", podSpec{annotations: map[string]string{AmbientRedirectionKey: "pending"}}, same(AmbientPending)},
		{"ambient annotation empty", podSpec{annotations: map[string]string{AmbientRedirectionKey: ""}}, same(AmbientPending)},
		{"ambient disabled", podSpec{annotations: map[string]string{AmbientRedirectionKey: "disabled"}}, same(AmbientPending)},

		// The order of reasons: host-network, injection-disabled,
		// classic-sidecar, ambient-pending, no-sidecar.
		{"host network before injection disabled", podSpec{hostNetwork: true, labels: map[string]string{InjectKey: "false"}}, same(HostNetwork)},
		{"host network before classic sidecar (native mode)", podSpec{hostNetwork: true, containers: []corev1.Container{classicSidecar}}, onlyAny(HostNetwork)},
		{"host network before ambient pending", podSpec{hostNetwork: true, annotations: map[string]string{AmbientRedirectionKey: "pending"}}, same(HostNetwork)},
		{"injection disabled before classic sidecar", podSpec{annotations: map[string]string{InjectKey: "false"}, containers: []corev1.Container{classicSidecar}}, onlyAny(InjectionDisabled)},
		{"injection disabled before ambient pending", podSpec{labels: map[string]string{InjectKey: "false"}, annotations: map[string]string{AmbientRedirectionKey: "pending"}}, same(InjectionDisabled)},
		{"classic sidecar before ambient pending", podSpec{annotations: map[string]string{AmbientRedirectionKey: "pending"}, containers: []corev1.Container{classicSidecar}}, onlyAny(ClassicSidecar)},

		// A meshed pod is meshed whatever else applies.
		{"native sidecar with host network", podSpec{hostNetwork: true, init: []corev1.Container{nativeSidecar}}, meshed},
		{"native sidecar with injection label false", podSpec{labels: map[string]string{InjectKey: "false"}, init: []corev1.Container{nativeSidecar}}, meshed},
		{"ambient with classic sidecar", podSpec{annotations: map[string]string{AmbientRedirectionKey: "enabled"}, containers: []corev1.Container{classicSidecar}}, meshed},
		{"gateway with host network", podSpec{hostNetwork: true, containers: []corev1.Container{gateway}}, meshed},
	}
	for _, tt := range tests {
		for i, mode := range []SidecarMode{Native, Any} {
			t.Run(tt.name+"/"+string(mode), func(t *testing.T) {
				gotMeshed, gotReason := Classify(tt.pod.pod(), mode)
				want := tt.want[i]
				if gotMeshed != (want == "") || gotReason != want {
					t.Errorf("Classify = (%v, %q), want (%v, %q)", gotMeshed, gotReason, want == "", want)
				}
			})
		}
	}
}

func TestReasonStrings(t *testing.T) {
	// The strings are part of the output contract.
	for r, want := range map[Reason]string{
		HostNetwork:       "host-network",
		InjectionDisabled: "injection-disabled",
		ClassicSidecar:    "classic-sidecar",
		AmbientPending:    "ambient-pending",
		NoSidecar:         "no-sidecar",
	} {
		if string(r) != want {
			t.Errorf("reason %q, want %q", r, want)
		}
	}
}

func TestCounted(t *testing.T) {
	tests := []struct {
		name string
		pod  podSpec
		want bool
	}{
		{"running", podSpec{phase: corev1.PodRunning}, true},
		{"pending", podSpec{phase: corev1.PodPending}, true},
		{"unknown phase", podSpec{phase: corev1.PodUnknown}, true},
		{"no phase yet", podSpec{}, true},
		{"succeeded", podSpec{phase: corev1.PodSucceeded}, false},
		{"failed", podSpec{phase: corev1.PodFailed}, false},
		{"being deleted", podSpec{phase: corev1.PodRunning, deleting: true}, false},
		{"exempt", podSpec{phase: corev1.PodRunning, labels: map[string]string{ExemptLabel: "true"}}, false},
		{"exempt false", podSpec{phase: corev1.PodRunning, labels: map[string]string{ExemptLabel: "false"}}, true},
		{"exempt as annotation does not count", podSpec{phase: corev1.PodRunning, annotations: map[string]string{ExemptLabel: "true"}}, true},
		{"meshed and succeeded", podSpec{phase: corev1.PodSucceeded, init: []corev1.Container{nativeSidecar}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Counted(tt.pod.pod()); got != tt.want {
				t.Errorf("Counted = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseSidecarMode(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    SidecarMode
		wantErr bool
	}{
		{"native", Native, false},
		{"any", Any, false},
		{"", "", true},
		{"Native", "", true},
		{"classic", "", true},
	} {
		got, err := ParseSidecarMode(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSidecarMode(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

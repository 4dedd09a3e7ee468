package engine_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/engine/enginetest"
)

// TestInjectionWarning checks which namespace labels count as enrolling
// new pods in the mesh, on a STRICT policy that is otherwise allowed.
func TestInjectionWarning(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name   string
		labels map[string]string
		warn   bool
	}{
		{"istio-injection=enabled", map[string]string{"istio-injection": "enabled"}, false},
		{"istio-injection=disabled", map[string]string{"istio-injection": "disabled"}, true},
		{"istio.io/rev", map[string]string{"istio.io/rev": "asm-1-22"}, false},
		{"istio.io/rev empty", map[string]string{"istio.io/rev": ""}, true},
		{"ambient", map[string]string{"istio.io/dataplane-mode": "ambient"}, false},
		{"dataplane-mode none", map[string]string{"istio.io/dataplane-mode": "none"}, true},
		{"no labels", nil, true},
		{"unrelated label", map[string]string{"team": "web"}, true},
	}
	for _, tt := range tests {
		for _, version := range apiVersions {
			t.Run(tt.name+"/"+version, func(t *testing.T) {
				s := enginetest.NewSnapshot()
				s.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: tt.labels}})
				s.Add(&corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web-0", Labels: map[string]string{"app": "web"}},
					Spec: corev1.PodSpec{
						InitContainers: []corev1.Container{{Name: "istio-proxy", RestartPolicy: &always}},
						Containers:     []corev1.Container{{Name: "web"}},
					},
					Status: corev1.PodStatus{Phase: corev1.PodRunning},
				})
				for _, ch := range []pa{
					newPA(version, "web/default", "", strict),
					newPA(version, "web/ports", "", "{selector: {matchLabels: {app: web}}, portLevelMtls: {8080: {mode: STRICT}}}"),
				} {
					d, err := engine.Decide(s, engine.Change{Operation: engine.Create, Policy: ch.typed(t)}, engine.DefaultOptions())
					if err != nil {
						t.Fatal(err)
					}
					if !d.Allowed {
						t.Fatalf("denied: %s", d.Message)
					}
					got := len(d.Warnings) == 1 && strings.Contains(d.Warnings[0], "namespace web has no injection or ambient label: new pods may start unmeshed under STRICT")
					if got != tt.warn || (!tt.warn && len(d.Warnings) != 0) {
						t.Errorf("%s: warnings %q, want the injection warning: %v", ch.name, d.Warnings, tt.warn)
					}
				}
				// Without STRICT anywhere there is nothing to warn about.
				d, err := engine.Decide(s, engine.Change{Operation: engine.Create, Policy: newPA(version, "web/default", "", permissive).typed(t)}, engine.DefaultOptions())
				if err != nil {
					t.Fatal(err)
				}
				if len(d.Warnings) != 0 {
					t.Errorf("PERMISSIVE: warnings %q", d.Warnings)
				}
			})
		}
	}
}

func TestTruncate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 50, "short"},
		{strings.Repeat("a", 50), 50, strings.Repeat("a", 50)},
		{strings.Repeat("a", 51), 50, strings.Repeat("a", 49) + "…"},
		{strings.Repeat("ä", 60), 50, strings.Repeat("ä", 49) + "…"}, // runes, not bytes
	} {
		if got := engine.Truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

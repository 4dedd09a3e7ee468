package cli

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// clusterYAML is istio-demo with a meshed web pod and an unmeshed
// mtls-test pod, and a namespace-wide PERMISSIVE policy "base" created on
// 2024-01-10.
const clusterYAML = `
apiVersion: v1
kind: Namespace
metadata: {name: istio-demo, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: istio-demo, labels: {app: web}}
spec:
  initContainers: [{name: istio-proxy, image: proxyv2, restartPolicy: Always}]
  containers: [{name: web, image: nginx}]
---
apiVersion: v1
kind: Pod
metadata: {name: mtls-test, namespace: istio-demo}
spec:
  containers: [{name: curl, image: curl}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: base
  namespace: istio-demo
  creationTimestamp: "2024-01-10T00:00:00Z"
  annotations: {mtls-guard.io/override-reason: "ticket 42"}
spec: {mtls: {mode: PERMISSIVE}}
`

// pa renders a PeerAuthentication document.
func pa(namespace, name, mode, extra string) string {
	meta := "name: " + name
	if namespace != "" {
		meta += ", namespace: " + namespace
	}
	return "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {" + meta + extra + "}\nspec: {mtls: {mode: " + mode + "}" + "}\n"
}

func webSelector(name, mode string) string {
	return "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: " + name +
		", namespace: istio-demo}\nspec: {selector: {matchLabels: {app: web}}, mtls: {mode: " + mode + "}}\n"
}

func TestEvaluate(t *testing.T) {
	const override = `, annotations: {mtls-guard.io/override-reason: "accepted risk"}`
	type want struct {
		op      engine.Operation
		verdict string
	}
	tests := []struct {
		name     string
		docs     []string
		del      []bool // per document; nil: no deletes
		want     []want
		warning  string            // a warning of the last decision
		policies map[string]string // key -> mode after the run; "" means absent
	}{
		{
			name:     "a second policy sees the first allowed one",
			docs:     []string{pa("istio-demo", "base", "STRICT", override), webSelector("web", "STRICT")},
			want:     []want{{engine.Update, verdictOverridden}, {engine.Create, verdictAllowed}},
			warning:  "drift: 1 unmeshed pod in istio-demo already under STRICT: Pod/mtls-test",
			policies: map[string]string{"istio-demo/base": "STRICT", "istio-demo/web": "STRICT"},
		},
		{
			name:     "alone, the second is denied",
			docs:     []string{webSelector("web", "STRICT")},
			want:     []want{{engine.Create, verdictDenied}},
			policies: map[string]string{"istio-demo/web": ""},
		},
		{
			name:     "a denied policy is not applied",
			docs:     []string{webSelector("web", "STRICT"), webSelector("web", "PERMISSIVE")},
			want:     []want{{engine.Create, verdictDenied}, {engine.Create, verdictAllowed}},
			policies: map[string]string{"istio-demo/web": "PERMISSIVE"},
		},
		{
			name:     "an invalid policy is denied and not applied",
			docs:     []string{pa("istio-demo", "typo", "STRICTT", override), pa("istio-demo", "typo", "DISABLE", "")},
			want:     []want{{engine.Create, verdictInvalid}, {engine.Create, verdictAllowed}},
			policies: map[string]string{"istio-demo/typo": "DISABLE"},
		},
		{
			name:     "an existing policy is an UPDATE",
			docs:     []string{pa("istio-demo", "base", "STRICT", "")},
			want:     []want{{engine.Update, verdictDenied}},
			policies: map[string]string{"istio-demo/base": "PERMISSIVE"},
		},
		{
			name: "an applied policy is an UPDATE the next time",
			docs: []string{pa("istio-demo", "web", "DISABLE", ""), pa("istio-demo", "web", "PERMISSIVE", "")},
			want: []want{{engine.Create, verdictAllowed}, {engine.Update, verdictAllowed}},
			// web is newer than base: Istio ignores it.
			warning:  "Istio ignores istio-demo/web: the older namespace-wide policy istio-demo/base takes precedence",
			policies: map[string]string{"istio-demo/web": "PERMISSIVE"},
		},
		{
			// The file's creationTimestamp (older than base) is not what the
			// API server would store: a created policy is the newest.
			name:    "a created policy is the newest whatever the file says",
			docs:    []string{pa("istio-demo", "old", "STRICT", `, creationTimestamp: "2000-01-01T00:00:00Z"`)},
			want:    []want{{engine.Create, verdictAllowed}},
			warning: "Istio ignores istio-demo/old: the older namespace-wide policy istio-demo/base takes precedence",
		},
		{
			// base keeps its creationTimestamp through the first update, so
			// it is still the applied policy in the second.
			name: "an update keeps the creationTimestamp",
			docs: []string{
				pa("istio-demo", "aaa", "DISABLE", ""), // sorts before base on a tie
				pa("istio-demo", "base", "DISABLE", `, creationTimestamp: "2030-01-01T00:00:00Z"`),
				pa("istio-demo", "base", "STRICT", ""),
			},
			want:     []want{{engine.Create, verdictAllowed}, {engine.Update, verdictAllowed}, {engine.Update, verdictDenied}},
			policies: map[string]string{"istio-demo/base": "DISABLE", "istio-demo/aaa": "DISABLE"},
		},
		{
			name:     "no namespace means default",
			docs:     []string{pa("", "p", "STRICT", "")},
			want:     []want{{engine.Create, verdictAllowed}},
			policies: map[string]string{"default/p": "STRICT"},
		},
		{
			// Once the mesh is STRICT, deleting base makes istio-demo STRICT:
			// the existing object's override counts; the file's copy has none.
			name:     "delete decides on the existing object",
			docs:     []string{pa("istio-system", "default", "STRICT", ""), pa("istio-demo", "base", "DISABLE", "")},
			del:      []bool{false, true},
			want:     []want{{engine.Create, verdictAllowed}, {engine.Delete, verdictOverridden}},
			policies: map[string]string{"istio-demo/base": "", "istio-system/default": "STRICT"},
		},
		{
			// With base gone from the index, istio-demo inherits the new
			// mesh-wide STRICT; with base still there, it would stay
			// PERMISSIVE and the mesh-wide policy would pass.
			name:     "the index forgets a deleted policy",
			docs:     []string{pa("istio-demo", "base", "", ""), pa("istio-system", "default", "STRICT", "")},
			del:      []bool{true, false},
			want:     []want{{engine.Delete, verdictAllowed}, {engine.Create, verdictDenied}},
			policies: map[string]string{"istio-demo/base": "", "istio-system/default": ""},
		},
		{
			name:     "a deleted policy is gone for the next one",
			docs:     []string{pa("istio-demo", "base", "", ""), pa("istio-demo", "base", "STRICT", "")},
			del:      []bool{true, false},
			want:     []want{{engine.Delete, verdictAllowed}, {engine.Create, verdictDenied}},
			policies: map[string]string{"istio-demo/base": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := loadYAML(t, clusterYAML)
			objs, err := input.Read([]string{"-"}, false, strings.NewReader(strings.Join(tt.docs, "---\n")))
			if err != nil {
				t.Fatal(err)
			}
			ps, err := input.Policies(objs, input.DefaultNamespace, nil)
			if err != nil {
				t.Fatal(err)
			}
			var decisions []*engine.Decision
			if tt.del == nil {
				if decisions, err = evaluate(s, ps, false); err != nil {
					t.Fatal(err)
				}
			}
			for i, del := range tt.del {
				// One call per document, on the same store.
				ds, err := evaluate(s, ps[i:i+1], del)
				if err != nil {
					t.Fatal(err)
				}
				decisions = append(decisions, ds...)
			}
			var got []want
			for _, d := range decisions {
				got = append(got, want{d.Operation, verdict(d)})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("decisions %v, want %v", got, tt.want)
			}
			if tt.warning != "" && !slices.Contains(decisions[len(decisions)-1].Warnings, tt.warning) {
				t.Errorf("warnings %q, want %q among them", decisions[len(decisions)-1].Warnings, tt.warning)
			}
			for key, mode := range tt.policies {
				ns, name, _ := strings.Cut(key, "/")
				p := s.policies[ns+"/"+name]
				switch {
				case mode == "" && p != nil:
					t.Errorf("%s is in the store, want it absent", key)
				case mode != "" && p == nil:
					t.Errorf("%s is not in the store", key)
				case mode != "" && p.Mode.String() != mode:
					t.Errorf("%s has mode %s, want %s", key, p.Mode, mode)
				}
			}
			// Whatever happened to base, it kept its creationTimestamp.
			if base := s.policies["istio-demo/base"]; base != nil && !base.Created.Equal(&metav1.Time{Time: time.Date(2024, 1, 10, 0, 0, 0, 0, time.UTC)}) {
				t.Errorf("base has creationTimestamp %v, want 2024-01-10", base.Created)
			}
		})
	}
}

func TestEvaluateDeleteMissing(t *testing.T) {
	s := loadYAML(t, clusterYAML)
	ps := []input.Policy{{
		Loc:    input.Location{File: "p.yaml", Doc: 3},
		Policy: &policy.Policy{Namespace: "istio-demo", Name: "nope"},
	}}
	_, err := evaluate(s, ps, true)
	want := "p.yaml: document 3: PeerAuthentication istio-demo/nope does not exist in the cluster, so it cannot be deleted"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

// loadYAML loads a cluster into a store with the default options.
func loadYAML(t *testing.T, data string) *store {
	t.Helper()
	objs, err := input.Read([]string{"-"}, false, strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := input.FromObjects(objs)
	if err != nil {
		t.Fatal(err)
	}
	return newStore(cl, engine.DefaultOptions())
}

package chart

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/manifests"
)

// TestKustomizeEqualsChart: what `kubectl apply -k` installs from deploy/
// and its overlays is, object for object, what the chart renders with the
// matching values. Only app.kubernetes.io/managed-by differs (kustomize,
// not Helm), and Generated renders it so.
func TestKustomizeEqualsChart(t *testing.T) {
	c := load(t)
	root := repoRoot(t)
	aks := CertManagerValues()
	aks["global"] = map[string]any{"aks": true}
	tests := []struct {
		dir    string
		values map[string]any
	}{
		{"deploy", CertManagerValues()},
		{"deploy/overlays/aks", aks},
		{"deploy/overlays/no-cert-manager", BaseValues()},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			kust, err := manifests.Render(filepath.Join(root, tt.dir))
			if err != nil {
				t.Fatal(err)
			}
			ms, err := Render(c, Options{Values: tt.values, Service: "kustomize"})
			if err != nil {
				t.Fatal(err)
			}
			compare(t, kust, Objects(ms))
		})
	}
}

// compare matches objects by kind, namespace and name and compares each
// whole.
func compare(t *testing.T, kustomized, rendered []client.Object) {
	t.Helper()
	key := func(o client.Object) string {
		return o.GetObjectKind().GroupVersionKind().String() + " " + client.ObjectKeyFromObject(o).String()
	}
	byKey := map[string]client.Object{}
	for _, o := range rendered {
		byKey[key(o)] = o
	}
	for _, k := range kustomized {
		r, ok := byKey[key(k)]
		if !ok {
			t.Errorf("kustomize renders %s, the chart does not", key(k))
			continue
		}
		delete(byKey, key(k))
		if !equality.Semantic.DeepEqual(k, r) {
			t.Errorf("%s differs (-kustomize +chart):\n%s", key(k), cmp.Diff(k, r))
		}
	}
	for k := range byKey {
		t.Errorf("the chart renders %s, kustomize does not", k)
	}
}

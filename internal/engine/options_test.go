package engine

import (
	"slices"
	"sort"
	"testing"

	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/mtls-guard/mtls-guard/internal/mesh"
)

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name         string
		root         string
		sidecar      mesh.SidecarMode
		excluded     []string
		own          string
		wantExcluded []string
		wantErr      bool
	}{
		{
			name: "defaults", root: "istio-system", sidecar: mesh.Native,
			excluded:     []string{"kube-system", "kube-public", "kube-node-lease", "local-path-storage"},
			wantExcluded: []string{"istio-system", "kube-node-lease", "kube-public", "kube-system", "local-path-storage"},
		},
		{
			name: "POD_NAMESPACE is excluded", root: "istio-system", sidecar: mesh.Any,
			excluded: []string{"kube-system"}, own: "mtls-guard",
			wantExcluded: []string{"istio-system", "kube-system", "mtls-guard"},
		},
		{
			name: "AKS root namespace", root: "aks-istio-system", sidecar: mesh.Native,
			wantExcluded: []string{"aks-istio-system"},
		},
		{
			name: "blanks and spaces from a flag", root: "istio-system", sidecar: mesh.Native,
			excluded: []string{" kube-system ", "", "  ", "istio-system"}, own: "",
			wantExcluded: []string{"istio-system", "kube-system"},
		},
		{name: "empty root", root: "", sidecar: mesh.Native, wantErr: true},
		{name: "unknown sidecar mode", root: "istio-system", sidecar: "classic", wantErr: true},
		{name: "empty sidecar mode", root: "istio-system", sidecar: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := NewOptions(tt.root, tt.sidecar, tt.excluded, tt.own, true)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			got := sets.List(o.ExcludedNamespaces)
			if !slices.Equal(got, tt.wantExcluded) {
				t.Errorf("excluded %v, want %v", got, tt.wantExcluded)
			}
			if o.RootNamespace != tt.root || o.SidecarMode != tt.sidecar || !o.AllowOverride {
				t.Errorf("options %+v", o)
			}
			for _, ns := range tt.wantExcluded {
				if !o.excluded(ns) {
					t.Errorf("%s is not excluded", ns)
				}
			}
			if o.excluded("billing") {
				t.Error("billing is excluded")
			}
		})
	}
	if o, err := NewOptions("istio-system", mesh.Native, nil, "", false); err != nil || o.AllowOverride {
		t.Errorf("--allow-override=false: %+v, %v", o, err)
	}
}

func TestDefaultOptions(t *testing.T) {
	o := DefaultOptions()
	if o.RootNamespace != "istio-system" || o.SidecarMode != mesh.Native || !o.AllowOverride {
		t.Errorf("DefaultOptions() = %+v", o)
	}
	got := sets.List(o.ExcludedNamespaces)
	want := []string{"istio-system", "kube-node-lease", "kube-public", "kube-system", "local-path-storage"}
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("excluded %v, want %v", got, want)
	}
	// Options built by hand still exclude their root namespace.
	hand := Options{RootNamespace: "istio-system"}
	if !hand.excluded("istio-system") || hand.excluded("kube-system") {
		t.Error("hand-built options: the root namespace must be excluded, nothing else")
	}
}

// Package engine holds the guard's decision: given a cluster snapshot and a
// change to one PeerAuthentication, would the change cut unmeshed pods off?
// The webhook and the check and report commands share it.
package engine

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/mtls-guard/mtls-guard/internal/evidence"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
)

// DefaultExcludedNamespaces is the default of --exclude-namespaces.
const DefaultExcludedNamespaces = "kube-system,kube-public,kube-node-lease,local-path-storage"

// DefaultRootNamespace is Istio's default root namespace.
const DefaultRootNamespace = "istio-system"

// Options configure the decision.
type Options struct {
	// RootNamespace is Istio's root namespace, where a policy without a
	// selector is mesh-wide.
	RootNamespace string
	// SidecarMode says which sidecars count as meshed.
	SidecarMode mesh.SidecarMode
	// ExcludedNamespaces are never counted, nor are policies there blocked
	// (the root namespace's mesh-wide policy excepted).
	ExcludedNamespaces sets.Set[string]
	// AllowOverride honours the override annotation.
	AllowOverride bool
	// Plaintext, when set, gives the plaintext evidence of section 3a: the
	// last snapshot, and why it cannot be trusted when it cannot (stale,
	// or its source failed). Nil means no telemetry source is configured.
	Plaintext func() (*evidence.Snapshot, error)
	// DenyWithoutEvidence denies a change that the evidence would judge
	// while the evidence is unavailable; otherwise such a change is
	// allowed with a warning that says so.
	DenyWithoutEvidence bool
}

// NewOptions builds Options the way the command line gives them: the root
// namespace and the guard's own namespace (may be empty) are always
// excluded.
func NewOptions(root string, sidecar mesh.SidecarMode, excluded []string, ownNamespace string, allowOverride bool) (Options, error) {
	if root == "" {
		return Options{}, fmt.Errorf("root namespace must not be empty")
	}
	if _, err := mesh.ParseSidecarMode(string(sidecar)); err != nil {
		return Options{}, err
	}
	ex := sets.New[string](root)
	for _, ns := range excluded {
		if ns = strings.TrimSpace(ns); ns != "" {
			ex.Insert(ns)
		}
	}
	if ownNamespace != "" {
		ex.Insert(ownNamespace)
	}
	return Options{RootNamespace: root, SidecarMode: sidecar, ExcludedNamespaces: ex, AllowOverride: allowOverride}, nil
}

// DefaultOptions are the guard's defaults, for tests and tools.
func DefaultOptions() Options {
	o, _ := NewOptions(DefaultRootNamespace, mesh.Native, strings.Split(DefaultExcludedNamespaces, ","), "", true)
	return o
}

func (o *Options) excluded(ns string) bool {
	return o.ExcludedNamespaces.Has(ns) || ns == o.RootNamespace
}

package engine

import (
	"fmt"

	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// NamespaceStatus is where one namespace stands, for the report command.
type NamespaceStatus struct {
	Namespace string
	// Mode is the namespace-level mode Istio resolves, never Unset: the
	// oldest policy without a selector in the namespace, UNSET inheriting
	// the mesh level. For the root namespace it is the mesh level.
	Mode policy.Mode
	// Wide is the namespace-wide policy Istio applies (the oldest without a
	// selector), or nil.
	Wide *policy.Policy
	// Meshed and Unmeshed count the counted pods; both are zero in an
	// excluded namespace.
	Meshed, Unmeshed int
	// Workloads groups the unmeshed pods by owner, sorted; never nil.
	Workloads []Workload
}

// MeshMode resolves the mesh level from the root namespace's policies:
// the oldest without a selector, UNSET or none meaning PERMISSIVE.
func MeshMode(c Cluster, o Options) (policy.Mode, error) {
	root, err := c.Policies(o.RootNamespace)
	if err != nil {
		return policy.Unset, fmt.Errorf("listing policies in root namespace %s: %w", o.RootNamespace, err)
	}
	return meshMode(root), nil
}

// DescribeNamespace resolves a namespace's mode and classifies its counted
// pods with the same rules as Decide.
func DescribeNamespace(c Cluster, namespace string, o Options) (*NamespaceStatus, error) {
	meshLevel, err := MeshMode(c, o)
	if err != nil {
		return nil, err
	}
	ps, err := c.Policies(namespace)
	if err != nil {
		return nil, fmt.Errorf("listing policies in %s: %w", namespace, err)
	}
	st := &NamespaceStatus{Namespace: namespace, Mode: meshLevel, Wide: oldestWide(ps), Workloads: []Workload{}}
	if namespace != o.RootNamespace {
		st.Mode = resolveLevel(meshLevel, ps).mode
	}
	if o.excluded(namespace) {
		return st, nil
	}
	f, err := c.PodFacts(namespace, o.SidecarMode)
	if err != nil {
		return nil, fmt.Errorf("listing pods in %s: %w", namespace, err)
	}
	st.Unmeshed = len(f.Unmeshed)
	st.Meshed = f.Counted - st.Unmeshed
	if st.Workloads, err = group(c, f.Unmeshed); err != nil {
		return nil, fmt.Errorf("grouping the unmeshed pods of %s: %w", namespace, err)
	}
	return st, nil
}

// Excluded reports whether the guard leaves a namespace alone: an excluded
// namespace or the root namespace.
func (o *Options) Excluded(namespace string) bool { return o.excluded(namespace) }

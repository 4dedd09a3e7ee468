package engine

import (
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// level is the policy resolution of one namespace, mirroring Istio's
// ComposePeerAuthentication: the resolved namespace-level mode and the
// workload policies, oldest first.
type level struct {
	mode     policy.Mode // never Unset
	workload []*policy.Policy
}

// meshMode resolves the mesh level from the root namespace's policies.
func meshMode(rootPolicies []*policy.Policy) policy.Mode {
	if p := oldestWide(rootPolicies); p != nil && p.Mode != policy.Unset {
		return p.Mode
	}
	return policy.Permissive
}

// resolveLevel resolves a namespace (not the root) from its policies.
func resolveLevel(mesh policy.Mode, nsPolicies []*policy.Policy) level {
	l := level{mode: mesh}
	if p := oldestWide(nsPolicies); p != nil && p.Mode != policy.Unset {
		l.mode = p.Mode
	}
	for _, p := range nsPolicies {
		if p.HasSelector() {
			l.workload = append(l.workload, p)
		}
	}
	policy.SortOldestFirst(l.workload)
	return l
}

// oldestWide returns the oldest policy without a selector, or nil.
func oldestWide(ps []*policy.Policy) *policy.Policy {
	var oldest *policy.Policy
	for _, p := range ps {
		if !p.HasSelector() && (oldest == nil || policy.Older(p, oldest)) {
			oldest = p
		}
	}
	return oldest
}

// effective is a pod's resolved mode: def on every port, except the ports
// that the matching workload policy names.
type effective struct {
	def   policy.Mode
	ports map[uint32]policy.Mode // may hold Unset, which means def
}

func (e effective) at(port uint32) policy.Mode {
	if m, ok := e.ports[port]; ok && m != policy.Unset {
		return m
	}
	return e.def
}

// anyStrict reports whether some port is STRICT.
func (e effective) anyStrict() bool {
	if e.def == policy.Strict {
		return true
	}
	for _, m := range e.ports {
		if m == policy.Strict {
			return true
		}
	}
	return false
}

// forPod resolves the mode for a pod with these labels.
func (l *level) forPod(podLabels map[string]string) effective {
	for _, p := range l.workload {
		if p.Matches(podLabels) {
			e := effective{def: p.Mode, ports: p.Ports}
			if e.def == policy.Unset {
				e.def = l.mode
			}
			return e
		}
	}
	return effective{def: l.mode}
}

// gains reports whether some port is STRICT after and was not before.
func gains(before, after effective) bool {
	if after.def == policy.Strict && before.def != policy.Strict {
		return true // every port that neither names
	}
	for port := range after.ports {
		if after.at(port) == policy.Strict && before.at(port) != policy.Strict {
			return true
		}
	}
	for port := range before.ports {
		if after.at(port) == policy.Strict && before.at(port) != policy.Strict {
			return true
		}
	}
	return false
}

// sameLevel reports whether two resolutions give every pod the same modes.
func sameLevel(a, b *level) bool {
	if a.mode != b.mode || len(a.workload) != len(b.workload) {
		return false
	}
	for i := range a.workload {
		if a.workload[i] != b.workload[i] {
			return false
		}
	}
	return true
}

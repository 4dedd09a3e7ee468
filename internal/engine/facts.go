package engine

import (
	"iter"

	corev1 "k8s.io/api/core/v1"

	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// UnmeshedPod is a counted pod that is not in the mesh, and why: what a
// decision reads of it to name its workload.
type UnmeshedPod struct {
	Namespace, Name string
	// Labels are the pod's labels; they are shared and must not be modified.
	Labels map[string]string
	// Controller is the pod's controller; its Kind is empty when it has none.
	Controller mesh.Owner
	Reason     mesh.Reason
}

// UnmeshedPodOf describes an unmeshed pod; it shares the pod's labels.
func UnmeshedPodOf(pod *corev1.Pod, reason mesh.Reason) UnmeshedPod {
	return UnmeshedPod{Namespace: pod.Namespace, Name: pod.Name, Labels: pod.Labels, Controller: mesh.ControllerOf(pod), Reason: reason}
}

// PodFacts is what a decision reads of the counted pods of one namespace:
// how many there are, their distinct label sets, and the unmeshed ones.
// Counted pods are those mesh.Counted accepts.
type PodFacts struct {
	// Counted is the number of counted pods.
	Counted int
	// LabelSets yields every distinct label set of the counted pods with
	// the number of pods that carry it. Pods of one ReplicaSet share one,
	// so selectors are matched per workload rather than per pod.
	LabelSets iter.Seq2[map[string]string, int]
	// Unmeshed lists the counted pods that are not meshed under the
	// sidecar mode asked for, in any order.
	Unmeshed []UnmeshedPod
	// Exempt lists the pods that would be counted and unmeshed under the
	// sidecar mode but for their mtls-guard.io/exempt label: a decision
	// names them wherever their exemption changes it.
	Exempt []UnmeshedPod
	// IstioWorkload returns the kind and the label sets (with their pod
	// counts) of the counted pods whose Istio workload name
	// (mesh.WorkloadName) is name; nil sets when there are none. It is
	// how plaintext evidence, which names workloads, reaches pods.
	IstioWorkload func(name string) (kind string, sets iter.Seq2[map[string]string, int])
	// Workloads, when set, returns Group of Unmeshed, so that a Cluster
	// may keep that grouping between decisions; the engine copies what it
	// keeps of it. When nil, the engine groups Unmeshed itself.
	Workloads func() ([]Workload, error)
}

// FactsOf computes the facts of one namespace's pods; each counted pod is
// its own label set. It is what a Cluster that holds pods gives.
func FactsOf(pods []*corev1.Pod, mode mesh.SidecarMode) PodFacts {
	f := PodFacts{LabelSets: func(yield func(map[string]string, int) bool) {
		for _, pod := range pods {
			if mesh.Counted(pod) && !yield(pod.Labels, 1) {
				return
			}
		}
	}}
	f.IstioWorkload = func(name string) (string, iter.Seq2[map[string]string, int]) {
		var kind string
		var of []*corev1.Pod
		for _, pod := range pods {
			if k, n := mesh.WorkloadNameOf(pod); mesh.Counted(pod) && n == name {
				kind, of = k, append(of, pod)
			}
		}
		if len(of) == 0 {
			return "", nil
		}
		return kind, func(yield func(map[string]string, int) bool) {
			for _, pod := range of {
				if !yield(pod.Labels, 1) {
					return
				}
			}
		}
	}
	for _, pod := range pods {
		if mesh.Exempt(pod) {
			if meshed, reason := mesh.Classify(pod, mode); !meshed {
				f.Exempt = append(f.Exempt, UnmeshedPodOf(pod, reason))
			}
		}
		if !mesh.Counted(pod) {
			continue
		}
		f.Counted++
		if meshed, reason := mesh.Classify(pod, mode); !meshed {
			f.Unmeshed = append(f.Unmeshed, UnmeshedPodOf(pod, reason))
		}
	}
	return f
}

// nsScan is what one namespace adds to a decision.
type nsScan struct {
	// touched is set when some counted pod gains strictness.
	touched bool
	// matched counts counted pods that the changed policy's selector
	// matches in its own namespace; the count may stop early once it is
	// positive, which is all that the warnings read.
	matched int
	// drift lists the own namespace's unmeshed pods under STRICT both
	// before and after the change.
	drift []UnmeshedPod
}

// scanNamespace decides one namespace from its facts, given its
// resolutions before (lb) and after (la) the change of p. own says whether
// it is p's namespace.
func scanNamespace(f PodFacts, lb, la *level, p *policy.Policy, own bool) nsScan {
	var s nsScan
	selector := own && p.HasSelector()
	if !selector && len(lb.workload) == 0 && len(la.workload) == 0 {
		// Every pod of the namespace resolves alike: one comparison.
		s.touched = f.Counted > 0 && gains(effective{def: lb.mode}, effective{def: la.mode})
	} else {
		s.touched, s.matched = scanLabelSets(f.LabelSets, *lb, *la, p, selector)
	}
	if own && lb.mayBeStrict() && la.mayBeStrict() {
		for _, up := range f.Unmeshed {
			// Drift is STRICT that predates the change and outlives it; a
			// change that ends it is not warned about.
			if lb.forPod(up.Labels).anyStrict() && la.forPod(up.Labels).anyStrict() {
				s.drift = append(s.drift, up)
			}
		}
	}
	return s
}

// scanLabelSets reports whether a pod of some label set gains strictness
// and counts the pods that p's selector matches when selector is set. It
// takes the levels by value: the loop body is a closure, and whatever it
// captures moves to the heap, which the common path without workload
// policies should not pay for.
func scanLabelSets(sets iter.Seq2[map[string]string, int], lb, la level, p *policy.Policy, selector bool) (touched bool, matched int) {
	for labels, n := range sets {
		if selector && p.Matches(labels) {
			matched += n
		}
		if !touched && gains(lb.forPod(labels), la.forPod(labels)) {
			touched = true
		}
		if touched && (!selector || matched > 0) {
			break
		}
	}
	return touched, matched
}

// mayBeStrict reports whether some pod may resolve to STRICT on some port
// under the level; when it is false no pod drifts, and the unmeshed pods
// need not be looked at one by one.
func (l *level) mayBeStrict() bool {
	if l.mode == policy.Strict {
		return true
	}
	for _, p := range l.workload {
		if p.AnyStrict() {
			return true
		}
	}
	return false
}

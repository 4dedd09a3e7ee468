// Package mesh decides whether a pod is in the Istio mesh, and whether the
// guard counts it at all.
package mesh

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Names the guard reads on pods.
const (
	ProxyContainer        = "istio-proxy"
	InjectKey             = "sidecar.istio.io/inject"
	AmbientRedirectionKey = "ambient.istio.io/redirection"
	ExemptLabel           = "mtls-guard.io/exempt"
)

// Namespace labels that make new pods join the mesh.
const (
	InjectionLabel   = "istio-injection"
	RevisionLabel    = "istio.io/rev"
	DataplaneModeKey = "istio.io/dataplane-mode"
	ambientDataplane = "ambient"
	injectionEnabled = "enabled"
)

// Enrolled reports whether new pods in the namespace join the mesh:
// sidecar injection (istio-injection=enabled or a revision label) or
// ambient. A nil namespace is not enrolled.
func Enrolled(ns *corev1.Namespace) bool {
	if ns == nil {
		return false
	}
	l := ns.Labels
	return l[InjectionLabel] == injectionEnabled || l[RevisionLabel] != "" || l[DataplaneModeKey] == ambientDataplane
}

// OptsIn reports whether a pod's own labels enroll it in the mesh where
// its namespace does not: a revision label, the injection label set to
// "true", or the ambient data-plane mode.
func OptsIn(podLabels map[string]string) bool {
	return podLabels[RevisionLabel] != "" || podLabels[InjectKey] == "true" || podLabels[DataplaneModeKey] == ambientDataplane
}

// AmbientSelected reports whether a pod without a sidecar will be
// redirected by ambient: its namespace, or its own label, selects the
// ambient data plane and the pod does not opt out
// (istio.io/dataplane-mode=none).
func AmbientSelected(ns *corev1.Namespace, podLabels map[string]string) bool {
	switch podLabels[DataplaneModeKey] {
	case ambientDataplane:
		return true
	case "none":
		return false
	}
	return ns != nil && ns.Labels[DataplaneModeKey] == ambientDataplane
}

// Reason says why a pod is unmeshed. The strings are part of the guard's
// output contract.
type Reason string

// The reasons, in the order they are tested.
const (
	HostNetwork       Reason = "host-network"
	InjectionDisabled Reason = "injection-disabled"
	ClassicSidecar    Reason = "classic-sidecar"
	AmbientPending    Reason = "ambient-pending"
	NoSidecar         Reason = "no-sidecar"
)

// SidecarMode says which sidecars count as meshed.
type SidecarMode string

const (
	// Native counts only the native sidecar: an istio-proxy initContainer
	// with restartPolicy Always (the AKS Istio add-on's injection).
	Native SidecarMode = "native"
	// Any also counts a classic istio-proxy container.
	Any SidecarMode = "any"
)

// ParseSidecarMode parses the --sidecar-mode flag.
func ParseSidecarMode(s string) (SidecarMode, error) {
	switch m := SidecarMode(s); m {
	case Native, Any:
		return m, nil
	}
	return "", fmt.Errorf("unknown sidecar mode %q (want native or any)", s)
}

// Classify reports whether a pod is meshed and, when it is not, the first
// reason that applies.
func Classify(pod *corev1.Pod, mode SidecarMode) (meshed bool, reason Reason) {
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.Name == ProxyContainer && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			return true, ""
		}
	}
	classic := false
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if c.Name != ProxyContainer {
			continue
		}
		if slices.Contains(c.Args, "router") {
			return true, "" // an ingress or egress gateway
		}
		classic = true
	}
	redirection, ambient := pod.Annotations[AmbientRedirectionKey]
	if ambient && redirection == "enabled" {
		return true, ""
	}
	if classic && mode == Any {
		return true, ""
	}
	switch {
	case pod.Spec.HostNetwork:
		return false, HostNetwork
	case pod.Labels[InjectKey] == "false" || pod.Annotations[InjectKey] == "false":
		return false, InjectionDisabled
	case classic:
		return false, ClassicSidecar
	case ambient:
		return false, AmbientPending
	}
	return false, NoSidecar
}

// Counted reports whether the guard counts a pod (meshed or not). Pods that
// finished, are being deleted or are exempt are not counted; excluded
// namespaces are the caller's concern.
func Counted(pod *corev1.Pod) bool {
	return live(pod) && pod.Labels[ExemptLabel] != "true"
}

// Exempt reports whether a pod would be counted but for its exempt label:
// the pods whose exemption a decision must make visible.
func Exempt(pod *corev1.Pod) bool {
	return live(pod) && pod.Labels[ExemptLabel] == "true"
}

// live reports whether a pod neither finished nor is being deleted.
func live(pod *corev1.Pod) bool {
	return pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed && pod.DeletionTimestamp == nil
}

package engine

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/mtls-guard/mtls-guard/internal/mesh"
)

// Arrival is the verdict on a pod or a workload's pod template that
// arrives where STRICT already holds (section 3b).
type Arrival struct {
	// Judged is false when the rule does not apply: an excluded
	// namespace, a pod that is not counted, an exempt template.
	Judged bool
	// Unmeshed says the pod is unmeshed, or the template is predicted to
	// be; Reason says why.
	Unmeshed bool
	Reason   mesh.Reason
	// UnderStrict says the namespace already has a counted pod STRICT on
	// some port. The arrival is a problem when it is Unmeshed too.
	UnderStrict bool
}

// Problem reports whether the arrival is unmeshed under STRICT.
func (a Arrival) Problem() bool { return a.Judged && a.Unmeshed && a.UnderStrict }

// NamespaceStrict reports whether some counted pod of a namespace is
// STRICT on some port under the cluster's policies. It reads the
// namespace's label sets, not its pods.
func NamespaceStrict(c Cluster, ns string, o Options) (bool, error) {
	if o.excluded(ns) {
		return false, nil
	}
	root, err := c.Policies(o.RootNamespace)
	if err != nil {
		return false, fmt.Errorf("listing policies in root namespace %s: %w", o.RootNamespace, err)
	}
	own, err := c.Policies(ns)
	if err != nil {
		return false, fmt.Errorf("listing policies in %s: %w", ns, err)
	}
	l := resolveLevel(meshMode(root), own)
	if !l.mayBeStrict() {
		return false, nil
	}
	f, err := c.PodFacts(ns, o.SidecarMode)
	if err != nil {
		return false, fmt.Errorf("listing pods in %s: %w", ns, err)
	}
	if len(l.workload) == 0 {
		return f.Counted > 0, nil // every pod resolves to the namespace's mode
	}
	for labels := range f.LabelSets {
		if l.forPod(labels).anyStrict() {
			return true, nil
		}
	}
	return false, nil
}

// StrictCache is a Cluster that keeps NamespaceStrict up to date for the
// options it is asked with (internal/index), so that judging an arrival
// costs neither the namespace's pods nor its label sets.
type StrictCache interface {
	NamespaceStrict(namespace string) (bool, error)
}

func namespaceStrict(c Cluster, ns string, o Options) (bool, error) {
	if sc, ok := c.(StrictCache); ok && !o.excluded(ns) {
		return sc.NamespaceStrict(ns)
	}
	return NamespaceStrict(c, ns, o)
}

// DecidePod judges a pod as it is created: a counted, unmeshed pod in a
// namespace where some counted pod is already STRICT is unmeshed under
// STRICT. Validating webhooks run after injection, so the verdict on the
// pod is final.
func DecidePod(c Cluster, pod *corev1.Pod, o Options) (Arrival, error) {
	if o.excluded(pod.Namespace) || !mesh.Counted(pod) {
		return Arrival{}, nil
	}
	a := Arrival{Judged: true}
	meshed, reason := mesh.Classify(pod, o.SidecarMode)
	if meshed {
		return a, nil
	}
	if reason == mesh.NoSidecar {
		// istio-cni marks an ambient pod only once its network is set up,
		// after admission: a pod of an ambient namespace that does not opt
		// out will be meshed.
		ns, err := c.Namespace(pod.Namespace)
		if err != nil {
			return a, fmt.Errorf("reading namespace %s: %w", pod.Namespace, err)
		}
		if mesh.AmbientSelected(ns, pod.Labels) {
			return a, nil
		}
	}
	a.Unmeshed, a.Reason = true, reason
	var err error
	a.UnderStrict, err = namespaceStrict(c, pod.Namespace, o)
	return a, err
}

// TemplateOf returns the pod template of a workload kind the guard
// predicts (Deployment, StatefulSet, DaemonSet, Job, CronJob), or nil.
func TemplateOf(obj any) *corev1.PodTemplateSpec {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		return &w.Spec.Template
	case *appsv1.StatefulSet:
		return &w.Spec.Template
	case *appsv1.DaemonSet:
		return &w.Spec.Template
	case *batchv1.Job:
		return &w.Spec.Template
	case *batchv1.CronJob:
		return &w.Spec.JobTemplate.Spec.Template
	}
	return nil
}

// DecideTemplate predicts whether the pods of a workload's template will
// be unmeshed, the way injection will decide: meshed when the namespace
// enables injection or ambient and the template does not opt out
// (sidecar.istio.io/inject: "false" as a label or an annotation, or
// hostNetwork). An exempt template is not judged. The namespace's
// strictness is read as for pods.
func DecideTemplate(c Cluster, namespace string, t *corev1.PodTemplateSpec, o Options) (Arrival, error) {
	if o.excluded(namespace) || t.Labels[mesh.ExemptLabel] == "true" {
		return Arrival{}, nil
	}
	a := Arrival{Judged: true}
	ns, err := c.Namespace(namespace)
	if err != nil {
		return a, fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	switch {
	case t.Spec.HostNetwork:
		a.Unmeshed, a.Reason = true, mesh.HostNetwork
	case t.Labels[mesh.InjectKey] == "false" || t.Annotations[mesh.InjectKey] == "false":
		a.Unmeshed, a.Reason = true, mesh.InjectionDisabled
	case !mesh.Enrolled(ns) && !mesh.OptsIn(t.Labels):
		a.Unmeshed, a.Reason = true, mesh.NoSidecar
	}
	if !a.Unmeshed {
		return a, nil
	}
	a.UnderStrict, err = namespaceStrict(c, namespace, o)
	return a, err
}

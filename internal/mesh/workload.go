package mesh

import (
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels Istio reads to name a pod's workload.
const (
	// WorkloadNameLabel overrides the derived workload name
	// (istio.io/api label.ServiceWorkloadName).
	WorkloadNameLabel = "service.istio.io/workload-name"
	// PodTemplateHashLabel is the Deployment controller's label on its
	// ReplicaSets' pods.
	PodTemplateHashLabel = "pod-template-hash"
	// RolloutsPodTemplateHashLabel is Argo Rollouts' equivalent.
	RolloutsPodTemplateHashLabel = "rollouts-pod-template-hash"
	// DeploymentConfigLabel names an OpenShift DeploymentConfig on the pods
	// of its ReplicationControllers.
	DeploymentConfigLabel = "deploymentconfig"
)

// cronJobName matches a Job that a CronJob created: the CronJob's name, a
// dash and a timestamp of 8 to 10 digits. Istio's cronJobNameRegexp.
var cronJobName = regexp.MustCompile(`(.+)-\d{8,10}$`)

// WorkloadName returns the kind and name Istio gives the workload of a pod:
// the name its sidecar reports as source_workload and destination_workload
// in telemetry. It mirrors istio/istio pkg/kube GetWorkloadMetaFromPod
// (GetDeployMetaFromPod plus the workload-name label), over what the guard
// keeps of a pod:
//
//   - a ReplicaSet whose name ends with "-" and the pod's pod-template-hash
//     is Deployment NAME (likewise rollouts-pod-template-hash gives Argo's
//     Rollout NAME, and a ReplicationController of a pod labelled
//     deploymentconfig gives that DeploymentConfig);
//   - a Job whose name matches NAME-<8 to 10 digits> is CronJob NAME;
//   - any other controller is itself;
//   - a pod without a controller is Pod and its own name;
//   - the label service.istio.io/workload-name, when set, replaces the
//     name (not the kind), whatever the above gave.
//
// Three places differ from Istio, neither in the name it returns for pods
// that controllers create:
//
//   - Istio consults the controller only when the pod has a GenerateName,
//     which the guard does not keep. Every built-in controller (ReplicaSet,
//     StatefulSet, DaemonSet, Job) sets GenerateName on the pods it makes, so
//     WorkloadName consults the controller whenever there is one; only a pod
//     made by hand with a controller reference and a fixed name is named
//     differently (Istio: Pod/NAME).
//   - Istio tests that a ReplicaSet's name ends with the hash and then trims
//     "-"+hash; WorkloadName requires the dash, so a ReplicaSet "abc123" of
//     hash "123" stays ReplicaSet/abc123 (Istio: Deployment/abc123, the same
//     name).
//   - Istio takes the workload-name label even when its value is empty;
//     WorkloadName ignores an empty value, which could match no telemetry.
func WorkloadName(podName string, labels map[string]string, controllerKind, controllerName string) (kind, name string) {
	kind, name = "Pod", podName
	if controllerKind != "" && controllerName != "" {
		kind, name = controllerKind, controllerName
		switch controllerKind {
		case "ReplicaSet":
			if n, ok := trimHash(controllerName, labels[PodTemplateHashLabel]); ok {
				kind, name = "Deployment", n
			} else if n, ok := trimHash(controllerName, labels[RolloutsPodTemplateHashLabel]); ok {
				kind, name = "Rollout", n
			}
		case "ReplicationController":
			if dc := labels[DeploymentConfigLabel]; dc != "" {
				kind, name = "DeploymentConfig", dc
			}
		case "Job":
			if m := cronJobName.FindStringSubmatch(controllerName); len(m) == 2 {
				kind, name = "CronJob", m[1]
			}
		}
	}
	if wn := labels[WorkloadNameLabel]; wn != "" {
		name = wn
	}
	return kind, name
}

// trimHash returns name without its "-"+hash suffix, when it has one.
func trimHash(name, hash string) (string, bool) {
	if hash == "" || !strings.HasSuffix(name, "-"+hash) {
		return "", false
	}
	return strings.TrimSuffix(name, "-"+hash), true
}

// WorkloadNameOf is WorkloadName of a pod, read from its controller
// reference. A nil pod has no workload: it returns two empty strings.
func WorkloadNameOf(pod *corev1.Pod) (kind, name string) {
	if pod == nil {
		return "", ""
	}
	var ck, cn string
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		ck, cn = ref.Kind, ref.Name
	}
	return WorkloadName(pod.Name, pod.Labels, ck, cn)
}

// Owner names a controller.
type Owner struct{ Kind, Name string }

// ControllerOf names the controller of an object; its Kind is empty when
// it has none.
func ControllerOf(obj metav1.Object) Owner {
	if ref := metav1.GetControllerOfNoCopy(obj); ref != nil {
		return Owner{Kind: controllerKind(ref.Kind), Name: ref.Name}
	}
	return Owner{}
}

// controllerKind returns the usual controller kinds as constants, so that
// a record does not hold its own copy of "ReplicaSet".
func controllerKind(k string) string {
	for _, c := range [...]string{"ReplicaSet", "Job", "StatefulSet", "DaemonSet", "ReplicationController"} {
		if k == c {
			return c
		}
	}
	return k
}

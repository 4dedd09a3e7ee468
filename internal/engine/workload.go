package engine

import (
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/mesh"
)

// Workload is a group of unmeshed pods under one owner.
type Workload struct {
	Namespace string   `json:"namespace"`
	Kind      string   `json:"kind"`
	Name      string   `json:"name"`
	Pods      []string `json:"pods"`
	Reasons   []string `json:"reasons"`
}

// String renders "Kind/name (N pods: reasons)".
func (w Workload) String() string {
	noun := "pods"
	if len(w.Pods) == 1 {
		noun = "pod"
	}
	return fmt.Sprintf("%s/%s (%d %s: %s)", w.Kind, w.Name, len(w.Pods), noun, strings.Join(w.Reasons, ", "))
}

// unmeshedPod is one unmeshed pod and why.
type unmeshedPod struct {
	pod    *corev1.Pod
	reason mesh.Reason
}

// owner finds the workload a pod belongs to by following controller owner
// references: Pod -> ReplicaSet -> Deployment, Pod -> Job -> CronJob, and any
// other controller as named.
func owner(c Cluster, pod *corev1.Pod) (kind, name string, err error) {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return "Pod", pod.Name, nil
	}
	switch ref.Kind {
	case "ReplicaSet":
		rs, err := c.ReplicaSet(pod.Namespace, ref.Name)
		if err != nil {
			return "", "", fmt.Errorf("looking up ReplicaSet %s/%s: %w", pod.Namespace, ref.Name, err)
		}
		if rs != nil {
			if up := metav1.GetControllerOfNoCopy(rs); up != nil {
				return up.Kind, up.Name, nil
			}
			return "ReplicaSet", rs.Name, nil
		}
		// Unknown ReplicaSet: NAME-HASH with the pod's pod-template-hash
		// is the Deployment's naming scheme.
		if hash := pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; hash != "" {
			if name, ok := strings.CutSuffix(ref.Name, "-"+hash); ok && name != "" {
				return "Deployment", name, nil
			}
		}
	case "Job":
		job, err := c.Job(pod.Namespace, ref.Name)
		if err != nil {
			return "", "", fmt.Errorf("looking up Job %s/%s: %w", pod.Namespace, ref.Name, err)
		}
		if job != nil {
			if up := metav1.GetControllerOfNoCopy(job); up != nil {
				return up.Kind, up.Name, nil
			}
		}
	}
	return ref.Kind, ref.Name, nil
}

// group turns unmeshed pods into workloads, sorted by namespace, kind, name,
// with pods and reasons sorted and unique.
func group(c Cluster, pods []unmeshedPod) ([]Workload, error) {
	type key struct{ ns, kind, name string }
	type acc struct {
		pods, reasons map[string]bool
	}
	byKey := map[key]*acc{}
	for _, up := range pods {
		kind, name, err := owner(c, up.pod)
		if err != nil {
			return nil, err
		}
		k := key{up.pod.Namespace, kind, name}
		a := byKey[k]
		if a == nil {
			a = &acc{pods: map[string]bool{}, reasons: map[string]bool{}}
			byKey[k] = a
		}
		a.pods[up.pod.Name] = true
		a.reasons[string(up.reason)] = true
	}
	out := make([]Workload, 0, len(byKey))
	for k, a := range byKey {
		out = append(out, Workload{Namespace: k.ns, Kind: k.kind, Name: k.name, Pods: sortedSet(a.pods), Reasons: sortedSet(a.reasons)})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
	return out, nil
}

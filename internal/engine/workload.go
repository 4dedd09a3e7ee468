package engine

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// owner finds the workload a pod belongs to by following controller owner
// references: Pod -> ReplicaSet -> Deployment, Pod -> Job -> CronJob, and any
// other controller as named.
func owner(c Cluster, pod *UnmeshedPod) (kind, name string, err error) {
	ref := pod.Controller
	var obj metav1.Object // ref's object, nil when the cluster does not have it
	switch ref.Kind {
	case "":
		return "Pod", pod.Name, nil
	case "ReplicaSet":
		obj, err = known(c.ReplicaSet(pod.Namespace, ref.Name))
	case "Job":
		obj, err = known(c.Job(pod.Namespace, ref.Name))
	default:
		return ref.Kind, ref.Name, nil
	}
	if err != nil {
		return "", "", fmt.Errorf("looking up %s %s/%s: %w", ref.Kind, pod.Namespace, ref.Name, err)
	}
	if obj != nil {
		if up := metav1.GetControllerOfNoCopy(obj); up != nil {
			return up.Kind, up.Name, nil
		}
	} else if hash := pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; ref.Kind == "ReplicaSet" && hash != "" {
		// Unknown ReplicaSet: NAME-HASH with the pod's pod-template-hash
		// is the Deployment's naming scheme.
		if name, ok := strings.CutSuffix(ref.Name, "-"+hash); ok && name != "" {
			return "Deployment", name, nil
		}
	}
	return ref.Kind, ref.Name, nil
}

// known returns obj, or a nil interface rather than one that holds a nil
// pointer when the cluster does not have obj.
func known[T any, P interface {
	*T
	metav1.Object
}](obj P, err error) (metav1.Object, error) {
	if obj == nil {
		return nil, err
	}
	return obj, err
}

// Group turns unmeshed pods into workloads, sorted by namespace, kind,
// name, with pods and reasons sorted and unique: what a decision lists. A
// Cluster that keeps PodFacts.Workloads computes them with it.
func Group(c Cluster, pods []UnmeshedPod) ([]Workload, error) { return group(c, pods) }

// merge groups the pods and adds copies of the workloads that the
// cluster's facts grouped, namespace by namespace. Each namespace is
// grouped in one of the two ways only.
func merge(c Cluster, pods []UnmeshedPod, grouped [][]Workload) ([]Workload, error) {
	own, err := group(c, pods)
	if err != nil || len(grouped) == 0 {
		return own, err
	}
	w, n, r := len(own), 0, 0
	for _, ws := range grouped {
		w += len(ws)
		for i := range ws {
			n += len(ws[i].Pods)
			r += len(ws[i].Reasons)
		}
	}
	// One backing array each for the pods and the reasons of all.
	out := append(make([]Workload, 0, w), own...)
	names, reasons := make([]string, 0, n), make([]string, 0, r)
	for _, ws := range grouped {
		for _, wl := range ws {
			names, reasons = append(names, wl.Pods...), append(reasons, wl.Reasons...)
			wl.Pods = names[len(names)-len(wl.Pods) : len(names) : len(names)]
			wl.Reasons = reasons[len(reasons)-len(wl.Reasons) : len(reasons) : len(reasons)]
			out = append(out, wl)
		}
	}
	if !slices.IsSortedFunc(out, compareWorkloads) {
		slices.SortFunc(out, compareWorkloads)
	}
	return out, nil
}

func compareWorkloads(a, b Workload) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Kind, b.Kind), strings.Compare(a.Name, b.Name))
}

// group is Group.
func group(c Cluster, pods []UnmeshedPod) ([]Workload, error) {
	// Slices rather than sets per workload, and one backing array for
	// every workload's pods: a workload has few reasons, and its pods are
	// sorted and deduplicated once at the end.
	type key struct{ ns, kind, name string }
	byKey := make(map[key]int, len(pods)/4+1) // index into out
	out := make([]Workload, 0, len(pods)/4+1) // never nil
	of := make([]int, len(pods))              // the workload of each pod
	var count []int                           // the pods of each workload
	for j, up := range pods {
		kind, name, err := owner(c, &pods[j])
		if err != nil {
			return nil, err
		}
		k := key{up.Namespace, kind, name}
		i, ok := byKey[k]
		if !ok {
			i = len(out)
			byKey[k] = i
			out = append(out, Workload{Namespace: k.ns, Kind: kind, Name: name})
			count = append(count, 0)
		}
		of[j] = i
		count[i]++
		w := &out[i]
		if !slices.Contains(w.Reasons, string(up.Reason)) {
			w.Reasons = append(w.Reasons, string(up.Reason))
		}
	}
	names := make([]string, len(pods))
	at := 0
	for i := range out {
		out[i].Pods = names[at : at : at+count[i]]
		at += count[i]
	}
	for j, up := range pods {
		w := &out[of[j]]
		w.Pods = append(w.Pods, up.Name)
	}
	for i := range out {
		slices.Sort(out[i].Pods)
		out[i].Pods = slices.Compact(out[i].Pods)
		slices.Sort(out[i].Reasons)
	}
	slices.SortFunc(out, compareWorkloads)
	return out, nil
}

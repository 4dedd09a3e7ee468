// Package podrecord holds the guard's record of a pod: the little its
// decisions read (name, labels, controller, and whether the pod is counted
// and meshed under each sidecar mode), worked out once when the pod
// arrives from the informer. A record costs a few hundred bytes where even
// a stripped corev1.Pod costs kilobytes, and it is what the guard's pod
// informer stores.
package podrecord

import (
	"fmt"
	"sort"
	"strings"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/mesh"
)

// Pod is the record of one pod. Records are never modified once made;
// a changed pod gets a new record.
type Pod struct {
	Namespace, Name string
	// ResourceVersion is kept because client-go's informer tells an update
	// from a resync by it: without it, updates would not be delivered.
	ResourceVersion string
	// Labels is the pod's label set in the canonical form of LabelKey,
	// interned: the pods of a ReplicaSet share one copy, and a label set
	// is decoded (ParseLabels) once per set rather than kept as a map per
	// pod.
	Labels unique.Handle[string]
	// Controller is the pod's controller; its Kind is empty when it has none.
	Controller mesh.Owner
	// Counted is mesh.Counted of the pod, Exempt mesh.Exempt.
	Counted, Exempt bool
	// verdicts are mesh.Classify under each of Modes.
	verdicts [len(Modes)]verdict
}

type verdict struct {
	meshed bool
	reason mesh.Reason
}

// Modes are the sidecar modes a record is classified under, so that one
// record serves either; ModeIndex gives a mode's position. Callers must not
// modify it.
var Modes = [...]mesh.SidecarMode{mesh.Native, mesh.Any}

// ModeIndex returns the position of mode in Modes.
func ModeIndex(mode mesh.SidecarMode) (int, error) {
	for i, m := range Modes {
		if m == mode {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown sidecar mode %q", mode)
}

// New makes the record of a pod.
func New(pod *corev1.Pod) *Pod {
	p := &Pod{
		Namespace:       pod.Namespace,
		Name:            pod.Name,
		ResourceVersion: pod.ResourceVersion,
		Labels:          unique.Make(LabelKey(pod.Labels)),
		Counted:         mesh.Counted(pod),
		Exempt:          mesh.Exempt(pod),
	}
	p.Controller = mesh.ControllerOf(pod)
	for i, m := range Modes {
		p.verdicts[i].meshed, p.verdicts[i].reason = mesh.Classify(pod, m)
	}
	return p
}

// Classify is mesh.Classify of the pod, under mode. A mode other than
// mesh.Native and mesh.Any reports an unmeshed pod with no reason; the
// engine's options never carry one.
func (p *Pod) Classify(mode mesh.SidecarMode) (meshed bool, reason mesh.Reason) {
	i, err := ModeIndex(mode)
	if err != nil {
		return false, ""
	}
	return p.verdicts[i].meshed, p.verdicts[i].reason
}

// GetObjectMeta implements metav1.ObjectMetaAccessor, which client-go's
// store reads to key, index and version what it holds. The ObjectMeta is a
// fresh copy of the record's identity: namespace, name, resourceVersion.
func (p *Pod) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, ResourceVersion: p.ResourceVersion}
}

var _ metav1.ObjectMetaAccessor = (*Pod)(nil)

// Transform is the pod informer's transform: a pod becomes its record.
// Anything else (a tombstone, a record already) passes through.
func Transform(obj any) (any, error) {
	if pod, ok := obj.(*corev1.Pod); ok {
		return New(pod), nil
	}
	return obj, nil
}

// LabelKey renders a label set canonically: keys sorted, each key and
// value followed by a NUL, which no label key or value contains. Equal
// sets have equal keys; the empty set is "".
func LabelKey(labels map[string]string) string {
	if len(labels) == 0 {
		return ""
	}
	keys := make([]string, 0, len(labels))
	n := 0
	for k, v := range labels {
		keys = append(keys, k)
		n += len(k) + len(v) + 2
	}
	sort.Strings(keys)
	var b strings.Builder
	b.Grow(n)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(labels[k])
		b.WriteByte(0)
	}
	return b.String()
}

// ParseLabels decodes a LabelKey; it returns nil for "". The strings of the
// map share the key's memory.
func ParseLabels(key string) map[string]string {
	if key == "" {
		return nil
	}
	parts := strings.Split(strings.TrimSuffix(key, "\x00"), "\x00")
	out := make(map[string]string, len(parts)/2)
	for i := 0; i+1 < len(parts); i += 2 {
		out[parts[i]] = parts[i+1]
	}
	return out
}

package input

import (
	"fmt"
	"io"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/mtls-guard/mtls-guard/internal/engine"
)

// DefaultNamespace is the namespace of an object that names none, as with
// kubectl's default context.
const DefaultNamespace = "default"

// Scheme holds client-go's kinds and Istio's security.istio.io v1 and
// v1beta1. Read it only.
var Scheme = NewScheme()

// NewScheme returns a new scheme with the kinds of Scheme.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(securityv1.AddToScheme(s))
	utilruntime.Must(securityv1beta1.AddToScheme(s))
	return s
}

var deserializer = serializer.NewCodecFactory(Scheme).UniversalDeserializer()

// engineKinds are the kinds a Snapshot stores; other kinds in a cluster
// dump are skipped without being decoded.
var engineKinds = map[schema.GroupVersionKind]bool{
	corev1.SchemeGroupVersion.WithKind("Namespace"):                   true,
	corev1.SchemeGroupVersion.WithKind("Pod"):                         true,
	appsv1.SchemeGroupVersion.WithKind("ReplicaSet"):                  true,
	batchv1.SchemeGroupVersion.WithKind("Job"):                        true,
	securityv1.SchemeGroupVersion.WithKind("PeerAuthentication"):      true,
	securityv1beta1.SchemeGroupVersion.WithKind("PeerAuthentication"): true,
}

// Typed decodes an object of a kind the engine reads into its Go type. ok
// is false, with no error, for any other kind. A namespaced object without
// a namespace gets DefaultNamespace.
func (o Object) Typed() (obj runtime.Object, ok bool, err error) {
	if !engineKinds[o.GVK] {
		return nil, false, nil
	}
	obj, _, err = deserializer.Decode(o.JSON, nil, nil)
	if err != nil {
		return nil, false, fmt.Errorf("decoding %s: %w", gvkString(o.GVK), err)
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, false, fmt.Errorf("decoding %s: %w", gvkString(o.GVK), err)
	}
	if m.GetName() == "" {
		return nil, false, fmt.Errorf("%s has no metadata.name", gvkString(o.GVK))
	}
	if o.GVK.Kind != "Namespace" && m.GetNamespace() == "" {
		m.SetNamespace(DefaultNamespace)
	}
	m.SetManagedFields(nil) // often half of an object, and never read
	return obj, true, nil
}

// LoadFiles reads cluster state from files into a new snapshot; the path
// "-" reads stdin. Objects of kinds the engine does not read are skipped.
// When an object appears twice (say, in two overlapping dumps), the later
// one wins. Errors are *Error naming the file and document.
func LoadFiles(paths []string, stdin io.Reader) (*engine.Snapshot, error) {
	var all []Object
	for _, path := range paths {
		objs, err := readPath(path, stdin)
		if err != nil {
			return nil, err
		}
		all = append(all, objs...)
	}
	s := engine.NewSnapshot()
	if err := AddObjects(s, all); err != nil {
		return nil, err
	}
	return s, nil
}

// AddObjects decodes the objects of kinds the engine reads and adds them to
// s; the later of two objects with the same kind, namespace and name wins.
func AddObjects(s *engine.Snapshot, objs []Object) error {
	type key struct {
		gk              schema.GroupKind
		namespace, name string
	}
	index := map[key]int{}
	var typed []runtime.Object
	for _, o := range objs {
		obj, ok, err := o.Typed()
		if err != nil {
			return &Error{Loc: o.Loc, Err: err}
		}
		if !ok {
			continue
		}
		m, _ := meta.Accessor(obj) // Typed checked it
		k := key{o.GVK.GroupKind(), m.GetNamespace(), m.GetName()}
		if i, dup := index[k]; dup {
			typed[i] = obj
			continue
		}
		index[k] = len(typed)
		typed = append(typed, obj)
	}
	for _, obj := range typed {
		s.Add(obj)
	}
	return nil
}

// readPath reads a file, or stdin for "-".
func readPath(path string, stdin io.Reader) ([]Object, error) {
	if path == "-" {
		if stdin == nil {
			return nil, &Error{Loc: Location{File: "stdin"}, Err: fmt.Errorf("no standard input")}
		}
		return DecodeNamed("stdin", stdin)
	}
	return ReadFile(path)
}

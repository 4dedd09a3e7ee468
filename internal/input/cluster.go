package input

import (
	"fmt"
	"io"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// DefaultNamespace is the namespace of an object that names none, as with
// kubectl's default context.
const DefaultNamespace = "default"

// Scheme holds client-go's kinds, Istio's security.istio.io v1 and v1beta1
// and CustomResourceDefinitions. Read it only.
var Scheme = engine.NewScheme(apiextensionsv1.AddToScheme)

var deserializer = serializer.NewCodecFactory(Scheme).UniversalDeserializer()

// clusterKinds are the kinds the guard watches (index.WatchedKinds, with
// PeerAuthentications in either version through policy.IsPeerAuthentication)
// and the CRD that holds the PeerAuthentication schema; other kinds are
// skipped without being decoded.
var clusterKinds = func() map[schema.GroupVersionKind]bool {
	kinds := map[schema.GroupVersionKind]bool{apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"): true}
	for _, obj := range index.WatchedKinds() {
		kinds[gvkOf(obj)] = true
	}
	return kinds
}()

// gvkOf is the kind of a typed object of Scheme.
func gvkOf(obj runtime.Object) schema.GroupVersionKind {
	gvk, err := apiutil.GVKForObject(obj, Scheme)
	utilruntime.Must(err) // every watched kind is in Scheme
	return gvk
}

// Cluster is the cluster state the commands decide against.
type Cluster struct {
	// Objects are the Namespaces, Pods, ReplicaSets, Jobs and
	// PeerAuthentications, each once, without managedFields.
	Objects []client.Object
	// CRD is Istio's PeerAuthentication CRD, when the input holds it.
	CRD *apiextensionsv1.CustomResourceDefinition
}

// add keeps obj if it is of a kind the guard reads.
func (c *Cluster) add(obj client.Object) {
	obj.SetManagedFields(nil) // often half of an object, and never read
	if crd, ok := obj.(*apiextensionsv1.CustomResourceDefinition); ok {
		if crd.Name == PeerAuthenticationCRD {
			c.CRD = crd
		}
		return
	}
	c.Objects = append(c.Objects, obj)
}

// Typed converts an object of a kind the cluster is read for into its Go
// type; ok is false, with no error, for any other kind. A namespaced
// object without a namespace gets DefaultNamespace.
func (o Object) Typed() (obj client.Object, ok bool, err error) {
	gvk := o.GroupVersionKind()
	if !clusterKinds[gvk] && !policy.IsPeerAuthentication(gvk) {
		return nil, false, nil
	}
	if o.GetName() == "" {
		return nil, false, fmt.Errorf("%s has no metadata.name", gvkString(gvk))
	}
	// Through JSON rather than the unstructured converter: the JSON
	// decoders name the field that is wrong.
	js, err := o.MarshalJSON()
	if err != nil {
		return nil, false, fmt.Errorf("encoding %s: %w", gvkString(gvk), err)
	}
	ro, _, err := deserializer.Decode(js, nil, nil)
	if err != nil {
		return nil, false, fmt.Errorf("decoding %s: %w", gvkString(gvk), err)
	}
	obj = ro.(client.Object) // every kind read is one
	if namespaced(gvk) && obj.GetNamespace() == "" {
		obj.SetNamespace(DefaultNamespace)
	}
	return obj, true, nil
}

func namespaced(gvk schema.GroupVersionKind) bool {
	return gvk.Kind != "Namespace" && gvk.Kind != "CustomResourceDefinition"
}

// LoadFiles reads the cluster state from manifests (see Read). Objects of
// other kinds are skipped. When an object appears twice (say, in two
// overlapping dumps), the later one wins. Errors are *Error naming the file
// and document.
func LoadFiles(names []string, recursive bool, stdin io.Reader) (*Cluster, error) {
	objs, err := Read(names, recursive, stdin)
	if err != nil {
		return nil, err
	}
	return FromObjects(objs)
}

// FromObjects converts objects read from manifests into a Cluster; the
// later of two objects with the same kind, namespace and name wins.
func FromObjects(objs []Object) (*Cluster, error) {
	type key struct {
		gk              schema.GroupKind
		namespace, name string
	}
	index := map[key]int{}
	var typed []client.Object
	for _, o := range objs {
		obj, ok, err := o.Typed()
		if err != nil {
			return nil, &Error{Loc: o.Loc, Err: err}
		}
		if !ok {
			continue
		}
		k := key{o.GroupVersionKind().GroupKind(), obj.GetNamespace(), obj.GetName()}
		if i, dup := index[k]; dup {
			typed[i] = obj
			continue
		}
		index[k] = len(typed)
		typed = append(typed, obj)
	}
	c := &Cluster{}
	for _, obj := range typed {
		c.add(obj)
	}
	return c, nil
}

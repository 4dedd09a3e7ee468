// Package manifests renders mtls-guard's kustomize directories (deploy/
// and its overlays) into typed Kubernetes objects, so that tests can check
// and apply exactly what `kubectl apply -k` would.
//
// Decoding is strict: a field that the object's Go type does not know, as
// from a typo in a manifest, is an error rather than silently dropped.
package manifests

import (
	"fmt"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// NewScheme returns a scheme with every type the manifests may contain:
// client-go's built-in types (which include admissionregistration, policy
// and networking), apiextensions and cert-manager.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(cmapi.AddToScheme(s))
	return s
}

var decode = NewDecoder(NewScheme())

// Render builds the kustomization in dir, as `kubectl kustomize dir` does,
// and strictly decodes every resulting object into its Go type. Objects
// come back in kustomize's output order.
func Render(dir string) ([]client.Object, error) {
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	objs := make([]client.Object, 0, resMap.Size())
	for _, res := range resMap.Resources() {
		data, err := res.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: encoding %s: %w", dir, res.CurId(), err)
		}
		obj, err := Decode(data)
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, res.CurId(), err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// Decode strictly decodes one JSON or YAML object into its Go type. Unknown
// or duplicate fields and kinds missing from NewScheme are errors.
func Decode(data []byte) (client.Object, error) { return decode(data) }

// NewDecoder returns a function that decodes as Decode does, with the kinds
// of scheme.
func NewDecoder(scheme *runtime.Scheme) func(data []byte) (client.Object, error) {
	// Without defaulting or conversion, so objects come back as written,
	// with their TypeMeta set.
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	return func(data []byte) (client.Object, error) {
		obj, gvk, err := decoder.Decode(data, nil, nil)
		if err != nil {
			// Strict errors come with a fully decoded object; reject it anyway.
			return nil, fmt.Errorf("decoding: %w", err)
		}
		cobj, ok := obj.(client.Object)
		if !ok {
			return nil, fmt.Errorf("decoding: %v is not an object with metadata", gvk)
		}
		return cobj, nil
	}
}

// All returns the objects of type T, such as *appsv1.Deployment, in order.
func All[T client.Object](objs []client.Object) []T {
	var all []T
	for _, obj := range objs {
		if t, ok := obj.(T); ok {
			all = append(all, t)
		}
	}
	return all
}

// One returns the only object of type T. It is an error if there is none
// or more than one.
func One[T client.Object](objs []client.Object) (T, error) {
	all := All[T](objs)
	if len(all) != 1 {
		var zero T
		return zero, fmt.Errorf("found %d objects of type %T, want exactly 1", len(all), zero)
	}
	return all[0], nil
}

// Named returns the object of type T with the given namespace and name;
// namespace is empty for cluster-scoped objects.
func Named[T client.Object](objs []client.Object, namespace, name string) (T, error) {
	for _, obj := range All[T](objs) {
		if obj.GetNamespace() == namespace && obj.GetName() == name {
			return obj, nil
		}
	}
	var zero T
	return zero, fmt.Errorf("no %T %s", zero, client.ObjectKey{Namespace: namespace, Name: name})
}

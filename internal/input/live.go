package input

import (
	"context"
	"errors"
	"fmt"
	"time"

	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// PageSize is the number of objects Load asks for per list call, so
// that a large cluster is read in pieces the API server can serve cheaply.
const PageSize = 500

// requestTimeout bounds one API call when the configuration sets no
// timeout, so that an unreachable server fails instead of hanging.
const requestTimeout = 60 * time.Second

// NewClient returns a client for Load: calls time out, and deprecation
// warnings are dropped rather than written to stderr through klog, which
// belongs to the command's own messages.
func NewClient(cfg *rest.Config) (client.Client, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.Timeout == 0 {
		cfg.Timeout = requestTimeout
	}
	cfg.WarningHandler = rest.NoWarnings{}
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	return c, nil
}

// ErrNoPeerAuthenticationCRD is returned by Load when the cluster does
// not serve PeerAuthentications.
var ErrNoPeerAuthenticationCRD = errors.New("the PeerAuthentication CRD (peerauthentications.security.istio.io) is not installed: is Istio installed in this cluster?")

// Load reads the cluster state through c: Namespaces, Pods, ReplicaSets,
// Jobs and PeerAuthentications (v1, or v1beta1 where v1 is not served)
// across all namespaces, in pages of PageSize, and the PeerAuthentication
// CRD when the reader may get it.
func Load(ctx context.Context, c client.Reader) (*Cluster, error) {
	cl := &Cluster{}
	add := func(obj client.Object) { cl.add(obj) }
	for _, obj := range index.WatchedKinds() {
		gvk := gvkOf(obj)
		resource, _ := meta.UnsafeGuessKindToResource(gvk)
		err := listAll(ctx, c, listOf(gvk), add)
		if policy.IsPeerAuthentication(gvk) && notServed(err) {
			// Istio before 1.22 serves only v1beta1, which has the same schema.
			err = listAll(ctx, c, listOf(securityv1beta1.SchemeGroupVersion.WithKind(gvk.Kind)), add)
			if notServed(err) {
				return nil, ErrNoPeerAuthenticationCRD
			}
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", resource.Resource, err)
		}
	}
	// The schema the API server validates with; a user who may not read
	// CRDs gets the guard's own validity rules only.
	crd := &apiextensionsv1.CustomResourceDefinition{}
	switch err := c.Get(ctx, client.ObjectKey{Name: PeerAuthenticationCRD}, crd); {
	case err == nil:
		cl.add(crd)
	case !notServed(err) && !apierrors.IsForbidden(err):
		return nil, fmt.Errorf("reading CRD %s: %w", PeerAuthenticationCRD, err)
	}
	return cl, nil
}

// listOf returns a function that makes empty lists of the kind gvk.
func listOf(gvk schema.GroupVersionKind) func() client.ObjectList {
	return func() client.ObjectList {
		list, err := Scheme.New(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		utilruntime.Must(err) // every watched kind is in Scheme, with its list
		return list.(client.ObjectList)
	}
}

// notServed reports whether err says the API server does not know the kind.
func notServed(err error) bool {
	return err != nil && (meta.IsNoMatchError(err) || apierrors.IsNotFound(err))
}

// listAll lists every object of a kind in all namespaces, page by page. A
// fresh list per page keeps the objects of earlier pages intact.
func listAll(ctx context.Context, c client.Reader, newList func() client.ObjectList, add func(client.Object)) error {
	cont := ""
	for {
		list := newList()
		if err := c.List(ctx, list, client.Limit(PageSize), client.Continue(cont)); err != nil {
			return err
		}
		if err := meta.EachListItem(list, func(obj runtime.Object) error {
			add(obj.(client.Object)) // items of typed lists are
			return nil
		}); err != nil {
			return err
		}
		if cont = list.GetContinue(); cont == "" {
			return nil
		}
	}
}

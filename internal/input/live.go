package input

import (
	"context"
	"errors"
	"fmt"
	"time"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/mtls-guard/mtls-guard/internal/engine"
)

// PageSize is the number of objects LoadLive asks for per list call, so
// that a large cluster is read in pieces the API server can serve cheaply.
const PageSize = 500

// requestTimeout bounds one API call when the configuration sets no
// timeout, so that an unreachable server fails instead of hanging.
const requestTimeout = 60 * time.Second

// ErrNoPeerAuthenticationCRD is returned by LoadLive when the cluster does
// not serve PeerAuthentications.
var ErrNoPeerAuthenticationCRD = errors.New("the PeerAuthentication CRD (peerauthentications.security.istio.io) is not installed: is Istio installed in this cluster?")

// RESTConfig loads the client configuration: from the kubeconfig file at
// path when path is not empty, otherwise as controller-runtime does
// (KUBECONFIG, the in-cluster configuration, then ~/.kube/config).
func RESTConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := config.GetConfigWithContext("")
		if err != nil {
			return nil, fmt.Errorf("loading the client configuration: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: path},
		&clientcmd.ConfigOverrides{},
	).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// LoadLive reads the cluster state from an API server: pods, ReplicaSets,
// Jobs, Namespaces and PeerAuthentications (v1, or v1beta1 where v1 is not
// served) across all namespaces, in pages of PageSize.
func LoadLive(ctx context.Context, cfg *rest.Config) (*engine.Snapshot, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.Timeout == 0 {
		cfg.Timeout = requestTimeout
	}
	// Deprecation warnings would otherwise go to stderr through klog, which
	// belongs to the command's own messages.
	cfg.WarningHandler = rest.NoWarnings{}
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	return load(ctx, c)
}

// load lists everything the engine reads through c.
func load(ctx context.Context, c client.Reader) (*engine.Snapshot, error) {
	s := engine.NewSnapshot()
	add := func(obj runtime.Object) {
		if m, err := meta.Accessor(obj); err == nil {
			m.SetManagedFields(nil) // never read; often half of the object
		}
		s.Add(obj)
	}
	kinds := []struct {
		what    string
		newList func() client.ObjectList
	}{
		{"namespaces", func() client.ObjectList { return &corev1.NamespaceList{} }},
		{"pods", func() client.ObjectList { return &corev1.PodList{} }},
		{"replicasets", func() client.ObjectList { return &appsv1.ReplicaSetList{} }},
		{"jobs", func() client.ObjectList { return &batchv1.JobList{} }},
	}
	for _, k := range kinds {
		if err := listAll(ctx, c, k.newList, add); err != nil {
			return nil, fmt.Errorf("listing %s: %w", k.what, err)
		}
	}
	err := listAll(ctx, c, func() client.ObjectList { return &securityv1.PeerAuthenticationList{} }, add)
	if notServed(err) {
		// Istio before 1.22 serves only v1beta1, which has the same schema.
		err = listAll(ctx, c, func() client.ObjectList { return &securityv1beta1.PeerAuthenticationList{} }, add)
		if notServed(err) {
			return nil, ErrNoPeerAuthenticationCRD
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listing peerauthentications: %w", err)
	}
	return s, nil
}

// notServed reports whether err says the API server does not know the kind.
func notServed(err error) bool {
	return err != nil && (meta.IsNoMatchError(err) || apierrors.IsNotFound(err))
}

// listAll lists every object of a kind in all namespaces, page by page. A
// fresh list per page keeps the objects of earlier pages intact.
func listAll(ctx context.Context, c client.Reader, newList func() client.ObjectList, add func(runtime.Object)) error {
	cont := ""
	for {
		list := newList()
		if err := c.List(ctx, list, client.Limit(PageSize), client.Continue(cont)); err != nil {
			return err
		}
		if err := meta.EachListItem(list, func(obj runtime.Object) error {
			add(obj)
			return nil
		}); err != nil {
			return err
		}
		if cont = list.GetContinue(); cont == "" {
			return nil
		}
	}
}

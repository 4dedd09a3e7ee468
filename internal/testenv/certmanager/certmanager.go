// Package certmanager runs cert-manager's own controllers and its CA
// injector in-process, wired as cert-manager's controller and cainjector
// binaries wire them (cmd/controller/app and cmd/cainjector/app in the
// cert-manager repository), so that tests prove deploy/'s Issuers,
// Certificates and caBundle injection with cert-manager itself.
//
// Only the controllers that deploy/ needs run: the issuers controller, the
// CertificateRequest approver and the SelfSigned and CA signers, and the
// Certificate controllers (trigger, key manager, request manager, issuing,
// readiness, revision manager). ACME, Vault, Venafi, ClusterIssuers and the
// ingress/gateway shims are left out.
package certmanager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	"github.com/cert-manager/cert-manager/pkg/util"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	apireg "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	// The issuer backends the issuers controller sets up, registered by
	// import as cmd/controller/app/start.go does.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// Controllers are the cert-manager controllers that run, by their
// registered names (the names of the controller binary's --controllers).
var Controllers = []string{
	issuers.ControllerName,
	approver.ControllerName,
	crselfsigned.CRControllerName,
	crca.CRControllerName,
	trigger.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	issuing.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
}

// Defaults of the controller binary's configuration
// (internal/apis/config/controller/v1alpha1/defaults.go), which cannot be
// imported from outside cert-manager.
const (
	workers                  = 5
	apiQPS                   = 20
	apiBurst                 = 50
	clusterResourceNamespace = "kube-system"
	minRequestBackoff        = time.Hour
	maxRequestBackoff        = 32 * time.Hour
)

var copiedAnnotationPrefixes = []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"}

// CRDs returns the directory of cert-manager's CRDs (deploy/crds) in the
// Go module cache, at the version this module requires.
func CRDs() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locating the certmanager package's source")
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = filepath.Dir(file)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("locating cert-manager in the module cache: %w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("locating cert-manager in the module cache: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	if _, err := os.Stat(filepath.Join(dir, "cert-manager.io_certificates.yaml")); err != nil {
		return "", fmt.Errorf("cert-manager CRDs: %w (run `go mod download github.com/cert-manager/cert-manager`)", err)
	}
	return dir, nil
}

// Running is cert-manager's controllers and cainjector running in this
// process.
type Running struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
}

// Start runs the cert-manager controllers and the cainjector against the
// API server of kubeconfig, as the two binaries would with leader election
// and their metrics, healthz and profiling servers off. The CRDs must be
// installed. Logs go to log. They run until Stop, not until ctx ends, so
// that a test's cleanup decides the order of shutdown.
func Start(ctx context.Context, kubeconfig string, log logr.Logger) (*Running, error) {
	runCtx, cancel := context.WithCancel(logr.NewContext(context.WithoutCancel(ctx), log))
	r := &Running{cancel: cancel}
	if err := r.startController(runCtx, kubeconfig, log.WithName("controller")); err != nil {
		r.Stop()
		return nil, fmt.Errorf("starting the cert-manager controllers: %w", err)
	}
	if err := r.startCAInjector(runCtx, kubeconfig, log.WithName("cainjector")); err != nil {
		r.Stop()
		return nil, fmt.Errorf("starting the cainjector: %w", err)
	}
	return r, nil
}

// Stop stops everything Start started, waits for it and returns the errors
// any of it failed with.
func (r *Running) Stop() error {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.errs...)
}

func (r *Running) goRun(name string, fn func() error) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, context.Canceled) {
			r.mu.Lock()
			r.errs = append(r.errs, fmt.Errorf("%s: %w", name, err))
			r.mu.Unlock()
		}
	}()
}

// startController follows cmd/controller/app.Run: one ContextFactory, a
// controller from each registered constructor, then the shared informers.
func (r *Running) startController(ctx context.Context, kubeconfig string, log logr.Logger) error {
	ctx = logr.NewContext(ctx, log)
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   apiQPS,
		KubernetesAPIBurst: apiBurst,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace:        clusterResourceNamespace,
			ClusterIssuerAmbientCredentials: true,
		},
		CertificateOptions: controller.CertificateOptions{
			CopiedAnnotationPrefixes:                 copiedAnnotationPrefixes,
			CertificateRequestMinimumBackoffDuration: minRequestBackoff,
			CertificateRequestMaximumBackoffDuration: maxRequestBackoff,
		},
	})
	if err != nil {
		return fmt.Errorf("building the controller context: %w", err)
	}
	base, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building the controller context: %w", err)
	}
	known := controller.Known()
	for _, name := range Controllers {
		construct, ok := known[name]
		if !ok {
			return fmt.Errorf("cert-manager has no controller %q registered", name)
		}
		c, err := construct(factory)
		if err != nil {
			return fmt.Errorf("constructing controller %s: %w", name, err)
		}
		r.goRun("controller "+name, func() error { return c.Run(workers, ctx) })
	}
	// Informers start after every controller has registered its handlers.
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	r.goRun("informer shutdown", func() error {
		<-ctx.Done()
		base.HTTP01ResourceMetadataInformersFactory.Shutdown()
		base.KubeSharedInformerFactory.Shutdown()
		base.SharedInformerFactory.Shutdown()
		return nil
	})
	return nil
}

// startCAInjector follows cmd/cainjector/app.Run with its defaults: a
// controller-runtime manager that does not cache Secrets, and a reconciler
// for each injectable kind with the Certificate data source on.
func (r *Running) startCAInjector(ctx context.Context, kubeconfig string, log logr.Logger) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
	}
	cfg = util.RestConfigWithUserAgent(cfg, "cainjector")
	scheme := k8sruntime.NewScheme()
	utilruntime.Must(kscheme.AddToScheme(scheme))
	utilruntime.Must(cmscheme.AddToScheme(scheme))
	utilruntime.Must(apiext.AddToScheme(scheme))
	utilruntime.Must(apireg.AddToScheme(scheme))
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		Logger: log,
		Cache:  cache.Options{ReaderFailOnMissingInformer: true},
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		// Off in a test: the binary's metrics server and leader election.
		Metrics:        metricsserver.Options{BindAddress: "0"},
		LeaderElection: false,
		// Controller names are global in a process; a second cainjector in
		// the same test binary reuses them.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return fmt.Errorf("creating the cainjector manager: %w", err)
	}
	// The binary waits for the Certificate CRD; here it must already be
	// installed.
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("cainjector client: %w", err)
	}
	if err := direct.Get(ctx, types.NamespacedName{Name: "certificates.cert-manager.io"}, &apiext.CustomResourceDefinition{}); err != nil {
		return fmt.Errorf("cainjector needs the certificates.cert-manager.io CRD: %w", err)
	}
	err = cainjector.RegisterAllInjectors(logr.NewContext(ctx, log), mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   true,
			cainjector.ValidatingWebhookConfigurationName: true,
			cainjector.APIServiceName:                     true,
			cainjector.CustomResourceDefinitionName:       true,
		},
	})
	if err != nil {
		return fmt.Errorf("registering the injectors: %w", err)
	}
	r.goRun("cainjector", func() error { return mgr.Start(ctx) })
	return nil
}

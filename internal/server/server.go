// Package server runs `mtls-guard serve`: a controller-runtime manager
// whose cache feeds the decision engine and whose webhook server answers
// PeerAuthentication admission requests over TLS.
package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/evidence"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// Scheme holds every kind the guard reads.
func Scheme() *runtime.Scheme { return engine.NewScheme() }

// Main parses the flags of `mtls-guard serve` and serves until ctx ends.
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	c, zopts, err := parse(args, stderr)
	if err != nil {
		return err
	}
	log := zap.New(zap.UseFlagOptions(zopts))
	ctrl.SetLogger(log)

	cfg, err := restConfig(c.Kubeconfig)
	if err != nil {
		return err
	}
	mgr, err := New(cfg, c, log)
	if err != nil {
		return err
	}
	log.Info("starting mtls-guard", "port", c.Port, "certDir", c.CertDir, "rootNamespace", c.RootNamespace, "sidecarMode", c.SidecarMode,
		"allowOverride", c.AllowOverride, "clientCAFile", c.ClientCAFile, "metricsSecure", c.MetricsSecure, "webhookConfigName", c.WebhookConfigName,
		"maxCacheStaleness", c.MaxCacheStaleness, "readHeaderTimeout", c.ReadHeaderTimeout)
	return start(ctx, mgr, c.ShutdownTimeout)
}

// start runs the manager until ctx ends. controller-runtime v0.25.2's
// manager never returns when it is stopped before its caches sync: its
// runnableGroup.Start loops on a cancelled context
// (kubernetes-sigs/controller-runtime#3440). So give it the drain time and
// then return anyway: the process is exiting.
func start(ctx context.Context, mgr manager.Manager, drain time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- mgr.Start(ctx) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-errc:
		return err
	case <-time.After(drain + 5*time.Second):
		return fmt.Errorf("stopped before the caches synced; gave up waiting for the manager after %s", drain+5*time.Second)
	}
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("finding a kubeconfig: %w", err)
	}
	return cfg, nil
}

// New builds the manager: cache, webhook, probes and metrics.
func New(cfg *rest.Config, c Config, log logr.Logger) (manager.Manager, error) {
	opts, err := engine.NewOptions(c.RootNamespace, mesh.SidecarMode(c.SidecarMode), strings.Split(c.ExcludeNamespaces, ","), c.OwnNamespace, c.AllowOverride)
	if err != nil {
		return nil, fmt.Errorf("engine options: %w", err)
	}
	tlsOpts := []func(*tls.Config){func(t *tls.Config) { t.MinVersion = tls.VersionTLS12 }}
	if !c.EnableHTTP2 {
		tlsOpts = append(tlsOpts, func(t *tls.Config) { t.NextProtos = []string{"http/1.1"} })
	}
	health := newCacheHealth(c.MaxCacheStaleness, log.WithName("cache"))
	// Pods are cached as podrecord records, a few hundred bytes each; the
	// webhook decides from the index and never reads pods from the cache.
	defaultTransform, byObject := index.CacheTransforms()
	shutdown := c.ShutdownTimeout
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: Scheme(),
		Logger: log,
		Cache: cache.Options{
			// A read of a kind without an informer fails instead of
			// quietly starting one and blocking a request.
			ReaderFailOnMissingInformer: true,
			DefaultTransform:            defaultTransform,
			ByObject:                    byObject,
			DefaultWatchErrorHandler:    health.watchErrorHandler,
		},
		NewCache: func(config *rest.Config, o cache.Options) (cache.Cache, error) {
			// The cache gets its own HTTP client, whose requests tell
			// whether it still reaches the API server.
			config = rest.CopyConfig(config)
			config.Wrap(health.roundTripper)
			hc, err := rest.HTTPClientFor(config)
			if err != nil {
				return nil, fmt.Errorf("cache HTTP client: %w", err)
			}
			o.HTTPClient = hc
			return cache.New(config, o)
		},
		Metrics:                 metricsOptions(c, tlsOpts),
		HealthProbeBindAddress:  c.ProbeAddr,
		PprofBindAddress:        c.PprofAddr,
		GracefulShutdownTimeout: &shutdown,
		WebhookServer: NewWebhookServer(WebhookOptions{
			Host: c.Host, Port: c.Port, CertDir: c.CertDir, EnableHTTP2: c.EnableHTTP2,
			ReadHeaderTimeout: c.ReadHeaderTimeout, ReadTimeout: readTimeout, IdleTimeout: idleTimeout,
			MaxHeaderBytes: maxHeaderBytes, ShutdownTimeout: c.ShutdownTimeout, ClientCAFile: c.ClientCAFile, Log: log.WithName("webhook-server"),
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}

	if c.Evidence.Enabled() {
		// The evidence refreshes in the background; a decision reads the
		// last snapshot and never waits on Prometheus.
		r, err := evidence.New(c.Evidence, log.WithName("evidence"))
		if err != nil {
			return nil, fmt.Errorf("plaintext evidence: %w", err)
		}
		if err := mgr.Add(r); err != nil {
			return nil, fmt.Errorf("adding the plaintext evidence refresher: %w", err)
		}
		opts.Plaintext = func() (*evidence.Snapshot, error) { return r.Current(time.Now()) }
		opts.DenyWithoutEvidence = c.Evidence.Unavailable == evidence.UnavailableDeny
	}
	ix := index.New(opts)
	serveIndexMetrics(ix, opts.SidecarMode)
	if err := registerInformers(mgr.GetCache(), health, ix); err != nil {
		return nil, err
	}
	h := &webhook.Handler{
		Reader:     mgr.GetCache(),
		Decide:     ix.Decide,
		Synced:     health.Check,
		Options:    opts,
		Authorizer: webhook.SubjectAccessReviewer{Client: mgr.GetClient()},
		Recorder:   mgr.GetEventRecorder("mtls-guard"),
		Events:     webhook.NewEventDeduper(eventInterval),
		Log:        log.WithName("decision"),
	}
	srv := mgr.GetWebhookServer()
	srv.Register(webhook.Path, webhook.NewHTTPHandler(h, log.WithName("admission")))
	if c.UnmeshedPods != webhook.ActionOff || c.UnmeshedWorkloads != webhook.ActionOff {
		arrivals := &webhook.ArrivalHandler{
			Synced: health.Check, DecidePod: ix.DecidePod, DecideTemplate: ix.DecideTemplate, Owner: ix.Owner,
			Pods: c.UnmeshedPods, Workloads: c.UnmeshedWorkloads,
			Recorder: h.Recorder, Events: webhook.NewEventDeduper(eventInterval), Log: log.WithName("arrival"),
		}
		srv.Register(webhook.ArrivalPath, webhook.NewArrivalHTTPHandler(arrivals, log.WithName("admission")))
	}

	started := srv.StartedChecker()
	if err := mgr.AddHealthzCheck("webhook", started); err != nil {
		return nil, fmt.Errorf("adding liveness check: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhook", started); err != nil {
		return nil, fmt.Errorf("adding readiness check: %w", err)
	}
	// Readiness, not liveness, waits for the cache: restarting the guard
	// while the API server is unreachable would not bring the cache back.
	if err := mgr.AddReadyzCheck("cache", func(r *http.Request) error { return health.Check(r.Context()) }); err != nil {
		return nil, fmt.Errorf("adding cache readiness check: %w", err)
	}
	if c.WebhookConfigName != "" {
		sc := &selfCheck{
			name: c.WebhookConfigName, api: mgr.GetAPIReader(), namespaces: mgr.GetCache(),
			synced: mgr.GetCache().WaitForCacheSync, opts: opts, log: log.WithName("self-check"),
		}
		if err := mgr.Add(sc); err != nil {
			return nil, fmt.Errorf("adding the webhook configuration self-check: %w", err)
		}
		if err := mgr.AddReadyzCheck("webhook-config", sc.Checker); err != nil {
			return nil, fmt.Errorf("adding webhook configuration readiness check: %w", err)
		}
	}
	return mgr, nil
}

// eventInterval is how long Events for one policy and reason are
// deduplicated: a replayed request cannot flood the namespace.
const eventInterval = time.Minute

// metricsOptions serve /metrics the way kubebuilder v4 does: over HTTPS
// with the serving certificate, to callers whose token the API server
// authenticates (TokenReview) and authorises for GET /metrics
// (SubjectAccessReview; deploy/ ships the ClusterRole
// mtls-guard-metrics-reader).
func metricsOptions(c Config, tlsOpts []func(*tls.Config)) metricsserver.Options {
	o := metricsserver.Options{BindAddress: c.MetricsAddr, TLSOpts: tlsOpts}
	if c.MetricsSecure {
		o.SecureServing = true
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
		o.CertDir, o.CertName, o.KeyName = c.CertDir, "tls.crt", "tls.key"
	}
	return o
}

// registerInformers starts an informer for every kind the engine reads,
// before the manager starts, and has health wait for all of them to sync.
func registerInformers(c cache.Cache, health *cacheHealth, ix *index.Index) error {
	infs := make([]index.Informer, 0, len(index.WatchedKinds()))
	for _, obj := range index.WatchedKinds() {
		inf, err := c.GetInformer(context.Background(), obj, cache.BlockUntilSynced(false))
		if err != nil {
			return fmt.Errorf("creating informer for %T: %w", obj, err)
		}
		health.watch(inf)
		infs = append(infs, inf)
	}
	// The index keeps per-namespace facts from the same informers, so a
	// mesh-wide decision costs the unmeshed pods, not all pods.
	hasSynced, err := ix.Attach(infs...)
	if err != nil {
		return fmt.Errorf("attaching the decision index: %w", err)
	}
	health.requireSynced(hasSynced)
	return nil
}

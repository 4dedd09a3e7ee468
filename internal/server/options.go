package server

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/evidence"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// Config is the parsed command line of `mtls-guard serve`.
type Config struct {
	Kubeconfig        string
	Host              string
	Port              int
	CertDir           string
	MetricsAddr       string
	ProbeAddr         string
	PprofAddr         string
	EnableHTTP2       bool
	ShutdownTimeout   time.Duration
	ReadHeaderTimeout time.Duration
	// MaxCacheStaleness is how long the cache may fail to list and watch
	// a kind before the guard stops deciding and reports not ready.
	MaxCacheStaleness time.Duration
	RootNamespace     string
	SidecarMode       string
	ExcludeNamespaces string
	AllowOverride     bool
	// ClientCAFile, when set, makes the webhook server require a client
	// certificate signed by this CA (an API server configured with
	// webhook client credentials).
	ClientCAFile string
	// MetricsSecure serves /metrics over HTTPS, to clients that the API
	// server authenticates and authorises (TokenReview and
	// SubjectAccessReview).
	MetricsSecure bool
	// WebhookConfigName is the guard's own ValidatingWebhookConfiguration,
	// read back to report what would keep PeerAuthentications from it;
	// empty skips the check.
	WebhookConfigName string
	// UnmeshedPods and UnmeshedWorkloads say what to do with pods and
	// workload templates that arrive unmeshed where STRICT already holds.
	UnmeshedPods, UnmeshedWorkloads webhook.Action
	// Evidence configures plaintext evidence from Istio's telemetry.
	Evidence evidence.Config
	// OwnNamespace is the guard's namespace (POD_NAMESPACE), always excluded.
	OwnNamespace string
}

// Fixed limits of the webhook server.
const (
	// readTimeout bounds reading a whole request: the API server gives a
	// webhook at most 30s.
	readTimeout    = 30 * time.Second
	idleTimeout    = 90 * time.Second
	maxHeaderBytes = 64 << 10
)

// parse reads the command line of `mtls-guard serve`.
func parse(args []string, stderr io.Writer) (Config, *zap.Options, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Config
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "path to a kubeconfig; default: $KUBECONFIG, ~/.kube/config, then in-cluster")
	fs.StringVar(&c.Host, "host", "", "address the webhook server binds to; empty means all")
	fs.IntVar(&c.Port, "port", 9443, "port the webhook server listens on")
	fs.StringVar(&c.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory holding tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&c.MetricsAddr, "metrics-bind-address", ":8443", `address of the Prometheus metrics endpoint; "0" disables it`)
	fs.BoolVar(&c.MetricsSecure, "metrics-secure", true, "serve /metrics over HTTPS (the --cert-dir certificate) to clients the API server authenticates and authorises for GET /metrics; false: plain HTTP to anyone")
	fs.StringVar(&c.ClientCAFile, "client-ca-file", "", "PEM CA bundle; when set, the webhook server requires a client certificate signed by it (API servers with webhook client credentials)")
	fs.StringVar(&c.WebhookConfigName, "webhook-config-name", "mtls-guard", `the guard's own ValidatingWebhookConfiguration, read back to report selectors or rules that keep PeerAuthentications from it; "" skips the check`)
	fs.StringVar(&c.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&c.PprofAddr, "pprof-bind-address", "0", `address of Go's /debug/pprof endpoints, for profiling; "0" (the default) disables them`)
	fs.BoolVar(&c.EnableHTTP2, "enable-http2", false, "serve HTTP/2 too (off because of the HTTP/2 rapid-reset advisories)")
	fs.DurationVar(&c.ShutdownTimeout, "graceful-shutdown-timeout", 30*time.Second, "how long in-flight requests may drain after SIGTERM")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "how long a client may take to send its request headers")
	fs.DurationVar(&c.MaxCacheStaleness, "max-cache-staleness", 15*time.Second, "how long the cache may fail to list and watch the API server before requests get errors and /readyz fails")
	fs.StringVar(&c.RootNamespace, "root-namespace", engine.DefaultRootNamespace, "Istio root namespace (aks-istio-system on the AKS Istio add-on)")
	fs.StringVar(&c.SidecarMode, "sidecar-mode", string(mesh.Native), "which sidecars count as meshed: native (istio-proxy initContainer) or any (classic too)")
	fs.StringVar(&c.ExcludeNamespaces, "exclude-namespaces", engine.DefaultExcludedNamespaces, "comma-separated namespaces whose pods are never counted (the root namespace and POD_NAMESPACE always are)")
	fs.BoolVar(&c.AllowOverride, "allow-override", true, "honour the mtls-guard.io/override-reason annotation of users whom RBAC allows the verb override on peerauthentications.mtls-guard.io")
	c.UnmeshedPods, c.UnmeshedWorkloads = webhook.ActionWarn, webhook.ActionWarn
	fs.Func("unmeshed-pods", `an unmeshed pod created where STRICT already holds: "warn" (admitted with a warning and an Event on its workload), "deny" or "off" (default "warn")`,
		func(v string) (err error) { c.UnmeshedPods, err = webhook.ParseAction(v); return err })
	fs.Func("unmeshed-workloads", `a Deployment, StatefulSet, DaemonSet, Job or CronJob whose pods will be unmeshed where STRICT already holds: "warn", "deny" or "off" (default "warn")`,
		func(v string) (err error) { c.UnmeshedWorkloads, err = webhook.ParseAction(v); return err })
	c.Evidence.AddFlags(fs)
	zopts := &zap.Options{}
	zopts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, nil, err
	}
	if fs.NArg() > 0 {
		return Config{}, nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	for name, d := range map[string]time.Duration{"read-header-timeout": c.ReadHeaderTimeout, "max-cache-staleness": c.MaxCacheStaleness, "graceful-shutdown-timeout": c.ShutdownTimeout} {
		if d <= 0 {
			return Config{}, nil, fmt.Errorf("--%s must be positive, got %s", name, d)
		}
	}
	if err := c.Evidence.Validate(); err != nil {
		return Config{}, nil, err
	}
	c.OwnNamespace = os.Getenv("POD_NAMESPACE")
	return c, zopts, nil
}

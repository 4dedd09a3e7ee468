package evidence

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// AzureMonitorScope is the token scope of Azure Monitor managed Prometheus's
// query API.
const AzureMonitorScope = "https://prometheus.monitor.azure.com/.default"

// Fetcher fetches one snapshot of the evidence.
type Fetcher interface {
	Fetch(ctx context.Context) (*Snapshot, error)
}

// FetcherFunc adapts a function to Fetcher.
type FetcherFunc func(ctx context.Context) (*Snapshot, error)

// Fetch calls f.
func (f FetcherFunc) Fetch(ctx context.Context) (*Snapshot, error) { return f(ctx) }

// Prometheus fetches the evidence from a Prometheus HTTP API with one
// instant query per metric.
type Prometheus struct {
	api         promv1.API
	window      time.Duration
	minRequests int64
	log         logr.Logger
	// now is the evaluation time of the queries; a test may replace it.
	now func() time.Time
}

// NewPrometheus returns a Fetcher for cfg, which must be valid and
// enabled. Nothing is sent until Fetch.
func NewPrometheus(cfg Config, log logr.Logger) (*Prometheus, error) {
	if !cfg.Enabled() {
		return nil, errors.New("no --prometheus-url")
	}
	rt, err := roundTripper(cfg)
	if err != nil {
		return nil, err
	}
	c, err := api.NewClient(api.Config{Address: cfg.PrometheusURL, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("prometheus client for %s: %w", cfg.PrometheusURL, err)
	}
	return &Prometheus{api: promv1.NewAPI(c), window: cfg.Window, minRequests: cfg.MinRequests, log: log, now: time.Now}, nil
}

// roundTripper builds the HTTP transport with prometheus/common/config: the
// CA file, and the bearer token file read again on every request; or, for
// Azure, a token from azidentity's default credential chain.
func roundTripper(cfg Config) (http.RoundTripper, error) {
	hc := promconfig.DefaultHTTPClientConfig
	hc.TLSConfig.CAFile = cfg.CAFile
	if cfg.BearerTokenFile != "" {
		hc.Authorization = &promconfig.Authorization{Type: "Bearer", CredentialsFile: cfg.BearerTokenFile}
	}
	if err := hc.Validate(); err != nil {
		return nil, fmt.Errorf("prometheus HTTP client: %w", err)
	}
	rt, err := promconfig.NewRoundTripperFromConfig(hc, "mtls-guard-evidence")
	if err != nil {
		return nil, fmt.Errorf("prometheus HTTP client (--prometheus-ca-file %q): %w", cfg.CAFile, err)
	}
	if cfg.Auth == AuthAzure {
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("azure credential for --prometheus-auth=azure: %w", err)
		}
		rt = &azureRoundTripper{cred: cred, next: rt}
	}
	return rt, nil
}

// azureRoundTripper sets a bearer token for Azure Monitor on each request.
// The credential caches the token and renews it before it expires.
type azureRoundTripper struct {
	cred azcore.TokenCredential
	next http.RoundTripper
}

func (a *azureRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := a.cred.GetToken(req.Context(), policy.TokenRequestOptions{Scopes: []string{AzureMonitorScope}})
	if err != nil {
		return nil, fmt.Errorf("getting an Azure token for %s: %w", AzureMonitorScope, err)
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	return a.next.RoundTrip(req)
}

// Fetch runs both queries at the same evaluation time and builds the
// snapshot. An error names the query that failed. Warnings and infos from
// Prometheus are logged, not errors.
func (p *Prometheus) Fetch(ctx context.Context) (*Snapshot, error) {
	now := p.now()
	requests, err := p.query(ctx, RequestsMetric, now)
	if err != nil {
		return nil, err
	}
	connections, err := p.query(ctx, ConnectionsMetric, now)
	if err != nil {
		return nil, err
	}
	return NewSnapshot(now, p.window, p.minRequests, requests, connections), nil
}

func (p *Prometheus) query(ctx context.Context, metric string, at time.Time) (model.Vector, error) {
	q := Query(metric, p.window)
	v, warnings, infos, err := p.api.Query(ctx, q, at)
	if len(warnings) > 0 {
		p.log.Info("Prometheus warned about a query", "metric", metric, "warnings", warnings)
	}
	if len(infos) > 0 {
		p.log.V(1).Info("Prometheus annotated a query", "metric", metric, "infos", infos)
	}
	if err != nil {
		return nil, fmt.Errorf("querying %s: %w", metric, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("querying %s: got a %s, want a vector", metric, typeOf(v))
	}
	return vec, nil
}

func typeOf(v model.Value) string {
	if v == nil {
		return "nil result"
	}
	return v.Type().String()
}

// Package evidence reads Istio's telemetry from Prometheus for plaintext
// callers: the destination workloads that accepted requests or TCP
// connections without mutual TLS within a window. A Refresher fetches it in
// the background and keeps the last good Snapshot in memory, so that an
// admission decision looks it up without ever waiting on Prometheus.
package evidence

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"time"
)

// Auth is how the guard authenticates to Prometheus.
type Auth string

// The values of --prometheus-auth.
const (
	// AuthNone sends no credentials, or the bearer token file's.
	AuthNone Auth = "none"
	// AuthAzure gets a token for Azure Monitor managed Prometheus from
	// azidentity's default credential chain (workload identity on AKS).
	AuthAzure Auth = "azure"
)

// Unavailable is what to do with a change the evidence would judge while
// the evidence is unavailable.
type Unavailable string

// The values of --plaintext-unavailable.
const (
	// UnavailableAllow admits the change with a warning.
	UnavailableAllow Unavailable = "allow"
	// UnavailableDeny fails closed.
	UnavailableDeny Unavailable = "deny"
)

// Config configures the plaintext evidence. The zero PrometheusURL turns
// the feature off.
type Config struct {
	// PrometheusURL is the Prometheus HTTP API's base URL.
	PrometheusURL string
	// CAFile verifies Prometheus's serving certificate; empty means the
	// system roots.
	CAFile string
	// BearerTokenFile holds a bearer token, read again on every request so
	// that a rotated token is picked up.
	BearerTokenFile string
	// Auth is none or azure.
	Auth Auth
	// Refresh is the interval between fetches.
	Refresh time.Duration
	// Window is the range of increase(): how far back a plaintext call
	// counts.
	Window time.Duration
	// MinRequests is the number of plaintext requests or connections that
	// makes a workload evidence.
	MinRequests int64
	// MaxAge is the age beyond which the last good evidence is stale.
	MaxAge time.Duration
	// Unavailable decides changes the evidence would judge while it is
	// stale or failing.
	Unavailable Unavailable
}

// DefaultConfig returns the flags' defaults.
func DefaultConfig() Config {
	return Config{
		Auth:        AuthNone,
		Refresh:     time.Minute,
		Window:      24 * time.Hour,
		MinRequests: 1,
		MaxAge:      5 * time.Minute,
		Unavailable: UnavailableAllow,
	}
}

// Enabled reports whether a Prometheus URL is configured.
func (c *Config) Enabled() bool { return c.PrometheusURL != "" }

// AddFlags registers the flags on fs, with DefaultConfig's defaults.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	d := DefaultConfig()
	fs.StringVar(&c.PrometheusURL, "prometheus-url", d.PrometheusURL,
		"Prometheus HTTP API URL with Istio's metrics; empty turns plaintext evidence off")
	fs.StringVar(&c.CAFile, "prometheus-ca-file", d.CAFile,
		"CA bundle that verifies Prometheus's certificate (default: system roots)")
	fs.StringVar(&c.BearerTokenFile, "prometheus-bearer-token-file", d.BearerTokenFile,
		"file with a bearer token for Prometheus, re-read on each refresh")
	stringFunc(fs, &c.Auth, "prometheus-auth", d.Auth,
		`authentication to Prometheus: "none" or "azure" (Azure Monitor managed Prometheus, workload identity)`)
	fs.DurationVar(&c.Refresh, "plaintext-refresh", d.Refresh,
		"interval between refreshes of the plaintext evidence")
	fs.DurationVar(&c.Window, "plaintext-window", d.Window,
		"how far back a plaintext request or connection counts")
	fs.Int64Var(&c.MinRequests, "plaintext-min-requests", d.MinRequests,
		"plaintext requests or connections in the window that make a workload's evidence")
	fs.DurationVar(&c.MaxAge, "plaintext-max-age", d.MaxAge,
		"age beyond which the last plaintext evidence is stale, hence unavailable")
	stringFunc(fs, &c.Unavailable, "plaintext-unavailable", d.Unavailable,
		`decision when the evidence is unavailable: "allow" (with a warning) or "deny"`)
}

// stringFunc registers a flag that sets *p, of a string type, to value and
// then to the flag's; Validate checks it. The usage ends in the default, as
// the flag package writes it for a string flag, which a Func flag lacks.
func stringFunc[T ~string](fs *flag.FlagSet, p *T, name string, value T, usage string) {
	*p = value
	fs.Func(name, fmt.Sprintf("%s (default %q)", usage, value), func(s string) error { *p = T(s); return nil })
}

// Validate checks every field and reports every problem, naming the flag.
func (c *Config) Validate() error {
	var errs []error
	if c.PrometheusURL == "" {
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"--prometheus-ca-file", c.CAFile != ""},
			{"--prometheus-bearer-token-file", c.BearerTokenFile != ""},
			{"--prometheus-auth=azure", c.Auth == AuthAzure},
		} {
			if f.set {
				errs = append(errs, fmt.Errorf("%s needs --prometheus-url", f.name))
			}
		}
	} else if u, err := url.Parse(c.PrometheusURL); err != nil {
		errs = append(errs, fmt.Errorf("--prometheus-url: %w", err))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--prometheus-url %q: want an http or https URL with a host", c.PrometheusURL))
	} else if c.Auth == AuthAzure && u.Scheme != "https" {
		errs = append(errs, fmt.Errorf("--prometheus-auth=azure needs an https --prometheus-url, not %q", c.PrometheusURL))
	}
	switch c.Auth {
	case AuthNone:
	case AuthAzure:
		if c.BearerTokenFile != "" {
			errs = append(errs, errors.New("--prometheus-bearer-token-file and --prometheus-auth=azure exclude each other"))
		}
	default:
		errs = append(errs, fmt.Errorf("--prometheus-auth %q: want none or azure", c.Auth))
	}
	if c.Refresh <= 0 {
		errs = append(errs, fmt.Errorf("--plaintext-refresh %s: must be positive", c.Refresh))
	}
	if c.Window <= 0 || c.Window%time.Millisecond != 0 {
		errs = append(errs, fmt.Errorf("--plaintext-window %s: must be a positive whole number of milliseconds", c.Window))
	}
	if c.MinRequests < 1 {
		errs = append(errs, fmt.Errorf("--plaintext-min-requests %d: must be at least 1", c.MinRequests))
	}
	switch {
	case c.MaxAge <= 0:
		errs = append(errs, fmt.Errorf("--plaintext-max-age %s: must be positive", c.MaxAge))
	case c.Refresh > 0 && c.MaxAge < c.Refresh:
		errs = append(errs, fmt.Errorf("--plaintext-max-age %s is shorter than --plaintext-refresh %s: the evidence would go stale between refreshes", c.MaxAge, c.Refresh))
	}
	switch c.Unavailable {
	case UnavailableAllow, UnavailableDeny:
	default:
		errs = append(errs, fmt.Errorf("--plaintext-unavailable %q: want allow or deny", c.Unavailable))
	}
	return errors.Join(errs...)
}

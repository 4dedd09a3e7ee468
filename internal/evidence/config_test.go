package evidence

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

func TestAddFlagsDefaults(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c Config
	c.AddFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	want := Config{Auth: AuthNone, Refresh: time.Minute, Window: 24 * time.Hour, MinRequests: 1, MaxAge: 5 * time.Minute, Unavailable: UnavailableAllow}
	if c != want {
		t.Errorf("defaults = %+v, want %+v", c, want)
	}
	if c != DefaultConfig() {
		t.Errorf("defaults = %+v, DefaultConfig() = %+v", c, DefaultConfig())
	}
	if c.Enabled() {
		t.Error("enabled without --prometheus-url")
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	// Every flag has short help.
	fs.VisitAll(func(f *flag.Flag) {
		if f.Usage == "" || len(f.Usage) > 130 {
			t.Errorf("--%s: help %q empty or long", f.Name, f.Usage)
		}
	})
}

func TestAddFlagsParse(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c Config
	c.AddFlags(fs)
	err := fs.Parse([]string{
		"--prometheus-url=https://prom.example:9090", "--prometheus-ca-file=/ca.pem",
		"--prometheus-auth=azure", "--plaintext-refresh=30s", "--plaintext-window=1h",
		"--plaintext-min-requests=5", "--plaintext-max-age=2m", "--plaintext-unavailable=deny",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{PrometheusURL: "https://prom.example:9090", CAFile: "/ca.pem", Auth: AuthAzure,
		Refresh: 30 * time.Second, Window: time.Hour, MinRequests: 5, MaxAge: 2 * time.Minute, Unavailable: UnavailableDeny}
	if c != want {
		t.Errorf("parsed %+v, want %+v", c, want)
	}
	if !c.Enabled() {
		t.Error("not enabled with --prometheus-url")
	}
	if err := c.Validate(); err != nil {
		t.Errorf("valid flags rejected: %v", err)
	}
}

func TestValidate(t *testing.T) {
	on := func(f func(*Config)) Config {
		c := DefaultConfig()
		c.PrometheusURL = "http://prometheus.istio-system:9090"
		f(&c)
		return c
	}
	off := func(f func(*Config)) Config {
		c := DefaultConfig()
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error, one per problem; none: valid
	}{
		{name: "off", cfg: off(func(*Config) {})},
		{name: "on", cfg: on(func(*Config) {})},
		{name: "token file and CA", cfg: on(func(c *Config) { c.BearerTokenFile = "/var/run/token"; c.CAFile = "/ca" })},
		{name: "azure over https", cfg: on(func(c *Config) {
			c.PrometheusURL = "https://amw-1.eastus.prometheus.monitor.azure.com"
			c.Auth = AuthAzure
		})},
		{name: "short window in ms", cfg: on(func(c *Config) { c.Window = 1500 * time.Millisecond })},
		{name: "CA without URL", cfg: off(func(c *Config) { c.CAFile = "/ca" }),
			want: []string{"--prometheus-ca-file needs --prometheus-url"}},
		{name: "token and azure without URL", cfg: off(func(c *Config) { c.BearerTokenFile = "/t"; c.Auth = AuthAzure }),
			want: []string{"--prometheus-bearer-token-file needs --prometheus-url", "--prometheus-auth=azure needs --prometheus-url",
				"exclude each other"}},
		{name: "relative URL", cfg: on(func(c *Config) { c.PrometheusURL = "prometheus:9090" }),
			want: []string{`--prometheus-url "prometheus:9090": want an http or https URL with a host`}},
		{name: "URL without host", cfg: on(func(c *Config) { c.PrometheusURL = "http:///api" }),
			want: []string{"want an http or https URL with a host"}},
		{name: "unparsable URL", cfg: on(func(c *Config) { c.PrometheusURL = "http://[::1" }),
			want: []string{"--prometheus-url: "}},
		{name: "azure over http", cfg: on(func(c *Config) { c.Auth = AuthAzure }),
			want: []string{"--prometheus-auth=azure needs an https --prometheus-url"}},
		{name: "unknown auth", cfg: on(func(c *Config) { c.Auth = "basic" }),
			want: []string{`--prometheus-auth "basic": want none or azure`}},
		{name: "zero refresh", cfg: on(func(c *Config) { c.Refresh = 0 }),
			want: []string{"--plaintext-refresh 0s: must be positive"}},
		{name: "negative window", cfg: on(func(c *Config) { c.Window = -time.Hour }),
			want: []string{"--plaintext-window -1h0m0s: must be a positive"}},
		{name: "sub-millisecond window", cfg: on(func(c *Config) { c.Window = time.Second + time.Microsecond }),
			want: []string{"--plaintext-window 1.000001s"}},
		{name: "zero min requests", cfg: on(func(c *Config) { c.MinRequests = 0 }),
			want: []string{"--plaintext-min-requests 0: must be at least 1"}},
		{name: "zero max age", cfg: on(func(c *Config) { c.MaxAge = 0 }),
			want: []string{"--plaintext-max-age 0s: must be positive"}},
		{name: "max age below refresh", cfg: on(func(c *Config) { c.MaxAge = 30 * time.Second }),
			want: []string{"--plaintext-max-age 30s is shorter than --plaintext-refresh 1m0s"}},
		{name: "unknown unavailable", cfg: on(func(c *Config) { c.Unavailable = "warn" }),
			want: []string{`--plaintext-unavailable "warn": want allow or deny`}},
		{name: "several at once", cfg: on(func(c *Config) { c.MinRequests = -1; c.Unavailable = "" }),
			want: []string{"--plaintext-min-requests -1", `--plaintext-unavailable ""`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("Validate() reported %d problems, want %d: %v", len(lines), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestNew(t *testing.T) {
	c := DefaultConfig()
	if _, err := New(c, logr.Discard()); err == nil {
		t.Error("New without --prometheus-url succeeded")
	}
	c.PrometheusURL, c.MinRequests = "http://prometheus:9090", 0
	if _, err := New(c, logr.Discard()); err == nil {
		t.Error("New with an invalid config succeeded")
	}
	c.MinRequests = 1
	r, err := New(c, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if r.interval != c.Refresh || r.maxAge != c.MaxAge {
		t.Errorf("refresher interval %s, max age %s; want %s, %s", r.interval, r.maxAge, c.Refresh, c.MaxAge)
	}
	if _, err := r.Current(time.Now()); err == nil {
		t.Error("evidence available before any fetch")
	}
}

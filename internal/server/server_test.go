package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mtls-guard/mtls-guard/certs"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		check   func(Config) error
		wantErr string
	}{
		{name: "defaults", check: func(c Config) error {
			if c.ReadHeaderTimeout != 10*time.Second || c.MaxCacheStaleness != 15*time.Second || c.ShutdownTimeout != 30*time.Second || c.EnableHTTP2 ||
				!c.MetricsSecure || c.MetricsAddr != ":8443" || c.ClientCAFile != "" || c.WebhookConfigName != "mtls-guard" || !c.AllowOverride {
				return fmt.Errorf("defaults: %+v", c)
			}
			return nil
		}},
		{name: "port flags", args: []string{"--metrics-secure=false", "--client-ca-file=/etc/ca.pem", "--webhook-config-name="}, check: func(c Config) error {
			if c.MetricsSecure || c.ClientCAFile != "/etc/ca.pem" || c.WebhookConfigName != "" {
				return fmt.Errorf("port flags: %+v", c)
			}
			return nil
		}},
		{name: "override groups are gone: RBAC decides", args: []string{"--override-groups=sre"}, wantErr: "flag provided but not defined"},
		{name: "timeouts", args: []string{"--read-header-timeout=2s", "--max-cache-staleness=1m"}, check: func(c Config) error {
			if c.ReadHeaderTimeout != 2*time.Second || c.MaxCacheStaleness != time.Minute {
				return fmt.Errorf("timeouts %s %s", c.ReadHeaderTimeout, c.MaxCacheStaleness)
			}
			return nil
		}},
		{name: "zero timeout", args: []string{"--read-header-timeout=0"}, wantErr: "--read-header-timeout must be positive"},
		{name: "negative staleness", args: []string{"--max-cache-staleness=-1s"}, wantErr: "--max-cache-staleness must be positive"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := parse(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.check(c); err != nil {
				t.Error(err)
			}
		})
	}
}

// testServer starts a WebhookServer on a free loopback port with a fresh
// certificate and one handler.
func testServer(t *testing.T, o WebhookOptions, h http.Handler) (*WebhookServer, *http.Client, string, context.CancelFunc, chan error) {
	t.Helper()
	b, err := certs.Issue("mtls-guard", "mtls-guard", certs.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	if err != nil {
		t.Fatal(err)
	}
	o.CertDir = t.TempDir()
	if err := b.WriteDir(o.CertDir); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.Host, o.Port = "127.0.0.1", l.Addr().(*net.TCPAddr).Port
	l.Close()
	o.Log = logr.Discard()
	s := NewWebhookServer(o)
	s.Register("/hook", h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CACert)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	url := fmt.Sprintf("https://127.0.0.1:%d/hook", o.Port)
	check := s.StartedChecker()
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return check(nil) == nil, nil
	}); err != nil {
		t.Fatalf("server never started: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s, c, url, cancel, done
}

// TestWebhookServerDrains: once the manager stops the server, new
// connections are refused, the request in flight completes with its
// context intact, and Start returns.
func TestWebhookServerDrains(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		if err := r.Context().Err(); err != nil {
			http.Error(w, "request context cancelled: "+err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "done")
	})
	s, c, url, cancel, done := testServer(t, WebhookOptions{ReadHeaderTimeout: time.Second, ShutdownTimeout: 30 * time.Second}, h)

	type result struct {
		body string
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := c.Post(url, "application/json", strings.NewReader("{}"))
		if err != nil {
			inflight <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		inflight <- result{string(b), err}
	}()
	<-entered
	cancel() // what SIGTERM does to the manager

	addr := strings.TrimPrefix(strings.TrimSuffix(url, "/hook"), "https://")
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return true, nil
		}
		conn.Close()
		return false, nil
	}); err != nil {
		t.Fatal("new connections are still accepted while draining")
	}
	if err := s.StartedChecker()(nil); err == nil {
		t.Error("the started check passes while draining")
	}
	select {
	case err := <-done:
		t.Fatalf("Start returned %v with a request in flight", err)
	default:
	}
	close(release)
	if r := <-inflight; r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request: %q, %v", r.body, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Start: %v", err)
	}
	done <- nil // for the cleanup
}

// TestWebhookServerDrainTimeout: a request that outlives the drain timeout
// has its connection closed, and Start still returns.
func TestWebhookServerDrainTimeout(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})
	_, c, url, cancel, done := testServer(t, WebhookOptions{ReadHeaderTimeout: time.Second, ShutdownTimeout: 100 * time.Millisecond}, h)
	failed := make(chan error, 1)
	go func() {
		resp, err := c.Post(url, "application/json", bytes.NewReader([]byte("{}")))
		if err == nil {
			resp.Body.Close()
		}
		failed <- err
	}()
	<-entered
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start: %v", err)
	}
	done <- nil
	if err := <-failed; err == nil {
		t.Error("a request past the drain timeout got an answer")
	}
}

func TestNextProtos(t *testing.T) {
	if got := (WebhookOptions{}).NextProtos(); !reflect.DeepEqual(got, []string{"http/1.1"}) {
		t.Errorf("without HTTP/2: %q", got)
	}
	if got := (WebhookOptions{EnableHTTP2: true}).NextProtos(); !reflect.DeepEqual(got, []string{"h2", "http/1.1"}) {
		t.Errorf("with HTTP/2: %q", got)
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	s := NewWebhookServer(WebhookOptions{Log: logr.Discard()})
	s.Register("/a", http.NotFoundHandler())
	defer func() {
		if recover() == nil {
			t.Error("registering a path twice did not panic")
		}
	}()
	s.Register("/a", http.NotFoundHandler())
}

// TestREADMEListsEveryFlag keeps the README's flags table complete: every
// flag that `mtls-guard serve -h` prints is named there.
func TestREADMEListsEveryFlag(t *testing.T) {
	var usage bytes.Buffer
	if _, _, err := parse([]string{"-h"}, &usage); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parse -h: %v", err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`(?m)^\s+-(\S+)`).FindAllStringSubmatch(usage.String(), -1)
	if len(names) < 20 {
		t.Fatalf("found %d flags in the usage, expected more:\n%s", len(names), usage.String())
	}
	for _, m := range names {
		if !bytes.Contains(readme, []byte("`--"+m[1]+"`")) {
			t.Errorf("README.md does not list --%s", m[1])
		}
	}
}

package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/mtls-guard/mtls-guard/webhook"
)

// WebhookOptions configure the guard's webhook server.
type WebhookOptions struct {
	// Host and Port are where it listens; an empty Host means every address.
	Host string
	Port int
	// CertDir holds tls.crt and tls.key, reloaded when they change.
	CertDir string
	// EnableHTTP2 offers h2 in ALPN; otherwise only http/1.1 is offered
	// and HTTP/2 is never spoken.
	EnableHTTP2 bool
	// ReadHeaderTimeout cuts off a client that sends its headers slowly.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request headers.
	MaxHeaderBytes int
	// ShutdownTimeout is how long in-flight requests may drain once the
	// manager stops; then the remaining connections are closed.
	ShutdownTimeout time.Duration
	// ClientCAFile, when set, holds the CAs that must have signed the
	// client's certificate; without one the handshake fails.
	ClientCAFile string
	// Log receives the server's own messages.
	Log logr.Logger
}

// WebhookServer is the guard's controller-runtime webhook.Server. It
// serves like controller-runtime's DefaultServer, with three differences
// that matter to an admission webhook:
//   - its timeouts and header limit are configurable (DefaultServer
//     hard-codes a 32s ReadHeaderTimeout);
//   - only http/1.1 is offered unless HTTP/2 is enabled, and TLS 1.2 is
//     the minimum;
//   - requests do not inherit the manager's context, so that SIGTERM does
//     not cancel the ones in flight: on stop the listener closes (new
//     connections are refused) and in-flight requests drain for up to
//     ShutdownTimeout.
type WebhookServer struct {
	opts WebhookOptions
	// routes is controller-runtime's server, never started: its Register
	// instruments each hook with the controller_runtime_webhook_* metrics
	// and its mux is what this server serves.
	routes ctrlwebhook.Server

	mu   sync.Mutex
	addr string // the listener's address once started; empty before and after
}

var _ ctrlwebhook.Server = (*WebhookServer)(nil)

// NewWebhookServer returns a server that has not started.
func NewWebhookServer(o WebhookOptions) *WebhookServer {
	return &WebhookServer{opts: o, routes: ctrlwebhook.NewServer(ctrlwebhook.Options{})}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica serves.
func (*WebhookServer) NeedLeaderElection() bool { return false }

// Register serves hook at path with controller-runtime's webhook metrics,
// plus an in-flight gauge that counts body reading too (what a drain waits
// for). It panics when the path is taken, as controller-runtime's does.
func (s *WebhookServer) Register(path string, hook http.Handler) {
	s.routes.Register(path, promhttp.InstrumentHandlerInFlight(webhook.RequestsInFlight, hook))
	s.opts.Log.Info("registered webhook", "path", path)
}

// WebhookMux returns the server's mux.
func (s *WebhookServer) WebhookMux() *http.ServeMux { return s.routes.WebhookMux() }

// NextProtos returns the ALPN protocols offered.
func (o WebhookOptions) NextProtos() []string {
	if o.EnableHTTP2 {
		return []string{"h2", "http/1.1"}
	}
	return []string{"http/1.1"}
}

// Start serves until ctx ends, then drains.
func (s *WebhookServer) Start(ctx context.Context) error {
	cw, err := certwatcher.New(filepath.Join(s.opts.CertDir, "tls.crt"), filepath.Join(s.opts.CertDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("loading the serving certificate from %s: %w", s.opts.CertDir, err)
	}
	go func() {
		if err := cw.Start(ctx); err != nil {
			s.opts.Log.Error(err, "certificate watcher stopped")
		}
	}()
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: cw.GetCertificate,
		NextProtos:     s.opts.NextProtos(),
	}
	if s.opts.ClientCAFile != "" {
		pem, err := os.ReadFile(s.opts.ClientCAFile)
		if err != nil {
			return fmt.Errorf("reading the client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("the client CA file %s holds no PEM certificate", s.opts.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	l, err := net.Listen("tcp", net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port)))
	if err != nil {
		return fmt.Errorf("webhook server: %w", err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(s.opts.EnableHTTP2)
	srv := &http.Server{
		Handler:           s.routes.WebhookMux(),
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    s.opts.MaxHeaderBytes,
		Protocols:         &protocols,
		ErrorLog:          log.New(logWriter{s.opts.Log.WithName("http")}, "", 0),
		// Not ctx: SIGTERM must not cancel the requests in flight. The
		// values (the logger) are kept.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if !s.opts.EnableHTTP2 {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}

	drained := make(chan struct{})
	go func() {
		defer close(drained)
		<-ctx.Done()
		s.mu.Lock()
		s.addr = ""
		s.mu.Unlock()
		s.opts.Log.Info("draining the webhook server", "timeout", s.opts.ShutdownTimeout)
		sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			s.opts.Log.Error(err, "requests still in flight after the drain timeout; closing their connections")
			_ = srv.Close()
			return
		}
		s.opts.Log.Info("webhook server drained")
	}()

	s.mu.Lock()
	s.addr = l.Addr().String()
	s.mu.Unlock()
	s.opts.Log.Info("serving webhooks", "address", l.Addr().String(), "alpn", cfg.NextProtos, "readHeaderTimeout", s.opts.ReadHeaderTimeout)
	if err := srv.Serve(tls.NewListener(l, cfg)); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("webhook server: %w", err)
	}
	<-drained
	return nil
}

// StartedChecker reports healthy while the server accepts TLS
// connections: not before it starts, nor once it drains.
func (s *WebhookServer) StartedChecker() healthz.Checker {
	return func(*http.Request) error {
		s.mu.Lock()
		addr := s.addr
		s.mu.Unlock()
		if addr == "" {
			return errors.New("the webhook server is not serving")
		}
		// Only reachability is checked, over TCP: the probe has no client
		// certificate for a server that requires one.
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return fmt.Errorf("webhook server is not reachable: %w", err)
		}
		return conn.Close()
	}
}

// logWriter sends net/http's own messages (TLS handshake errors, header
// timeouts) to the logger, one per line.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/mtls-guard/mtls-guard/webhook"
)

// TestTransport: the HTTPS server refuses old TLS, offers HTTP/2 only when
// enabled, cuts off slow clients and refuses oversized bodies before
// reading them. The shared guard runs with the defaults; a second one with
// --enable-http2 and a short --read-header-timeout.
func TestTransport(t *testing.T) {
	const headerTimeout = time.Second
	fast := startGuard(t, guardOptions{extra: []string{"--enable-http2", "--read-header-timeout", headerTimeout.String()}})

	t.Run("TLS below 1.2 is refused", func(t *testing.T) {
		for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
			conn, err := dialTLS(suite.guard, &tls.Config{MinVersion: v, MaxVersion: v})
			if err == nil {
				conn.Close()
				t.Fatalf("a %s client was served", tls.VersionName(v))
			}
			if !strings.Contains(err.Error(), "protocol version") {
				t.Errorf("%s: %v, want a protocol version alert", tls.VersionName(v), err)
			}
		}
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			conn, err := dialTLS(suite.guard, &tls.Config{MinVersion: v, MaxVersion: v})
			if err != nil {
				t.Fatalf("%s refused: %v", tls.VersionName(v), err)
			}
			conn.Close()
		}
	})

	t.Run("HTTP/2 is not offered by default", func(t *testing.T) {
		conn, err := dialTLS(suite.guard, &tls.Config{NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Errorf("negotiated %q, want http/1.1", p)
		}
		if _, err := dialTLS(suite.guard, &tls.Config{NextProtos: []string{"h2"}}); err == nil {
			t.Error("a client that speaks only h2 was served")
		}
		resp := postWith(t, suite.guard, &http.Transport{ForceAttemptHTTP2: true}, review("h1", "PeerAuthentication", "CREATE", strictJSON, ""))
		if resp.ProtoMajor != 1 {
			t.Errorf("answered over %s, want HTTP/1.1", resp.Proto)
		}
	})

	t.Run("HTTP/2 with --enable-http2", func(t *testing.T) {
		conn, err := dialTLS(fast, &tls.Config{NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
			t.Errorf("negotiated %q, want h2", p)
		}
		resp := postWith(t, fast, &http.Transport{ForceAttemptHTTP2: true}, review("h2", "PeerAuthentication", "CREATE", strictJSON, ""))
		if resp.ProtoMajor != 2 {
			t.Errorf("answered over %s, want HTTP/2", resp.Proto)
		}
	})

	t.Run("slow headers are cut off", func(t *testing.T) {
		conn, err := dialTLS(fast, &tls.Config{NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", webhook.Path); err != nil {
			t.Fatal(err)
		}
		// Keep dribbling header bytes: the timeout bounds the whole header,
		// not the gaps between bytes.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := conn.Write([]byte("X-Slow: 1\r\n")); err != nil {
						return
					}
				}
			}
		}()
		// The deadline only bounds a failing test: the server must close
		// the connection on its own, whenever the host gets to it.
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("the server did not close a slow client's connection (read: %v)", err)
		}
		t.Logf("cut off after %s (--read-header-timeout=%s)", time.Since(start).Round(time.Millisecond), headerTimeout)
	})

	t.Run("headers over the limit are refused", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, fast.URL(webhook.Path), bytes.NewReader(review("hb", "PeerAuthentication", "CREATE", strictJSON, "")))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Big", strings.Repeat("x", 128<<10))
		resp, err := fast.httpsClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("HTTP %d, want 431", resp.StatusCode)
		}
	})

	t.Run("a body over the limit is refused before it is sent", func(t *testing.T) {
		conn, err := dialTLS(fast, &tls.Config{NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Announce 10 MiB, send 1 KiB, and wait for the answer: it comes
		// without the rest.
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			webhook.Path, 10<<20, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"big","x":"`+strings.Repeat("x", 1000))
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer before the body was sent: %v", err)
		}
		defer resp.Body.Close()
		got := decodeAnswer(t, resp)
		if got.Allowed || got.Result == nil || got.Result.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("answer %+v, want a 413 refusal", got.Result)
		}
		if !resp.Close {
			t.Error("the connection stays open after refusing a body it did not read")
		}
	})

	t.Run("a streamed body over the limit is refused", func(t *testing.T) {
		body := io.MultiReader(strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"big","x":"`),
			io.LimitReader(repeatReader('x'), 8<<20))
		req, err := http.NewRequest(http.MethodPost, fast.URL(webhook.Path), body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1 // chunked: the size is not known up front
		req.Header.Set("Content-Type", "application/json")
		resp, err := fast.httpsClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if got := decodeAnswer(t, resp); got.Allowed || got.Result == nil || got.Result.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("answer %+v, want a 413 refusal", got.Result)
		}
	})
}

// dialTLS opens a TLS connection to a guard's webhook port, trusting its CA.
func dialTLS(g *guard, cfg *tls.Config) (*tls.Conn, error) {
	pool := g.RootCAs()
	cfg = cfg.Clone()
	cfg.RootCAs, cfg.ServerName = pool, "127.0.0.1"
	d := &net.Dialer{Timeout: 10 * time.Second}
	return tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", g.Port), cfg)
}

// postWith posts a review through the given transport, trusting the
// guard's CA, and checks that the answer is an AdmissionReview.
func postWith(t *testing.T, g *guard, tr *http.Transport, body []byte) *http.Response {
	t.Helper()
	pool := g.RootCAs()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Post(g.URL(webhook.Path), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	decodeAnswer(t, resp)
	return resp
}

func decodeAnswer(t *testing.T, resp *http.Response) *admissionv1.AdmissionResponse {
	t.Helper()
	var rv admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&rv); err != nil || rv.Response == nil {
		t.Fatalf("HTTP %d: the answer is not an AdmissionReview: %v", resp.StatusCode, err)
	}
	return rv.Response
}

// repeatReader is an endless stream of one byte.
type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

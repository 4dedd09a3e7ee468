package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cert-manager/cert-manager/pkg/util/pki"
)

type parsed struct {
	ca, leaf *x509.Certificate
	roots    *x509.CertPool
}

func parse(t *testing.T, b *Bundle) parsed {
	t.Helper()
	ca, err := pki.DecodeX509CertificateBytes(b.CACert)
	if err != nil {
		t.Fatalf("decoding CA: %v", err)
	}
	leaf, err := pki.DecodeX509CertificateBytes(b.Cert)
	if err != nil {
		t.Fatalf("decoding leaf: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return parsed{ca: ca, leaf: leaf, roots: roots}
}

func TestIssue(t *testing.T) {
	tests := []struct {
		name      string
		opts      []Option
		valid     []string // names the leaf must verify for
		invalid   []string // names it must not verify for
		wantValid time.Duration
	}{
		{
			name:      "in-cluster names only",
			valid:     []string{"mtls-guard.mtls-guard.svc", "mtls-guard.mtls-guard.svc.cluster.local"},
			invalid:   []string{"localhost", "127.0.0.1", "mtls-guard.other.svc", "mtls-guard"},
			wantValid: ServingDuration,
		},
		{
			name: "loopback for tests",
			opts: []Option{
				WithDNSNames("localhost"),
				WithIPAddresses(net.ParseIP("127.0.0.1"), net.IPv6loopback),
				WithDuration(time.Hour),
			},
			valid:     []string{"mtls-guard.mtls-guard.svc", "localhost", "127.0.0.1", "::1"},
			invalid:   []string{"127.0.0.2", "example.com"},
			wantValid: time.Hour,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Issue("mtls-guard", "mtls-guard", tt.opts...)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			p := parse(t, b)

			if !p.ca.IsCA || p.ca.KeyUsage&x509.KeyUsageCertSign == 0 {
				t.Errorf("CA: IsCA=%v KeyUsage=%v, want a CA that can sign certificates", p.ca.IsCA, p.ca.KeyUsage)
			}
			if p.leaf.IsCA {
				t.Error("leaf is a CA")
			}
			if got, want := p.leaf.NotAfter.Sub(p.leaf.NotBefore), tt.wantValid+clockSkew; got != want {
				t.Errorf("leaf validity = %v, want %v", got, want)
			}
			if !p.leaf.NotBefore.Before(time.Now()) || !p.leaf.NotAfter.Before(p.ca.NotAfter) {
				t.Errorf("leaf valid %v..%v, CA until %v", p.leaf.NotBefore, p.leaf.NotAfter, p.ca.NotAfter)
			}
			pub, ok := p.leaf.PublicKey.(*ecdsa.PublicKey)
			if !ok || pub.Curve != elliptic.P256() {
				t.Errorf("leaf key = %T, want ECDSA P-256", p.leaf.PublicKey)
			}

			for _, name := range tt.valid {
				_, err := p.leaf.Verify(x509.VerifyOptions{
					DNSName:   name,
					Roots:     p.roots,
					KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				})
				if err != nil {
					t.Errorf("Verify(%q): %v", name, err)
				}
			}
			for _, name := range tt.invalid {
				_, err := p.leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: p.roots})
				if err == nil {
					t.Errorf("Verify(%q) succeeded, want a name mismatch", name)
				}
			}
			// A serving certificate only: no client authentication.
			_, err = p.leaf.Verify(x509.VerifyOptions{
				Roots:     p.roots,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			})
			if err == nil {
				t.Error("leaf verifies for client auth")
			}
			// Some other CA must not do.
			other, err := Issue("mtls-guard", "mtls-guard")
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.leaf.Verify(x509.VerifyOptions{Roots: parse(t, other).roots})
			if err == nil {
				t.Error("leaf verifies against an unrelated CA")
			}

			// Key matches certificate, and not someone else's.
			if _, err := tls.X509KeyPair(b.Cert, b.Key); err != nil {
				t.Errorf("key does not match certificate: %v", err)
			}
			if _, err := tls.X509KeyPair(b.Cert, other.Key); err == nil {
				t.Error("another bundle's key matches the certificate")
			}
		})
	}
}

func TestIssueServesTLS(t *testing.T) {
	b, err := Issue("mtls-guard", "mtls-guard",
		WithDNSNames("localhost"), WithIPAddresses(net.ParseIP("127.0.0.1")))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b.CACert) {
		t.Fatal("CA PEM not accepted")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := client.Get(srv.URL) // https://127.0.0.1:port
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); string(body) != "ok" {
		t.Errorf("body = %q", body)
	}
}

func TestIssueErrors(t *testing.T) {
	tests := []struct {
		name, service, namespace string
		opts                     []Option
	}{
		{name: "empty service", service: "", namespace: "ns"},
		{name: "service not a DNS label", service: "My_Service", namespace: "ns"},
		{name: "namespace not a DNS label", service: "svc", namespace: "a.b"},
		{name: "negative duration", service: "svc", namespace: "ns", opts: []Option{WithDuration(-time.Hour)}},
		{name: "outlives CA", service: "svc", namespace: "ns", opts: []Option{WithDuration(CADuration + time.Hour)}},
		{name: "empty DNS name", service: "svc", namespace: "ns", opts: []Option{WithDNSNames("")}},
		{name: "nil IP", service: "svc", namespace: "ns", opts: []Option{WithIPAddresses(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := Issue(tt.service, tt.namespace, tt.opts...); err == nil {
				t.Errorf("Issue succeeded: %d byte certificate", len(b.Cert))
			}
		})
	}
}

func TestWriteDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "certs")
	first, err := Issue("mtls-guard", "mtls-guard")
	if err != nil {
		t.Fatal(err)
	}
	second, err := Issue("mtls-guard", "mtls-guard")
	if err != nil {
		t.Fatal(err)
	}
	// The second write replaces the first, as a rotation would.
	for _, b := range []*Bundle{first, second} {
		if err := b.WriteDir(dir); err != nil {
			t.Fatalf("WriteDir: %v", err)
		}
	}

	for _, f := range []struct {
		name string
		want []byte
		perm os.FileMode
	}{
		{CAFile, second.CACert, 0o644},
		{CertFile, second.Cert, 0o644},
		{KeyFile, second.Key, 0o600},
	} {
		path := filepath.Join(dir, f.name)
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.want) {
			t.Errorf("%s does not hold the second bundle", f.name)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.perm {
			t.Errorf("%s mode = %v, want %v", f.name, fi.Mode().Perm(), f.perm)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("dir holds %v, want only the three files (no temporary leftovers)", names)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)); err != nil {
		t.Errorf("written pair does not load: %v", err)
	}
}

func TestWriteDirError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := Issue("mtls-guard", "mtls-guard")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteDir(file); err == nil {
		t.Error("WriteDir into a regular file succeeded")
	}
}

func TestCommand(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := Command([]string{
		"--service", "guard", "--namespace", "sec",
		"--out", dir, "--ip", "127.0.0.1", "--dns=localhost", "--duration=2h",
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q, want empty", stderr.String())
	}

	out := stdout.String()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("stdout = %q, want one line", out)
	}
	caBundle, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("stdout is not base64: %v", err)
	}
	caFile, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caBundle, caFile) {
		t.Error("printed caBundle differs from ca.crt")
	}

	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, &Bundle{CACert: caFile, Cert: certPEM, Key: keyPEM})
	for _, name := range []string{"guard.sec.svc", "guard.sec.svc.cluster.local", "localhost", "127.0.0.1"} {
		if _, err := p.leaf.Verify(x509.VerifyOptions{
			DNSName:   name,
			Roots:     p.roots,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}); err != nil {
			t.Errorf("Verify(%q): %v", name, err)
		}
	}
	if got := p.leaf.NotAfter.Sub(p.leaf.NotBefore); got != 2*time.Hour+clockSkew {
		t.Errorf("validity = %v, want 2h (+%v skew)", got, clockSkew)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Errorf("key does not match certificate: %v", err)
	}
}

func TestCommandUsage(t *testing.T) {
	out := t.TempDir()
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{name: "help", args: []string{"-h"}, wantCode: 0, wantStderr: "Usage: mtls-guard certs"},
		{name: "missing out", args: nil, wantCode: 2, wantStderr: "--out is required"},
		{name: "unknown flag", args: []string{"--out", out, "--bogus"}, wantCode: 2, wantStderr: "flag provided but not defined: -bogus"},
		{name: "bad ip", args: []string{"--out", out, "--ip", "300.1.1.1"}, wantCode: 2, wantStderr: "not an IP address"},
		{name: "empty dns", args: []string{"--out", out, "--dns="}, wantCode: 2, wantStderr: "empty DNS name"},
		{name: "positional", args: []string{"--out", out, "extra"}, wantCode: 2, wantStderr: "unexpected arguments"},
		{name: "bad service", args: []string{"--out", out, "--service", "Not_A_Label"}, wantCode: 2, wantStderr: "invalid service name"},
		{name: "bad namespace", args: []string{"--out", out, "--namespace", ""}, wantCode: 2, wantStderr: "invalid namespace"},
		{name: "zero duration", args: []string{"--out", out, "--duration", "0s"}, wantCode: 2, wantStderr: "--duration must be"},
		{name: "bad duration", args: []string{"--out", out, "--duration", "soon"}, wantCode: 2, wantStderr: "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Command(tt.args, &stdout, &stderr); code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want empty", stdout.String())
			}
		})
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("usage errors wrote %d files", len(entries))
	}
}

func TestCommandWriteFailure(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := Command([]string{"--out", file}, &stdout, &stderr); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "mtls-guard certs:") {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

func TestRenew(t *testing.T) {
	first, err := Issue("mtls-guard", "mtls-guard")
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := first.Renew("mtls-guard", "mtls-guard")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(renewed.CACert, first.CACert) {
		t.Error("renewal changed the CA: the caBundle would stop matching")
	}
	a, b := parse(t, first), parse(t, renewed)
	if a.leaf.SerialNumber.Cmp(b.leaf.SerialNumber) == 0 || bytes.Equal(first.Key, renewed.Key) {
		t.Error("renewal reused the serial number or the key")
	}
	if _, err := b.leaf.Verify(x509.VerifyOptions{Roots: a.roots, DNSName: "mtls-guard.mtls-guard.svc", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("renewed leaf does not verify against the original CA: %v", err)
	}
	if _, err := (&Bundle{CACert: first.CACert}).Renew("mtls-guard", "mtls-guard"); err == nil {
		t.Error("a bundle without the CA key renewed")
	}
	if _, err := first.Renew("", "mtls-guard"); err == nil {
		t.Error("renewal accepted an empty service name")
	}
}

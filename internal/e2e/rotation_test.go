package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/certs"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// servedSerial is the serial number of the certificate the guard serves.
func servedSerial(g *guard) (string, error) {
	pool := g.RootCAs()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", g.Port),
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

func pemSerial(t *testing.T, b []byte) string {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// TestCertRotation renews the serving certificate with the same CA, as
// cert-manager does, while requests flow through the API server: none
// fails, and the new certificate is served without a restart.
func TestCertRotation(t *testing.T) {
	ns := namespace(t, "rotation", injected)
	create(t, pod(ns, "bare", nil, unmeshed))
	strict := pa(ns, "default", "STRICT")
	eventually(t, strict, true)

	g := suite.guard
	before, err := servedSerial(g)
	if err != nil {
		t.Fatal(err)
	}
	if before != pemSerial(t, g.Bundle.Cert) {
		t.Fatalf("served serial %s is not the issued one", before)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var requests, failures atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				r := createAs(suite.Admin, strict, client.DryRunAll)
				if ctx.Err() != nil {
					return
				}
				requests.Add(1)
				if ok, err := r.is(webhook.OutcomeDenied); !ok {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%v (audit: %v)", r.Err, err))
				}
			}
		}()
	}

	renewed, err := g.Bundle.Renew("mtls-guard", guardNamespace, certs.WithIPAddresses(net.IPv4(127, 0, 0, 1)), certs.WithDNSNames("localhost"))
	if err != nil {
		t.Fatal(err)
	}
	want := pemSerial(t, renewed.Cert)
	if err := renewed.WriteDir(g.CertDir); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		got, err := servedSerial(g)
		return err == nil && got == want, nil
	})
	if err != nil {
		t.Fatalf("the renewed certificate was never served: %v", err)
	}
	// Keep the load on for a while after the switch.
	atSwitch := requests.Load()
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return requests.Load() >= atSwitch+20, nil
	})
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatalf("requests stalled after the rotation: %v", err)
	}
	g.Bundle = renewed
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed during rotation; first: %v", n, requests.Load(), firstFailure.Load())
	}
	t.Logf("%d requests through the API server during rotation, none failed", requests.Load())
}

package evidence

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/go-logr/logr"
)

// fakeCredential stands in for azidentity's chain, which needs Azure; the
// credential's caching is azidentity's, so each call here is a new token.
type fakeCredential struct {
	scopes [][]string
	err    error
}

func (f *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.scopes = append(f.scopes, o.Scopes)
	if f.err != nil {
		return azcore.AccessToken{}, f.err
	}
	return azcore.AccessToken{Token: fmt.Sprintf("azure-%d", len(f.scopes)), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestAzureRoundTripper(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
	}))
	t.Cleanup(srv.Close)
	cred := &fakeCredential{}
	c := &http.Client{Transport: &azureRoundTripper{cred: cred, next: http.DefaultTransport}}
	for range 2 {
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if len(got) != 2 || got[0] != "Bearer azure-1" || got[1] != "Bearer azure-2" {
		t.Errorf("Authorization headers = %q, want a token from the credential on each request", got)
	}
	for _, s := range cred.scopes {
		if len(s) != 1 || s[0] != "https://prometheus.monitor.azure.com/.default" {
			t.Errorf("scopes = %q", s)
		}
	}

	cred.err = errors.New("no workload identity")
	if _, err := c.Get(srv.URL); !errors.Is(err, cred.err) || len(got) != 2 {
		t.Errorf("a failed token = %v (server saw %d requests), want the credential's error and no request", err, len(got))
	}
}

// --prometheus-auth=azure puts azidentity's default credential chain on
// the transport; outside Azure the chain still builds and fails on first
// use.
func TestRoundTripperAzure(t *testing.T) {
	c := DefaultConfig()
	c.PrometheusURL, c.Auth = "https://amw.eastus.prometheus.monitor.azure.com", AuthAzure
	rt, err := roundTripper(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.(*azureRoundTripper); !ok {
		t.Errorf("transport %T, want the Azure token round tripper", rt)
	}
	c.Auth = AuthNone
	if rt, err = roundTripper(c); err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.(*azureRoundTripper); ok {
		t.Error("an Azure token without --prometheus-auth=azure")
	}
}

func TestNewPrometheusErrors(t *testing.T) {
	if _, err := NewPrometheus(DefaultConfig(), logr.Discard()); err == nil {
		t.Error("NewPrometheus without a URL succeeded")
	}
	c := DefaultConfig()
	c.PrometheusURL, c.CAFile = "https://prometheus:9090", filepath.Join(t.TempDir(), "missing.pem")
	if _, err := NewPrometheus(c, logr.Discard()); err == nil || !strings.Contains(err.Error(), "--prometheus-ca-file") {
		t.Errorf("NewPrometheus with a missing CA file = %v, want an error naming the flag", err)
	}
}

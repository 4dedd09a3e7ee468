package audit

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// Response is what the API server answered to one call made with Call:
// the call's error, the Audit-Id of its last response (the key of its
// audit record) and the warnings it carried.
type Response struct {
	Err      error
	AuditID  string
	Warnings []string
}

// recorder collects the answers to one call; the context of the call's
// requests carries it.
type recorder struct {
	mu       sync.Mutex
	auditID  string
	warnings []string
}

type recorderKey struct{}

func recorderFrom(ctx context.Context) (*recorder, bool) {
	r, ok := ctx.Value(recorderKey{}).(*recorder)
	return r, ok
}

// Call makes one API request, fn, through a client whose configuration
// went through Recording, and returns what the API server answered.
// Concurrent calls record separately.
func Call(fn func(ctx context.Context) error) Response {
	r := &recorder{}
	err := fn(context.WithValue(context.Background(), recorderKey{}, r))
	r.mu.Lock()
	defer r.mu.Unlock()
	return Response{Err: err, AuditID: r.auditID, Warnings: r.warnings}
}

// Recording returns a copy of cfg whose clients record, for Call, the
// Audit-Id header and the warnings of each response.
func Recording(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(next http.RoundTripper) http.RoundTripper { return auditIDRecorder{next: next} })
	cfg.WarningHandlerWithContext = warningRecorder{}
	return cfg
}

// auditIDRecorder keeps each response's Audit-Id in the recorder of its
// request's context.
type auditIDRecorder struct{ next http.RoundTripper }

func (a auditIDRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if r, ok := recorderFrom(req.Context()); ok && err == nil {
		r.mu.Lock()
		r.auditID = resp.Header.Get("Audit-Id")
		r.mu.Unlock()
	}
	return resp, err
}

// warningRecorder keeps a response's warnings in the recorder of its
// request's context.
type warningRecorder struct{}

func (warningRecorder) HandleWarningHeaderWithContext(ctx context.Context, _ int, _ string, text string) {
	if r, ok := recorderFrom(ctx); ok {
		r.mu.Lock()
		r.warnings = append(r.warnings, text)
		r.mu.Unlock()
	}
}

// Clients makes controller-runtime clients whose requests record, for
// Call, their Audit-Ids and warnings. They share one RESTMapper, so that
// a new client does not discover the API again.
type Clients struct {
	scheme *runtime.Scheme
	mapper meta.RESTMapper
}

// NewClients discovers the API through cfg for clients of scheme.
func NewClients(cfg *rest.Config, scheme *runtime.Scheme) (*Clients, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("HTTP client: %w", err)
	}
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("REST mapper: %w", err)
	}
	return &Clients{scheme: scheme, mapper: mapper}, nil
}

// New is a recording client for cfg.
func (c *Clients) New(cfg *rest.Config) (client.Client, error) {
	cfg = Recording(cfg)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("HTTP client: %w", err)
	}
	return client.New(cfg, client.Options{Scheme: c.scheme, Mapper: c.mapper, HTTPClient: hc})
}

// Package inputtest holds test doubles for reading input. Tests that read
// a live cluster get controller-runtime's fake client, with interceptors
// that answer list calls in pages (limit and continue), leave out
// PeerAuthentication versions, inject failures, and record the calls;
// tests of the size limit get Endless.
package inputtest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/mtls-guard/mtls-guard/internal/input"
)

// Options shape the fake cluster.
type Options struct {
	// PageSize caps the objects of one list page, below the limit the
	// client asks for, so that a few objects already need several pages.
	// Zero means no cap.
	PageSize int
	// PeerAuthenticationVersions are the security.istio.io versions
	// served; none means the CRD is not installed.
	PeerAuthenticationVersions []string
	// Fail maps a list kind ("PodList") to the error its list calls fail
	// with.
	Fail map[string]error
}

// ListCall is one list call the client answered.
type ListCall struct {
	// Kind is the list's version and kind, as "v1 PodList".
	Kind     string
	Limit    int64
	Continue string
}

// Client is a fake client holding a cluster's objects.
type Client struct {
	client.WithWatch
	mu    sync.Mutex
	calls []ListCall
}

// New returns a fake client holding objs.
func New(t testing.TB, opts Options, objs ...client.Object) *Client {
	t.Helper()
	c := &Client{}
	served := map[string]bool{}
	for _, v := range opts.PeerAuthenticationVersions {
		served[v] = true
	}
	c.WithWatch = fake.NewClientBuilder().
		WithScheme(input.Scheme).
		WithInterceptorFuncs(interceptor.Funcs{
			List: func(ctx context.Context, cl client.WithWatch, list client.ObjectList, lopts ...client.ListOption) error {
				gvk, err := apiutil.GVKForObject(list, input.Scheme)
				if err != nil {
					return err
				}
				lo := (&client.ListOptions{}).ApplyOptions(lopts)
				c.mu.Lock()
				c.calls = append(c.calls, ListCall{Kind: gvk.GroupVersion().String() + " " + gvk.Kind, Limit: lo.Limit, Continue: lo.Continue})
				c.mu.Unlock()
				if gvk.Group == "security.istio.io" && !served[gvk.Version] {
					return &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: gvk.Group, Kind: "PeerAuthentication"}, SearchedVersions: []string{gvk.Version}}
				}
				if err := opts.Fail[gvk.Kind]; err != nil {
					return err
				}
				return page(ctx, cl, list, lo, opts.PageSize)
			},
		}).
		Build()
	for _, obj := range objs {
		if err := c.Create(context.Background(), obj); err != nil {
			t.Fatalf("inputtest: adding %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
		}
	}
	return c
}

// page lists everything, then cuts out the page that limit and continue
// ask for; the continue token is the offset of the next page.
func page(ctx context.Context, cl client.WithWatch, list client.ObjectList, lo *client.ListOptions, size int) error {
	if err := cl.List(ctx, list, client.InNamespace(lo.Namespace)); err != nil {
		return err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return err
	}
	start := 0
	if lo.Continue != "" {
		if start, err = strconv.Atoi(lo.Continue); err != nil || start < 0 || start > len(items) {
			return fmt.Errorf("invalid continue token %q", lo.Continue)
		}
	}
	end := len(items)
	if lo.Limit > 0 && start+int(lo.Limit) < end {
		end = start + int(lo.Limit)
	}
	if size > 0 && start+size < end {
		end = start + size
	}
	if err := meta.SetList(list, items[start:end]); err != nil {
		return err
	}
	list.SetContinue("")
	if end < len(items) {
		list.SetContinue(strconv.Itoa(end))
	}
	return nil
}

// ListCalls returns the list calls answered so far.
func (c *Client) ListCalls() []ListCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ListCall(nil), c.calls...)
}

package input_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
)

// istioSchema compiles the PeerAuthentication CRD of the istio.io/api
// module in the module cache.
func istioSchema(t testing.TB) *input.Schema {
	t.Helper()
	crds, err := testenv.IstioCRDs()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := input.LoadFiles([]string{crds}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cl.CRD == nil {
		t.Fatalf("%s holds no %s", crds, input.PeerAuthenticationCRD)
	}
	s, err := input.NewSchema(cl.CRD)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzDecode feeds arbitrary bytes through the decoder and what comes after
// it: it must never panic, and must return either objects or an error.
// The seed corpus is in testdata/fuzz/FuzzDecode; run
// go test -fuzz=FuzzDecode ./internal/input to search further.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nspec: {mtls: {mode: STRICT}}\n",
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: p}}\n",
		`{"apiVersion": "v1", "kind": "PodList", "items": [{"metadata": {"name": "p"}}]}`,
		"---\n# c\n---\napiVersion: apps/v1\nkind: Deployment\n",
		"a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: [*c, *c]\n",
		"apiVersion: v1\n\tkind: Pod\n",
		"--- x\n",
		"\xff\xfe\x00",
	} {
		f.Add([]byte(seed))
	}
	schema := istioSchema(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := input.Read([]string{"-"}, false, bytes.NewReader(data))
		if err != nil {
			var ie *input.Error
			if !errors.As(err, &ie) {
				t.Fatalf("error %v is a %T, want *input.Error", err, err)
			}
			if objs != nil {
				t.Fatalf("%d objects along with error %v", len(objs), err)
			}
			return
		}
		for _, o := range objs {
			gvk := o.GroupVersionKind()
			if o.Loc.File != input.Stdin || o.Loc.Doc < 1 || gvk.Kind == "" || gvk.Version == "" {
				t.Fatalf("object without location or kind: %v %v", o.Loc, gvk)
			}
			obj, ok, err := o.Typed()
			if ok != (obj != nil) || (err != nil && ok) {
				t.Fatalf("%s: Typed() = %v, %v, %v", o.Loc, obj, ok, err)
			}
		}
		// What the commands do next must not panic either.
		_, _ = input.Policies(objs, input.DefaultNamespace, nil)
		_, _ = input.Policies(objs, input.DefaultNamespace, schema)
		_, _ = input.FromObjects(objs)
	})
}

package input_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/input/inputtest"
)

// describe renders objects as "LOCATION GVK" lines.
func describe(objs []input.Object) []string {
	var out []string
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		out = append(out, o.Loc.String()+" "+gvk.GroupVersion().String()+" "+gvk.Kind)
	}
	return out
}

// readString reads a manifest from stdin.
func readString(in string) ([]input.Object, error) {
	return input.Read([]string{"-"}, false, strings.NewReader(in))
}

func TestRead(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // describe()
		wantErr  string
	}{
		{name: "empty", in: "", want: nil},
		{name: "only comments and separators", in: "# a\n---\n---\n# b\n", want: nil},
		{name: "one document", in: "apiVersion: v1\nkind: Pod\n", want: []string{"document 1 v1 Pod"}},
		{
			name: "empty documents are not counted",
			in:   "---\n# header\n---\napiVersion: v1\nkind: Pod\n---\n---\n# c\n---\napiVersion: apps/v1\nkind: Job\n...\n",
			want: []string{"document 1 v1 Pod", "document 2 apps/v1 Job"},
		},
		{
			name: "kubectl List",
			in:   "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod}\n- {apiVersion: v1, kind: Namespace}\n---\napiVersion: v1\nkind: Pod\n",
			want: []string{"document 1: item 1 v1 Pod", "document 1: item 2 v1 Namespace", "document 2 v1 Pod"},
		},
		{name: "empty List", in: "apiVersion: v1\nkind: List\nitems: []\n", want: nil},
		{
			name: "typed list items without apiVersion and kind",
			in:   `{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthenticationList", "items": [{"metadata": {"name": "a"}}]}`,
			want: []string{"document 1: item 1 security.istio.io/v1 PeerAuthentication"},
		},
		{
			name: "a kind ending in List without items is an object",
			in:   "apiVersion: example.com/v1\nkind: AllowList\nspec: {}\n",
			want: []string{"document 1 example.com/v1 AllowList"},
		},
		{
			name: "JSON stream",
			in:   " \n{\"apiVersion\": \"v1\", \"kind\": \"Pod\"}\nnull\n{\"apiVersion\": \"v1\", \"kind\": \"Namespace\"}",
			want: []string{"document 1 v1 Pod", "document 2 v1 Namespace"},
		},
		{name: "YAML flow mapping", in: "{apiVersion: v1, kind: Pod}\n", want: []string{"document 1 v1 Pod"}},
		{name: "malformed YAML", in: "apiVersion: v1\nkind: Pod\n---\na: b\n c: d\n", wantErr: "document 2: error converting YAML to JSON: yaml: line 2: mapping values are not allowed in this context"},
		{name: "tabs", in: "apiVersion: v1\n\tkind: Pod\n", wantErr: "document 1: error converting YAML to JSON: yaml: line 2: found a tab character that violates indentation"},
		{name: "bad separator", in: "a: 1\n--- b\n", wantErr: "document 1: invalid Yaml document separator: b"},
		{name: "truncated JSON", in: `{"apiVersion": "v1", "kind": "Pod"} {"kind":`, wantErr: "document 2: unexpected EOF"},
		{name: "broken JSON", in: `{"apiVersion": "v1", "kind": }`, wantErr: "document 1: not a Kubernetes object: kind is null, want a string"},
		{name: "scalar", in: "42\n", wantErr: "document 1: not a Kubernetes object: got a number, want a mapping with apiVersion and kind"},
		{name: "sequence", in: "- apiVersion: v1\n  kind: Pod\n", wantErr: "document 1: not a Kubernetes object: got a sequence, want a mapping with apiVersion and kind"},
		{name: "JSON array", in: `[{"apiVersion": "v1", "kind": "Pod"}]`, wantErr: "document 1: not a Kubernetes object: got a sequence, want a mapping with apiVersion and kind"},
		{name: "no kind", in: "apiVersion: v1\n", wantErr: "document 1: not a Kubernetes object: kind is missing"},
		{name: "no apiVersion", in: "kind: Pod\n", wantErr: "document 1: not a Kubernetes object: apiVersion is missing"},
		{name: "empty kind", in: "apiVersion: v1\nkind: ''\n", wantErr: "document 1: not a Kubernetes object: kind is empty"},
		{name: "kind not a string", in: "apiVersion: v1\nkind: [Pod]\n", wantErr: "document 1: not a Kubernetes object: kind is a sequence, want a string"},
		{name: "bad apiVersion", in: "apiVersion: a/b/c\nkind: Pod\n", wantErr: `document 1: not a Kubernetes object: invalid apiVersion "a/b/c"`},
		{name: "no version", in: "apiVersion: example.com/\nkind: Pod\n", wantErr: `document 1: not a Kubernetes object: invalid apiVersion "example.com/"`},
		{name: "items not a list", in: "apiVersion: v1\nkind: List\nitems: {a: 1}\n", wantErr: "document 1: v1 List: items is not a list of objects"},
		{name: "null item", in: "apiVersion: v1\nkind: List\nitems: [null]\n", wantErr: "document 1: item 1: not a Kubernetes object: the item is empty"},
		{name: "item without kind in kubectl List", in: "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod}\n- {metadata: {name: x}}\n", wantErr: "document 1: item 2: not a Kubernetes object: apiVersion is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := readString(tt.in)
			if tt.wantErr != "" {
				var ie *input.Error
				if err == nil || err.Error() != "stdin: "+tt.wantErr || !errors.As(err, &ie) {
					t.Fatalf("error %v, want *input.Error %q", err, tt.wantErr)
				}
				if objs != nil {
					t.Errorf("objects %v along with the error", describe(objs))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, w := range tt.want {
				want = append(want, "stdin: "+w)
			}
			if got := describe(objs); !slices.Equal(got, want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestReadDefaultedItems checks that items given their kind by a typed
// list decode as that kind.
func TestReadDefaultedItems(t *testing.T) {
	objs, err := readString(`{"apiVersion": "v1", "kind": "PodList", "items": [{"metadata": {"name": "p", "namespace": "n"}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	obj, ok, err := objs[0].Typed()
	if err != nil || !ok {
		t.Fatalf("Typed() = %v, %v, %v", obj, ok, err)
	}
	if _, isPod := obj.(*corev1.Pod); !isPod {
		t.Errorf("decoded %T, want a Pod", obj)
	}
}

func TestReadSizeLimit(t *testing.T) {
	const want = "stdin: input is larger than the limit of 64 MiB"
	for _, in := range []io.Reader{io.LimitReader(inputtest.Endless(' '), input.MaxInputSize+1), inputtest.Endless('#')} {
		if _, err := input.Read([]string{"-"}, false, in); err == nil || err.Error() != want {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	// Exactly at the limit is fine.
	if objs, err := input.Read([]string{"-"}, false, io.LimitReader(inputtest.Endless(' '), input.MaxInputSize)); err != nil || len(objs) != 0 {
		t.Errorf("Read() at the limit = %v, %v", objs, err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, input.MaxInputSize+1); err != nil {
		t.Fatal(err)
	}
	if _, err := input.Read([]string{big}, false, nil); err == nil || err.Error() != big+": input is larger than the limit of 64 MiB" {
		t.Errorf("big file: %v", err)
	}
}

// TestReadPaths reads files, directories (with and without -R) and URLs
// in the order given, and names each object's file.
func TestReadPaths(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pod := func(name string) string { return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\n" }
	a := write("a.yaml", pod("a")+"---\n"+pod("a2"))
	write("sub/b.yml", pod("b"))
	write("notes.txt", "not a manifest")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, pod("u"))
	}))
	defer srv.Close()

	tests := []struct {
		names     []string
		recursive bool
		want      []string
	}{
		{[]string{a}, false, []string{a + ": document 1 v1 Pod", a + ": document 2 v1 Pod"}},
		{[]string{dir}, false, []string{a + ": document 1 v1 Pod", a + ": document 2 v1 Pod"}},
		{[]string{dir}, true, []string{a + ": document 1 v1 Pod", a + ": document 2 v1 Pod", filepath.Join(dir, "sub/b.yml") + ": document 1 v1 Pod"}},
		{[]string{srv.URL + "/p.yaml", "-", a}, false, []string{srv.URL + "/p.yaml: document 1 v1 Pod", "stdin: document 1 v1 Pod", a + ": document 1 v1 Pod", a + ": document 2 v1 Pod"}},
	}
	for _, tt := range tests {
		objs, err := input.Read(tt.names, tt.recursive, strings.NewReader(pod("s")))
		if err != nil {
			t.Fatalf("Read(%q, %v): %v", tt.names, tt.recursive, err)
		}
		if got := describe(objs); !slices.Equal(got, tt.want) {
			t.Errorf("Read(%q, %v):\n got %q\nwant %q", tt.names, tt.recursive, got, tt.want)
		}
	}

	// An error in the second file names it and its document.
	bad := write("z/bad.yaml", pod("ok")+"---\nkind: Pod\n")
	_, err := input.Read([]string{a, filepath.Dir(bad)}, false, nil)
	if want := bad + ": document 2: not a Kubernetes object: apiVersion is missing"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
	_, err = input.Read([]string{filepath.Join(dir, "nope.yaml")}, false, nil)
	if want := fmt.Sprintf("the path %q does not exist", filepath.Join(dir, "nope.yaml")); err == nil || err.Error() != want {
		t.Errorf("missing file: %v, want %q", err, want)
	}
}

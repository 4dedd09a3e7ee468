package input_test

import (
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mtls-guard/mtls-guard/internal/input"
)

// describe renders objects as "LOCATION GVK" lines.
func describe(objs []input.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Loc.String()+" "+o.GVK.GroupVersion().String()+" "+o.GVK.Kind)
	}
	return out
}

func TestDecode(t *testing.T) {
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
		{name: "malformed YAML", in: "apiVersion: v1\nkind: Pod\n---\na: b\n c: d\n", wantErr: "document 2: malformed YAML: yaml: line 2: mapping values are not allowed in this context"},
		{name: "tabs", in: "apiVersion: v1\n\tkind: Pod\n", wantErr: "document 1: malformed YAML: yaml: line 2: found a tab character that violates indentation"},
		{name: "bad separator", in: "a: 1\n--- b\n", wantErr: "document 1: malformed YAML: invalid Yaml document separator: b"},
		{name: "truncated JSON", in: `{"apiVersion": "v1", "kind": "Pod"} {"kind":`, wantErr: "document 2: malformed JSON: unexpected EOF"},
		{name: "broken JSON", in: `{"apiVersion": "v1", "kind": }`, wantErr: "document 1: malformed JSON: invalid character '}' looking for beginning of value"},
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
			objs, err := input.Decode(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				var ie *input.Error
				if err == nil || err.Error() != tt.wantErr || !errors.As(err, &ie) {
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
			if got := describe(objs); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDecodeDefaultedItems checks that items given their kind by a typed
// list carry it in their JSON, where the typed decoders read it.
func TestDecodeDefaultedItems(t *testing.T) {
	objs, err := input.Decode(strings.NewReader(`{"apiVersion": "v1", "kind": "PodList", "items": [{"metadata": {"name": "p", "namespace": "n"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	obj, ok, err := objs[0].Typed()
	if err != nil || !ok {
		t.Fatalf("Typed() = %v, %v, %v", obj, ok, err)
	}
	if got := obj.GetObjectKind().GroupVersionKind().Kind; got != "Pod" {
		t.Errorf("decoded kind %q, want Pod", got)
	}
}

// endless is an endless stream of one byte.
type endless byte

func (e endless) Read(p []byte) (int, error) {
	if len(p) > 0 {
		p[0] = byte(e)
		for n := 1; n < len(p); n *= 2 {
			copy(p[n:], p[:n])
		}
	}
	return len(p), nil
}

func TestDecodeSizeLimit(t *testing.T) {
	const want = "input is larger than the limit of 64 MiB"
	_, err := input.Decode(io.LimitReader(endless(' '), input.MaxInputSize+1))
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
	_, err = input.DecodeNamed("big.yaml", endless('#'))
	if err == nil || err.Error() != "big.yaml: "+want {
		t.Errorf("error %v, want %q", err, "big.yaml: "+want)
	}
}

func TestReadFile(t *testing.T) {
	_, err := input.ReadFile("testdata/nope.yaml")
	if err == nil || err.Error() != "testdata/nope.yaml: no such file or directory" || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	dir := t.TempDir()
	path := dir + "/p.yaml"
	if err := os.WriteFile(path, []byte("apiVersion: v1\nkind: Pod\n---\nkind: Pod\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = input.ReadFile(path)
	if err == nil || err.Error() != path+": document 2: not a Kubernetes object: apiVersion is missing" {
		t.Errorf("bad file: %v", err)
	}
	if err := os.WriteFile(path, []byte("apiVersion: v1\nkind: Pod\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	objs, err := input.ReadFile(path)
	if err != nil || len(objs) != 1 || objs[0].Loc.String() != path+": document 1" {
		t.Errorf("ReadFile() = %v, %v", describe(objs), err)
	}
}

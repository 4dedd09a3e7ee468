package input_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadFiles(t *testing.T) {
	dump := writeFile(t, "dump.yaml", `
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: shop, labels: {istio-injection: enabled}}
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: shop, managedFields: [{manager: kubectl}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: b, namespace: shop}
- apiVersion: apps/v1
  kind: ReplicaSet
  metadata: {name: rs, namespace: shop}
- apiVersion: batch/v1
  kind: Job
  metadata: {name: job, namespace: shop}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: skipped, namespace: shop}
  spec: {replicas: "not even decoded"}
- apiVersion: example.com/v1
  kind: Widget
  metadata: {name: w}
- apiVersion: security.istio.io/v1beta1
  kind: PeerAuthentication
  metadata: {name: default, namespace: shop}
  spec: {mtls: {mode: PERMISSIVE}}
`)
	// A second, overlapping dump: the later object wins, none is counted twice.
	later := writeFile(t, "later.json", `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b", "namespace": "shop", "labels": {"v": "2"}}}
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"}}
{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": "shop"}, "spec": {"mtls": {"mode": "STRICT"}}}`)

	cl, err := input.LoadFiles([]string{dump, later}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, obj := range cl.Objects {
		got = append(got, fmt.Sprintf("%T %s/%s", obj, obj.GetNamespace(), obj.GetName()))
		if obj.GetManagedFields() != nil {
			t.Errorf("%s kept its managedFields", obj.GetName())
		}
		switch o := obj.(type) {
		case *corev1.Pod:
			if o.Name == "b" && o.Labels["v"] != "2" {
				t.Errorf("pod b is the first one, want the later one")
			}
		case *corev1.Namespace:
			if o.Labels["istio-injection"] != "enabled" {
				t.Errorf("namespace shop: %v", o)
			}
		case *securityv1.PeerAuthentication:
			if p := policy.FromV1(o); p.Mode != policy.Strict {
				t.Errorf("policy shop/default = %+v, want the later, STRICT one", p)
			}
		}
	}
	// In the order first read; the later v1 policy replaces the v1beta1 one.
	want := []string{
		"*v1.Namespace /shop", "*v1.Pod shop/a", "*v1.Pod shop/b", "*v1.ReplicaSet shop/rs", "*v1.Job shop/job",
		"*v1.PeerAuthentication shop/default", "*v1.Pod default/c",
	}
	if !slices.Equal(got, want) {
		t.Errorf("objects\n%q\nwant\n%q", got, want)
	}
	if cl.CRD != nil {
		t.Errorf("CRD %v, want none", cl.CRD.Name)
	}
}

func TestLoadFilesErrors(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"bad pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 3}\n",
			"document 1: decoding v1 Pod: json: cannot unmarshal number into Go struct field PodSpec.spec.containers of type []v1.Container"},
		{"no name", "apiVersion: v1\nkind: Namespace\nmetadata: {}\n", "document 1: v1 Namespace has no metadata.name"},
		{"bad mode", "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec: {mtls: {mode: STRICTT}}\n",
			`document 1: decoding security.istio.io/v1beta1 PeerAuthentication: unknown value "\"STRICTT\"" for enum istio.security.v1beta1.PeerAuthentication.MutualTLS.Mode`},
		{"not an object", "---\nhello\n", "document 1: not a Kubernetes object: got a string, want a mapping with apiVersion and kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "c.yaml", tt.data)
			_, err := input.LoadFiles([]string{path}, false, nil)
			if err == nil || err.Error() != path+": "+tt.want {
				t.Errorf("error %v, want %q", err, path+": "+tt.want)
			}
		})
	}
	if _, err := input.LoadFiles([]string{"-"}, false, strings.NewReader("kind: Pod\n")); err == nil || err.Error() != "stdin: document 1: not a Kubernetes object: apiVersion is missing" {
		t.Errorf("stdin: %v", err)
	}
}

func TestTyped(t *testing.T) {
	objs, err := readString("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
	if err != nil {
		t.Fatal(err)
	}
	obj, ok, err := objs[0].Typed()
	if pod, isPod := obj.(*corev1.Pod); err != nil || !ok || !isPod || pod.Namespace != input.DefaultNamespace {
		t.Errorf("Pod: Typed() = %#v, %v, %v", obj, ok, err)
	}
	if obj, ok, err := objs[1].Typed(); obj != nil || ok || err != nil {
		t.Errorf("Service: Typed() = %v, %v, %v; want it skipped", obj, ok, err)
	}
}

func TestPolicies(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // key, mode, problems
		wantErr  string
	}{
		{
			name: "v1, v1beta1 and a List",
			in: `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: a, namespace: x}
spec: {mtls: {mode: STRICT}}
---
apiVersion: v1
kind: List
items:
- apiVersion: security.istio.io/v1beta1
  kind: PeerAuthentication
  metadata: {name: b}
- apiVersion: security.istio.io/v1
  kind: PeerAuthentication
  metadata: {name: c, namespace: x, creationTimestamp: "2024-01-01T00:00:00Z"}
  spec: {selector: {matchLabels: {app: c}}, portLevelMtls: {"8080": {mode: DISABLE}}}
`,
			want: []string{"x/a STRICT []", "default/b UNSET []", "x/c UNSET []"},
		},
		{
			name: "invalid policies are returned with their problems",
			in: `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: a}
spec: {mtls: {mode: STRICTT}, portLevelMtls: {"0": {mode: STRICT}}}
`,
			want: []string{`default/a UNSET ["spec.mtls.mode: unknown mTLS mode \"STRICTT\" (want UNSET, DISABLE, PERMISSIVE or STRICT)" "spec.portLevelMtls: port \"0\" is outside 1..65535" "spec.portLevelMtls needs a workload selector (spec.selector.matchLabels)"]`},
		},
		{name: "wrong kind", in: "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod}\n",
			wantErr: "document 1: item 1: wrong kind: got v1 Pod, want security.istio.io/v1 or v1beta1 PeerAuthentication"},
		{name: "wrong version", in: "apiVersion: security.istio.io/v2\nkind: PeerAuthentication\nmetadata: {name: a}\n",
			wantErr: "document 1: wrong kind: got security.istio.io/v2 PeerAuthentication, want security.istio.io/v1 or v1beta1 PeerAuthentication"},
		{name: "bad namespace", in: "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a, namespace: \"x\\e[31m\"}\n",
			wantErr: `document 1: invalid metadata.namespace "x\x1b[31m": a lowercase RFC 1123 label must consist of lower case alphanumeric characters`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := readString(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			ps, err := input.Policies(objs, input.DefaultNamespace, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), "stdin: "+tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, fmt.Sprintf("%s %s %q", p.Policy.Key(), p.Policy.Mode, p.Policy.Problems))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestReadPolicies(t *testing.T) {
	a := writeFile(t, "a.yaml", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\n")
	empty := writeFile(t, "empty.yaml", "# nothing\n")
	objs, err := input.ReadPolicies([]string{a, "-"}, false, strings.NewReader(`{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "b"}}`))
	if err != nil || len(objs) != 2 || objs[0].Loc.String() != a+": document 1" || objs[1].Loc.String() != "stdin: document 1" {
		t.Errorf("ReadPolicies() = %v, %v", describe(objs), err)
	}
	ps, err := input.Policies(objs, "team", nil)
	if err != nil || len(ps) != 2 || ps[0].Policy.Key() != "team/a" || ps[1].Policy.Key() != "team/b" {
		t.Errorf("Policies() in namespace team = %v, %v", ps, err)
	}
	if _, err := input.ReadPolicies([]string{a, empty}, false, nil); err == nil || err.Error() != empty+": no PeerAuthentication found" {
		t.Errorf("empty file: %v", err)
	}
	pod := writeFile(t, "pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
	if _, err := input.ReadPolicies([]string{a, pod}, false, nil); err == nil || err.Error() != pod+": document 1: wrong kind: got v1 Pod, want security.istio.io/v1 or v1beta1 PeerAuthentication" {
		t.Errorf("pod: %v", err)
	}
}

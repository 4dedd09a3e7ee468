package cli

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/input/inputtest"
)

// Two API servers of a kubeconfig with two contexts. Nothing listens
// there: fakeClusters answers for them.
const (
	hostA = "https://cluster-a.example:6443"
	hostB = "https://cluster-b.example:6443"
)

// kubeconfig writes a kubeconfig with contexts a (current) and b, whose
// default namespace is istio-demo, and returns its path.
func kubeconfig(t *testing.T) string {
	t.Helper()
	data := `apiVersion: v1
kind: Config
clusters:
- {name: a, cluster: {server: "` + hostA + `"}}
- {name: b, cluster: {server: "` + hostB + `"}}
users:
- {name: u, user: {token: fake}}
contexts:
- {name: a, context: {cluster: a, user: u}}
- {name: b, context: {cluster: b, user: u, namespace: istio-demo}}
current-context: a
`
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeClusters makes the commands read the cluster of each host from a
// fake client, until the test ends; tests that use it must not run in
// parallel.
func fakeClusters(t *testing.T, clusters map[string]client.Reader) {
	t.Helper()
	old := newLiveReader
	newLiveReader = func(cfg *rest.Config) (client.Reader, error) {
		c, ok := clusters[cfg.Host]
		if !ok {
			return nil, errors.New("no fake cluster at " + cfg.Host)
		}
		return c, nil
	}
	t.Cleanup(func() { newLiveReader = old })
}

// seedClient serves the seed scenario's objects, one per list page.
func seedClient(t *testing.T, paVersions []string, extra ...client.Object) *inputtest.Client {
	t.Helper()
	cl, err := input.LoadFiles([]string{seedCluster}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return inputtest.New(t, inputtest.Options{PageSize: 1, PeerAuthenticationVersions: paVersions}, append(cl.Objects, extra...)...)
}

// TestLive reads the seed scenario from an API server instead of a file:
// the output must be the same as the golden file's.
func TestLive(t *testing.T) {
	tests := []struct {
		name, golden string
		cmd          command
		args         []string
		code         int
	}{
		{"check text", "check/seed.txt", Check, []string{"-f", "testdata/seed/strict.yaml"}, 1},
		{"check json", "check/seed.json", Check, []string{"-f", "testdata/seed/strict.yaml", "-o", "json"}, 1},
		{"report text", "report/seed.txt", Report, nil, 0},
		{"report json", "report/seed.json", Report, []string{"-o", "json"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := seedClient(t, []string{"v1", "v1beta1"})
			fakeClusters(t, map[string]client.Reader{hostA: c})
			want, err := os.ReadFile("testdata/golden/" + tt.golden)
			if err != nil {
				t.Fatal(err)
			}
			r := run(tt.cmd, append(tt.args, "--kubeconfig", kubeconfig(t)), nil)
			if r.code != tt.code || r.stderr != "" || r.stdout != string(want) {
				t.Errorf("exit %d (want %d), stderr %q, output:\n%s\nwant:\n%s", r.code, tt.code, r.stderr, r.stdout, want)
			}
			if n := len(c.ListCalls()); n < 8 {
				t.Errorf("only %d list calls: the pages were not followed", n)
			}
		})
	}
}

// TestLiveContext reads the cluster of the context that KUBECONFIG and
// --context name, and takes a policy's namespace from that context, as
// kubectl does.
func TestLiveContext(t *testing.T) {
	existing := &securityv1.PeerAuthentication{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-demo", Name: "default", CreationTimestamp: metav1.Unix(1704067200, 0)},
		Spec:       apisecurity.PeerAuthentication{Mtls: &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_PERMISSIVE}},
	}
	fakeClusters(t, map[string]client.Reader{
		hostA: seedClient(t, []string{"v1"}),
		hostB: seedClient(t, []string{"v1"}, existing),
	})
	t.Setenv("KUBECONFIG", kubeconfig(t))
	noNamespace := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(noNamespace, []byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {mtls: {mode: STRICT}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string // policy and operation
	}{
		// The policy exists in cluster b only: an UPDATE there.
		{[]string{"-f", "testdata/seed/strict.yaml"}, "istio-demo/default CREATE"},
		{[]string{"-f", "testdata/seed/strict.yaml", "--context", "b"}, "istio-demo/default UPDATE"},
		// Without a namespace: the context's, else default; -n wins.
		{[]string{"-f", noNamespace}, "default/default CREATE"},
		{[]string{"-f", noNamespace, "--context", "b"}, "istio-demo/default UPDATE"},
		{[]string{"-f", noNamespace, "--context", "b", "-n", "shop"}, "shop/default CREATE"},
	}
	for _, tt := range tests {
		r := run(Check, append(tt.args, "-o", "json"), nil)
		var out struct {
			Results []struct{ Policy, Operation string }
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Results) != 1 {
			t.Errorf("%v: exit %d, stderr %q, output %q", tt.args, r.code, r.stderr, r.stdout)
			continue
		}
		if got := out.Results[0].Policy + " " + out.Results[0].Operation; got != tt.want {
			t.Errorf("%v: decided %s, want %s", tt.args, got, tt.want)
		}
	}
}

func TestLiveUnusable(t *testing.T) {
	kc := kubeconfig(t)
	fakeClusters(t, map[string]client.Reader{
		hostA: seedClient(t, nil), // no PeerAuthentication CRD
		hostB: inputtest.New(t, inputtest.Options{PeerAuthenticationVersions: []string{"v1"}, Fail: map[string]error{
			"NamespaceList": errors.New("dial tcp 10.0.0.2:6443: connect: connection refused"),
		}}),
	})
	tests := []struct {
		name string
		cmd  command
		args []string
		want string
	}{
		{"mtls-guard check", Check, []string{"-f", "testdata/seed/strict.yaml"},
			"mtls-guard check: reading the cluster at " + hostA + ": " + input.ErrNoPeerAuthenticationCRD.Error()},
		{"mtls-guard report", Report, nil,
			"mtls-guard report: reading the cluster at " + hostA + ": " + input.ErrNoPeerAuthenticationCRD.Error()},
		{"server gone", Report, []string{"--context", "b"},
			"mtls-guard report: reading the cluster at " + hostB + ": listing namespaces: dial tcp 10.0.0.2:6443: connect: connection refused"},
		{"unknown context", Report, []string{"--context", "c"},
			`mtls-guard report: loading the kubeconfig: context "c" does not exist`},
	}
	for _, tt := range tests {
		r := run(tt.cmd, append(tt.args, "--kubeconfig", kc), nil)
		if r.code != 2 || r.stdout != "" || r.stderr != tt.want+"\n" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2, nothing, %q", tt.name, r.code, r.stdout, r.stderr, tt.want)
		}
	}
}

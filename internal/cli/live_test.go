package cli

import (
	"os"
	"strings"
	"testing"

	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/input/inputtest"
)

// seedServer serves the seed scenario's objects from a fake API server
// that answers one object per page.
func seedServer(t *testing.T, paVersions []string, extra ...runtime.Object) *inputtest.Server {
	t.Helper()
	objs, err := input.ReadFile(seedCluster)
	if err != nil {
		t.Fatal(err)
	}
	var typed []runtime.Object
	for _, o := range objs {
		obj, ok, err := o.Typed()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			typed = append(typed, obj)
		}
	}
	return inputtest.NewServer(t, inputtest.Options{PageSize: 1, PeerAuthenticationVersions: paVersions}, append(typed, extra...)...)
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
			srv := seedServer(t, []string{"v1", "v1beta1"})
			want, err := os.ReadFile("testdata/golden/" + tt.golden)
			if err != nil {
				t.Fatal(err)
			}
			r := run(tt.cmd, append(tt.args, "--kubeconfig", srv.Kubeconfig(t)), nil)
			if r.code != tt.code || r.stderr != "" || r.stdout != string(want) {
				t.Errorf("exit %d (want %d), stderr %q, output:\n%s\nwant:\n%s", r.code, tt.code, r.stderr, r.stdout, want)
			}
			if len(srv.ListRequests()) < 8 {
				t.Errorf("only %d list calls: the pages were not followed", len(srv.ListRequests()))
			}
		})
	}
}

// TestLiveKubeconfigEnv reads the cluster named by KUBECONFIG.
func TestLiveKubeconfigEnv(t *testing.T) {
	existing := &securityv1.PeerAuthentication{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-demo", Name: "default", CreationTimestamp: metav1.Unix(1704067200, 0)},
		Spec:       apisecurity.PeerAuthentication{Mtls: &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_PERMISSIVE}},
	}
	srv := seedServer(t, []string{"v1"}, existing)
	t.Setenv("KUBECONFIG", srv.Kubeconfig(t))
	r := run(Check, []string{"-f", "testdata/seed/strict.yaml"}, nil)
	// The policy exists in the cluster: an UPDATE.
	if r.code != 1 || !strings.HasPrefix(r.stdout, "DENIED istio-demo/default (UPDATE)\n") {
		t.Errorf("exit %d, stderr %q, output:\n%s", r.code, r.stderr, r.stdout)
	}
}

func TestLiveUnusable(t *testing.T) {
	srv := seedServer(t, nil) // no PeerAuthentication CRD
	for _, cmd := range []struct {
		name string
		cmd  command
		args []string
	}{
		{"mtls-guard check", Check, []string{"-f", "testdata/seed/strict.yaml"}},
		{"mtls-guard report", Report, nil},
	} {
		r := run(cmd.cmd, append(cmd.args, "--kubeconfig", srv.Kubeconfig(t)), nil)
		want := cmd.name + ": reading the cluster at " + srv.URL + ": " + input.ErrNoPeerAuthenticationCRD.Error() + "\n"
		if r.code != 2 || r.stdout != "" || r.stderr != want {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2, nothing, %q", cmd.name, r.code, r.stdout, r.stderr, want)
		}
	}

	// A server that is gone.
	srv.Close()
	r := run(Report, []string{"--kubeconfig", srv.Kubeconfig(t)}, nil)
	if r.code != 2 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "mtls-guard report: reading the cluster at "+srv.URL+": listing namespaces: ") {
		t.Errorf("server gone: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

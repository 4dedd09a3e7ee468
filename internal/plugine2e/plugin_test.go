// Package plugine2e proves mtls-guard as a kubectl plugin, end to end:
// the binary installed as kubectl-mtls_guard on PATH, run by the real
// kubectl against real API servers (envtest, from bin/), and its schema
// validation word for word against the API server's.
package plugine2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
)

// startCluster starts a control plane with Istio's CRDs and stops it when
// the test ends.
func startCluster(t *testing.T) (*rest.Config, client.Client) {
	t.Helper()
	env, err := testenv.Start()
	if err != nil {
		t.Fatalf("starting a control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	c, err := client.New(env.Config, client.Options{Scheme: input.Scheme})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return env.Config, c
}

// buildPlugin builds the guard's binary as dir/kubectl-mtls_guard.
func buildPlugin(t *testing.T, dir string) {
	t.Helper()
	root, err := testenv.Root()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "kubectl-mtls_guard"), ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building kubectl-mtls_guard: %v\n%s", err, out)
	}
}

// writeKubeconfig writes a kubeconfig with one context per cluster, named
// as the map's keys, current is the current one.
func writeKubeconfig(t *testing.T, path, current string, clusters map[string]*rest.Config) {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	for name, cfg := range clusters {
		kc.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
		kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
		kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	kc.CurrentContext = current
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatalf("writing the kubeconfig: %v", err)
	}
}

// seed creates istio-demo with a meshed pod and, if unmeshed, a pod
// without a sidecar.
func seed(t *testing.T, c client.Client, unmeshed bool) {
	t.Helper()
	ctx := context.Background()
	always := corev1.ContainerRestartPolicyAlways
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-demo", Labels: map[string]string{"istio-injection": "enabled"}}},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "istio-demo", Name: "web", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "istio-proxy", Image: "proxyv2", RestartPolicy: &always}},
				Containers:     []corev1.Container{{Name: "web", Image: "nginx"}},
			},
		},
	}
	if unmeshed {
		objs = append(objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "istio-demo", Name: "mtls-test"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "curl", Image: "curl"}}},
		})
	}
	for _, obj := range objs {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("creating %s: %v", obj.GetName(), err)
		}
	}
}

// checkResult is the part of check's JSON output the test reads.
type checkResult struct {
	Allowed bool `json:"allowed"`
	Results []struct {
		Policy    string `json:"policy"`
		Operation string `json:"operation"`
		Allowed   bool   `json:"allowed"`
		Unmeshed  []struct {
			Kind, Name string
		} `json:"unmeshed"`
	} `json:"results"`
}

// TestKubectlPlugin runs `kubectl mtls-guard check -f dir/ -R --context X`
// through kubectl's plugin mechanism against two clusters: a, where
// istio-demo runs an unmeshed pod, and b, where it does not.
func TestKubectlPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: skipped under -short")
	}
	bin, err := testenv.BinDir()
	if err != nil {
		t.Fatal(err) // says to run make testbin
	}
	cfgA, clientA := startCluster(t)
	cfgB, clientB := startCluster(t)
	seed(t, clientA, true)
	seed(t, clientB, false)

	dir := t.TempDir()
	pluginDir := filepath.Join(dir, "plugins")
	buildPlugin(t, pluginDir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeKubeconfig(t, kubeconfig, "a", map[string]*rest.Config{"a": cfgA, "b": cfgB})
	// The policy is one directory down: only -R finds it.
	policies := filepath.Join(dir, "policies")
	if err := os.MkdirAll(filepath.Join(policies, "demo"), 0o755); err != nil {
		t.Fatal(err)
	}
	strict := "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-demo}\nspec: {mtls: {mode: STRICT}}\n"
	if err := os.WriteFile(filepath.Join(policies, "demo", "strict.yaml"), []byte(strict), 0o600); err != nil {
		t.Fatal(err)
	}

	kubectl := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, "kubectl"), args...)
		cmd.Env = append(os.Environ(), "PATH="+pluginDir+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+kubeconfig)
		r, err := testenv.Run(cmd)
		if err != nil {
			t.Fatal(err)
		}
		return r.Stdout, r.Stderr, r.Code
	}

	tests := []struct {
		name         string
		args         []string
		code         int
		wantUnmeshed []string
	}{
		{"context b", []string{"--context", "b"}, 0, nil},
		{"current context a", nil, 1, []string{"Pod/mtls-test"}},
		{"context a", []string{"--context", "a"}, 1, []string{"Pod/mtls-test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"mtls-guard", "check", "-f", policies, "-R", "-o", "json"}, tt.args...)
			stdout, stderr, code := kubectl(args...)
			if code != tt.code {
				t.Fatalf("kubectl %s: exit %d, want %d; stderr %q", strings.Join(args, " "), code, tt.code, stderr)
			}
			var out checkResult
			if err := json.Unmarshal([]byte(stdout), &out); err != nil {
				t.Fatalf("output is not check's JSON: %v\n%s", err, stdout)
			}
			if len(out.Results) != 1 || out.Results[0].Policy != "istio-demo/default" || out.Results[0].Operation != "CREATE" {
				t.Fatalf("results %+v, want one CREATE of istio-demo/default", out.Results)
			}
			var unmeshed []string
			for _, w := range out.Results[0].Unmeshed {
				unmeshed = append(unmeshed, w.Kind+"/"+w.Name)
			}
			if out.Allowed != (tt.code == 0) || out.Results[0].Allowed != out.Allowed || !slices.Equal(unmeshed, tt.wantUnmeshed) {
				t.Errorf("allowed %v, unmeshed %v; want %v, %v", out.Allowed, unmeshed, tt.code == 0, tt.wantUnmeshed)
			}
		})
	}

	// With the CRD in the cluster, a policy the API server would refuse is
	// INVALID, in the API server's words.
	typo := filepath.Join(dir, "typo.yaml")
	if err := os.WriteFile(typo, []byte(strings.Replace(strict, "STRICT}", "STRICTT}", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := kubectl("mtls-guard", "check", "-f", typo, "--context", "b", "-o", "json")
	var out struct {
		Results []struct {
			Allowed bool
			Message string
		}
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil || code != 1 || len(out.Results) != 1 || out.Results[0].Allowed {
		t.Fatalf("invalid policy: exit %d, stderr %q, output %q (%v); want 1 and one denial", code, stderr, stdout, err)
	}
	if want := `spec.mtls.mode: Unsupported value: "STRICTT": supported values: "UNSET", "DISABLE", "PERMISSIVE", "STRICT"`; !strings.Contains(out.Results[0].Message, want) {
		t.Errorf("message %q, want the API server's %q in it", out.Results[0].Message, want)
	}

	// Without -R the directory holds no manifest: unusable input, one
	// line on stderr, and the usage says kubectl mtls-guard.
	stdout, stderr, code = kubectl("mtls-guard", "check", "-f", policies, "--context", "b")
	if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "kubectl mtls-guard check: ") || !strings.Contains(stderr, policies) {
		t.Errorf("without -R: exit %d, stdout %q, stderr %q; want 2, nothing, one line naming %s", code, stdout, stderr, policies)
	}
}

// TestSchemaAsAPIServer checks that check refuses what the API server
// refuses, in its words: each policy is created on a real API server with
// Istio's CRD (strict field validation, as kubectl asks for) and validated
// with the CRD read back from that server.
func TestSchemaAsAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: skipped under -short")
	}
	_, c := startCluster(t)
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}); err != nil {
		t.Fatal(err)
	}
	// The CRD's schema, as the API server serves it, read as check reads
	// a live cluster.
	var cl *input.Cluster
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		cl, err = input.Load(ctx, c)
		return err == nil && cl.CRD != nil, nil
	})
	if err != nil {
		t.Fatalf("reading the cluster with its CRD: %v", err)
	}
	schema, err := input.NewSchema(cl.CRD)
	if err != nil {
		t.Fatal(err)
	}

	specs := map[string]string{
		"valid":                    `{"mtls": {"mode": "STRICT"}}`,
		"unknown mode":             `{"mtls": {"mode": "STRICTT"}}`,
		"ports without selector":   `{"portLevelMtls": {"8080": {"mode": "DISABLE"}}}`,
		"port 0":                   `{"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"0": {"mode": "DISABLE"}}}`,
		"empty ports":              `{"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {}}`,
		"wildcard label":           `{"selector": {"matchLabels": {"app": "a*"}}}`,
		"unknown field":            `{"mtls": {"mode": "STRICT"}, "nope": 1}`,
		"mode of the wrong type":   `{"mtls": {"mode": 3}}`,
		"port mode wrong and port": `{"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"70000": {"mode": "ON"}}}`,
	}
	for name, spec := range specs {
		t.Run(name, func(t *testing.T) {
			// Decoded as check decodes manifests: integers stay integers.
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON([]byte(`{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "p", "namespace": "ns"}, "spec": ` + spec + `}`)); err != nil {
				t.Fatal(err)
			}
			got := schema.Validate(ctx, u.DeepCopy(), nil)
			err := c.Create(ctx, u.DeepCopy(), client.DryRunAll, client.FieldValidation("Strict"))
			if err == nil {
				if len(got) > 0 {
					t.Errorf("the API server accepts it; check refuses it: %v", got)
				}
				return
			}
			var want []string
			var status apierrors.APIStatus
			if !errors.As(err, &status) {
				t.Fatalf("the API server: %v", err)
			}
			if d := status.Status().Details; apierrors.IsInvalid(err) && d != nil {
				for _, cause := range d.Causes {
					want = append(want, cause.Field+": "+cause.Message)
				}
			} else {
				want = []string{status.Status().Message}
			}
			gotMsgs := slices.Clone(got)
			slices.Sort(want)
			slices.Sort(gotMsgs)
			if !slices.Equal(gotMsgs, want) {
				t.Errorf("check refuses with\n%q\nthe API server with\n%q", gotMsgs, want)
			}
		})
	}
}

package e2e

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mtls-guard/mtls-guard/internal/cli"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
)

// checkOutput is the `check -o json` document.
type checkOutput struct {
	Allowed bool `json:"allowed"`
	Results []struct {
		Policy   string `json:"policy"`
		Allowed  bool   `json:"allowed"`
		Unmeshed []struct {
			Namespace, Kind, Name string
		} `json:"unmeshed"`
	} `json:"results"`
}

// TestCheckAgreesWithWebhook: `mtls-guard check` without --from-file reads
// the same live cluster and reaches the webhook's verdict.
func TestCheckAgreesWithWebhook(t *testing.T) {
	ns := namespace(t, "check-agrees", injected)
	create(t, deploymentPod(ns, "web", "c1", native))
	create(t, deploymentPod(ns, "batch", "c2", unmeshed))
	create(t, pod(ns, "debug", nil, unmeshed))
	// The first denial may come before the guard's informers have every
	// pod: wait until it names both unmeshed workloads.
	var causes []metav1.StatusCause
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		causes = statusOf(t, eventually(t, pa(ns, "default", "STRICT"), true)).Details.Causes
		return len(causes) == 2, nil
	})
	if err != nil {
		t.Fatalf("the webhook's denial never named both unmeshed workloads: %v (last: %+v)", err, causes)
	}

	file := filepath.Join(t.TempDir(), "strict.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: "+ns+"}\nspec: {mtls: {mode: STRICT}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := cli.Check([]string{"--kubeconfig", suite.AdminConfig, "--root-namespace", rootNamespace, "-f", file, "-o", "json"}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("check exit %d, want 1 (denied)\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	var out checkOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("check -o json: %v\n%s", err, stdout.String())
	}
	if out.Allowed || len(out.Results) != 1 || out.Results[0].Allowed {
		t.Fatalf("check allowed what the webhook denied: %s", stdout.String())
	}
	var fromCheck, fromWebhook []string
	for _, w := range out.Results[0].Unmeshed {
		fromCheck = append(fromCheck, w.Namespace+"/"+w.Kind+"/"+w.Name)
	}
	for _, c := range causes {
		fromWebhook = append(fromWebhook, c.Field)
	}
	if strings.Join(fromCheck, ",") != strings.Join(fromWebhook, ",") || len(fromCheck) != 2 {
		t.Errorf("check lists %v, the webhook %v; want the same two workloads", fromCheck, fromWebhook)
	}
}

// TestStaticBinary runs the binary that `make build-static` builds the way
// the Dockerfile does: static, and a working `check`.
func TestStaticBinary(t *testing.T) {
	root, err := testenv.Root()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "mtls-guard-static")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s missing: run `make build-static` (make test does)", bin)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("reading %s: %v", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked; the distroless static image needs CGO_ENABLED=0", bin)
		}
	}
	if out, err := exec.Command(bin, "version").Output(); err != nil || strings.TrimSpace(string(out)) == "" {
		t.Errorf("version: %q, %v", out, err)
	}
	cmd := exec.Command(bin, "check", "-f", filepath.Join(root, "internal/cli/testdata/seed/strict.yaml"),
		"--from-file", filepath.Join(root, "internal/cli/testdata/seed/cluster.yaml"))
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "Pod/mtls-test") {
		t.Errorf("static check of the seed: err %v, output:\n%s", err, out)
	}
}

// Command demo replays the guard's seed story on a local control plane:
// `make demo`. It starts etcd and kube-apiserver from bin/, runs the real
// bin/mtls-guard binary as the webhook, drives it with the real kubectl,
// checks every step, and stops everything it started.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/webhook"
)

const demoNamespace = "istio-demo"

// The story's objects, as a user would write them.
const (
	namespaceYAML = `apiVersion: v1
kind: Namespace
metadata:
  name: istio-demo
  labels:
    istio-injection: enabled
`
	webYAML = `# A meshed pod: the AKS Istio add-on injects Envoy as a native sidecar.
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: istio-demo
  labels: {app: web}
spec:
  initContainers:
  - name: istio-proxy
    image: mcr.microsoft.com/oss/istio/proxyv2:1.26
    restartPolicy: Always
  containers:
  - name: web
    image: registry.k8s.io/pause:3.10
`
	mtlsTestYAML = `# An unmeshed pod: no sidecar, so it only speaks plaintext.
apiVersion: v1
kind: Pod
metadata:
  name: mtls-test
  namespace: istio-demo
  labels: {app: mtls-test}
spec:
  containers:
  - name: curl
    image: registry.k8s.io/pause:3.10
`
	strictYAML = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-demo
spec:
  mtls:
    mode: STRICT
`
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("\ndemo finished: everything it started has stopped.")
}

type demo struct {
	dir, kubeconfig, bin string
	admin                client.Client
}

func run(ctx context.Context) error {
	step("Starting a local control plane (etcd and kube-apiserver built into bin/ by `make testbin`)")
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() {
		step("Stopping the control plane")
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping control plane: %v\n", err)
		}
	}()
	d := &demo{bin: env.BinDir}
	if d.dir, err = os.MkdirTemp("", "mtls-guard-demo-"); err != nil {
		return err
	}
	defer os.RemoveAll(d.dir)
	if d.admin, err = client.New(env.Config, client.Options{Scheme: server.Scheme()}); err != nil {
		return err
	}
	if d.kubeconfig, err = env.Kubeconfig(d.dir, "demo-admin", "system:masters"); err != nil {
		return err
	}

	step("Installing the guard's Namespace, ServiceAccount and RBAC from deploy/")
	deploy, err := testenv.InstallRBAC(ctx, d.admin)
	if err != nil {
		return err
	}
	guardConfig, err := env.Kubeconfig(d.dir, testenv.GuardUser, testenv.GuardGroups...)
	if err != nil {
		return err
	}
	certDir := filepath.Join(d.dir, "certs")
	if _, err := d.sh("mtls-guard", "certs", "--service", "mtls-guard", "--namespace", "mtls-guard", "--ip", "127.0.0.1", "--out", certDir); err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(certDir, "ca.crt"))
	if err != nil {
		return err
	}

	port, probe, err := freePort()
	if err != nil {
		return err
	}
	step(fmt.Sprintf("Starting `mtls-guard serve` on 127.0.0.1:%d as %s (log: %s)", port, testenv.GuardUser, filepath.Join(d.dir, "guard.log")))
	guard, err := d.serve(guardConfig, certDir, port, probe)
	if err != nil {
		return err
	}
	defer func() {
		step("Stopping the guard (SIGTERM)")
		_ = guard.Process.Signal(syscall.SIGTERM)
		_ = guard.Wait()
	}()
	if err := waitReady(ctx, probe); err != nil {
		return err
	}
	step("Registering deploy/'s ValidatingWebhookConfiguration (client config pointed at the local guard)")
	if err := testenv.RegisterWebhook(ctx, d.admin, deploy, fmt.Sprintf("https://127.0.0.1:%d%s", port, webhook.Path), ca); err != nil {
		return err
	}
	return d.story(ctx)
}

// story is the seed scenario, each step checked.
func (d *demo) story(ctx context.Context) error {
	files := map[string]string{"namespace.yaml": namespaceYAML, "web.yaml": webYAML, "mtls-test.yaml": mtlsTestYAML, "strict.yaml": strictYAML}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(d.dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	step("A meshed `web` pod and an unmeshed `mtls-test` pod in istio-demo")
	for _, f := range []string{"namespace.yaml", "web.yaml", "mtls-test.yaml"} {
		if _, err := d.kubectl("apply", "-f", filepath.Join(d.dir, f)); err != nil {
			return err
		}
	}
	if err := d.waitGuardSees(ctx, true); err != nil {
		return err
	}

	step("Turning on STRICT mTLS while mtls-test is unmeshed: the guard denies it")
	out, err := d.kubectl("apply", "-f", filepath.Join(d.dir, "strict.yaml"))
	if err == nil || !strings.Contains(out, "Pod/mtls-test (1 pod: no-sidecar)") {
		return fmt.Errorf("want the apply denied with Pod/mtls-test named, got err=%v", err)
	}

	step("Removing the unmeshed pod, then applying again: admitted")
	if _, err := d.kubectl("delete", "pod", "-n", demoNamespace, "mtls-test", "--grace-period=0"); err != nil {
		return err
	}
	if err := d.waitGuardSees(ctx, false); err != nil {
		return err
	}
	if out, err := d.kubectl("apply", "-f", filepath.Join(d.dir, "strict.yaml")); err != nil || !strings.Contains(out, "created") {
		return fmt.Errorf("want the apply admitted, got err=%v", err)
	}

	step("The denial was recorded as a Warning Event on the Namespace")
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		out, err := d.kubectlQuiet("get", "events.events.k8s.io", "-A", "--field-selector", "reason="+webhook.ReasonDenied, "-o", "name")
		return err == nil && strings.TrimSpace(out) != "", nil
	})
	if err != nil {
		return fmt.Errorf("no %s Event: %w", webhook.ReasonDenied, err)
	}
	_, err = d.kubectl("get", "events.events.k8s.io", "-A", "--field-selector", "reason="+webhook.ReasonDenied,
		"-o", "custom-columns=TYPE:.type,REASON:.reason,REGARDING:.regarding.kind,NAME:.regarding.name,RELATED:.related.name,NOTE:.note")
	return err
}

// waitGuardSees waits until the guard's informer has the pods, by a
// server-side dry run of the STRICT policy, so that the visible kubectl
// apply that follows is deterministic.
func (d *demo) waitGuardSees(ctx context.Context, wantDenied bool) error {
	strict := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: demoNamespace, Name: "default"}}
	strict.Spec.Mtls = &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_STRICT}
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := d.admin.Create(ctx, strict.DeepCopy(), client.DryRunAll)
		denied := err != nil && strings.Contains(err.Error(), "denied the request")
		return denied == wantDenied, nil
	})
}

func (d *demo) kubectl(args ...string) (string, error) {
	return d.sh("kubectl", append([]string{"--kubeconfig", d.kubeconfig}, args...)...)
}

func (d *demo) kubectlQuiet(args ...string) (string, error) {
	out, err := exec.Command(filepath.Join(d.bin, "kubectl"), append([]string{"--kubeconfig", d.kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

// sh runs a command from bin/, echoing it and its output.
func (d *demo) sh(name string, args ...string) (string, error) {
	shown := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		if args[i] == "--kubeconfig" {
			i++
			continue
		}
		shown = append(shown, strings.ReplaceAll(args[i], d.dir+"/", ""))
	}
	fmt.Printf("$ %s %s\n", name, strings.Join(shown, " "))
	out, err := exec.Command(filepath.Join(d.bin, name), args...).CombinedOutput()
	fmt.Print(indent(string(out)))
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		fmt.Printf("  (exit status %d)\n", ee.ExitCode())
	}
	return string(out), err
}

func (d *demo) serve(kubeconfig, certDir string, port, probe int) (*exec.Cmd, error) {
	logf, err := os.Create(filepath.Join(d.dir, "guard.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(d.bin, "mtls-guard"), "serve",
		"--kubeconfig", kubeconfig, "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--cert-dir", certDir,
		"--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probe))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting mtls-guard serve: %w", err)
	}
	return cmd, nil
}

func waitReady(ctx context.Context, probe int) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return testenv.Ready(ctx, probe)
	})
}

func freePort() (int, int, error) {
	a, err := testenv.FreePort()
	if err != nil {
		return 0, 0, err
	}
	b, err := testenv.FreePort()
	return a, b, err
}

func step(s string) { fmt.Printf("\n== %s\n", s) }

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}

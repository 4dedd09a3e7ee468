// Command demo replays the guard's seed story on a local control plane:
// `make demo`. It starts etcd and kube-apiserver from bin/, a real
// Prometheus from bin/ that scrapes an exporter standing in for the web
// sidecar's stats endpoint, runs the real bin/mtls-guard binary as the
// webhook, drives it with the real kubectl, checks every step, and stops
// everything it started, also when a step fails or it is interrupted.
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

	"github.com/prometheus/common/model"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/demo/seed"
	"github.com/mtls-guard/mtls-guard/internal/evidence"
	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/internal/testenv/istiometrics"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// The second scene's namespace: an unmeshed pod next to a meshed one.
const podsNamespace = "legacy-demo"

// The second scene's objects.
const (
	podsNamespaceYAML = `apiVersion: v1
kind: Namespace
metadata:
  name: legacy-demo
  labels:
    istio-injection: enabled
`
	podsStrictYAML = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: legacy-demo
spec:
  mtls:
    mode: STRICT
`
)

// podsYAML is the second scene's pods: seed's web, as a bare pod, and an
// unmeshed one.
var podsYAML = `# A meshed pod: Envoy runs as a native sidecar.
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: legacy-demo
  labels: {app: web}
spec:
` + seed.WebPodSpecYAML("  ") + `---
# An unmeshed pod (created before injection was enabled): it only speaks plaintext.
apiVersion: v1
kind: Pod
metadata:
  name: mtls-test
  namespace: legacy-demo
  labels: {app: mtls-test}
spec:
  containers:
  - name: curl
    image: curlimages/curl:8.11.1
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
	}
	fmt.Println("\neverything the demo started has stopped.")
	if err != nil {
		os.Exit(1)
	}
}

type demo struct {
	dir, kubeconfig, bin string
	admin                client.Client
	prometheus           *testenv.Prometheus
	exporter             *istiometrics.Exporter
}

// run starts everything, defers its stop at once, then plays the story.
func run(ctx context.Context) error {
	d := &demo{}
	var err error
	if d.dir, err = os.MkdirTemp("", "mtls-guard-demo-"); err != nil {
		return err
	}
	defer os.RemoveAll(d.dir)

	step("Starting a local control plane (etcd and kube-apiserver, built into bin/ by `make testbin`)")
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() {
		step("Stopping the control plane")
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the control plane: %v\n", err)
		}
	}()
	d.bin = env.BinDir
	if d.admin, err = client.New(env.Config, client.Options{Scheme: server.Scheme()}); err != nil {
		return err
	}
	if d.kubeconfig, err = env.Kubeconfig(d.dir, "demo-admin", "system:masters"); err != nil {
		return err
	}

	step("Starting an exporter that stands in for the `web` sidecar's stats endpoint (Envoy's /stats/prometheus)\n" +
		"   and a real Prometheus (bin/prometheus) that scrapes it every second")
	exporterCtx, stopExporter := context.WithCancel(ctx)
	defer stopExporter()
	d.exporter = istiometrics.New()
	target, err := d.exporter.Start(exporterCtx)
	if err != nil {
		return err
	}
	promDir := filepath.Join(d.dir, "prometheus")
	if err := os.Mkdir(promDir, 0o700); err != nil {
		return err
	}
	if d.prometheus, err = testenv.StartPrometheus(ctx, promDir, []string{target}, time.Second); err != nil {
		return err
	}
	defer func() {
		step("Stopping Prometheus and the exporter")
		if err := d.prometheus.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping Prometheus: %v\n", err)
		}
	}()
	fmt.Printf("  exporter: http://%s%s\n  Prometheus: %s\n", target, istiometrics.MetricsPath, d.prometheus.URL)

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
	// The command prints the caBundle for a webhook configuration; the
	// demo registers it itself, so it is not shown.
	if out, err := exec.Command(filepath.Join(d.bin, "mtls-guard"), "certs", "--service", "mtls-guard", "--namespace", "mtls-guard", "--ip", "127.0.0.1", "--out", certDir).CombinedOutput(); err != nil {
		return fmt.Errorf("mtls-guard certs: %w\n%s", err, out)
	}
	fmt.Println("$ mtls-guard certs --service mtls-guard --namespace mtls-guard --ip 127.0.0.1 --out certs > /dev/null")
	ca, err := os.ReadFile(filepath.Join(certDir, "ca.crt"))
	if err != nil {
		return err
	}

	ports, err := testenv.FreePorts(2)
	if err != nil {
		return err
	}
	port, probe := ports[0], ports[1]
	step(fmt.Sprintf("Starting `mtls-guard serve` as %s, reading plaintext evidence from Prometheus (log: %s)", testenv.GuardUser, filepath.Join(d.dir, "guard.log")))
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
	if err := d.seedStory(ctx); err != nil {
		return err
	}
	return d.podsScene(ctx)
}

// seedStory is the seed scenario: the caller is in another namespace and
// gone, and only the sidecar's telemetry remembers it.
func (d *demo) seedStory(ctx context.Context) error {
	fmt.Println("\n\n### Scene 1: the seed story. The plaintext caller lives in `default` and is gone when STRICT is applied.")
	if err := d.write(map[string]string{"namespace.yaml": seed.NamespaceYAML, "web.yaml": seed.WebYAML, "strict.yaml": seed.StrictYAML}); err != nil {
		return err
	}
	step("istio-demo gets a meshed Deployment `web`")
	for _, f := range []string{"namespace.yaml", "web.yaml"} {
		if _, err := d.kubectl("apply", "-f", filepath.Join(d.dir, f)); err != nil {
			return err
		}
	}
	fmt.Println("  (no controllers run here: the demo creates web's ReplicaSet and pod as they would)")
	if err := seed.StartWeb(ctx, d.admin); err != nil {
		return err
	}

	step("`kubectl run --rm` starts mtls-test in default, outside the mesh; it calls web once, in plaintext, and is deleted")
	fmt.Println("  (without a kubelet nothing runs: the demo starts the pod, lets the exporter count web's request, deletes the pod)")
	if _, err := d.kubectl(seed.RunCaller...); err != nil {
		return err
	}
	if err := seed.Request(ctx, d.exporter, d.prometheus.URL, istiometrics.Unknown, seed.WebWorkload, 1); err != nil {
		return err
	}
	if _, err := d.kubectl(seed.DeleteCaller...); err != nil {
		return err
	}
	if err := seed.WaitCallerGone(ctx, d.admin); err != nil {
		return err
	}

	step("No pod list shows the caller any more; web's sidecar recorded it, and Prometheus has it")
	if _, err := d.kubectl("get", "pods", "-n", seed.CallerNamespace); err != nil {
		return err
	}
	if _, err := d.kubectl("get", "pods", "-n", seed.Namespace, "-o", "custom-columns=NAME:.metadata.name,INIT-CONTAINERS:.spec.initContainers[*].name"); err != nil {
		return err
	}
	if err := d.showEvidence(ctx); err != nil {
		return err
	}
	// The guard refreshes its evidence in the background: wait until it
	// has it, so that the apply below is decided on it.
	if err := d.waitDecision(ctx, seed.Namespace, true); err != nil {
		return err
	}

	step("Turning on STRICT mTLS for istio-demo: every pod there is meshed, but the guard denies it, citing the evidence")
	out, err := d.kubectl("apply", "-f", filepath.Join(d.dir, "strict.yaml"))
	if err == nil || !strings.Contains(out, "Deployment/web") || !strings.Contains(out, "plaintext") {
		return fmt.Errorf("want the apply denied with Deployment/web's plaintext requests named, got err=%v", err)
	}
	return nil
}

// showEvidence runs the guard's own query against Prometheus and prints
// what it returns.
func (d *demo) showEvidence(ctx context.Context) error {
	papi, err := testenv.PrometheusAPI(d.prometheus.URL)
	if err != nil {
		return err
	}
	q := evidence.Query(evidence.RequestsMetric, 24*time.Hour)
	fmt.Printf("$ promql '%s'\n", q)
	v, _, _, err := papi.Query(ctx, q, time.Now())
	if err != nil {
		return fmt.Errorf("querying Prometheus: %w", err)
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) == 0 {
		return fmt.Errorf("prometheus returned no plaintext requests: %v", v)
	}
	for _, s := range vec {
		m := s.Metric
		fmt.Printf("  %s/%s <- %s/%s: %.0f plaintext request(s)\n", m["destination_workload_namespace"], m["destination_workload"],
			m["source_workload_namespace"], m["source_workload"], float64(s.Value))
	}
	return nil
}

// podsScene is the case a pod list does show: an unmeshed pod next to the
// servers that STRICT would cover.
func (d *demo) podsScene(ctx context.Context) error {
	fmt.Println("\n\n### Scene 2: an unmeshed pod in the namespace itself.")
	if err := d.write(map[string]string{"legacy-ns.yaml": podsNamespaceYAML, "legacy-pods.yaml": podsYAML, "legacy-strict.yaml": podsStrictYAML}); err != nil {
		return err
	}
	step("A meshed `web` pod and an unmeshed `mtls-test` pod in " + podsNamespace)
	for _, f := range []string{"legacy-ns.yaml", "legacy-pods.yaml"} {
		if _, err := d.kubectl("apply", "-f", filepath.Join(d.dir, f)); err != nil {
			return err
		}
	}
	if err := d.waitDecision(ctx, podsNamespace, true); err != nil {
		return err
	}
	step("Turning on STRICT mTLS while mtls-test is unmeshed: the guard denies it")
	out, err := d.kubectl("apply", "-f", filepath.Join(d.dir, "legacy-strict.yaml"))
	if err == nil || !strings.Contains(out, "Pod/mtls-test (1 pod: no-sidecar)") {
		return fmt.Errorf("want the apply denied with Pod/mtls-test named, got err=%v", err)
	}

	step("Removing the unmeshed pod, then applying again: admitted")
	if _, err := d.kubectl("delete", "pod", "-n", podsNamespace, "mtls-test", "--grace-period=0"); err != nil {
		return err
	}
	if err := d.waitDecision(ctx, podsNamespace, false); err != nil {
		return err
	}
	if out, err := d.kubectl("apply", "-f", filepath.Join(d.dir, "legacy-strict.yaml")); err != nil || !strings.Contains(out, "created") {
		return fmt.Errorf("want the apply admitted, got err=%v", err)
	}

	step("Each denial was recorded as a Warning Event on its Namespace")
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		out, err := d.kubectlQuiet("get", "events.events.k8s.io", "-A", "--field-selector", "reason="+webhook.ReasonDenied, "-o", "name")
		return err == nil && len(strings.Fields(out)) >= 2, nil
	})
	if err != nil {
		return fmt.Errorf("want a %s Event per denial: %w", webhook.ReasonDenied, err)
	}
	_, err = d.kubectl("get", "events.events.k8s.io", "-A", "--field-selector", "reason="+webhook.ReasonDenied,
		"-o", "custom-columns=TYPE:.type,REASON:.reason,REGARDING:.regarding.kind,NAME:.regarding.name,RELATED:.related.name,NOTE:.note")
	return err
}

// waitDecision waits until the guard answers a server-side dry run of
// the namespace's STRICT policy as wanted (denied: 403), so that the
// visible kubectl apply that follows is deterministic: the guard's cache
// and evidence follow the cluster and Prometheus by moments.
func (d *demo) waitDecision(ctx context.Context, ns string, wantDenied bool) error {
	pa := seed.Strict(ns)
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		last = d.admin.Create(ctx, pa.DeepCopy(), client.DryRunAll)
		return apierrors.IsForbidden(last) == wantDenied, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the guard to decide STRICT in %s (denied: %v): %w (last answer: %v)", ns, wantDenied, err, last)
	}
	return nil
}

func (d *demo) write(files map[string]string) error {
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(d.dir, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) kubectl(args ...string) (string, error) {
	return d.sh("kubectl", append([]string{"--kubeconfig", d.kubeconfig}, args...)...)
}

func (d *demo) kubectlQuiet(args ...string) (string, error) {
	out, err := exec.Command(filepath.Join(d.bin, "kubectl"), append([]string{"--kubeconfig", d.kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

// sh runs a command from bin/, echoing it (without the kubeconfig and the
// temporary directory) and its output.
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
	fmt.Print(indent(strings.ReplaceAll(string(out), d.dir+"/", "")))
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		fmt.Printf("  (exit status %d)\n", ee.ExitCode())
	}
	return string(out), err
}

// serve starts bin/mtls-guard serve with the evidence flags; its log goes
// to guard.log.
func (d *demo) serve(kubeconfig, certDir string, port, probe int) (*exec.Cmd, error) {
	logf, err := os.Create(filepath.Join(d.dir, "guard.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	evidenceFlags := []string{"--prometheus-url", d.prometheus.URL, "--plaintext-refresh", "2s", "--plaintext-max-age", "10s"}
	fmt.Printf("$ mtls-guard serve ... %s\n", strings.Join(evidenceFlags, " "))
	cmd := exec.Command(filepath.Join(d.bin, "mtls-guard"), append([]string{"serve",
		"--kubeconfig", kubeconfig, "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--cert-dir", certDir,
		"--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probe)}, evidenceFlags...)...)
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

func step(s string) { fmt.Printf("\n== %s\n", s) }

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}

package chart

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/release"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/certs"
	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// webhookName is the chart's webhook, the prefix of the guard's audit
// annotations.
const webhookName = "peerauthentications.mtls-guard.io"

// cluster is a running envtest control plane with Istio's CRDs, an admin
// kubeconfig and the real kubectl.
type cluster struct {
	env        *testenv.Env
	admin      client.Client
	kubeconfig string
	dir        string
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("end to end: skipped under -short")
	}
	env, err := testenv.Start() // fails, saying `make testbin`, without bin/
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	c := &cluster{env: env, dir: t.TempDir()}
	if c.admin, err = client.New(env.Config, client.Options{Scheme: server.Scheme()}); err != nil {
		t.Fatal(err)
	}
	if c.kubeconfig, err = env.Kubeconfig(c.dir, "chart-admin", "system:masters"); err != nil {
		t.Fatal(err)
	}
	return c
}

// helm returns an action configuration for namespace, talking to the
// cluster with the admin kubeconfig, as the helm CLI would.
func (c *cluster) helm(t *testing.T, namespace string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &c.kubeconfig, &namespace
	cfg := &action.Configuration{}
	if err := cfg.Init(flags, namespace, "secret", t.Logf); err != nil {
		t.Fatalf("helm configuration: %v", err)
	}
	return cfg
}

func (c *cluster) install(t *testing.T, name, namespace string, values map[string]any) *release.Release {
	t.Helper()
	install := action.NewInstall(c.helm(t, namespace))
	install.ReleaseName, install.Namespace, install.CreateNamespace = name, namespace, true
	install.Timeout = time.Minute
	rel, err := install.RunWithContext(context.Background(), load(t), values)
	if err != nil {
		t.Fatalf("helm install %s: %v", name, err)
	}
	return rel
}

func (c *cluster) uninstall(t *testing.T, name, namespace string) {
	t.Helper()
	if _, err := action.NewUninstall(c.helm(t, namespace)).Run(name); err != nil {
		t.Fatalf("helm uninstall %s: %v", name, err)
	}
}

// kubectl runs the real kubectl as the admin.
func (c *cluster) kubectl(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	r, err := testenv.Run(testenv.Kubectl(c.env.BinDir, c.kubeconfig, args...))
	if err != nil {
		t.Fatal(err)
	}
	return r.Stdout, r.Stderr, r.Code
}

// auditRecord is the part of an audit.k8s.io/v1 Event the test reads.
type auditRecord struct {
	User struct {
		Username string `json:"username"`
	} `json:"user"`
	Verb       string `json:"verb"`
	Stage      string `json:"stage"`
	RequestURI string `json:"requestURI"`
	ObjectRef  *struct {
		APIGroup  string `json:"apiGroup"`
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Annotations map[string]string `json:"annotations"`
}

// audit returns the API server's completed audit records so far.
func (c *cluster) audit(t *testing.T) []auditRecord {
	t.Helper()
	f, err := os.Open(c.env.AuditLog)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	defer f.Close()
	var out []auditRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r auditRecord
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Stage == "ResponseComplete" && r.ObjectRef != nil {
			out = append(out, r)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the audit log: %v", err)
	}
	return out
}

// waitAudit polls the audit log until match finds a record.
func (c *cluster) waitAudit(t *testing.T, what string, match func(auditRecord) bool) auditRecord {
	t.Helper()
	var found auditRecord
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		for _, r := range c.audit(t) {
			if match(r) {
				found = r
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no audit record of %s: %v", what, err)
	}
	return found
}

// buildGuard builds the guard from the repository, as `make build` does.
func buildGuard(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mtls-guard")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build of the guard: %v\n%s", err, out)
	}
	return bin
}

// runGuard runs the guard binary with the chart's container arguments,
// only the pod-specific addresses, certificate directory and kubeconfig
// replaced, and waits until it is ready.
func runGuard(t *testing.T, bin string, chartArgs []string, kubeconfig, certDir string, port int) {
	t.Helper()
	probe, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	local := map[string]string{
		"--cert-dir":                  certDir,
		"--port":                      fmt.Sprint(port),
		"--metrics-bind-address":      "0",
		"--health-probe-bind-address": fmt.Sprintf("127.0.0.1:%d", probe),
	}
	if len(chartArgs) == 0 || chartArgs[0] != "serve" {
		t.Fatalf("chart args %q do not start with serve", chartArgs)
	}
	args := []string{"serve", "--kubeconfig", kubeconfig, "--host", "127.0.0.1"}
	for _, a := range chartArgs[1:] {
		name, _, _ := strings.Cut(a, "=")
		if v, ok := local[name]; ok {
			a = name + "=" + v
			delete(local, name)
		}
		args = append(args, a)
	}
	if len(local) > 0 {
		t.Fatalf("the chart does not pass %v", local)
	}
	logPath := filepath.Join(t.TempDir(), "guard.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ReleaseNamespace)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the guard: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			if data, err := os.ReadFile(logPath); err == nil {
				t.Logf("guard log:\n%s", data)
			}
		}
	})
	t.Logf("guard: %s %s", bin, strings.Join(args, " "))
	err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-done:
			done <- err
			return false, fmt.Errorf("the guard exited: %v", err)
		default:
		}
		return testenv.Ready(ctx, probe)
	})
	if err != nil {
		data, _ := os.ReadFile(logPath)
		t.Fatalf("waiting for the guard's /readyz: %v\n%s", err, data)
	}
}

// TestInstallDenyUninstall installs the chart into a real API server with
// the Helm SDK, runs the guard with the chart's arguments as the chart's
// ServiceAccount (so its RBAC is all the guard has), has the seed's STRICT
// policy denied through kubectl, then uninstalls and finds no webhook
// configuration left and the same apply admitted.
func TestInstallDenyUninstall(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	root := repoRoot(t)
	bin := buildGuard(t)

	// The guard serves on loopback with a certificate for 127.0.0.1; the
	// chart points the webhook there and trusts that certificate's CA.
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := certs.Issue(ReleaseName, ReleaseNamespace, certs.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	if err := bundle.WriteDir(certDir); err != nil {
		t.Fatal(err)
	}
	values := map[string]any{
		"certificates": map[string]any{"mode": "secret", "secret": map[string]any{"caBundle": base64.StdEncoding.EncodeToString(bundle.CACert)}},
		"webhook": map[string]any{
			"url":      fmt.Sprintf("https://127.0.0.1:%d%s", port, webhook.Path),
			"arrivals": map[string]any{"url": fmt.Sprintf("https://127.0.0.1:%d%s", port, webhook.ArrivalPath)},
		},
	}
	rel := c.install(t, ReleaseName, ReleaseNamespace, values)
	if rel.Info.Status != release.StatusDeployed {
		t.Fatalf("release status %s", rel.Info.Status)
	}

	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := c.admin.Get(ctx, client.ObjectKey{Name: ReleaseName}, &vwc); err != nil {
		t.Fatalf("the chart's webhook configuration: %v", err)
	}
	if len(vwc.Webhooks) != 2 || vwc.Webhooks[0].Name != webhookName || vwc.Webhooks[1].Name != "arrivals.mtls-guard.io" ||
		vwc.Annotations["admissions.enforcer/disabled"] != "true" {
		t.Fatalf("webhook configuration = %+v", vwc)
	}
	var deploy appsv1.Deployment
	if err := c.admin.Get(ctx, client.ObjectKey{Namespace: ReleaseNamespace, Name: ReleaseName}, &deploy); err != nil {
		t.Fatalf("the chart's Deployment: %v", err)
	}

	// The seed: a meshed web Deployment and an unmeshed mtls-test pod in
	// istio-demo.
	seedDir := filepath.Join(root, "internal/cli/testdata/seed")
	if _, stderr, code := c.kubectl(t, "apply", "-f", filepath.Join(seedDir, "cluster.yaml")); code != 0 {
		t.Fatalf("kubectl apply of the seed: exit %d: %s", code, stderr)
	}

	// The guard, as the chart's ServiceAccount.
	var sa corev1.ServiceAccount
	if err := c.admin.Get(ctx, client.ObjectKey{Namespace: ReleaseNamespace, Name: deploy.Spec.Template.Spec.ServiceAccountName}, &sa); err != nil {
		t.Fatalf("the chart's ServiceAccount: %v", err)
	}
	user := "system:serviceaccount:" + sa.Namespace + ":" + sa.Name
	guardConfig, err := c.env.Kubeconfig(c.dir, user, "system:serviceaccounts", "system:serviceaccounts:"+sa.Namespace, "system:authenticated")
	if err != nil {
		t.Fatal(err)
	}
	runGuard(t, bin, deploy.Spec.Template.Spec.Containers[0].Args, guardConfig, certDir, port)

	// The seed denial through the real kubectl: a non-zero exit, and the
	// API server's record of the request says 403 with the guard's
	// decision "denied".
	strict := filepath.Join(seedDir, "strict.yaml")
	isSeedCreate := func(r auditRecord) bool {
		return r.Verb == "create" && r.ObjectRef.Resource == "peerauthentications" &&
			r.ObjectRef.Namespace == "istio-demo" && r.ObjectRef.Name == "default"
	}
	stdout, stderr, code := c.kubectl(t, "apply", "-f", strict)
	if code == 0 {
		t.Fatalf("kubectl apply of the seed's STRICT policy succeeded:\n%s", stdout)
	}
	denied := c.waitAudit(t, "the denied create", isSeedCreate)
	if denied.ResponseStatus.Code != 403 || denied.Annotations[webhookName+"/decision"] != "denied" {
		t.Fatalf("kubectl apply: exit %d, API server answered %d with decision %q; want 403 and denied\nstderr: %s",
			code, denied.ResponseStatus.Code, denied.Annotations[webhookName+"/decision"], stderr)
	}

	// Everything the guard asked of the API server was allowed by the
	// chart's RBAC, including the Event about the denial.
	c.waitAudit(t, "the guard's Event about the denial", func(r auditRecord) bool {
		return r.User.Username == user && r.Verb == "create" && r.ObjectRef.Resource == "events" && r.ResponseStatus.Code == 201
	})
	for _, r := range c.audit(t) {
		if r.User.Username == user && (r.ResponseStatus.Code == 401 || r.ResponseStatus.Code == 403) {
			t.Errorf("the chart's RBAC refused the guard: %s %s/%s %s", r.Verb, r.ObjectRef.APIGroup, r.ObjectRef.Resource, r.RequestURI)
		}
	}

	// Uninstall: nothing of the release is left, above all no webhook
	// configuration, so the same apply now goes through.
	c.uninstall(t, ReleaseName, ReleaseNamespace)
	var vwcs admissionregistrationv1.ValidatingWebhookConfigurationList
	if err := c.admin.List(ctx, &vwcs); err != nil {
		t.Fatal(err)
	}
	for _, w := range vwcs.Items {
		t.Errorf("webhook configuration %s left after uninstall", w.Name)
	}
	var roles rbacv1.ClusterRoleList
	if err := c.admin.List(ctx, &roles, client.MatchingLabels{"app.kubernetes.io/instance": ReleaseName}); err != nil {
		t.Fatal(err)
	}
	for _, r := range roles.Items {
		t.Errorf("ClusterRole %s left after uninstall", r.Name)
	}
	if err := c.admin.Get(ctx, client.ObjectKeyFromObject(&deploy), &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment after uninstall: %v, want NotFound", err)
	}
	if stdout, stderr, code := c.kubectl(t, "apply", "-f", strict); code != 0 {
		t.Fatalf("kubectl apply after uninstall: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	admitted := c.waitAudit(t, "the admitted create", func(r auditRecord) bool { return isSeedCreate(r) && r.ResponseStatus.Code == 201 })
	if _, ok := admitted.Annotations[webhookName+"/decision"]; ok {
		t.Errorf("the guard was still called after uninstall: %v", admitted.Annotations)
	}
}

// TestGeneratedCertificatesSurviveUpgrade: with certificates.mode=generate,
// an upgrade keeps the CA and serving certificate that the install made
// (the chart looks its Secret up), and the webhook keeps trusting it.
func TestGeneratedCertificatesSurviveUpgrade(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	const name, ns = "gen", "gen-guard"
	fullname := name + "-mtls-guard"
	// Ignore: no guard runs behind this release.
	values := map[string]any{
		"certificates": map[string]any{"mode": "generate"},
		"webhook":      map[string]any{"failurePolicy": "Ignore"},
	}
	c.install(t, name, ns, values)
	read := func() (corev1.Secret, []byte) {
		t.Helper()
		var s corev1.Secret
		if err := c.admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: fullname + "-serving-cert"}, &s); err != nil {
			t.Fatalf("generated Secret: %v", err)
		}
		var vwc admissionregistrationv1.ValidatingWebhookConfiguration
		if err := c.admin.Get(ctx, client.ObjectKey{Name: fullname}, &vwc); err != nil {
			t.Fatalf("webhook configuration: %v", err)
		}
		return s, vwc.Webhooks[0].ClientConfig.CABundle
	}
	before, caBefore := read()
	if !bytes.Equal(caBefore, before.Data["ca.crt"]) || len(before.Data["tls.key"]) == 0 {
		t.Fatal("the webhook does not trust the generated CA")
	}

	upgrade := action.NewUpgrade(c.helm(t, ns))
	upgrade.Namespace = ns
	values["webhook"] = map[string]any{"failurePolicy": "Ignore", "timeoutSeconds": 3}
	if _, err := upgrade.RunWithContext(ctx, name, load(t), values); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	after, caAfter := read()
	for _, k := range []string{"ca.crt", "tls.crt", "tls.key"} {
		if !bytes.Equal(before.Data[k], after.Data[k]) {
			t.Errorf("%s changed on upgrade", k)
		}
	}
	if !bytes.Equal(caBefore, caAfter) {
		t.Error("the webhook's caBundle changed on upgrade")
	}

	c.uninstall(t, name, ns)
	if err := c.admin.Get(ctx, client.ObjectKey{Name: fullname}, &admissionregistrationv1.ValidatingWebhookConfiguration{}); !apierrors.IsNotFound(err) {
		t.Errorf("webhook configuration after uninstall: %v, want NotFound", err)
	}
}

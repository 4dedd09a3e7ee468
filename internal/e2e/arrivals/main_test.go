// Package arrivals proves rule 3b end to end: pods and workloads that
// arrive unmeshed where STRICT already holds are warned (or denied) by the
// arrivals webhook, through a real kube-apiserver and etcd, the real
// kubectl, deploy/'s webhook configuration and RBAC, and the guard's
// `serve` code path running as deploy/'s ServiceAccount.
package arrivals

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/mtls-guard/mtls-guard/certs"
	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
)

const (
	guardNamespace = "mtls-guard" // deploy/'s
	rootNamespace  = "istio-system"
	// arrivalsWebhook is the name deploy/ gives the arrivals webhook; the
	// API server prefixes the guard's audit annotations with it.
	arrivalsWebhook = "arrivals.mtls-guard.io"
)

// suite is the shared control plane and the guard the webhook
// configuration points at.
var suite struct {
	env         *testenv.Env
	admin       client.Client // records Audit-Ids and warnings, see call
	mapper      meta.RESTMapper
	adminConfig string // kubeconfig of a cluster admin, for kubectl
	guardConfig string // kubeconfig of deploy/'s ServiceAccount
	deploy      *testenv.Deploy
	audit       *auditLog
	guard       *guard // the warn guard most tests use
	dir         string
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// Only -short may skip; without bin/ the suite fails and says why.
	if slices.ContainsFunc(os.Args[1:], func(a string) bool { return a == "-test.short" || a == "-test.short=true" }) {
		fmt.Println("arrivals e2e: skipped under -short")
		return 0
	}
	// As deployed: the guard knows its own namespace.
	if err := os.Setenv("POD_NAMESPACE", guardNamespace); err != nil {
		fmt.Fprintf(os.Stderr, "arrivals e2e setup failed: %v\n", err)
		return 1
	}
	err := setup()
	defer teardown()
	if err != nil {
		fmt.Fprintf(os.Stderr, "arrivals e2e setup failed: %v\n", err)
		return 1
	}
	return m.Run()
}

// auditPolicy records, with the guard's audit annotations (Metadata
// level), every request on the kinds the arrivals webhook judges, and every
// request the guard makes.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["` + testenv.GuardUser + `"]
- level: Metadata
  resources:
  - group: ""
    resources: [pods]
  - group: apps
    resources: [deployments, statefulsets, daemonsets, replicasets]
  - group: batch
    resources: [jobs, cronjobs]
  - group: security.istio.io
    resources: [peerauthentications]
- level: None
`

// startControlPlane is testenv.Start with an audit policy that also
// records pods and workloads (testenv's records PeerAuthentications only).
func startControlPlane(dir string) (*testenv.Env, error) {
	bin, err := testenv.BinDir() // says to run `make testbin` when missing
	if err != nil {
		return nil, err
	}
	crds, err := testenv.IstioCRDs()
	if err != nil {
		return nil, err
	}
	policyFile := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policyFile, []byte(auditPolicy), 0o600); err != nil {
		return nil, fmt.Errorf("writing the audit policy: %w", err)
	}
	auditLog := filepath.Join(dir, "audit.log")
	te := &envtest.Environment{
		BinaryAssetsDirectory:    bin,
		CRDInstallOptions:        envtest.CRDInstallOptions{Paths: []string{crds}, ErrorIfPathMissing: true},
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	te.ControlPlane.GetAPIServer().Configure().
		Set("audit-policy-file", policyFile).
		Set("audit-log-path", auditLog).
		Set("audit-log-mode", "blocking")
	cfg, err := te.Start()
	if err != nil {
		_ = te.Stop()
		return nil, fmt.Errorf("starting envtest control plane from %s: %w", bin, err)
	}
	return &testenv.Env{Environment: te, Config: cfg, BinDir: bin, AuditLog: auditLog}, nil
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var err error
	if suite.dir, err = os.MkdirTemp("", "mtls-guard-arrivals-"); err != nil {
		return err
	}
	if suite.env, err = startControlPlane(suite.dir); err != nil {
		return err
	}
	suite.audit = &auditLog{path: suite.env.AuditLog}
	hc, err := rest.HTTPClientFor(suite.env.Config)
	if err != nil {
		return fmt.Errorf("admin HTTP client: %w", err)
	}
	if suite.mapper, err = apiutil.NewDynamicRESTMapper(suite.env.Config, hc); err != nil {
		return fmt.Errorf("REST mapper: %w", err)
	}
	if suite.admin, err = newClient(suite.env.Config); err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	if suite.adminConfig, err = suite.env.Kubeconfig(suite.dir, "arrivals-admin", "system:masters"); err != nil {
		return err
	}
	if suite.guardConfig, err = suite.env.Kubeconfig(suite.dir, testenv.GuardUser, testenv.GuardGroups...); err != nil {
		return err
	}
	if suite.deploy, err = testenv.InstallRBAC(ctx, suite.admin); err != nil {
		return err
	}
	if names := webhookNames(suite.deploy.Webhook); !slices.Contains(names, arrivalsWebhook) {
		return fmt.Errorf("deploy/'s webhook configuration has webhooks %v, none named %s", names, arrivalsWebhook)
	}
	if err := suite.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rootNamespace}}); err != nil {
		return err
	}
	if suite.guard, err = launchGuard(ctx, nil); err != nil {
		return err
	}
	return register(ctx, suite.admin, suite.guard)
}

func teardown() {
	if suite.guard != nil {
		suite.guard.stop()
	}
	if suite.env != nil {
		if err := suite.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping envtest: %v\n", err)
		}
	}
	if suite.dir != "" {
		os.RemoveAll(suite.dir)
	}
}

func webhookNames(vwc *admissionregistrationv1.ValidatingWebhookConfiguration) []string {
	var out []string
	for _, w := range vwc.Webhooks {
		out = append(out, w.Name)
	}
	return out
}

// register installs deploy/'s webhook configuration, or updates it, with
// every webhook calling g on the path deploy/ gives it (its Service's
// path): only the client configs are rewritten.
func register(ctx context.Context, c client.Client, g *guard) error {
	want := suite.deploy.Webhook.DeepCopy()
	for i := range want.Webhooks {
		w := &want.Webhooks[i]
		if w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil {
			return fmt.Errorf("deploy/'s webhook %s calls no Service path", w.Name)
		}
		u := url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", g.port), Path: *w.ClientConfig.Service.Path}
		s := u.String()
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &s, CABundle: g.bundle.CACert}
	}
	var cur admissionregistrationv1.ValidatingWebhookConfiguration
	err := c.Get(ctx, client.ObjectKeyFromObject(want), &cur)
	if err != nil {
		if err := c.Create(ctx, want); err != nil {
			return fmt.Errorf("registering the webhook configuration: %w", err)
		}
		return nil
	}
	cur.Webhooks = want.Webhooks
	if err := c.Update(ctx, &cur); err != nil {
		return fmt.Errorf("pointing the webhook configuration at another guard: %w", err)
	}
	return nil
}

// use points the webhook configuration at g for the rest of the test, and
// back at the suite's guard when it ends.
func use(t *testing.T, g *guard) {
	t.Helper()
	if err := register(context.Background(), suite.admin, g); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := register(context.Background(), suite.admin, suite.guard); err != nil {
			t.Errorf("pointing the webhook configuration back at the suite's guard: %v", err)
		}
	})
}

// newClient is a client for cfg that records the Audit-Id and the
// warnings of each response in the context given by call.
func newClient(cfg *rest.Config) (client.Client, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(recordAuditIDs)
	cfg.WarningHandlerWithContext = warningRecorder{}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("HTTP client: %w", err)
	}
	return client.New(cfg, client.Options{Scheme: server.Scheme(), Mapper: suite.mapper, HTTPClient: hc})
}

// guard is one in-process `mtls-guard serve`.
type guard struct {
	port, probePort int
	bundle          *certs.Bundle
	cancel          context.CancelFunc
	done            chan struct{} // closed when server.Main returns
	err             error         // what it returned
}

// launchGuard runs server.Main as deploy/'s ServiceAccount with extra
// flags and waits for /readyz; it stops what it started when it fails.
func launchGuard(ctx context.Context, extra []string) (*guard, error) {
	g := &guard{done: make(chan struct{})}
	var err error
	if g.port, err = testenv.FreePort(); err != nil {
		return nil, err
	}
	if g.probePort, err = testenv.FreePort(); err != nil {
		return nil, err
	}
	certDir, err := os.MkdirTemp(suite.dir, "certs-")
	if err != nil {
		return nil, err
	}
	if g.bundle, err = certs.Issue("mtls-guard", guardNamespace, certs.WithIPAddresses(net.IPv4(127, 0, 0, 1))); err != nil {
		return nil, fmt.Errorf("issuing serving certificate: %w", err)
	}
	if err := g.bundle.WriteDir(certDir); err != nil {
		return nil, err
	}
	args := append([]string{
		"--kubeconfig", suite.guardConfig,
		"--host", "127.0.0.1",
		"--port", fmt.Sprint(g.port),
		"--cert-dir", certDir,
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", g.probePort),
		"--root-namespace", rootNamespace,
		"--graceful-shutdown-timeout", "5s",
	}, extra...)
	runCtx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() {
		defer close(g.done)
		g.err = server.Main(runCtx, args, os.Stderr)
	}()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-g.done:
			return false, fmt.Errorf("the guard exited before it was ready: %v", g.err)
		default:
		}
		return testenv.Ready(ctx, g.probePort)
	})
	if err != nil {
		g.stop()
		return nil, fmt.Errorf("waiting for the guard's /readyz: %w", err)
	}
	return g, nil
}

// startGuard is launchGuard for a test: the guard stops when the test ends.
func startGuard(t *testing.T, extra ...string) *guard {
	t.Helper()
	g, err := launchGuard(context.Background(), extra)
	if err != nil {
		t.Fatalf("starting a guard: %v", err)
	}
	t.Cleanup(g.stop)
	return g
}

// stop ends the guard, if it still runs, and waits for it: its port is
// closed when stop returns.
func (g *guard) stop() {
	g.cancel()
	<-g.done
}

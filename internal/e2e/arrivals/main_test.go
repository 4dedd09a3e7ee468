// Package arrivals proves rule 3b end to end: pods and workloads that
// arrive unmeshed where STRICT already holds are warned (or denied) by the
// arrivals webhook, through a real kube-apiserver and etcd, the real
// kubectl, deploy/'s webhook configuration and RBAC, and the guard's
// `serve` code path running as deploy/'s ServiceAccount.
package arrivals

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/internal/testenv/audit"
	"github.com/mtls-guard/mtls-guard/internal/testenv/guardproc"
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
	admin       client.Client  // records Audit-Ids and warnings, see call
	clients     *audit.Clients // makes the clients, see newClient
	adminConfig string         // kubeconfig of a cluster admin, for kubectl
	guardConfig string         // kubeconfig of deploy/'s ServiceAccount
	deploy      *testenv.Deploy
	audit       *audit.Log
	guard       *guard // the warn guard most tests use
	dir         string
}

func TestMain(m *testing.M) {
	os.Exit(guardproc.Main(m, "arrivals e2e", guardNamespace, setup, teardown))
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var err error
	if suite.dir, err = os.MkdirTemp("", "mtls-guard-arrivals-"); err != nil {
		return err
	}
	// The audit log records pods and workloads too, the kinds the
	// arrivals webhook judges, with the guard's audit annotations.
	suite.env, err = testenv.Start(
		testenv.WithAuditResources("", "pods"),
		testenv.WithAuditResources("apps", "deployments", "statefulsets", "daemonsets", "replicasets"),
		testenv.WithAuditResources("batch", "jobs", "cronjobs"))
	if err != nil {
		return err
	}
	suite.audit = audit.NewLog(suite.env.AuditLog)
	if suite.clients, err = audit.NewClients(suite.env.Config, server.Scheme()); err != nil {
		return err
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
		u := url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", g.Port), Path: *w.ClientConfig.Service.Path}
		s := u.String()
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &s, CABundle: g.Bundle.CACert}
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

// newClient is a client for cfg whose calls record their Audit-Ids.
func newClient(cfg *rest.Config) (client.Client, error) { return suite.clients.New(cfg) }

// guard is one in-process `mtls-guard serve`.
type guard struct{ *guardproc.Guard }

// stop ends the guard, if it still runs, and waits for it: its port is
// closed when stop returns.
func (g *guard) stop() { g.Stop() }

// launchGuard runs a guard as deploy/'s ServiceAccount with extra flags
// and waits for /readyz; it stops what it started when it fails.
func launchGuard(ctx context.Context, extra []string) (*guard, error) {
	g, err := guardproc.Launch(ctx, guardproc.Options{
		Kubeconfig: suite.guardConfig, Dir: suite.dir,
		Namespace: guardNamespace, RootNamespace: rootNamespace, Args: extra,
	})
	if err != nil {
		return nil, err
	}
	return &guard{g}, nil
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

// Package arrivals proves rule 3b end to end: pods and workloads that
// arrive unmeshed where STRICT already holds are warned (or denied) by the
// arrivals webhook, through a real kube-apiserver and etcd, the real
// kubectl, deploy/'s webhook configuration and RBAC, and the guard's
// `serve` code path running as deploy/'s ServiceAccount.
package arrivals

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/internal/testenv/guardproc"
)

// arrivalsWebhook is the name deploy/ gives the arrivals webhook; the API
// server prefixes the guard's audit annotations with it.
const arrivalsWebhook = "arrivals.mtls-guard.io"

// suite is the shared control plane and the guard the webhook
// configuration points at.
var suite struct {
	*guardproc.Cluster
	guard *guard // the warn guard most tests use
}

func TestMain(m *testing.M) {
	os.Exit(guardproc.Main(m, "arrivals e2e", setup, teardown))
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The audit log records pods and workloads too, the kinds the
	// arrivals webhook judges, with the guard's audit annotations.
	var err error
	suite.Cluster, err = guardproc.StartCluster(ctx, "arrivals",
		testenv.WithAuditResources("", "pods"),
		testenv.WithAuditResources("apps", "deployments", "statefulsets", "daemonsets", "replicasets"),
		testenv.WithAuditResources("batch", "jobs", "cronjobs"))
	if err != nil {
		return err
	}
	if names := webhookNames(suite.Deploy.Webhook); !slices.Contains(names, arrivalsWebhook) {
		return fmt.Errorf("deploy/'s webhook configuration has webhooks %v, none named %s", names, arrivalsWebhook)
	}
	if err := suite.Admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testenv.RootNamespace}}); err != nil {
		return err
	}
	if suite.guard, err = guardproc.Launch(ctx, suite.GuardOptions()); err != nil {
		return err
	}
	return register(ctx, suite.Admin, suite.guard)
}

func teardown() {
	if suite.guard != nil {
		suite.guard.Stop()
	}
	suite.Cluster.Stop()
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
	want := suite.Deploy.Webhook.DeepCopy()
	for i := range want.Webhooks {
		w := &want.Webhooks[i]
		if w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil {
			return fmt.Errorf("deploy/'s webhook %s calls no Service path", w.Name)
		}
		s := g.URL(*w.ClientConfig.Service.Path)
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
	if err := register(context.Background(), suite.Admin, g); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := register(context.Background(), suite.Admin, suite.guard); err != nil {
			t.Errorf("pointing the webhook configuration back at the suite's guard: %v", err)
		}
	})
}

// guard is one in-process `mtls-guard serve`.
type guard = guardproc.Guard

// startGuard runs a guard as deploy/'s ServiceAccount with extra flags,
// waits for /readyz, and stops it when the test ends.
func startGuard(t *testing.T, extra ...string) *guard {
	t.Helper()
	return guardproc.LaunchTest(t, suite.GuardOptions(extra...))
}

package guardproc

import (
	"context"
	"fmt"
	"os"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/server"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/internal/testenv/audit"
)

// Cluster is the control plane of an end-to-end suite as its tests use
// it: deploy/'s RBAC installed, a cluster admin, and clients that record
// the API server's answers (audit.Call) for the audit log.
type Cluster struct {
	Env *testenv.Env
	// Audit reads the API server's audit log; nil without one.
	Audit *audit.Log
	// Admin is a cluster admin's client that records its calls.
	Admin client.Client
	// AdminConfig is a cluster admin's kubeconfig, for kubectl;
	// GuardConfig is deploy/'s ServiceAccount's, for the guards.
	AdminConfig, GuardConfig string
	// Deploy is what deploy/ holds; its webhook configuration is not
	// registered yet.
	Deploy *testenv.Deploy
	// Dir is the suite's own temporary directory; Stop removes it.
	Dir     string
	clients *audit.Clients
}

// StartCluster starts the control plane of the suite name with opts and
// installs deploy/'s RBAC within ctx. It stops what it started when it
// fails.
func StartCluster(ctx context.Context, name string, opts ...testenv.Option) (*Cluster, error) {
	c := &Cluster{}
	if err := c.start(ctx, name, opts); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, name string, opts []testenv.Option) error {
	var err error
	if c.Dir, err = os.MkdirTemp("", "mtls-guard-"+name+"-"); err != nil {
		return err
	}
	if c.Env, err = testenv.Start(opts...); err != nil {
		return err
	}
	if c.Env.AuditLog != "" {
		c.Audit = audit.NewLog(c.Env.AuditLog)
	}
	if c.clients, err = audit.NewClients(c.Env.Config, server.Scheme()); err != nil {
		return err
	}
	if c.Admin, err = c.Client(c.Env.Config); err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	if c.AdminConfig, err = c.Env.Kubeconfig(c.Dir, name+"-admin", "system:masters"); err != nil {
		return err
	}
	if c.GuardConfig, err = c.Env.Kubeconfig(c.Dir, testenv.GuardUser, testenv.GuardGroups...); err != nil {
		return err
	}
	c.Deploy, err = testenv.InstallRBAC(ctx, c.Admin)
	return err
}

// Stop stops the control plane and removes Dir. It may be called on a nil
// Cluster, for a suite whose setup failed before it.
func (c *Cluster) Stop() {
	if c == nil {
		return
	}
	if c.Env != nil {
		if err := c.Env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping envtest: %v\n", err)
		}
	}
	if c.Dir != "" {
		os.RemoveAll(c.Dir)
	}
}

// Client is a client for cfg whose calls record their Audit-Ids and
// warnings.
func (c *Cluster) Client(cfg *rest.Config) (client.Client, error) { return c.clients.New(cfg) }

// UserClient is a recording client that impersonates user, with groups,
// through the admin's credentials; it fails the test when it cannot be
// made.
func (c *Cluster) UserClient(t testing.TB, user string, groups ...string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(c.Env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	cl, err := c.Client(cfg)
	if err != nil {
		t.Fatalf("client for %s: %v", user, err)
	}
	return cl
}

// Kubectl runs bin/kubectl as the cluster admin (see testenv.Run).
func (c *Cluster) Kubectl(args ...string) (testenv.Result, error) {
	return testenv.Run(testenv.Kubectl(c.Env.BinDir, c.AdminConfig, args...))
}

// GuardOptions start a guard of the suite's: as deploy/'s ServiceAccount in
// its namespace, with Istio's root namespace, its certificate in Dir, and
// args.
func (c *Cluster) GuardOptions(args ...string) Options {
	return Options{
		Kubeconfig: c.GuardConfig, Dir: c.Dir,
		Namespace: testenv.GuardNamespace, RootNamespace: testenv.RootNamespace, Args: args,
	}
}

// OverrideRole is the name of deploy/'s ClusterRole that grants the verb
// override; it fails the test when deploy/ ships none.
func (c *Cluster) OverrideRole(t testing.TB) string {
	t.Helper()
	const name = "mtls-guard-override"
	for _, o := range c.Deploy.RBAC {
		if r, ok := o.(*rbacv1.ClusterRole); ok && r.Name == name {
			return name
		}
	}
	t.Fatalf("deploy/ ships no ClusterRole %s", name)
	return ""
}

// Package testenv starts a real etcd and kube-apiserver for the end-to-end
// tests, the controller-runtime envtest way, from binaries that
// `make testbin` builds out of the Go module proxy into bin/.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Binaries are the control-plane commands the tests need in bin/.
var Binaries = []string{"etcd", "kube-apiserver", "kubectl"}

// Root returns the repository root: the nearest directory above the
// working directory whose go.mod declares the guard's module.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the working directory: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/mtls-guard/mtls-guard\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of github.com/mtls-guard/mtls-guard above the working directory")
		}
		dir = parent
	}
}

// BinDir returns the directory with the control-plane binaries, or an
// error that says how to build them.
func BinDir() (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "bin")
	var missing []string
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("control-plane binaries %s missing from %s: run `make testbin` (builds them from the Go module proxy, about 7 minutes on 2 cores)",
			strings.Join(missing, ", "), dir)
	}
	return dir, nil
}

// IstioCRDs returns the path of the Istio CRDs shipped in the istio.io/api
// module, read from the module cache rather than copied.
func IstioCRDs() (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("locating istio.io/api in the module cache: %w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("locating istio.io/api in the module cache: %w", err)
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "customresourcedefinitions.gen.yaml")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("istio CRDs: %w (run `go mod download istio.io/api`)", err)
	}
	return path, nil
}

// Env is a running control plane with Istio's CRDs installed.
type Env struct {
	*envtest.Environment
	Config *rest.Config
	BinDir string
	// AuditLog is the API server's audit log (JSON lines): PeerAuthentication
	// requests at Metadata level, which carries the webhook's audit
	// annotations.
	AuditLog string
	dir      string
}

// auditPolicy records PeerAuthentication requests, and every request of
// the guard's ServiceAccount so that tests can see which permissions it
// uses.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["` + GuardUser + `"]
- level: Metadata
  resources:
  - group: security.istio.io
    resources: [peerauthentications]
- level: None
`

// Start starts etcd and kube-apiserver and installs Istio's CRDs.
func Start() (*Env, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	crds, err := IstioCRDs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mtls-guard-envtest-")
	if err != nil {
		return nil, err
	}
	policyFile := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policyFile, []byte(auditPolicy), 0o600); err != nil {
		return nil, fmt.Errorf("writing audit policy: %w", err)
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
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting envtest control plane from %s: %w", bin, err)
	}
	return &Env{Environment: te, Config: cfg, BinDir: bin, AuditLog: auditLog, dir: dir}, nil
}

// Stop stops the control plane and removes its files.
func (e *Env) Stop() error {
	err := e.Environment.Stop()
	os.RemoveAll(e.dir)
	return err
}

// Kubeconfig writes a kubeconfig for a user with the given groups into dir
// and returns its path.
func (e *Env) Kubeconfig(dir, name string, groups ...string) (string, error) {
	u, err := e.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return "", fmt.Errorf("adding envtest user %s: %w", name, err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("kubeconfig for %s: %w", name, err)
	}
	path := filepath.Join(dir, strings.NewReplacer(":", "_", "/", "_").Replace(name)+".kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("writing kubeconfig: %w", err)
	}
	return path, nil
}

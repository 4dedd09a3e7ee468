// Package testenv starts a real etcd and kube-apiserver for the end-to-end
// tests, the controller-runtime envtest way, from binaries that
// `make testbin` builds out of the Go module proxy into bin/.
package testenv

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/mtls-guard/mtls-guard/certs"
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
	// requests (and those of WithAuditResources) at Metadata level, which
	// carries the webhooks' audit annotations; empty WithoutAuditLog.
	AuditLog string
	dir      string
}

// auditPolicy records PeerAuthentication requests and those on the
// resources of extra (group: resources) at Metadata level, which carries
// the webhooks' audit annotations, and every request of the guard's
// ServiceAccount so that tests can see which permissions it uses.
func auditPolicy(extra map[string][]string) string {
	var b strings.Builder
	b.WriteString(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["` + GuardUser + `"]
- level: Metadata
  resources:
`)
	for _, g := range slices.Sorted(maps.Keys(extra)) {
		fmt.Fprintf(&b, "  - group: %q\n    resources: [%s]\n", g, strings.Join(extra[g], ", "))
	}
	b.WriteString(`  - group: security.istio.io
    resources: [peerauthentications]
- level: None
`)
	return b.String()
}

// Option configures the control plane that Start starts.
type Option func(*options)

type options struct {
	webhookCert, webhookKey []byte
	auditResources          map[string][]string // API group: resources
	noAuditLog              bool
	restartable             bool
}

// WithoutAuditLog starts the API server without an audit policy or log:
// Env.AuditLog is empty.
func WithoutAuditLog() Option {
	return func(o *options) { o.noAuditLog = true }
}

// WithRestartableAPIServer readies the API server to be stopped and
// started again (Env.ControlPlane.APIServer) under running clients: its
// certificates, and so the users envtest issued, live in the Env's
// directory, where they outlast a restart; and it waits at most 2s for
// open watches (a guard's) to end when it stops, instead of a minute and
// more.
func WithRestartableAPIServer() Option {
	return func(o *options) { o.restartable = true }
}

// WithAuditResources has the API server's audit log record, with the
// webhooks' audit annotations, the requests on these resources of the API
// group too (PeerAuthentications are always recorded). Each call adds.
func WithAuditResources(group string, resources ...string) Option {
	return func(o *options) {
		if o.auditResources == nil {
			o.auditResources = map[string][]string{}
		}
		o.auditResources[group] = append(o.auditResources[group], resources...)
	}
}

// WithWebhookClientCert gives the API server a client certificate that it
// presents to every admission webhook (the kubeConfigFile of a
// WebhookAdmissionConfiguration, user "*"), as an API server configured
// for webhooks that require client certificates is.
func WithWebhookClientCert(certPEM, keyPEM []byte) Option {
	return func(o *options) { o.webhookCert, o.webhookKey = certPEM, keyPEM }
}

// Start starts etcd and kube-apiserver and installs Istio's CRDs.
func Start(opts ...Option) (*Env, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
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
	te := &envtest.Environment{
		BinaryAssetsDirectory:    bin,
		CRDInstallOptions:        envtest.CRDInstallOptions{Paths: []string{crds}, ErrorIfPathMissing: true},
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	auditLog, err := configure(te, dir, o)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg, err := te.Start()
	if err != nil {
		// envtest may have started etcd before the API server failed.
		_ = te.Stop()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting envtest control plane from %s: %w", bin, err)
	}
	return &Env{Environment: te, Config: cfg, BinDir: bin, AuditLog: auditLog, dir: dir}, nil
}

// configure sets up te's API server as o says, with its files in dir, and
// returns the path of its audit log, if any.
func configure(te *envtest.Environment, dir string, o options) (auditLog string, err error) {
	if o.restartable {
		certDir := filepath.Join(dir, "apiserver")
		if err := os.Mkdir(certDir, 0o700); err != nil {
			return "", err
		}
		te.ControlPlane.APIServer = &envtest.APIServer{CertDir: certDir}
	}
	args := te.ControlPlane.GetAPIServer().Configure()
	if o.restartable {
		args.Set("shutdown-watch-termination-grace-period", "2s")
	}
	if !o.noAuditLog {
		policyFile := filepath.Join(dir, "audit-policy.yaml")
		if err := os.WriteFile(policyFile, []byte(auditPolicy(o.auditResources)), 0o600); err != nil {
			return "", fmt.Errorf("writing audit policy: %w", err)
		}
		auditLog = filepath.Join(dir, "audit.log")
		args.Set("audit-policy-file", policyFile).
			Set("audit-log-path", auditLog).
			Set("audit-log-mode", "blocking")
	}
	if o.webhookCert != nil {
		admissionConfig, err := writeAdmissionConfig(dir, o.webhookCert, o.webhookKey)
		if err != nil {
			return "", err
		}
		args.Set("admission-control-config-file", admissionConfig)
	}
	return auditLog, nil
}

// writeAdmissionConfig writes an AdmissionConfiguration whose webhook
// plugins authenticate to every webhook ("*") with the client certificate.
func writeAdmissionConfig(dir string, certPEM, keyPEM []byte) (string, error) {
	kc := clientcmdapi.NewConfig()
	kc.AuthInfos["*"] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	kubeconfig := filepath.Join(dir, "webhook-client.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		return "", fmt.Errorf("writing the webhook client kubeconfig: %w", err)
	}
	var b strings.Builder
	b.WriteString("apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n")
	for _, plugin := range []string{"ValidatingAdmissionWebhook", "MutatingAdmissionWebhook"} {
		fmt.Fprintf(&b, "- name: %s\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: %q\n", plugin, kubeconfig)
	}
	path := filepath.Join(dir, "admission-config.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("writing the admission configuration: %w", err)
	}
	return path, nil
}

// IssueClientCert makes a private CA, the way the certs package makes the
// guard's (cert-manager's pki, the same CA Certificate spec), and signs a
// client certificate for commonName with it.
func IssueClientCert(commonName string) (caPEM, certPEM, keyPEM []byte, err error) {
	ca := certs.CACertificate("mtls-guard-client", "mtls-guard")
	caKey, caTemplate, err := keyAndTemplate(ca, "client CA")
	if err != nil {
		return nil, nil, nil, err
	}
	caPEM, caCert, err := pki.SignCertificate(caTemplate, caTemplate, caKey.Public(), caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("self-signing the client CA: %w", err)
	}
	leaf := &cmapi.Certificate{Spec: cmapi.CertificateSpec{
		CommonName: commonName,
		Usages:     []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageClientAuth},
		Duration:   &metav1.Duration{Duration: 24 * time.Hour},
		PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
	}}
	key, tmpl, err := keyAndTemplate(leaf, "client")
	if err != nil {
		return nil, nil, nil, err
	}
	if certPEM, _, err = pki.SignCertificate(tmpl, caCert, key.Public(), caKey); err != nil {
		return nil, nil, nil, fmt.Errorf("signing the client certificate: %w", err)
	}
	if keyPEM, err = pki.EncodePrivateKey(key, cmapi.PKCS8); err != nil {
		return nil, nil, nil, fmt.Errorf("encoding the client key: %w", err)
	}
	return caPEM, certPEM, keyPEM, nil
}

// keyAndTemplate generates crt's private key and builds its template;
// what names the certificate in errors.
func keyAndTemplate(crt *cmapi.Certificate, what string) (crypto.Signer, *x509.Certificate, error) {
	key, err := pki.GeneratePrivateKeyForCertificate(crt)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the %s key: %w", what, err)
	}
	tmpl, err := pki.CertificateTemplateFromCertificate(crt)
	if err != nil {
		return nil, nil, fmt.Errorf("the %s certificate template: %w", what, err)
	}
	return key, tmpl, nil
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

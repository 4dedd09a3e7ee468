package certs

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/util/pki"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Names of the files WriteDir writes. CertFile and KeyFile are the names
// `mtls-guard serve --cert-dir` reads, and the keys of a kubernetes.io/tls
// Secret.
const (
	CAFile   = "ca.crt"
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// clockSkew backdates NotBefore: certificates issued on an operator's
// machine are checked by an API server whose clock may lag behind.
const clockSkew = 5 * time.Minute

// Bundle is a locally issued serving certificate together with the CA that
// signed it, all PEM encoded.
type Bundle struct {
	// CACert is the self-signed CA certificate, the webhook's caBundle.
	CACert []byte
	// Cert is the serving certificate, signed by CACert.
	Cert []byte
	// Key is the serving certificate's private key.
	Key []byte

	// caCert and caKey sign renewals; never written out.
	caCert *x509.Certificate
	caKey  crypto.Signer
}

// Option adjusts what Issue issues.
type Option func(*options)

type options struct {
	dnsNames []string
	ips      []net.IP
	duration time.Duration
}

// WithDNSNames adds DNS names to the serving certificate, beyond the
// Service's in-cluster names; for example "localhost".
func WithDNSNames(names ...string) Option {
	return func(o *options) { o.dnsNames = append(o.dnsNames, names...) }
}

// WithIPAddresses adds IP address SANs to the serving certificate; for
// example 127.0.0.1 for a webhook served outside the cluster in tests.
func WithIPAddresses(ips ...net.IP) Option {
	return func(o *options) { o.ips = append(o.ips, ips...) }
}

// WithDuration sets the serving certificate's validity instead of
// ServingDuration. It must be positive and no longer than CADuration.
func WithDuration(d time.Duration) Option {
	return func(o *options) { o.duration = d }
}

// Issue creates a private CA as described by CACertificate and signs a
// serving certificate as described by ServingCertificate with it, using
// cert-manager's pki package as cert-manager's self-signed and CA issuers
// do.
func Issue(service, namespace string, opts ...Option) (*Bundle, error) {
	o, err := parseOptions(service, namespace, opts)
	if err != nil {
		return nil, err
	}
	caKey, caTemplate, err := keyAndTemplate(CACertificate(service, namespace), "CA")
	if err != nil {
		return nil, err
	}
	caPEM, caCert, err := pki.SignCertificate(caTemplate, caTemplate, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("self-signing CA certificate: %w", err)
	}
	return issueLeaf(service, namespace, o, caPEM, caCert, caKey)
}

// Renew signs a new serving certificate and key with the bundle's CA, as
// cert-manager's CA issuer does on renewal: the caBundle stays valid.
func (b *Bundle) Renew(service, namespace string, opts ...Option) (*Bundle, error) {
	if b.caKey == nil {
		return nil, errors.New("bundle has no CA key: only bundles from Issue can be renewed")
	}
	o, err := parseOptions(service, namespace, opts)
	if err != nil {
		return nil, err
	}
	return issueLeaf(service, namespace, o, b.CACert, b.caCert, b.caKey)
}

func parseOptions(service, namespace string, opts []Option) (options, error) {
	var o options
	if err := validateNames(service, namespace); err != nil {
		return o, err
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.duration < 0 || o.duration > CADuration {
		return o, fmt.Errorf("serving certificate duration %v is outside (0, %v]", o.duration, CADuration)
	}
	return o, nil
}

func issueLeaf(service, namespace string, o options, caPEM []byte, caCert *x509.Certificate, caKey crypto.Signer) (*Bundle, error) {
	leaf := ServingCertificate(service, namespace)
	for _, name := range o.dnsNames {
		if name == "" {
			return nil, errors.New("empty DNS name")
		}
		leaf.Spec.DNSNames = append(leaf.Spec.DNSNames, name)
	}
	for _, ip := range o.ips {
		if ip == nil {
			return nil, errors.New("nil IP address")
		}
	}
	leaf.Spec.IPAddresses = pki.IPAddressesToString(o.ips)
	if o.duration > 0 {
		leaf.Spec.Duration = &metav1.Duration{Duration: o.duration}
	}
	leafKey, leafTemplate, err := keyAndTemplate(leaf, "serving")
	if err != nil {
		return nil, err
	}
	certPEM, _, err := pki.SignCertificate(leafTemplate, caCert, leafKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("signing serving certificate: %w", err)
	}
	keyPEM, err := pki.EncodePrivateKey(leafKey, leaf.Spec.PrivateKey.Encoding)
	if err != nil {
		return nil, fmt.Errorf("encoding serving key: %w", err)
	}
	return &Bundle{CACert: caPEM, Cert: certPEM, Key: keyPEM, caCert: caCert, caKey: caKey}, nil
}

// keyAndTemplate generates crt's private key and builds its template with
// pki.CertificateTemplateFromCertificate, NotBefore moved back by
// clockSkew. what names the certificate in errors.
func keyAndTemplate(crt *cmapi.Certificate, what string) (crypto.Signer, *x509.Certificate, error) {
	key, err := pki.GeneratePrivateKeyForCertificate(crt)
	if err != nil {
		return nil, nil, fmt.Errorf("generating %s key: %w", what, err)
	}
	t, err := pki.CertificateTemplateFromCertificate(crt)
	if err != nil {
		return nil, nil, fmt.Errorf("building %s certificate template: %w", what, err)
	}
	t.NotBefore = t.NotBefore.Add(-clockSkew)
	return key, t, nil
}

// CABundle returns the CA certificate base64 encoded, as the caBundle field
// of a webhook's clientConfig takes it in JSON and YAML.
func (b *Bundle) CABundle() string {
	return base64.StdEncoding.EncodeToString(b.CACert)
}

// WriteDir writes the bundle to dir as CAFile, CertFile and KeyFile,
// creating dir if needed. The key is written with mode 0600.
//
// Each file is replaced atomically (written to a temporary file in dir,
// then renamed), so a certificate watcher never reads a partly written
// file. The certificate is renamed into place last: a watcher that reloads
// on the key's rename sees a mismatched pair and keeps the old one until
// the certificate follows.
func (b *Bundle) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating certificate directory: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{CAFile, b.CACert, 0o644},
		{KeyFile, b.Key, 0o600},
		{CertFile, b.Cert, 0o644},
	} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp creates the file with mode 0600; set the final mode before
	// any data is in it.
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

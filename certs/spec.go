// Package certs describes mtls-guard's webhook serving certificate as
// cert-manager Certificates and issues it locally, for clusters without
// cert-manager and for tests.
//
// The Certificates returned here are the same ones deploy/cert-manager
// asks cert-manager for (a test in internal/manifests compares them), and
// Issue turns them into keys and certificates with cert-manager's own pki
// package, so both paths produce equivalent certificates.
package certs

import (
	"fmt"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Validity periods of the certificates; deploy/cert-manager uses the same.
const (
	// CADuration is how long the private CA is valid.
	CADuration = 5 * 365 * 24 * time.Hour
	// CARenewBefore is how long before expiry cert-manager renews the CA.
	CARenewBefore = 365 * 24 * time.Hour
	// ServingDuration is how long a serving certificate is valid.
	ServingDuration = 90 * 24 * time.Hour
	// ServingRenewBefore is how long before expiry cert-manager renews the
	// serving certificate.
	ServingRenewBefore = 30 * 24 * time.Hour
)

// ServingCertificate returns the cert-manager Certificate for the webhook
// serving certificate of the Service service in namespace: an ECDSA P-256
// key rotated on every renewal, for the Service's in-cluster DNS names,
// signed by the Issuer named service+"-ca" and stored in the Secret named
// service+"-serving-cert".
func ServingCertificate(service, namespace string) *cmapi.Certificate {
	return certificate(service+"-serving", namespace, service+"-ca", cmapi.CertificateSpec{
		SecretName: service + "-serving-cert",
		DNSNames: []string{
			// The API server dials <service>.<namespace>.svc.
			fmt.Sprintf("%s.%s.svc", service, namespace),
			fmt.Sprintf("%s.%s.svc.cluster.local", service, namespace),
		},
		// No key encipherment: that usage is for RSA key transport,
		// which an ECDSA key cannot do.
		Usages:      []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageServerAuth},
		Duration:    &metav1.Duration{Duration: ServingDuration},
		RenewBefore: &metav1.Duration{Duration: ServingRenewBefore},
	})
}

// CACertificate returns the cert-manager Certificate for the private CA
// that signs the serving certificate of the Service service in namespace.
// It is self-signed by the Issuer named service+"-selfsigned" and stored in
// the Secret named service+"-ca".
func CACertificate(service, namespace string) *cmapi.Certificate {
	return certificate(service+"-ca", namespace, service+"-selfsigned", cmapi.CertificateSpec{
		IsCA:        true,
		CommonName:  service + "-ca",
		SecretName:  service + "-ca",
		Duration:    &metav1.Duration{Duration: CADuration},
		RenewBefore: &metav1.Duration{Duration: CARenewBefore},
	})
}

// certificate returns the Certificate name in namespace with spec and what
// both certificates share: an ECDSA P-256 key rotated on every renewal,
// one old CertificateRequest kept, and the Issuer issuer in namespace.
func certificate(name, namespace, issuer string, spec cmapi.CertificateSpec) *cmapi.Certificate {
	spec.RevisionHistoryLimit = ptr(int32(1))
	spec.PrivateKey = &cmapi.CertificatePrivateKey{
		Algorithm:      cmapi.ECDSAKeyAlgorithm,
		Size:           256,
		RotationPolicy: cmapi.RotationPolicyAlways,
	}
	spec.IssuerRef = cmmeta.IssuerReference{Group: "cert-manager.io", Kind: cmapi.IssuerKind, Name: issuer}
	return &cmapi.Certificate{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: cmapi.CertificateKind},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       spec,
	}
}

// validateNames reports whether service and namespace can form the
// in-cluster DNS names of a Service.
func validateNames(service, namespace string) error {
	if errs := validation.IsDNS1035Label(service); len(errs) > 0 {
		return fmt.Errorf("invalid service name %q: %v", service, errs)
	}
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return fmt.Errorf("invalid namespace %q: %v", namespace, errs)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

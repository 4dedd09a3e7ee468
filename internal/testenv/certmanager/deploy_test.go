package certmanager_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/mtls-guard/mtls-guard/internal/manifests"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/internal/testenv/certmanager"
)

// The annotation cert-manager's cainjector reads.
const injectCAFrom = "cert-manager.io/inject-ca-from"

// cluster is a control plane with cert-manager's CRDs, controllers and
// cainjector running.
type cluster struct {
	env    *testenv.Env
	client client.Client
}

// startCluster starts etcd and kube-apiserver from bin/ (failing, not
// skipping, without them), installs cert-manager's CRDs from the module
// cache and runs cert-manager in-process as a cluster admin.
func startCluster(ctx context.Context, t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("end to end: skipped under -short")
	}
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err) // says to run `make testbin` when bin/ lacks the binaries
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	crds, err := certmanager.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: []string{crds}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("installing cert-manager's CRDs from %s: %v", crds, err)
	}
	kubeconfig, err := env.Kubeconfig(t.TempDir(), "cert-manager", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	cm, err := certmanager.Start(ctx, kubeconfig, testLog.WithName("cert-manager"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cm.Stop(); err != nil {
			t.Errorf("cert-manager: %v", err)
		}
	})
	c, err := client.New(env.Config, client.Options{Scheme: manifests.NewScheme()})
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	return &cluster{env: env, client: c}
}

// install creates objs in their order, as `kubectl apply` of a rendered
// kustomization or chart would.
func (c *cluster) install(ctx context.Context, t *testing.T, objs []client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.client.Create(ctx, o.DeepCopyObject().(client.Object)); err != nil {
			t.Fatalf("creating %T %s/%s: %v", o, o.GetNamespace(), o.GetName(), err)
		}
	}
}

// wiring is what the rendered objects say cert-manager must produce: the
// webhook configuration, the Service it calls, the serving Certificate
// named by its inject-ca-from annotation, and the CA Certificate behind
// the serving Certificate's CA Issuer.
type wiring struct {
	webhook  *admissionregistrationv1.ValidatingWebhookConfiguration
	service  types.NamespacedName
	serving  *cmapi.Certificate
	caIssuer *cmapi.Issuer
	ca       *cmapi.Certificate
}

// dnsNames are the names the API server uses for the Service.
func (w *wiring) dnsNames() []string {
	svc := fmt.Sprintf("%s.%s.svc", w.service.Name, w.service.Namespace)
	return []string{svc, svc + ".cluster.local"}
}

func findWiring(t *testing.T, objs []client.Object) *wiring {
	t.Helper()
	var w wiring
	var err error
	if w.webhook, err = manifests.One[*admissionregistrationv1.ValidatingWebhookConfiguration](objs); err != nil {
		t.Fatal(err)
	}
	if len(w.webhook.Webhooks) == 0 {
		t.Fatal("the webhook configuration has no webhooks")
	}
	for i, wh := range w.webhook.Webhooks {
		ref := wh.ClientConfig.Service
		if ref == nil {
			t.Fatalf("webhook %s calls no Service", wh.Name)
		}
		svc := types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}
		if i > 0 && svc != w.service {
			t.Fatalf("webhooks call different Services, %s and %s", w.service, svc)
		}
		w.service = svc
	}
	if _, err := manifests.Named[*corev1.Service](objs, w.service.Namespace, w.service.Name); err != nil {
		t.Fatalf("the webhook's Service is not rendered: %v", err)
	}
	from := w.webhook.Annotations[injectCAFrom]
	ns, name, ok := splitKey(from)
	if !ok {
		t.Fatalf("the webhook configuration's %s annotation is %q, want namespace/name", injectCAFrom, from)
	}
	if w.serving, err = manifests.Named[*cmapi.Certificate](objs, ns, name); err != nil {
		t.Fatalf("%s names no rendered Certificate: %v", injectCAFrom, err)
	}
	ref := w.serving.Spec.IssuerRef
	if ref.Kind != cmapi.IssuerKind {
		t.Fatalf("serving Certificate's issuer is a %s, want an Issuer", ref.Kind)
	}
	if w.caIssuer, err = manifests.Named[*cmapi.Issuer](objs, ns, ref.Name); err != nil {
		t.Fatal(err)
	}
	if w.caIssuer.Spec.CA == nil {
		t.Fatalf("Issuer %s is not a CA issuer", ref.Name)
	}
	for _, crt := range manifests.All[*cmapi.Certificate](objs) {
		if crt.Namespace == ns && crt.Spec.SecretName == w.caIssuer.Spec.CA.SecretName {
			w.ca = crt
		}
	}
	if w.ca == nil {
		t.Fatalf("no rendered Certificate issues the CA Secret %s/%s", ns, w.caIssuer.Spec.CA.SecretName)
	}
	return &w
}

func splitKey(s string) (ns, name string, ok bool) {
	ns, name, ok = strings.Cut(s, "/")
	return ns, name, ok && ns != "" && name != ""
}

// ready waits until the Certificate is Ready for its current generation
// and at least at revision minRevision, and returns it.
func (c *cluster) ready(ctx context.Context, t *testing.T, ref *cmapi.Certificate, minRevision int) *cmapi.Certificate {
	t.Helper()
	crt := &cmapi.Certificate{}
	poll(ctx, t, 2*time.Minute, fmt.Sprintf("Certificate %s/%s Ready at revision %d", ref.Namespace, ref.Name, minRevision), func(ctx context.Context) (bool, error) {
		if err := c.client.Get(ctx, client.ObjectKeyFromObject(ref), crt); err != nil {
			return false, err
		}
		return apiutil.CertificateHasConditionWithObservedGeneration(crt, cmapi.CertificateCondition{
			Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue, ObservedGeneration: crt.Generation,
		}) && crt.Status.Revision != nil && *crt.Status.Revision >= minRevision, nil
	})
	return crt
}

func (c *cluster) secret(ctx context.Context, t *testing.T, namespace, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := c.client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s); err != nil {
		t.Fatalf("getting Secret %s/%s: %v", namespace, name, err)
	}
	return s
}

// TestDeployWithCertManager installs deploy/ (the kustomize base with the
// cert-manager component) into a real API server with cert-manager's own
// controllers and cainjector running, then proves the serving certificate,
// the injected caBundle, the guard's TLS with them, and a renewal picked
// up without a restart.
func TestDeployWithCertManager(t *testing.T) {
	ctx := t.Context()
	c := startCluster(ctx, t)
	root, err := testenv.Root()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifests.Render(filepath.Join(root, "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	c.install(ctx, t, objs)
	c.prove(ctx, t, findWiring(t, objs))
}

// prove runs the checks of issue 14, item 5, in order: each needs the
// one before.
func (c *cluster) prove(ctx context.Context, t *testing.T, w *wiring) {
	var ca *x509.Certificate
	var serving *corev1.Secret
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"issued", func(t *testing.T) { ca, serving = c.proveIssued(ctx, t, w) }},
		{"caBundle injected", func(t *testing.T) { c.proveInjected(ctx, t, w, ca) }},
		{"guard serves it, renewal without restart", func(t *testing.T) { c.proveServedAndRenewed(ctx, t, w, serving) }},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			t.FailNow()
		}
	}
}

// proveIssued: the CA chain and the serving Secret are issued, the leaf
// carries the Service's DNS names and chains to the CA. It returns the CA
// and the serving Secret.
func (c *cluster) proveIssued(ctx context.Context, t *testing.T, w *wiring) (*x509.Certificate, *corev1.Secret) {
	c.ready(ctx, t, w.ca, 1)
	c.ready(ctx, t, w.serving, 1)

	issuer := &cmapi.Issuer{}
	if err := c.client.Get(ctx, client.ObjectKeyFromObject(w.caIssuer), issuer); err != nil {
		t.Fatal(err)
	}
	if !apiutil.IssuerHasCondition(issuer, cmapi.IssuerCondition{Type: cmapi.IssuerConditionReady, Status: cmmeta.ConditionTrue}) {
		t.Errorf("CA Issuer %s is not Ready: %+v", issuer.Name, issuer.Status.Conditions)
	}

	caSecret := c.secret(ctx, t, w.ca.Namespace, w.ca.Spec.SecretName)
	cas := mustCerts(t, "CA Secret tls.crt", caSecret.Data[corev1.TLSCertKey])
	ca := cas[0]
	if !ca.IsCA || !ca.BasicConstraintsValid {
		t.Errorf("CA certificate %s: IsCA=%v, want a CA", ca.Subject, ca.IsCA)
	}
	if ca.Subject.CommonName != w.ca.Spec.CommonName {
		t.Errorf("CA common name %q, want %q", ca.Subject.CommonName, w.ca.Spec.CommonName)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("the CA is not self-signed by the SelfSigned issuer: %v", err)
	}

	serving := c.secret(ctx, t, w.serving.Namespace, w.serving.Spec.SecretName)
	if serving.Type != corev1.SecretTypeTLS {
		t.Errorf("serving Secret type %q, want %q", serving.Type, corev1.SecretTypeTLS)
	}
	if _, err := tls.X509KeyPair(serving.Data[corev1.TLSCertKey], serving.Data[corev1.TLSPrivateKeyKey]); err != nil {
		t.Errorf("serving Secret's tls.crt and tls.key do not pair: %v", err)
	}
	leaf := mustCerts(t, "serving tls.crt", serving.Data[corev1.TLSCertKey])[0]
	if leaf.IsCA {
		t.Error("the serving certificate is a CA")
	}
	for _, name := range w.dnsNames() {
		if !slices.Contains(leaf.DNSNames, name) {
			t.Errorf("serving certificate DNS names %v lack the Service's %s", leaf.DNSNames, name)
		}
	}
	secretCA := mustCerts(t, "serving Secret ca.crt", serving.Data["ca.crt"])
	if len(secretCA) != 1 || !secretCA[0].Equal(ca) {
		t.Errorf("serving Secret's ca.crt is not the CA Secret's certificate")
	}
	verifyLeaf(t, leaf, ca, w.dnsNames())
	t.Logf("CA %s (serial %s), serving certificate serial %s for %v", ca.Subject, ca.SerialNumber, leaf.SerialNumber, leaf.DNSNames)
	return ca, serving
}

// verifyLeaf checks that leaf chains to ca for every name as a server
// certificate.
func verifyLeaf(t *testing.T, leaf, ca *x509.Certificate, names []string) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, name := range names {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("serving certificate does not verify against the CA for %s: %v", name, err)
		}
	}
}

// caBundle returns the webhook configuration's caBundle once every webhook
// has one.
func (c *cluster) caBundle(ctx context.Context, t *testing.T, w *wiring) []byte {
	t.Helper()
	var bundle []byte
	poll(ctx, t, 2*time.Minute, "the cainjector to fill in every webhook's caBundle", func(ctx context.Context) (bool, error) {
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := c.client.Get(ctx, client.ObjectKeyFromObject(w.webhook), vwc); err != nil {
			return false, err
		}
		bundle = nil
		for _, wh := range vwc.Webhooks {
			if len(wh.ClientConfig.CABundle) == 0 {
				return false, nil
			}
			if bundle != nil && string(bundle) != string(wh.ClientConfig.CABundle) {
				return false, fmt.Errorf("webhooks carry different caBundles")
			}
			bundle = wh.ClientConfig.CABundle
		}
		return true, nil
	})
	return bundle
}

// proveInjected: cainjector writes exactly the CA into the caBundle.
func (c *cluster) proveInjected(ctx context.Context, t *testing.T, w *wiring, ca *x509.Certificate) {
	bundle := mustCerts(t, "caBundle", c.caBundle(ctx, t, w))
	if len(bundle) != 1 || !bundle[0].Equal(ca) {
		subjects := make([]string, len(bundle))
		for i, b := range bundle {
			subjects[i] = b.Subject.String()
		}
		t.Fatalf("caBundle holds %v, want exactly the CA %s", subjects, ca.Subject)
	}
}

// proveServedAndRenewed runs the guard's binary on the serving Secret's
// files, laid out as kubelet mounts a Secret, and dials it as the API
// server would: verified against the injected caBundle, with the Service's
// DNS name. Then it renews the serving Certificate as `cmctl renew` does,
// updates the mounted files, and waits for the running guard to present
// the new certificate.
func (c *cluster) proveServedAndRenewed(ctx context.Context, t *testing.T, w *wiring, serving *corev1.Secret) {
	files := func(s *corev1.Secret) map[string][]byte {
		return map[string][]byte{
			corev1.TLSCertKey:       s.Data[corev1.TLSCertKey],
			corev1.TLSPrivateKeyKey: s.Data[corev1.TLSPrivateKeyKey],
			"ca.crt":                s.Data["ca.crt"],
		}
	}
	vol := newSecretVolume(t, files(serving))
	kubeconfig, err := c.env.Kubeconfig(t.TempDir(), testenv.GuardUser, testenv.GuardGroups...)
	if err != nil {
		t.Fatal(err)
	}
	guard := startGuard(ctx, t, kubeconfig, vol.dir)

	bundle := c.caBundle(ctx, t, w)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatal("the caBundle has no certificate")
	}
	oldLeaf := mustCerts(t, "serving tls.crt", serving.Data[corev1.TLSCertKey])[0]
	for _, name := range w.dnsNames() {
		got, err := handshake(ctx, guard.addr, roots, name)
		if err != nil {
			t.Fatalf("TLS handshake with the guard as %s, verified against the caBundle: %v", name, err)
		}
		if got.SerialNumber.Cmp(oldLeaf.SerialNumber) != 0 {
			t.Fatalf("the guard presents serial %s, want the serving Secret's %s", got.SerialNumber, oldLeaf.SerialNumber)
		}
	}
	// The verification is real: a name outside the certificate fails.
	other := fmt.Sprintf("%s.other.svc", w.service.Name)
	if _, err := handshake(ctx, guard.addr, roots, other); err == nil {
		t.Fatalf("TLS handshake as %s succeeded; the serving certificate should not cover it", other)
	}

	// Renew: what `cmctl renew` does, Issuing=True on the status.
	crt := c.ready(ctx, t, w.serving, 1)
	oldRevision := *crt.Status.Revision
	apiutil.SetCertificateCondition(crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue,
		"ManuallyTriggered", "Certificate re-issuance manually triggered")
	if err := c.client.Status().Update(ctx, crt); err != nil {
		t.Fatalf("triggering a renewal: %v", err)
	}
	c.ready(ctx, t, w.serving, oldRevision+1)
	var renewed *corev1.Secret
	poll(ctx, t, 2*time.Minute, "the renewed serving Secret", func(ctx context.Context) (bool, error) {
		renewed = &corev1.Secret{}
		if err := c.client.Get(ctx, types.NamespacedName{Namespace: w.serving.Namespace, Name: w.serving.Spec.SecretName}, renewed); err != nil {
			return false, err
		}
		certs, err := parseCerts(renewed.Data[corev1.TLSCertKey])
		if err != nil {
			return false, err
		}
		return certs[0].SerialNumber.Cmp(oldLeaf.SerialNumber) != 0, nil
	})
	newLeaf := mustCerts(t, "renewed tls.crt", renewed.Data[corev1.TLSCertKey])[0]
	if string(renewed.Data[corev1.TLSPrivateKeyKey]) == string(serving.Data[corev1.TLSPrivateKeyKey]) {
		t.Error("the renewal kept the private key; deploy/ asks for rotationPolicy Always")
	}
	// The CA did not change, so the injected caBundle still verifies it.
	if after := c.caBundle(ctx, t, w); string(after) != string(bundle) {
		t.Error("the caBundle changed on a serving certificate renewal")
	}
	ca := mustCerts(t, "caBundle", bundle)[0]
	verifyLeaf(t, newLeaf, ca, w.dnsNames())

	// Kubelet updates the mounted files; the same process must serve the
	// new certificate.
	vol.update(t, files(renewed))
	// A handshake may fail while the files are swapped; the last error is
	// reported if the new certificate never shows.
	var served *big.Int
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if guard.exited() {
			return false, fmt.Errorf("the guard exited: %v", guard.err)
		}
		got, err := handshake(ctx, guard.addr, roots, w.dnsNames()[0])
		if err != nil {
			lastErr = err
			return false, nil
		}
		served = got.SerialNumber
		return served.Cmp(newLeaf.SerialNumber) == 0, nil
	})
	if err != nil {
		t.Fatalf("waiting for the running guard to present the renewed serial %s: %v (it presents %v; last handshake error: %v)", newLeaf.SerialNumber, err, served, lastErr)
	}
	if guard.exited() {
		t.Fatal("the guard restarted")
	}
	t.Logf("renewed: revision %d -> %d, serial %s -> %s, served by the same guard process (pid %d)",
		oldRevision, oldRevision+1, oldLeaf.SerialNumber, newLeaf.SerialNumber, guard.cmd.Process.Pid)

	// The revision manager keeps revisionHistoryLimit CertificateRequests.
	if limit := w.serving.Spec.RevisionHistoryLimit; limit != nil {
		poll(ctx, t, 2*time.Minute, fmt.Sprintf("at most %d CertificateRequests of %s", *limit, w.serving.Name), func(ctx context.Context) (bool, error) {
			var crs cmapi.CertificateRequestList
			if err := c.client.List(ctx, &crs, client.InNamespace(w.serving.Namespace)); err != nil {
				return false, err
			}
			n := 0
			for _, cr := range crs.Items {
				if metav1.IsControlledBy(&cr, crt) {
					n++
				}
			}
			return n <= int(*limit), nil
		})
	}
}

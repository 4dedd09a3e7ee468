package chart

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/lint/support"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/manifests"
)

const (
	injectCA        = "cert-manager.io/inject-ca-from"
	enforcerDisable = "admissions.enforcer/disabled"
	policyWebhook   = "peerauthentications.mtls-guard.io"
	arrivalsWebhook = "arrivals.mtls-guard.io"
)

// defaultArgs are the only arguments the default values pass: flags every
// released guard knows, so the chart also runs an older image.
var defaultArgs = []string{
	"serve", "--cert-dir=/certs", "--port=9443", "--metrics-bind-address=:8443", "--health-probe-bind-address=:8081",
}

func kinds(objs []client.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetObjectKind().GroupVersionKind().Kind+"/"+o.GetNamespace()+"/"+o.GetName())
	}
	slices.Sort(out)
	return out
}

func container(t *testing.T, objs []client.Object) corev1.Container {
	t.Helper()
	d := one[*appsv1.Deployment](t, objs)
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(d.Spec.Template.Spec.Containers))
	}
	return d.Spec.Template.Spec.Containers[0]
}

// webhookOf returns the configuration and its PeerAuthentication webhook,
// which comes first.
func webhookOf(t *testing.T, objs []client.Object) (*admissionregistrationv1.ValidatingWebhookConfiguration, admissionregistrationv1.ValidatingWebhook) {
	t.Helper()
	vwc := one[*admissionregistrationv1.ValidatingWebhookConfiguration](t, objs)
	if len(vwc.Webhooks) == 0 || vwc.Webhooks[0].Name != policyWebhook {
		t.Fatalf("webhooks %v, want %s first", webhookNames(vwc), policyWebhook)
	}
	return vwc, vwc.Webhooks[0]
}

// arrivalsOf returns the arrivals webhook, failing unless it is the second
// and last.
func arrivalsOf(t *testing.T, objs []client.Object) admissionregistrationv1.ValidatingWebhook {
	t.Helper()
	vwc, _ := webhookOf(t, objs)
	if names := webhookNames(vwc); !slices.Equal(names, []string{policyWebhook, arrivalsWebhook}) {
		t.Fatalf("webhooks %v, want %s and %s", names, policyWebhook, arrivalsWebhook)
	}
	return vwc.Webhooks[1]
}

func webhookNames(vwc *admissionregistrationv1.ValidatingWebhookConfiguration) []string {
	var out []string
	for _, w := range vwc.Webhooks {
		out = append(out, w.Name)
	}
	return out
}

// TestRenderDefaults: the default values install the guard with
// cert-manager, a versioned image, the least-privilege RBAC and a webhook
// that AKS's admissions enforcer leaves alone.
func TestRenderDefaults(t *testing.T) {
	c := load(t)
	objs := render(t, c, "")
	want := []string{
		"Certificate/mtls-guard/mtls-guard-ca",
		"Certificate/mtls-guard/mtls-guard-serving",
		"ClusterRole//mtls-guard",
		"ClusterRole//mtls-guard-events",
		"ClusterRole//mtls-guard-metrics-reader",
		"ClusterRole//mtls-guard-override",
		"ClusterRole//mtls-guard-webhook-config",
		"ClusterRoleBinding//mtls-guard",
		"ClusterRoleBinding//mtls-guard-events",
		"ClusterRoleBinding//mtls-guard-webhook-config",
		"Deployment/mtls-guard/mtls-guard",
		"Issuer/mtls-guard/mtls-guard-ca",
		"Issuer/mtls-guard/mtls-guard-selfsigned",
		"NetworkPolicy/mtls-guard/mtls-guard",
		"PodDisruptionBudget/mtls-guard/mtls-guard",
		"Service/mtls-guard/mtls-guard",
		"ServiceAccount/mtls-guard/mtls-guard",
		"ValidatingWebhookConfiguration//mtls-guard",
	}
	if got := kinds(objs); !slices.Equal(got, want) {
		t.Errorf("objects:\n got %v\nwant %v", got, want)
	}

	ctr := container(t, objs)
	if want := "ghcr.io/mtls-guard/mtls-guard:v" + c.Metadata.AppVersion; ctr.Image != want {
		t.Errorf("image = %q, want %q", ctr.Image, want)
	}
	if !slices.Equal(ctr.Args, defaultArgs) {
		t.Errorf("args = %q, want %q", ctr.Args, defaultArgs)
	}

	vwc, wh := webhookOf(t, objs)
	if got := vwc.Annotations[enforcerDisable]; got != "true" {
		t.Errorf("%s = %q, want \"true\"", enforcerDisable, got)
	}
	if got := vwc.Annotations[injectCA]; got != "mtls-guard/mtls-guard-serving" {
		t.Errorf("%s = %q", injectCA, got)
	}
	if len(wh.ClientConfig.CABundle) != 0 || wh.ClientConfig.URL != nil || wh.ClientConfig.Service == nil {
		t.Errorf("clientConfig = %+v, want the Service and no caBundle (cert-manager injects it)", wh.ClientConfig)
	}
	if *wh.FailurePolicy != admissionregistrationv1.Fail || *wh.TimeoutSeconds != 5 {
		t.Errorf("failurePolicy %s, timeout %d; want Fail, 5", *wh.FailurePolicy, *wh.TimeoutSeconds)
	}
	serving := named[*cmapi.Certificate](t, objs, ReleaseNamespace, "mtls-guard-serving")
	d := one[*appsv1.Deployment](t, objs)
	if got := d.Spec.Template.Spec.Volumes[0].Secret.SecretName; got != serving.Spec.SecretName {
		t.Errorf("pods mount Secret %q, cert-manager writes %q", got, serving.Spec.SecretName)
	}
	checkRBAC(t, objs, "mtls-guard", true)
	if aw := arrivalsOf(t, objs); aw.ClientConfig.Service == nil || len(aw.ClientConfig.CABundle) != 0 {
		t.Errorf("arrivals clientConfig = %+v, want the Service and no caBundle (cert-manager injects it)", aw.ClientConfig)
	}
}

// checkRBAC asserts the RBAC of issue 10: exact rules per role, and who is
// bound to what. With the arrivals webhook on, Events are written
// cluster-wide (ClusterRole <fullname>-events); else only in "default"
// (Role <fullname>-events there).
func checkRBAC(t *testing.T, objs []client.Object, fullname string, arrivals bool) {
	t.Helper()
	watch := []string{"list", "watch"}
	wantRules := map[string][]rbacv1.PolicyRule{
		fullname: {
			{APIGroups: []string{""}, Resources: []string{"pods", "namespaces"}, Verbs: watch},
			{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: watch},
			{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: watch},
			{APIGroups: []string{"security.istio.io"}, Resources: []string{"peerauthentications"}, Verbs: watch},
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
			{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
		},
		fullname + "-webhook-config": {
			{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"}, ResourceNames: []string{fullname}, Verbs: []string{"get"}},
		},
		fullname + "-override": {
			{APIGroups: []string{"mtls-guard.io"}, Resources: []string{"peerauthentications"}, Verbs: []string{"override"}},
		},
		fullname + "-metrics-reader": {
			{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}},
		},
	}
	wantEvents := []rbacv1.PolicyRule{{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}}}
	if arrivals {
		wantRules[fullname+"-events"] = wantEvents
	}
	roles := manifests.All[*rbacv1.ClusterRole](objs)
	if len(roles) != len(wantRules) {
		t.Errorf("%d ClusterRoles, want %d", len(roles), len(wantRules))
	}
	for _, r := range roles {
		if want, ok := wantRules[r.Name]; !ok || !equality.Semantic.DeepEqual(r.Rules, want) {
			t.Errorf("ClusterRole %s rules:\n got %+v\nwant %+v", r.Name, r.Rules, want)
		}
	}
	if n := len(manifests.All[*rbacv1.Role](objs)); arrivals && n != 0 {
		t.Errorf("%d Roles next to the ClusterRole %s-events, want none", n, fullname)
	} else if !arrivals {
		events := named[*rbacv1.Role](t, objs, "default", fullname+"-events")
		if !equality.Semantic.DeepEqual(events.Rules, wantEvents) {
			t.Errorf("Role default/%s rules = %+v, want %+v", events.Name, events.Rules, wantEvents)
		}
	}

	sa := one[*corev1.ServiceAccount](t, objs)
	guard := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: sa.Namespace}}
	bound := map[string]bool{}
	for _, b := range manifests.All[*rbacv1.ClusterRoleBinding](objs) {
		bound[b.RoleRef.Name] = true
		if !equality.Semantic.DeepEqual(b.Subjects, guard) || b.RoleRef.Kind != "ClusterRole" {
			t.Errorf("ClusterRoleBinding %s binds %+v to %+v, want the guard's ServiceAccount only", b.Name, b.RoleRef, b.Subjects)
		}
	}
	for _, b := range manifests.All[*rbacv1.RoleBinding](objs) {
		bound[b.RoleRef.Name] = true
		if arrivals || b.Namespace != "default" || b.RoleRef.Kind != "Role" || b.RoleRef.Name != fullname+"-events" || !equality.Semantic.DeepEqual(b.Subjects, guard) {
			t.Errorf("RoleBinding %s/%s = %+v to %+v", b.Namespace, b.Name, b.RoleRef, b.Subjects)
		}
	}
	for role, want := range map[string]bool{
		fullname: true, fullname + "-webhook-config": true, fullname + "-events": true,
		fullname + "-override": false, fullname + "-metrics-reader": false,
	} {
		if bound[role] != want {
			t.Errorf("role %s bound = %v, want %v", role, bound[role], want)
		}
	}
}

// TestRenderAKS: the AKS preset changes the root namespace, and an explicit
// root namespace wins over it.
func TestRenderAKS(t *testing.T) {
	c := load(t)
	for _, tc := range []struct {
		values, want string
	}{
		{"global: {aks: true}", "--root-namespace=aks-istio-system"},
		{"global: {aks: true}\nconfig: {rootNamespace: mesh-root}", "--root-namespace=mesh-root"},
		{"config: {rootNamespace: mesh-root}", "--root-namespace=mesh-root"},
	} {
		t.Run(tc.values, func(t *testing.T) {
			args := container(t, render(t, c, tc.values)).Args
			want := append(slices.Clone(defaultArgs), tc.want)
			if !slices.Equal(args, want) {
				t.Errorf("args = %q, want %q", args, want)
			}
		})
	}
}

// TestRenderCertificateModes renders each certificates.mode and checks
// that the pods' Secret and the webhook's CA fit together.
func TestRenderCertificateModes(t *testing.T) {
	c := load(t)

	t.Run("generate", func(t *testing.T) {
		objs := render(t, c, "certificates: {mode: generate}")
		if n := len(manifests.All[*cmapi.Certificate](objs)) + len(manifests.All[*cmapi.Issuer](objs)); n != 0 {
			t.Errorf("%d cert-manager objects rendered", n)
		}
		secret := one[*corev1.Secret](t, objs)
		if secret.Type != corev1.SecretTypeTLS || secret.Name != "mtls-guard-serving-cert" {
			t.Errorf("Secret %s of type %s", secret.Name, secret.Type)
		}
		vwc, wh := webhookOf(t, objs)
		if _, ok := vwc.Annotations[injectCA]; ok {
			t.Errorf("%s set without cert-manager", injectCA)
		}
		if string(wh.ClientConfig.CABundle) != string(secret.Data["ca.crt"]) {
			t.Error("the webhook's caBundle is not the generated CA")
		}
		leaf := parseCert(t, secret.Data["tls.crt"])
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(wh.ClientConfig.CABundle) {
			t.Fatal("caBundle holds no PEM certificate")
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "mtls-guard.mtls-guard.svc", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the serving certificate does not verify for the Service: %v", err)
		}
		if !slices.Contains(leaf.DNSNames, "mtls-guard.mtls-guard.svc.cluster.local") {
			t.Errorf("dnsNames = %v", leaf.DNSNames)
		}
		if block, _ := pem.Decode(secret.Data["tls.key"]); block == nil {
			t.Error("tls.key is not PEM")
		}
		d := one[*appsv1.Deployment](t, objs)
		if got := d.Spec.Template.Spec.Volumes[0].Secret.SecretName; got != secret.Name {
			t.Errorf("pods mount %q, want %q", got, secret.Name)
		}
	})

	t.Run("secret", func(t *testing.T) {
		ca := base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
		objs := render(t, c, "certificates: {mode: secret, secret: {name: my-tls, caBundle: "+ca+"}}")
		if n := len(manifests.All[*corev1.Secret](objs)) + len(manifests.All[*cmapi.Certificate](objs)); n != 0 {
			t.Errorf("%d Secrets or Certificates rendered for an existing Secret", n)
		}
		_, wh := webhookOf(t, objs)
		if got := base64.StdEncoding.EncodeToString(wh.ClientConfig.CABundle); got != ca {
			t.Errorf("caBundle = %s, want %s", got, ca)
		}
		d := one[*appsv1.Deployment](t, objs)
		if got := d.Spec.Template.Spec.Volumes[0].Secret.SecretName; got != "my-tls" {
			t.Errorf("pods mount %q, want my-tls", got)
		}
	})

	t.Run("certManager with an issuerRef", func(t *testing.T) {
		objs := render(t, c, "certificates: {certManager: {issuerRef: {name: corp-ca, kind: ClusterIssuer}}}")
		if n := len(manifests.All[*cmapi.Issuer](objs)); n != 0 {
			t.Errorf("%d Issuers rendered next to a given issuerRef", n)
		}
		cert := one[*cmapi.Certificate](t, objs)
		if cert.Spec.IssuerRef.Name != "corp-ca" || cert.Spec.IssuerRef.Kind != "ClusterIssuer" || cert.Spec.IssuerRef.Group != "cert-manager.io" {
			t.Errorf("issuerRef = %+v", cert.Spec.IssuerRef)
		}
		if vwc, _ := webhookOf(t, objs); vwc.Annotations[injectCA] != "mtls-guard/"+cert.Name {
			t.Errorf("%s = %q", injectCA, vwc.Annotations[injectCA])
		}
	})
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestRenderFlags: every config value reaches its flag exactly when it
// differs from the binary's default.
func TestRenderFlags(t *testing.T) {
	c := load(t)
	tests := []struct {
		values string
		want   []string
	}{
		{"config: {sidecarMode: any}", []string{"--sidecar-mode=any"}},
		{"config: {excludeNamespaces: [kube-system, batch]}", []string{"--exclude-namespaces=kube-system,batch"}},
		{"config: {allowOverride: false}", []string{"--allow-override=false"}},
		{"config: {enableHTTP2: true}", []string{"--enable-http2"}},
		{"config: {readHeaderTimeout: 5s, maxCacheStaleness: 1m, gracefulShutdownTimeout: 1m30s}",
			[]string{"--read-header-timeout=5s", "--max-cache-staleness=1m", "--graceful-shutdown-timeout=1m30s"}},
		{"config: {pprofBindAddress: '127.0.0.1:6060'}", []string{"--pprof-bind-address=127.0.0.1:6060"}},
		{"config: {prometheus: {url: 'https://prom.example:9090', caFile: /ca/ca.crt, bearerTokenFile: /t/token, auth: azure}}",
			[]string{"--prometheus-url=https://prom.example:9090", "--prometheus-ca-file=/ca/ca.crt", "--prometheus-bearer-token-file=/t/token", "--prometheus-auth=azure"}},
		{"config: {plaintext: {refresh: 30s, window: 1h, minRequests: 5, maxAge: 2m, unavailable: deny}}",
			[]string{"--plaintext-refresh=30s", "--plaintext-window=1h", "--plaintext-min-requests=5", "--plaintext-max-age=2m", "--plaintext-unavailable=deny"}},
		{"config: {log: {level: debug, encoder: console, devel: true, stacktraceLevel: panic, timeEncoding: iso8601}}",
			[]string{"--zap-log-level=debug", "--zap-encoder=console", "--zap-devel", "--zap-stacktrace-level=panic", "--zap-time-encoding=iso8601"}},
		{"metrics: {secure: false}", []string{"--metrics-secure=false"}},
		{"webhook: {clientCA: {configMapName: apiserver-ca}}", []string{"--client-ca-file=/client-ca/ca.crt"}},
		{"unmeshed: {pods: deny}", []string{"--unmeshed-pods=deny"}},
		{"unmeshed: {workloads: off}", []string{"--unmeshed-workloads=off"}},
		{"unmeshed: {pods: 'off', workloads: deny}", []string{"--unmeshed-pods=off", "--unmeshed-workloads=deny"}},
		// The values' defaults, spelled out, pass nothing.
		{"config: {sidecarMode: native, allowOverride: true, plaintext: {minRequests: 1, unavailable: allow}, prometheus: {auth: none}}\nunmeshed: {pods: warn, workloads: warn}", nil},
	}
	for _, tt := range tests {
		t.Run(tt.values, func(t *testing.T) {
			args := container(t, render(t, c, tt.values)).Args
			if !slices.Equal(args[:len(defaultArgs)], defaultArgs) {
				t.Fatalf("args = %q, want them to start with %q", args, defaultArgs)
			}
			extra := args[len(defaultArgs):]
			if !slices.Equal(extra, tt.want) {
				t.Errorf("extra args = %q, want %q", extra, tt.want)
			}
		})
	}

	t.Run("ports follow the values", func(t *testing.T) {
		objs := render(t, c, "config: {port: 10250, healthProbePort: 9000}\nmetrics: {port: 9090}")
		ctr := container(t, objs)
		for _, want := range []string{"--port=10250", "--health-probe-bind-address=:9000", "--metrics-bind-address=:9090"} {
			if !slices.Contains(ctr.Args, want) {
				t.Errorf("args %q lack %s", ctr.Args, want)
			}
		}
		ports := map[string]int32{}
		for _, p := range ctr.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if want := map[string]int32{"webhook": 10250, "health": 9000, "metrics": 9090}; !equality.Semantic.DeepEqual(ports, want) {
			t.Errorf("container ports = %v, want %v", ports, want)
		}
	})

	t.Run("metrics off", func(t *testing.T) {
		objs := render(t, c, "metrics: {enabled: false, serviceMonitor: {enabled: true}}")
		if !slices.Contains(container(t, objs).Args, "--metrics-bind-address=0") {
			t.Error("metrics not disabled")
		}
		if n := len(manifests.All[*monitoringv1.ServiceMonitor](objs)); n != 0 {
			t.Errorf("%d ServiceMonitors without metrics", n)
		}
		for _, p := range one[*corev1.Service](t, objs).Spec.Ports {
			if p.Name == "metrics" {
				t.Error("Service exposes metrics while they are off")
			}
		}
	})

	t.Run("another release name", func(t *testing.T) {
		vals, err := Values("")
		if err != nil {
			t.Fatal(err)
		}
		ms, err := Render(c, Options{Values: vals, ReleaseName: "edge", Namespace: "guard"})
		if err != nil {
			t.Fatal(err)
		}
		objs := Objects(ms)
		if args := container(t, objs).Args; !slices.Contains(args, "--webhook-config-name=edge-mtls-guard") {
			t.Errorf("args = %q, want --webhook-config-name=edge-mtls-guard", args)
		}
		checkRBAC(t, objs, "edge-mtls-guard", true)
		_, wh := webhookOf(t, objs)
		if s := wh.ClientConfig.Service; s == nil || s.Name != "edge-mtls-guard" || s.Namespace != "guard" {
			t.Errorf("clientConfig.service = %+v", s)
		}
	})
}

// TestRenderValues covers the remaining values: image, webhook, scheduling
// and the ServiceMonitor.
func TestRenderValues(t *testing.T) {
	c := load(t)
	digest := "sha256:" + strings.Repeat("ab", 32)

	t.Run("digest wins over tag", func(t *testing.T) {
		ctr := container(t, render(t, c, fmt.Sprintf("image: {tag: v9.9.9, digest: %q}", digest)))
		if want := "ghcr.io/mtls-guard/mtls-guard@" + digest; ctr.Image != want {
			t.Errorf("image = %q, want %q", ctr.Image, want)
		}
	})
	t.Run("tag", func(t *testing.T) {
		if img := container(t, render(t, c, "image: {tag: v0.3.0-rc.1}")).Image; img != "ghcr.io/mtls-guard/mtls-guard:v0.3.0-rc.1" {
			t.Errorf("image = %q", img)
		}
	})

	t.Run("webhook", func(t *testing.T) {
		objs := render(t, c, `webhook:
  failurePolicy: Ignore
  timeoutSeconds: 12
  namespaceSelector:
    matchExpressions: [{key: team, operator: In, values: [payments]}]
  matchConditions: [{name: not-flux, expression: "request.userInfo.username != 'flux'"}]
  annotations: {example.com/owner: mesh, admissions.enforcer/disabled: null}
  url: https://127.0.0.1:9443/validate`)
		vwc, wh := webhookOf(t, objs)
		if *wh.FailurePolicy != admissionregistrationv1.Ignore || *wh.TimeoutSeconds != 12 {
			t.Errorf("failurePolicy %s timeout %d", *wh.FailurePolicy, *wh.TimeoutSeconds)
		}
		// Helm merges maps; null removes the default key.
		want := map[string]string{"example.com/owner": "mesh", injectCA: "mtls-guard/mtls-guard-serving"}
		if !equality.Semantic.DeepEqual(vwc.Annotations, want) {
			t.Errorf("annotations = %v, want %v", vwc.Annotations, want)
		}
		sel, err := metav1.LabelSelectorAsSelector(wh.NamespaceSelector)
		if err != nil {
			t.Fatal(err)
		}
		for ns, want := range map[string]bool{"kube-system": false, "mtls-guard": false, "shop": true} {
			l := labels.Set{"kubernetes.io/metadata.name": ns, "team": "payments"}
			if got := sel.Matches(l); got != want {
				t.Errorf("selector matches %s = %v, want %v", ns, got, want)
			}
		}
		if sel.Matches(labels.Set{"kubernetes.io/metadata.name": "shop", "team": "web"}) {
			t.Error("the extra matchExpression is not applied")
		}
		if len(wh.MatchConditions) != 1 || wh.MatchConditions[0].Name != "not-flux" {
			t.Errorf("matchConditions = %+v", wh.MatchConditions)
		}
		if wh.ClientConfig.URL == nil || *wh.ClientConfig.URL != "https://127.0.0.1:9443/validate" || wh.ClientConfig.Service != nil {
			t.Errorf("clientConfig = %+v, want the URL only", wh.ClientConfig)
		}
	})

	t.Run("pods", func(t *testing.T) {
		objs := render(t, c, `replicaCount: 3
podDisruptionBudget: {minAvailable: 2}
priorityClassName: ""
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: CriticalAddonsOnly, operator: Exists}]
podAnnotations: {a: b}
podLabels: {azure.workload.identity/use: "true"}
imagePullSecrets: [{name: ghcr}]
serviceAccount: {annotations: {azure.workload.identity/client-id: 00000000-0000-0000-0000-000000000000}}
affinity: null
topologySpreadConstraints: []`)
		d := one[*appsv1.Deployment](t, objs)
		pod := d.Spec.Template
		if *d.Spec.Replicas != 3 || pod.Spec.PriorityClassName != "" || pod.Spec.NodeSelector["kubernetes.io/os"] != "linux" ||
			len(pod.Spec.Tolerations) != 1 || pod.Annotations["a"] != "b" || pod.Labels["azure.workload.identity/use"] != "true" ||
			len(pod.Spec.ImagePullSecrets) != 1 || pod.Spec.Affinity != nil || len(pod.Spec.TopologySpreadConstraints) != 0 {
			t.Errorf("Deployment = %+v", d.Spec)
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			t.Errorf("selector %v does not select the pods (%v)", d.Spec.Selector, err)
		}
		if pdb := one[*policyv1.PodDisruptionBudget](t, objs); pdb.Spec.MinAvailable.IntValue() != 2 {
			t.Errorf("PDB minAvailable = %v", pdb.Spec.MinAvailable)
		}
		if sa := one[*corev1.ServiceAccount](t, objs); sa.Annotations["azure.workload.identity/client-id"] == "" {
			t.Error("ServiceAccount annotations dropped")
		}
	})

	t.Run("no ServiceAccount, PDB or NetworkPolicy", func(t *testing.T) {
		objs := render(t, c, "serviceAccount: {create: false, name: shared}\npodDisruptionBudget: {enabled: false}\nnetworkPolicy: {enabled: false}")
		got := kinds(objs)
		for _, k := range got {
			if strings.HasPrefix(k, "ServiceAccount/") || strings.HasPrefix(k, "PodDisruptionBudget/") || strings.HasPrefix(k, "NetworkPolicy/") {
				t.Errorf("%s rendered", k)
			}
		}
		if d := one[*appsv1.Deployment](t, objs); d.Spec.Template.Spec.ServiceAccountName != "shared" {
			t.Errorf("serviceAccountName = %q", d.Spec.Template.Spec.ServiceAccountName)
		}
		for _, b := range manifests.All[*rbacv1.ClusterRoleBinding](objs) {
			if b.Subjects[0].Name != "shared" {
				t.Errorf("%s binds %s", b.Name, b.Subjects[0].Name)
			}
		}
	})

	t.Run("ServiceMonitor", func(t *testing.T) {
		for _, tc := range []struct {
			values       string
			insecure     bool
			secretBearer bool
		}{
			{"metrics: {serviceMonitor: {enabled: true, labels: {release: prom}}}", false, false},
			{"metrics: {serviceMonitor: {enabled: true, insecureSkipVerify: true, bearerTokenSecret: {name: scrape}}}", true, true},
		} {
			objs := render(t, c, tc.values)
			sm := one[*monitoringv1.ServiceMonitor](t, objs)
			svc := one[*corev1.Service](t, objs)
			if !labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(svc.Labels)) {
				t.Errorf("ServiceMonitor selector %v misses the Service %v", sm.Spec.Selector.MatchLabels, svc.Labels)
			}
			if len(sm.Spec.Endpoints) != 1 {
				t.Fatalf("%d endpoints", len(sm.Spec.Endpoints))
			}
			ep := sm.Spec.Endpoints[0]
			if ep.Port != "metrics" || ep.Scheme == nil || *ep.Scheme != "https" || ep.TLSConfig == nil {
				t.Errorf("endpoint = %+v", ep)
				continue
			}
			gotInsecure := ep.TLSConfig.InsecureSkipVerify != nil && *ep.TLSConfig.InsecureSkipVerify
			if gotInsecure != tc.insecure || !tc.insecure && (ep.TLSConfig.CA.Secret == nil || ep.TLSConfig.CA.Secret.Name != "mtls-guard-serving-cert") {
				t.Errorf("tlsConfig = %+v", ep.TLSConfig)
			}
			if (ep.Authorization != nil) != tc.secretBearer || (ep.BearerTokenFile != "") == tc.secretBearer { //nolint:staticcheck // bearerTokenFile is what Prometheus's own token needs
				t.Errorf("authorization = %+v, bearerTokenFile = %q", ep.Authorization, ep.BearerTokenFile) //nolint:staticcheck
			}
		}
	})
}

// TestLint runs Helm's own linter over the chart with each mode's values.
func TestLint(t *testing.T) {
	dir, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	for _, values := range []string{"", "global: {aks: true}", "certificates: {mode: generate}", "certificates: {mode: secret}", "metrics: {serviceMonitor: {enabled: true}}",
		"unmeshed: {pods: off, workloads: off}"} {
		t.Run(values, func(t *testing.T) {
			vals, err := Values(values)
			if err != nil {
				t.Fatal(err)
			}
			lintClean(t, dir, vals)
		})
	}
}

// lintClean fails t unless helm lint --strict finds nothing above info in
// the chart at dir with vals.
func lintClean(t *testing.T, dir string, vals map[string]any) {
	t.Helper()
	lint := action.NewLint()
	lint.Strict = true
	lint.Namespace = ReleaseNamespace
	res := lint.Run([]string{dir}, vals)
	for _, m := range res.Messages {
		if m.Severity > support.InfoSev {
			t.Errorf("lint: %s", m)
		}
	}
	for _, err := range res.Errors {
		t.Errorf("lint error: %v", err)
	}
}

// TestSchemaRejects: a wrong value fails at install, by the schema, with
// the offending key named.
func TestSchemaRejects(t *testing.T) {
	c := load(t)
	tests := []struct {
		values, key string
	}{
		{"config: {sidecarMode: classic}", "sidecarMode"},
		{"webhook: {failurePolicy: fail}", "failurePolicy"},
		{"certificates: {mode: selfSigned}", "mode"},
		{"config: {prometheus: {auth: aws}}", "auth"},
		{"config: {plaintext: {unavailable: warn}}", "unavailable"},
		{"replicaCount: -1", "replicaCount"},
		{"replicaCount: two", "replicaCount"},
		{"replicas: 2", "replicas"},
		{"webhook: {failurPolicy: Ignore}", "failurPolicy"},
		{"config: {overrideGroups: [sre]}", "overrideGroups"},
		{"webhook: {timeoutSeconds: 31}", "timeoutSeconds"},
		{"config: {maxCacheStaleness: 15 seconds}", "maxCacheStaleness"},
		{"image: {digest: latest}", "digest"},
		{"config: {excludeNamespaces: [Kube_System]}", "excludeNamespaces"},
		{"webhook: {arrivals: {timeoutSeconds: 3}}", "timeoutSeconds"},
		{"webhook: {arrivals: {failurePolicy: Fail}}", "failurePolicy"},
		{"unmeshed: {pods: block}", "pods"},
		{"unmeshed: {workloads: Warn}", "workloads"},
		{"unmeshed: {jobs: off}", "jobs"},
		{"unmeshed: {pods: true}", "pods"},
	}
	for _, tt := range tests {
		t.Run(tt.values, func(t *testing.T) {
			vals, err := Values(tt.values)
			if err != nil {
				t.Fatal(err)
			}
			// The SDK's install action, as `helm install --dry-run` runs it.
			install := action.NewInstall(&action.Configuration{})
			install.DryRun, install.ClientOnly, install.Replace = true, true, true
			install.ReleaseName, install.Namespace = ReleaseName, ReleaseNamespace
			_, err = install.Run(c, vals)
			checkSchemaError(t, err, tt.key)
			// And the render the tests and `make manifests-chart` use.
			_, err = Render(c, Options{Values: vals})
			checkSchemaError(t, err, tt.key)
		})
	}
	// The same calls accept the defaults, so the failures above are the values'.
	install := action.NewInstall(&action.Configuration{})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace = ReleaseName, ReleaseNamespace
	if _, err := install.Run(c, map[string]any{}); err != nil {
		t.Errorf("install --dry-run of the defaults: %v", err)
	}
}

func checkSchemaError(t *testing.T, err error, key string) {
	t.Helper()
	if err == nil {
		t.Error("accepted")
		return
	}
	// chartutil.ValidateAgainstSchema is the only source of this error.
	if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), key) {
		t.Errorf("error = %v, want a schema error naming %s", err, key)
	}
}

package manifests

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/mtls-guard/mtls-guard/certs"
	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index"
)

const (
	ns          = "mtls-guard"
	name        = "mtls-guard"
	image       = "ghcr.io/mtls-guard/mtls-guard:v0.2.0" // a versioned tag, never latest
	secretName  = "mtls-guard-serving-cert"
	webhookPath = "/validate-security-istio-io-v1-peerauthentication"
	aksArg      = "--root-namespace=aks-istio-system"
	injectCA    = "cert-manager.io/inject-ca-from"
)

// serveFlags are the flags `mtls-guard serve` defines; the Deployment may
// pass no others.
var serveFlags = []string{
	"port", "cert-dir", "metrics-bind-address", "health-probe-bind-address",
	"root-namespace", "sidecar-mode", "exclude-namespaces", "allow-override",
	"kubeconfig", "enable-http2",
	"zap-devel", "zap-encoder", "zap-log-level", "zap-stacktrace-level", "zap-time-encoding",
}

// repoRoot walks up from the test's directory to the one holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

func TestRender(t *testing.T) {
	root := repoRoot(t)
	tests := []struct {
		dir         string
		certManager bool
		aks         bool
	}{
		{dir: "deploy", certManager: true},
		{dir: "deploy/overlays/aks", certManager: true, aks: true},
		{dir: "deploy/overlays/no-cert-manager"},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			objs, err := Render(filepath.Join(root, tt.dir))
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			checkInventory(t, objs, tt.certManager)
			checkWebhook(t, objs, tt.certManager)
			checkRBAC(t, objs)
			checkDeployment(t, objs, tt.aks)
			checkService(t, objs)
			checkPDB(t, objs)
			checkNetworkPolicy(t, objs)
			if tt.certManager {
				checkCertManager(t, objs)
			}
		})
	}
}

// checkInventory asserts exactly which objects are rendered, so that a
// stray or missing object (for example cert-manager's in
// no-cert-manager) fails.
func checkInventory(t *testing.T, objs []client.Object, certManager bool) {
	t.Helper()
	want := []string{
		"ClusterRole//mtls-guard",
		"ClusterRole//mtls-guard-events",
		"ClusterRole//mtls-guard-metrics-reader",
		"ClusterRole//mtls-guard-override",
		"ClusterRole//mtls-guard-webhook-config",
		"ClusterRoleBinding//mtls-guard",
		"ClusterRoleBinding//mtls-guard-events",
		"ClusterRoleBinding//mtls-guard-webhook-config",
		"Deployment/mtls-guard/mtls-guard",
		"Namespace//mtls-guard",
		"NetworkPolicy/mtls-guard/mtls-guard",
		"PodDisruptionBudget/mtls-guard/mtls-guard",
		"Service/mtls-guard/mtls-guard",
		"ServiceAccount/mtls-guard/mtls-guard",
		"ValidatingWebhookConfiguration//mtls-guard",
	}
	if certManager {
		want = append(want,
			"Certificate/mtls-guard/mtls-guard-ca",
			"Certificate/mtls-guard/mtls-guard-serving",
			"Issuer/mtls-guard/mtls-guard-ca",
			"Issuer/mtls-guard/mtls-guard-selfsigned",
		)
	}
	var got []string
	for _, obj := range objs {
		kind := obj.GetObjectKind().GroupVersionKind().Kind
		got = append(got, kind+"/"+obj.GetNamespace()+"/"+obj.GetName())
		if strings.HasPrefix(obj.GetObjectKind().GroupVersionKind().Group, "cert-manager.io") && !certManager {
			t.Errorf("cert-manager object %s/%s rendered", kind, obj.GetName())
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("objects:\n got %v\nwant %v", got, want)
	}

	nsObj, err := One[*corev1.Namespace](objs)
	if err != nil {
		t.Fatal(err)
	}
	if got := nsObj.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("namespace Pod Security enforce = %q, want restricted", got)
	}
}

func checkWebhook(t *testing.T, objs []client.Object, certManager bool) {
	t.Helper()
	vwc, err := One[*admissionregistrationv1.ValidatingWebhookConfiguration](objs)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := vwc.Annotations[injectCA], "mtls-guard/mtls-guard-serving"; certManager && got != want {
		t.Errorf("%s = %q, want %q", injectCA, got, want)
	}
	if _, ok := vwc.Annotations[injectCA]; !certManager && ok {
		t.Errorf("%s set without cert-manager", injectCA)
	}
	if got := vwc.Annotations["admissions.enforcer/disabled"]; got != "true" {
		t.Errorf("admissions.enforcer/disabled = %q, want \"true\": AKS's enforcer would hide aks-istio-system", got)
	}
	// The PeerAuthentication webhook; the arrivals webhook after it is
	// checked where the chart is rendered (internal/testenv/chart).
	if len(vwc.Webhooks) != 2 || vwc.Webhooks[1].Name != "arrivals.mtls-guard.io" {
		t.Fatalf("%d webhooks, want the PeerAuthentication one and arrivals.mtls-guard.io", len(vwc.Webhooks))
	}
	wh := vwc.Webhooks[0]
	fail := admissionregistrationv1.Fail
	sideEffects := admissionregistrationv1.SideEffectClassNoneOnDryRun
	equivalent := admissionregistrationv1.Equivalent
	scope := admissionregistrationv1.AllScopes
	port := int32(443)
	path := webhookPath
	timeout := int32(5)
	want := admissionregistrationv1.ValidatingWebhook{
		Name:                    "peerauthentications.mtls-guard.io",
		AdmissionReviewVersions: []string{"v1"},
		FailurePolicy:           &fail,
		SideEffects:             &sideEffects,
		MatchPolicy:             &equivalent,
		TimeoutSeconds:          &timeout,
		Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{
				admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete,
			},
			Rule: admissionregistrationv1.Rule{
				APIGroups:   []string{"security.istio.io"},
				APIVersions: []string{"v1", "v1beta1"},
				Resources:   []string{"peerauthentications"},
				Scope:       &scope,
			},
		}},
		NamespaceSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key:      "kubernetes.io/metadata.name",
				Operator: metav1.LabelSelectorOpNotIn,
				Values:   []string{"kube-system", "mtls-guard"},
			}},
		},
		ClientConfig: admissionregistrationv1.WebhookClientConfig{
			Service: &admissionregistrationv1.ServiceReference{
				Namespace: ns, Name: name, Path: &path, Port: &port,
			},
		},
	}
	// The whole webhook, so that an unexpected objectSelector, URL or
	// caBundle fails too.
	if !equality.Semantic.DeepEqual(wh, want) {
		t.Errorf("webhook:\n got %+v\nwant %+v", wh, want)
	}

	sel, err := metav1.LabelSelectorAsSelector(wh.NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string]bool{"kube-system": false, "mtls-guard": false, "istio-system": true, "default": true} {
		if got := sel.Matches(labels.Set{"kubernetes.io/metadata.name": ns}); got != want {
			t.Errorf("namespaceSelector matches %s = %v, want %v", ns, got, want)
		}
	}
}

func checkRBAC(t *testing.T, objs []client.Object) {
	t.Helper()
	cr, err := Named[*rbacv1.ClusterRole](objs, "", name)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"authentication.k8s.io/tokenreviews":        {"create"},
		"authorization.k8s.io/subjectaccessreviews": {"create"},
	}
	// list and watch on exactly the kinds the informers watch.
	for _, obj := range index.WatchedKinds() {
		gvk, err := apiutil.GVKForObject(obj, engine.NewScheme())
		if err != nil {
			t.Fatal(err)
		}
		r, _ := meta.UnsafeGuessKindToResource(gvk)
		want[r.Group+"/"+r.Resource] = []string{"list", "watch"}
	}
	got := map[string][]string{}
	for _, r := range cr.Rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("rule %+v uses resourceNames or nonResourceURLs", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				if res == "secrets" || res == "leases" || res == "*" || g == "*" || slices.Contains(r.Verbs, "*") {
					t.Errorf("rule %+v grants %s/%s", r, g, res)
				}
				key := g + "/" + res
				got[key] = append(got[key], r.Verbs...)
			}
		}
	}
	for k := range got {
		slices.Sort(got[k])
		got[k] = slices.Compact(got[k])
	}
	for k := range want {
		want[k] = slices.Sorted(slices.Values(want[k]))
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("ClusterRole grants\n %v\nwant\n %v", got, want)
	}
	if cr.AggregationRule != nil {
		t.Error("ClusterRole aggregates other roles")
	}

	crb, err := Named[*rbacv1.ClusterRoleBinding](objs, "", name)
	if err != nil {
		t.Fatal(err)
	}
	if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != cr.Name {
		t.Errorf("roleRef = %+v, want ClusterRole %s", crb.RoleRef, cr.Name)
	}
	sa, err := One[*corev1.ServiceAccount](objs)
	if err != nil {
		t.Fatal(err)
	}
	if len(crb.Subjects) != 1 || crb.Subjects[0].Kind != "ServiceAccount" ||
		crb.Subjects[0].Name != sa.Name || crb.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("subjects = %+v, want only ServiceAccount %s/%s", crb.Subjects, sa.Namespace, sa.Name)
	}
}

func checkDeployment(t *testing.T, objs []client.Object, aks bool) {
	t.Helper()
	d, err := One[*appsv1.Deployment](objs)
	if err != nil {
		t.Fatal(err)
	}
	if d.Namespace != ns {
		t.Errorf("namespace = %q", d.Namespace)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Error("selector does not match the pod template")
	}

	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != name {
		t.Errorf("serviceAccountName = %q", pod.ServiceAccountName)
	}
	if pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not true")
	}
	if pod.PriorityClassName != "system-cluster-critical" {
		t.Errorf("priorityClassName = %q", pod.PriorityClassName)
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
		psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v", psc)
	}

	anti := pod.Affinity
	if anti == nil || anti.PodAntiAffinity == nil || len(anti.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Fatalf("affinity = %+v, want one preferred pod anti-affinity term", anti)
	}
	term := anti.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
	termSel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if err != nil {
		t.Fatal(err)
	}
	if term.TopologyKey != "kubernetes.io/hostname" || !termSel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("anti-affinity term = %+v, want hostname spread of these pods", term)
	}

	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != image {
		t.Errorf("image = %q, want %q", c.Image, image)
	}

	sc := c.SecurityContext
	if sc == nil ||
		sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.RunAsUser == nil || *sc.RunAsUser != 65532 ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Privileged != nil && *sc.Privileged ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container securityContext = %+v", sc)
	}

	wantResources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("50m"),
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		},
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	if !equality.Semantic.DeepEqual(c.Resources, wantResources) {
		t.Errorf("resources = %+v, want %+v", c.Resources, wantResources)
	}

	// Arguments: the serve subcommand with flags it knows.
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("args = %q, want serve first", c.Args)
	}
	flags := map[string]string{}
	for _, arg := range c.Args[1:] {
		k, v, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		if !strings.HasPrefix(arg, "--") || !slices.Contains(serveFlags, k) {
			t.Errorf("arg %q is not a flag of mtls-guard serve", arg)
		}
		if _, dup := flags[k]; dup {
			t.Errorf("flag --%s given twice", k)
		}
		flags[k] = v
	}
	if flags["cert-dir"] != "/certs" {
		t.Errorf("--cert-dir = %q, want /certs", flags["cert-dir"])
	}
	if got := slices.Contains(c.Args, aksArg); got != aks {
		t.Errorf("%s in args = %v, want %v", aksArg, got, aks)
	}

	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	podNS := env["POD_NAMESPACE"]
	if podNS.ValueFrom == nil || podNS.ValueFrom.FieldRef == nil || podNS.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("POD_NAMESPACE = %+v, want the downward API metadata.namespace", podNS)
	}

	// Ports agree with the flags (or the binary's defaults).
	for portName, want := range map[string]int32{"webhook": 9443, "metrics": 8443, "health": 8081} {
		if got := containerPort(t, c, intstr.FromString(portName)); got != want {
			t.Errorf("container port %s = %d, want %d", portName, got, want)
		}
	}
	for flag, port := range map[string]string{"port": "9443", "metrics-bind-address": ":8443", "health-probe-bind-address": ":8081"} {
		if v, ok := flags[flag]; ok && v != port {
			t.Errorf("--%s = %q, want %q to match the container ports", flag, v, port)
		}
	}

	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"readiness", c.ReadinessProbe, "/readyz"},
		{"liveness", c.LivenessProbe, "/healthz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe = %+v, want HTTP GET", p.name, p.probe)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || containerPort(t, c, p.probe.HTTPGet.Port) != 8081 {
			t.Errorf("%s probe = %s on %s, want %s on 8081", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}

	// The serving certificate Secret, read-only at /certs.
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == "/certs" {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil || !mount.ReadOnly {
		t.Fatalf("volumeMounts = %+v, want /certs read-only", c.VolumeMounts)
	}
	var vol *corev1.Volume
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == mount.Name {
			vol = &pod.Volumes[i]
		}
	}
	if vol == nil || vol.Secret == nil || vol.Secret.SecretName != secretName {
		t.Errorf("volume %s = %+v, want Secret %s", mount.Name, vol, secretName)
	}
	if vol != nil && vol.Secret != nil && vol.Secret.Optional != nil && *vol.Secret.Optional {
		t.Error("serving certificate Secret is optional")
	}
}

func containerPort(t *testing.T, c corev1.Container, port intstr.IntOrString) int32 {
	t.Helper()
	if port.Type == intstr.Int {
		return port.IntVal
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return p.ContainerPort
		}
	}
	t.Errorf("container has no port named %q", port.StrVal)
	return 0
}

func podLabels(t *testing.T, objs []client.Object) (labels.Set, *appsv1.Deployment) {
	t.Helper()
	d, err := One[*appsv1.Deployment](objs)
	if err != nil {
		t.Fatal(err)
	}
	return labels.Set(d.Spec.Template.Labels), d
}

func checkService(t *testing.T, objs []client.Object) {
	t.Helper()
	svc, err := One[*corev1.Service](objs)
	if err != nil {
		t.Fatal(err)
	}
	pods, d := podLabels(t, objs)
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(pods) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, pods)
	}
	want := map[string][2]int32{"https": {443, 9443}, "metrics": {8443, 8443}}
	got := map[string][2]int32{}
	for _, p := range svc.Spec.Ports {
		got[p.Name] = [2]int32{p.Port, containerPort(t, d.Spec.Template.Spec.Containers[0], p.TargetPort)}
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("Service ports (port, target) = %v, want %v", got, want)
	}
}

func checkPDB(t *testing.T, objs []client.Object) {
	t.Helper()
	pdb, err := One[*policyv1.PodDisruptionBudget](objs)
	if err != nil {
		t.Fatal(err)
	}
	if pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromInt32(1) || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PDB minAvailable = %v, maxUnavailable = %v; want minAvailable 1", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
	}
	pods, _ := podLabels(t, objs)
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Empty() || !sel.Matches(pods) {
		t.Errorf("PDB selector %v does not select the pods", sel)
	}
}

func checkNetworkPolicy(t *testing.T, objs []client.Object) {
	t.Helper()
	np, err := One[*networkingv1.NetworkPolicy](objs)
	if err != nil {
		t.Fatal(err)
	}
	pods, _ := podLabels(t, objs)
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Empty() || !sel.Matches(pods) {
		t.Errorf("NetworkPolicy podSelector %v does not select the pods", sel)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("policyTypes = %v, want [Ingress]", np.Spec.PolicyTypes)
	}
	var ports []string
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Error("ingress rule admits all ports")
		}
		for _, p := range rule.Ports {
			if p.Port == nil || p.EndPort != nil || p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP {
				t.Errorf("ingress port %+v, want a single TCP port", p)
				continue
			}
			ports = append(ports, p.Port.String())
		}
	}
	slices.Sort(ports)
	if !slices.Equal(ports, []string{"8443", "9443"}) {
		t.Errorf("ingress ports = %v, want [8443 9443]", ports)
	}
}

func checkCertManager(t *testing.T, objs []client.Object) {
	t.Helper()
	for _, want := range []*cmapi.Certificate{
		certs.ServingCertificate(name, ns),
		certs.CACertificate(name, ns),
	} {
		got, err := Named[*cmapi.Certificate](objs, want.Namespace, want.Name)
		if err != nil {
			t.Error(err)
			continue
		}
		// The whole spec: deploy/ and `mtls-guard certs` issue the same.
		if !equality.Semantic.DeepEqual(got.Spec, want.Spec) {
			t.Errorf("Certificate %s spec differs from package certs:\n got %+v\nwant %+v", want.Name, got.Spec, want.Spec)
		}
	}

	serving := certs.ServingCertificate(name, ns)
	if serving.Spec.SecretName != secretName {
		t.Errorf("serving Secret %q is not the one the Deployment mounts (%q)", serving.Spec.SecretName, secretName)
	}
	if !slices.Contains(serving.Spec.DNSNames, name+"."+ns+".svc") {
		t.Errorf("dnsNames %v lack the name the API server dials", serving.Spec.DNSNames)
	}

	// Issuer chain: self-signed -> CA Certificate -> CA Issuer -> serving.
	issuers := map[string]*cmapi.Issuer{}
	for _, iss := range All[*cmapi.Issuer](objs) {
		issuers[iss.Name] = iss
	}
	ca := certs.CACertificate(name, ns)
	if iss := issuers[ca.Spec.IssuerRef.Name]; iss == nil || iss.Spec.SelfSigned == nil {
		t.Errorf("CA issuer %s is not a self-signed Issuer", ca.Spec.IssuerRef.Name)
	}
	if iss := issuers[serving.Spec.IssuerRef.Name]; iss == nil || iss.Spec.CA == nil || iss.Spec.CA.SecretName != ca.Spec.SecretName {
		t.Errorf("serving issuer %s is not a CA Issuer for Secret %s", serving.Spec.IssuerRef.Name, ca.Spec.SecretName)
	}
}

func TestRenderStrict(t *testing.T) {
	const kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - obj.yaml\n"
	tests := []struct {
		name    string
		obj     string
		wantErr string // empty: must succeed
	}{
		{
			name: "well formed",
			obj:  "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  namespace: b\nautomountServiceAccountToken: false\n",
		},
		{
			name:    "typo in a field",
			obj:     "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\nspec:\n  replica: 2\n",
			wantErr: `unknown field "spec.replica"`,
		},
		{
			name:    "field in the wrong place",
			obj:     "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  automountServiceAccountToken: false\n",
			wantErr: `unknown field "metadata.automountServiceAccountToken"`,
		},
		{
			name:    "typo in a cert-manager field",
			obj:     "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: a\nspec:\n  secretName: s\n  dnsName: [x]\n",
			wantErr: `unknown field "spec.dnsName"`,
		},
		{
			name:    "unknown kind",
			obj:     "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: a\n",
			wantErr: "no kind \"Gadget\" is registered",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for file, content := range map[string]string{"kustomization.yaml": kustomization, "obj.yaml": tt.obj} {
				if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			objs, err := Render(dir)
			if tt.wantErr == "" {
				if err != nil || len(objs) != 1 {
					t.Fatalf("Render = %d objects, %v; want 1 object", len(objs), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Render error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestRenderMissingDir(t *testing.T) {
	if _, err := Render(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Error("Render of a missing directory succeeded")
	}
}

func TestLookups(t *testing.T) {
	objs, err := Render(filepath.Join(repoRoot(t), "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := One[*cmapi.Certificate](objs); err == nil {
		t.Error("One found a single Certificate among two")
	}
	if _, err := One[*corev1.Secret](objs); err == nil {
		t.Error("One found a Secret among none")
	}
	if got := len(All[*cmapi.Issuer](objs)); got != 2 {
		t.Errorf("All found %d Issuers, want 2", got)
	}
	if _, err := Named[*cmapi.Certificate](objs, ns, "mtls-guard-serving"); err != nil {
		t.Error(err)
	}
	if _, err := Named[*cmapi.Certificate](objs, "other", "mtls-guard-serving"); err == nil {
		t.Error("Certificate found one in the wrong namespace")
	}
}

package chart

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/mtls-guard/mtls-guard/internal/manifests"
)

// TestRenderArrivals: the arrivals webhook (issue 13) is safe for the path
// of every pod (fails open, 2 s at most, no side effects on dry run, the
// policy webhook's namespace exclusions, exempt objects and pods that
// cannot be unmeshed kept out), and is not rendered when both of its
// actions are off.
func TestRenderArrivals(t *testing.T) {
	c := load(t)

	t.Run("defaults", func(t *testing.T) {
		objs := render(t, c, "")
		_, policyWH := webhookOf(t, objs)
		wh := arrivalsOf(t, objs)
		if *wh.FailurePolicy != admissionregistrationv1.Ignore || *wh.TimeoutSeconds != 2 ||
			*wh.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun ||
			!slices.Equal(wh.AdmissionReviewVersions, []string{"v1"}) {
			t.Errorf("failurePolicy %s, timeout %d, sideEffects %s, versions %v; want Ignore, 2, NoneOnDryRun, [v1]",
				*wh.FailurePolicy, *wh.TimeoutSeconds, *wh.SideEffects, wh.AdmissionReviewVersions)
		}
		createUpdate := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
		rule := func(group string, resources []string, ops ...admissionregistrationv1.OperationType) admissionregistrationv1.RuleWithOperations {
			return admissionregistrationv1.RuleWithOperations{Operations: ops, Rule: admissionregistrationv1.Rule{
				APIGroups: []string{group}, APIVersions: []string{"v1"}, Resources: resources, Scope: ptr.To(admissionregistrationv1.NamespacedScope)}}
		}
		wantRules := []admissionregistrationv1.RuleWithOperations{
			rule("", []string{"pods"}, admissionregistrationv1.Create),
			rule("apps", []string{"deployments", "statefulsets", "daemonsets"}, createUpdate...),
			rule("batch", []string{"jobs", "cronjobs"}, createUpdate...),
		}
		if !equality.Semantic.DeepEqual(wh.Rules, wantRules) {
			t.Errorf("rules:\n got %+v\nwant %+v", wh.Rules, wantRules)
		}
		if !equality.Semantic.DeepEqual(wh.NamespaceSelector, policyWH.NamespaceSelector) {
			t.Errorf("namespaceSelector %+v, want the policy webhook's %+v", wh.NamespaceSelector, policyWH.NamespaceSelector)
		}
		sel, err := metav1.LabelSelectorAsSelector(wh.ObjectSelector)
		if err != nil {
			t.Fatal(err)
		}
		for l, want := range map[string]bool{"": true, "false": true, "true": false} {
			set := labels.Set{"app": "web"}
			if l != "" {
				set["mtls-guard.io/exempt"] = l
			}
			if got := sel.Matches(set); got != want {
				t.Errorf("objectSelector matches exempt=%q: %v, want %v", l, got, want)
			}
		}
		if s := wh.ClientConfig.Service; s == nil || s.Path == nil || *s.Path != "/validate-arrivals" || s.Name != "mtls-guard" {
			t.Errorf("clientConfig.service = %+v, want mtls-guard /validate-arrivals", s)
		}
		if !slices.Equal(container(t, objs).Args, defaultArgs) {
			t.Errorf("args = %q, want the defaults (warn is the binary's default)", container(t, objs).Args)
		}
	})

	t.Run("matchConditions", func(t *testing.T) {
		checkMatchConditions(t, arrivalsOf(t, render(t, c, "")).MatchConditions)
	})

	t.Run("values", func(t *testing.T) {
		objs := render(t, c, `webhook:
  namespaceSelector:
    matchExpressions: [{key: team, operator: In, values: [payments]}]
  arrivals: {timeoutSeconds: 1, url: "https://127.0.0.1:9443/validate-arrivals"}`)
		_, policyWH := webhookOf(t, objs)
		wh := arrivalsOf(t, objs)
		if *wh.TimeoutSeconds != 1 {
			t.Errorf("timeout %d, want 1", *wh.TimeoutSeconds)
		}
		if len(wh.NamespaceSelector.MatchExpressions) != 2 || !equality.Semantic.DeepEqual(wh.NamespaceSelector, policyWH.NamespaceSelector) {
			t.Errorf("namespaceSelector %+v, want the policy webhook's %+v", wh.NamespaceSelector, policyWH.NamespaceSelector)
		}
		if u := wh.ClientConfig.URL; u == nil || *u != "https://127.0.0.1:9443/validate-arrivals" || wh.ClientConfig.Service != nil {
			t.Errorf("clientConfig = %+v, want the URL only", wh.ClientConfig)
		}
	})

	for _, tc := range []struct {
		values string
		on     bool
	}{
		{"unmeshed: {pods: off}", true},
		{"unmeshed: {workloads: off}", true},
		{"unmeshed: {pods: deny, workloads: deny}", true},
		{"unmeshed: {pods: off, workloads: off}", false},
		{"unmeshed: {pods: 'off', workloads: 'off'}", false},
	} {
		t.Run(tc.values, func(t *testing.T) {
			objs := render(t, c, tc.values)
			vwc, _ := webhookOf(t, objs)
			want := []string{policyWebhook}
			if tc.on {
				want = append(want, arrivalsWebhook)
			}
			if got := webhookNames(vwc); !slices.Equal(got, want) {
				t.Errorf("webhooks %v, want %v", got, want)
			}
			checkRBAC(t, objs, "mtls-guard", tc.on)
			if !tc.on {
				if n := len(manifests.All[*rbacv1.ClusterRoleBinding](objs)); n != 2 {
					t.Errorf("%d ClusterRoleBindings with arrivals off, want 2 (the guard's and webhook-config)", n)
				}
			}
		})
	}
}

// checkMatchConditions evaluates the CEL expressions the API server runs
// against pods and workloads, as it binds them (object and request as
// JSON maps): only pods that cannot be unmeshed are kept out.
func checkMatchConditions(t *testing.T, conds []admissionregistrationv1.MatchCondition) {
	t.Helper()
	if len(conds) != 2 {
		t.Fatalf("%d matchConditions, want 2", len(conds))
	}
	env, err := cel.NewEnv(cel.Variable("object", cel.DynType), cel.Variable("request", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	var progs []cel.Program
	for _, mc := range conds {
		ast, iss := env.Compile(mc.Expression)
		if iss.Err() != nil {
			t.Fatalf("matchCondition %s does not compile: %v", mc.Name, iss.Err())
		}
		prg, err := env.Program(ast)
		if err != nil {
			t.Fatal(err)
		}
		progs = append(progs, prg)
	}
	always := corev1.ContainerRestartPolicyAlways
	podWith := func(mutate func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "p"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
		mutate(p)
		return p
	}
	deploy := &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}, ObjectMeta: metav1.ObjectMeta{Name: "d"}}
	for _, tc := range []struct {
		name string
		obj  runtime.Object
		sent bool
	}{
		{"bare pod", podWith(func(*corev1.Pod) {}), true},
		{"native sidecar", podWith(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "istio-init"}, {Name: "istio-proxy", RestartPolicy: &always}}
		}), false},
		{"istio-proxy init container that is not a sidecar", podWith(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "istio-proxy"}}
		}), true},
		{"other native sidecar", podWith(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "log-shipper", RestartPolicy: &always}}
		}), true},
		{"classic sidecar", podWith(func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy"})
		}), true},
		{"ambient", podWith(func(p *corev1.Pod) { p.Annotations = map[string]string{"ambient.istio.io/redirection": "enabled"} }), false},
		{"ambient pending", podWith(func(p *corev1.Pod) { p.Annotations = map[string]string{"ambient.istio.io/redirection": "pending"} }), true},
		{"other annotations", podWith(func(p *corev1.Pod) { p.Annotations = map[string]string{"a": "b"} }), true},
		{"deployment", deploy, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(tc.obj)
			if err != nil {
				t.Fatal(err)
			}
			kind := tc.obj.GetObjectKind().GroupVersionKind()
			req := map[string]any{"kind": map[string]any{"group": kind.Group, "version": kind.Version, "kind": kind.Kind}, "operation": "CREATE"}
			sent := true
			for i, prg := range progs {
				out, _, err := prg.Eval(map[string]any{"object": obj, "request": req})
				if err != nil {
					t.Fatalf("matchCondition %s: %v", conds[i].Name, err)
				}
				b, ok := out.Value().(bool)
				if !ok {
					t.Fatalf("matchCondition %s returned %v, not a bool", conds[i].Name, out)
				}
				sent = sent && b
			}
			if sent != tc.sent {
				t.Errorf("sent to the guard = %v, want %v", sent, tc.sent)
			}
		})
	}
}

// TestAKSPrometheusExample renders examples/aks-prometheus.yaml, the AKS
// setup for plaintext evidence (issue 12), and lints it: the guard reads
// Azure Monitor's managed Prometheus with workload identity.
func TestAKSPrometheusExample(t *testing.T) {
	c := load(t)
	dir, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "examples", "aks-prometheus.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := render(t, c, string(data))
	args := container(t, objs).Args
	for _, want := range []string{"--root-namespace=aks-istio-system", "--prometheus-auth=azure"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if !slices.ContainsFunc(args, func(a string) bool {
		u, ok := strings.CutPrefix(a, "--prometheus-url=https://")
		return ok && strings.HasSuffix(u, ".prometheus.monitor.azure.com")
	}) {
		t.Errorf("args %q lack an Azure Monitor workspace query endpoint", args)
	}
	sa := one[*corev1.ServiceAccount](t, objs)
	if sa.Annotations["azure.workload.identity/client-id"] == "" {
		t.Errorf("ServiceAccount annotations %v lack azure.workload.identity/client-id", sa.Annotations)
	}
	d := one[*appsv1.Deployment](t, objs)
	if d.Spec.Template.Labels["azure.workload.identity/use"] != "true" {
		t.Errorf("pod labels %v lack azure.workload.identity/use=true", d.Spec.Template.Labels)
	}
	if sel, _ := metav1.LabelSelectorAsSelector(d.Spec.Selector); !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Error("the Deployment's selector no longer selects its pods")
	}
	vals, err := Values(string(data))
	if err != nil {
		t.Fatal(err)
	}
	lintClean(t, dir, vals)
}

package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// selfCheckInterval is how often the guard reads its own webhook
// configuration again: AKS's admissions enforcer, or a GitOps tool, may
// rewrite it after install.
const selfCheckInterval = 5 * time.Minute

// WebhookConfigProblems is the number of ways, found at the last check,
// in which the guard's own ValidatingWebhookConfiguration keeps
// PeerAuthentications from reaching it.
var WebhookConfigProblems = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "mtls_guard_webhook_config_problems",
	Help: "Ways in which the guard's own ValidatingWebhookConfiguration keeps PeerAuthentications in the root or a watched namespace from reaching it (0 when none).",
})

func init() { metrics.Registry.MustRegister(WebhookConfigProblems) }

// selfCheck reads the guard's own ValidatingWebhookConfiguration back and
// reports what would keep PeerAuthentications of the root namespace or
// of a watched namespace from reaching the guard: AKS's admissions
// enforcer, for one, adds namespaceSelector exclusions to every webhook
// that lacks the annotation admissions.enforcer/disabled: "true".
type selfCheck struct {
	name       string        // the configuration's name
	api        client.Reader // reads the configuration from the API server
	namespaces client.Reader // the cache, for the namespaces' labels
	synced     func(context.Context) bool
	opts       engine.Options
	log        logr.Logger

	mu       sync.Mutex
	problems []string
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (*selfCheck) NeedLeaderElection() bool { return false }

// Start checks once the cache has synced, then every selfCheckInterval.
func (c *selfCheck) Start(ctx context.Context) error {
	if !c.synced(ctx) {
		return nil // stopped before the cache synced
	}
	t := time.NewTicker(selfCheckInterval)
	defer t.Stop()
	for {
		c.run(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (c *selfCheck) run(ctx context.Context) {
	problems, err := c.check(ctx)
	if err != nil {
		// The guard keeps its last verdict: a failed read says nothing
		// about the configuration.
		c.log.Error(err, "could not read the guard's own webhook configuration", "name", c.name)
		return
	}
	c.mu.Lock()
	c.problems = problems
	c.mu.Unlock()
	WebhookConfigProblems.Set(float64(len(problems)))
	if len(problems) > 0 {
		c.log.Error(errors.New(strings.Join(problems, "; ")), "the guard's own webhook configuration keeps PeerAuthentications from reaching it",
			"name", c.name, "problems", problems)
		return
	}
	c.log.V(1).Info("the guard's own webhook configuration sends it every watched namespace's PeerAuthentications", "name", c.name)
}

func (c *selfCheck) check(ctx context.Context) ([]string, error) {
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.api.Get(ctx, client.ObjectKey{Name: c.name}, vwc); err != nil {
		if apierrors.IsNotFound(err) {
			// Not registered (yet): the guard is simply not called, which
			// the operator sees at once; no namespace is singled out.
			c.log.Info("the guard's webhook configuration does not exist (yet)", "name", c.name)
			return nil, nil
		}
		return nil, fmt.Errorf("reading ValidatingWebhookConfiguration %s: %w", c.name, err)
	}
	var nss corev1.NamespaceList
	if err := c.namespaces.List(ctx, &nss); err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	return configProblems(vwc, nss.Items, c.opts), nil
}

// Checker is the readiness check: not ready while the configuration keeps
// a watched namespace's PeerAuthentications from the guard, which would
// then silently admit STRICT there.
func (c *selfCheck) Checker(*http.Request) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.problems) > 0 {
		return fmt.Errorf("ValidatingWebhookConfiguration %s: %s", c.name, strings.Join(c.problems, "; "))
	}
	return nil
}

// configProblems lists what in vwc keeps PeerAuthentications in the root
// namespace, or in a namespace the guard watches, from reaching it.
func configProblems(vwc *admissionregistrationv1.ValidatingWebhookConfiguration, namespaces []corev1.Namespace, o engine.Options) []string {
	var hooks []*admissionregistrationv1.ValidatingWebhook
	for i := range vwc.Webhooks {
		if slices.ContainsFunc(vwc.Webhooks[i].Rules, rulesPeerAuthentications) {
			hooks = append(hooks, &vwc.Webhooks[i])
		}
	}
	if len(hooks) == 0 {
		return []string{"no webhook has a rule for security.istio.io peerauthentications"}
	}
	var problems []string
	for _, h := range hooks {
		if missing := missingOperations(h.Rules); len(missing) > 0 {
			problems = append(problems, fmt.Sprintf("webhook %s is not called for %s of PeerAuthentications", h.Name, strings.Join(missing, ", ")))
		}
		if h.ObjectSelector != nil && (len(h.ObjectSelector.MatchLabels) > 0 || len(h.ObjectSelector.MatchExpressions) > 0) {
			problems = append(problems, fmt.Sprintf("webhook %s has an objectSelector: PeerAuthentications whose labels do not match it are never checked", h.Name))
		}
		sel, err := metav1.LabelSelectorAsSelector(h.NamespaceSelector)
		if err != nil {
			problems = append(problems, fmt.Sprintf("webhook %s has a namespaceSelector the guard cannot read: %v", h.Name, err))
			continue
		}
		var blind []string
		for i := range namespaces {
			ns := &namespaces[i]
			if ns.Name != o.RootNamespace && o.ExcludedNamespaces.Has(ns.Name) {
				continue
			}
			if !sel.Matches(namespaceLabels(ns)) {
				blind = append(blind, ns.Name)
			}
		}
		if len(blind) > 0 {
			slices.Sort(blind)
			problems = append(problems, fmt.Sprintf("the namespaceSelector of webhook %s keeps PeerAuthentications in %s from the guard (on AKS, annotate the configuration admissions.enforcer/disabled: \"true\")",
				h.Name, strings.Join(blind, ", ")))
		}
	}
	return problems
}

// namespaceLabels are a namespace's labels as the API server matches
// them: kubernetes.io/metadata.name is always set.
func namespaceLabels(ns *corev1.Namespace) labels.Set {
	l := labels.Set{corev1.LabelMetadataName: ns.Name}
	for k, v := range ns.Labels {
		l[k] = v
	}
	return l
}

func rulesPeerAuthentications(r admissionregistrationv1.RuleWithOperations) bool {
	return matches(r.APIGroups, policy.GroupName) && matches(r.Resources, "peerauthentications") &&
		(matches(r.APIVersions, "v1") || matches(r.APIVersions, "v1beta1"))
}

// missingOperations lists the operations the guard decides that no rule
// for PeerAuthentications sends.
func missingOperations(rules []admissionregistrationv1.RuleWithOperations) []string {
	var missing []string
	for _, op := range []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete} {
		if !slices.ContainsFunc(rules, func(r admissionregistrationv1.RuleWithOperations) bool {
			return rulesPeerAuthentications(r) && (slices.Contains(r.Operations, op) || slices.Contains(r.Operations, admissionregistrationv1.OperationAll))
		}) {
			missing = append(missing, string(op))
		}
	}
	return missing
}

func matches(values []string, v string) bool {
	return slices.Contains(values, v) || slices.Contains(values, "*")
}

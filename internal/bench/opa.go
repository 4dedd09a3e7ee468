package main

import (
	"context"
	_ "embed"
	"fmt"
	"sort"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/server"
)

// scheme knows every kind the guard reads.
var scheme = server.Scheme()

//go:embed policy.rego
var policyRego string

// regoQuery is what a Gatekeeper-style evaluation of the policy asks.
const regoQuery = "data.mtlsguard.decision"

// OPA is the Rego peer: the guard's rules in Rego, prepared once over an
// inventory shaped as Gatekeeper syncs it, evaluated per decision.
type OPA struct {
	query  rego.PreparedEvalQuery
	params map[string]any
}

// Outcome is what both the guard and its peers answer, for comparing them.
type Outcome struct {
	Allowed   bool
	Touched   []string
	Workloads []engine.Workload
}

// OutcomeOf reduces a guard decision to an Outcome.
func OutcomeOf(d *engine.Decision) Outcome {
	o := Outcome{Allowed: d.Allowed, Touched: d.Touched, Workloads: d.Unmeshed}
	if o.Touched == nil {
		o.Touched = []string{}
	}
	return o
}

// Inventory shapes objects as Gatekeeper's data.inventory:
// namespace/<ns>/<apiVersion>/<kind>/<name> and cluster/<apiVersion>/<kind>/<name>.
func Inventory(objs []runtime.Object) (map[string]any, error) {
	namespaced, cluster := map[string]any{}, map[string]any{}
	for _, obj := range objs {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, fmt.Errorf("converting %T: %w", obj, err)
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, err
		}
		gvk := obj.GetObjectKind().GroupVersionKind()
		if gvk.Empty() {
			gvks, _, err := scheme.ObjectKinds(obj)
			if err != nil {
				return nil, fmt.Errorf("the kind of %T: %w", obj, err)
			}
			gvk = gvks[0]
		}
		apiVersion, kind := gvk.GroupVersion().String(), gvk.Kind
		u["apiVersion"], u["kind"] = apiVersion, kind
		root := cluster
		if ns := m.GetNamespace(); ns != "" {
			root = child(namespaced, ns)
		}
		child(child(root, apiVersion), kind)[m.GetName()] = u
	}
	return map[string]any{"inventory": map[string]any{"namespace": namespaced, "cluster": cluster}}, nil
}

func child(m map[string]any, k string) map[string]any {
	c, ok := m[k].(map[string]any)
	if !ok {
		c = map[string]any{}
		m[k] = c
	}
	return c
}

// NewOPA prepares the policy over an inventory of objs, which must carry
// their apiVersion and kind.
func NewOPA(ctx context.Context, objs []runtime.Object, o engine.Options) (*OPA, error) {
	data, err := Inventory(objs)
	if err != nil {
		return nil, err
	}
	// The fastest in-memory store OPA offers: no JSON round trip on write,
	// AST values handed to the evaluator without conversion on read.
	store := inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	q, err := rego.New(
		rego.Query(regoQuery),
		rego.Module("policy.rego", policyRego),
		rego.Store(store),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("preparing the Rego policy: %w", err)
	}
	excluded := make([]any, 0, o.ExcludedNamespaces.Len())
	for _, ns := range sets(o) {
		excluded = append(excluded, ns)
	}
	params := map[string]any{
		"rootNamespace":      o.RootNamespace,
		"excludedNamespaces": excluded,
		"sidecarMode":        string(o.SidecarMode),
		"allowOverride":      o.AllowOverride,
	}
	return &OPA{query: q, params: params}, nil
}

func sets(o engine.Options) []string {
	out := o.ExcludedNamespaces.UnsortedList()
	sort.Strings(out)
	return out
}

// Input builds the evaluation input of a change, parsed once, as
// Gatekeeper parses each AdmissionReview once.
func (p *OPA) Input(op engine.Operation, pa *securityv1.PeerAuthentication) (ast.Value, error) {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pa)
	if err != nil {
		return nil, err
	}
	obj["apiVersion"], obj["kind"] = "security.istio.io/v1", "PeerAuthentication"
	req := map[string]any{"operation": string(op), "namespace": pa.Namespace}
	if op == engine.Delete {
		req["oldObject"] = obj
	} else {
		req["object"] = obj
	}
	return ast.InterfaceToValue(map[string]any{"review": req, "parameters": p.params})
}

// Decide evaluates the prepared query on a parsed input.
func (p *OPA) Decide(ctx context.Context, input ast.Value) (Outcome, error) {
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return Outcome{}, fmt.Errorf("evaluating the Rego policy: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Outcome{}, fmt.Errorf("the Rego policy gave no decision: %v", rs)
	}
	m, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return Outcome{}, fmt.Errorf("the Rego policy decided %T", rs[0].Expressions[0].Value)
	}
	out := Outcome{Touched: []string{}, Workloads: []engine.Workload{}}
	out.Allowed, _ = m["allowed"].(bool)
	for _, ns := range list(m["touched"]) {
		out.Touched = append(out.Touched, fmt.Sprint(ns))
	}
	for _, w := range list(m["workloads"]) {
		wm, _ := w.(map[string]any)
		out.Workloads = append(out.Workloads, engine.Workload{
			Namespace: fmt.Sprint(wm["namespace"]), Kind: fmt.Sprint(wm["kind"]), Name: fmt.Sprint(wm["name"]),
			Pods: stringList(wm["pods"]), Reasons: stringList(wm["reasons"]),
		})
	}
	return out, nil
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func stringList(v any) []string {
	out := []string{}
	for _, s := range list(v) {
		out = append(out, fmt.Sprint(s))
	}
	return out
}

package engine

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mtls-guard/mtls-guard/internal/evidence"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// Operation is the admission operation on a policy.
type Operation string

// The operations the guard decides.
const (
	Create Operation = "CREATE"
	Update Operation = "UPDATE"
	Delete Operation = "DELETE"
)

// Change is one operation on one policy. The change's own object comes
// from the request, never from the cluster view, which may lag behind the
// API server: only the other policies and the pods come from the view.
type Change struct {
	Operation Operation
	// Policy is the new object for CREATE and UPDATE and the object being
	// deleted for DELETE.
	Policy *policy.Policy
	// Old is the policy's state before an UPDATE (the request's
	// oldObject). When it is nil on an UPDATE, the view's same-named
	// policy stands in for it: offline callers (check, report) decide
	// against the cluster they read. CREATE and DELETE ignore it: a
	// CREATE has no same-named policy before it, and a DELETE's Policy is
	// the object being deleted.
	Old *policy.Policy
}

// Scope says what a policy applies to.
type Scope string

// The scopes.
const (
	MeshWide      Scope = "mesh-wide"
	NamespaceWide Scope = "namespace-wide"
	WorkloadScope Scope = "workload"
	// Ignored is a selector policy in the root namespace, which Istio ignores.
	Ignored Scope = "ignored"
)

// Decision is the guard's answer to a change.
type Decision struct {
	Policy    string
	Operation Operation
	Scope     Scope
	Allowed   bool
	// Invalid is set when the policy broke the validity rules.
	Invalid bool
	// Overridden is set when the override annotation turned a denial into
	// an allowance.
	Overridden     bool
	OverrideReason string
	// Message is the human summary.
	Message string
	// Unmeshed lists the unmeshed workloads of the touched namespaces; never nil.
	Unmeshed []Workload
	// Warnings are shown on allowances and denials alike; never nil.
	Warnings []string
	// Touched lists the namespaces where some counted pod gains strictness.
	Touched []string
	// Plaintext lists the workloads that the change makes stricter
	// although Istio's telemetry shows plaintext traffic to them within
	// Window (section 3a); never nil.
	Plaintext []PlaintextWorkload
	// Window is the evidence's window, for messages.
	Window time.Duration
	// EvidenceUnavailable says why the plaintext evidence could not judge
	// a change that it would have judged; empty when it could, or when no
	// telemetry source is configured.
	EvidenceUnavailable string
	// Exempt names ("namespace/pod") the unmeshed pods of the touched
	// namespaces that the exempt label keeps out of the decision; sorted,
	// never nil.
	Exempt []string
}

// Outcome is what became of a change, in the words of the webhook's
// metrics and audit annotations.
type Outcome string

// The outcomes.
const (
	OutcomeAllowed Outcome = "allowed"
	// OutcomeAllowedWithoutEvidence is an allowance that the plaintext
	// evidence would have judged but could not.
	OutcomeAllowedWithoutEvidence Outcome = "allowed-without-evidence"
	OutcomeDenied                 Outcome = "denied"
	OutcomeOverridden             Outcome = "overridden"
	OutcomeInvalid                Outcome = "invalid"
)

// Outcome returns the decision's outcome; an invalid policy's and an
// override's come first, as they are allowed or denied too.
func (d *Decision) Outcome() Outcome {
	switch {
	case d.Invalid:
		return OutcomeInvalid
	case d.Overridden:
		return OutcomeOverridden
	case d.Allowed && d.EvidenceUnavailable != "":
		return OutcomeAllowedWithoutEvidence
	case d.Allowed:
		return OutcomeAllowed
	}
	return OutcomeDenied
}

// ScopeOf returns the scope of a policy.
func ScopeOf(p *policy.Policy, o Options) Scope {
	switch {
	case p.Namespace == o.RootNamespace && p.HasSelector():
		return Ignored
	case p.Namespace == o.RootNamespace:
		return MeshWide
	case p.HasSelector():
		return WorkloadScope
	}
	return NamespaceWide
}

// Decide decides a change against a cluster. An error means the cluster
// view could not answer; callers must not treat it as an allowance.
func Decide(c Cluster, ch Change, o Options) (*Decision, error) {
	if ch.Policy == nil {
		return nil, fmt.Errorf("change has no policy")
	}
	switch ch.Operation {
	case Create, Update, Delete:
	default:
		return nil, fmt.Errorf("unsupported operation %q", ch.Operation)
	}
	p := ch.Policy
	d := &Decision{
		Policy:    p.Key(),
		Operation: ch.Operation,
		Scope:     ScopeOf(p, o),
		Unmeshed:  []Workload{},
		Warnings:  []string{},
		Exempt:    []string{},
		Plaintext: []PlaintextWorkload{},
	}
	if ch.Operation != Delete && !p.Valid() {
		d.Invalid = true
		d.Message = invalidMessage(p)
		return d, nil
	}
	if p.Namespace != o.RootNamespace && o.excluded(p.Namespace) {
		d.Allowed = true
		d.Message = fmt.Sprintf("%s allowed: namespace %s is excluded from the guard", subject(d), p.Namespace)
		return d, nil
	}
	if ch.Operation == Delete {
		ns, err := c.Namespace(p.Namespace)
		if err != nil {
			return nil, fmt.Errorf("reading namespace %s: %w", p.Namespace, err)
		}
		if ns != nil && ns.DeletionTimestamp != nil {
			d.Allowed = true
			d.Message = fmt.Sprintf("%s allowed: namespace %s is being deleted", subject(d), p.Namespace)
			return d, nil
		}
	}

	nsBefore, err := c.Policies(p.Namespace)
	if err != nil {
		return nil, fmt.Errorf("listing policies in %s: %w", p.Namespace, err)
	}
	nsBefore, p = before(nsBefore, ch, p)
	nsAfter := apply(nsBefore, ch.Operation, p)
	rootBefore, rootAfter := nsBefore, nsAfter
	if p.Namespace != o.RootNamespace {
		if rootBefore, err = c.Policies(o.RootNamespace); err != nil {
			return nil, fmt.Errorf("listing policies in root namespace %s: %w", o.RootNamespace, err)
		}
		rootAfter = rootBefore
	}
	meshBefore, meshAfter := meshMode(rootBefore), meshMode(rootAfter)

	var candidates []string
	switch {
	case p.Namespace != o.RootNamespace:
		candidates = []string{p.Namespace}
	case meshBefore != meshAfter:
		// Not only a selector-less change: an UPDATE that gives the
		// oldest mesh policy a selector hands the mesh level to the next.
		all, err := c.PodNamespaces()
		if err != nil {
			return nil, fmt.Errorf("listing namespaces: %w", err)
		}
		for _, ns := range all {
			if !o.excluded(ns) {
				candidates = append(candidates, ns)
			}
		}
	}

	// The evidence is read once per decision; a stale snapshot is not
	// read at all: --plaintext-unavailable decides instead.
	var plaintext *evidence.Snapshot
	var unavailable error
	if o.Plaintext != nil {
		plaintext, unavailable = o.Plaintext()
		if unavailable == nil && plaintext == nil {
			unavailable = errors.New("no evidence")
		}
	}

	var blocking, drift []UnmeshedPod
	var grouped [][]Workload // of touched namespaces whose facts group them
	matched := 0
	for _, ns := range candidates {
		before, after := nsBefore, nsAfter
		if ns != p.Namespace {
			if before, err = c.Policies(ns); err != nil {
				return nil, fmt.Errorf("listing policies in %s: %w", ns, err)
			}
			after = before
		}
		lb, la := resolveLevel(meshBefore, before), resolveLevel(meshAfter, after)
		own := ns == p.Namespace
		if !own && sameLevel(&lb, &la) {
			continue // nothing changes here: the namespace decides for itself
		}
		f, err := c.PodFacts(ns, o.SidecarMode)
		if err != nil {
			return nil, fmt.Errorf("listing pods in %s: %w", ns, err)
		}
		s := scanNamespace(f, &lb, &la, p, own)
		matched += s.matched
		drift = append(drift, s.drift...)
		if s.touched {
			d.Touched = append(d.Touched, ns)
			for _, up := range f.Exempt {
				d.Exempt = append(d.Exempt, up.Namespace+"/"+up.Name)
			}
			if o.Plaintext != nil && unavailable == nil {
				d.Plaintext = append(d.Plaintext, plaintextIn(f, &lb, &la, plaintext.ForNamespace(ns))...)
			}
			if f.Workloads == nil {
				blocking = append(blocking, f.Unmeshed...)
			} else {
				ws, err := f.Workloads()
				if err != nil {
					return nil, fmt.Errorf("grouping the unmeshed pods of %s: %w", ns, err)
				}
				grouped = append(grouped, ws)
			}
		}
	}

	if d.Unmeshed, err = merge(c, blocking, grouped); err != nil {
		return nil, err
	}
	if err := d.addWarnings(c, p, o, nsAfter, matched, drift); err != nil {
		return nil, err
	}
	if len(d.Exempt) > 0 {
		slices.Sort(d.Exempt)
		d.Warnings = append(d.Warnings, fmt.Sprintf("exempt: %d unmeshed %s labelled %s not judged: %s",
			len(d.Exempt), plural(len(d.Exempt), "pod", "pods"), ExemptHint, listNames(d.Exempt, 3)))
	}
	sortPlaintext(d.Plaintext)
	if o.Plaintext != nil {
		if plaintext != nil {
			d.Window = plaintext.Window
		}
		if unavailable != nil && len(d.Touched) > 0 {
			d.EvidenceUnavailable = unavailable.Error()
			if !o.DenyWithoutEvidence {
				d.Warnings = append(d.Warnings, d.EvidenceUnavailable+"; callers that no pod list shows were not checked")
			}
		}
	}
	d.Allowed = len(d.Unmeshed) == 0 && len(d.Plaintext) == 0 && (d.EvidenceUnavailable == "" || !o.DenyWithoutEvidence)
	if !d.Allowed && p.OverrideReason != "" && o.AllowOverride {
		d.Allowed, d.Overridden, d.OverrideReason = true, true, p.OverrideReason
		d.Warnings = append(d.Warnings, overrideWarning(d))
	}
	d.Message = message(d, p, o)
	return d, nil
}

// before returns the namespace's policies before the change, with the
// change's own object as the request gives it rather than as the view
// holds it, and the changed policy with the creationTimestamp it will have.
//   - CREATE: no policy of that name exists before, whatever a lagging view
//     still holds (kubectl replace --force deletes, then creates).
//   - UPDATE: the state before is Old; creationTimestamp is immutable, so
//     the policy keeps Old's.
//   - DELETE: the object being deleted exists before, whatever the view says.
func before(ps []*policy.Policy, ch Change, p *policy.Policy) ([]*policy.Policy, *policy.Policy) {
	switch ch.Operation {
	case Create:
		return apply(ps, Delete, p), p
	case Delete:
		return apply(ps, Update, p), p
	}
	old := ch.Old
	if old == nil {
		old = byName(ps, p.Name)
	}
	if old == nil {
		return ps, p
	}
	if !old.Created.Equal(&p.Created) {
		cp := *p
		cp.Created = old.Created
		p = &cp
	}
	return apply(ps, Update, old), p
}

// byName returns the policy of that name, or nil.
func byName(ps []*policy.Policy, name string) *policy.Policy {
	for _, e := range ps {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// apply returns the namespace's policies after the change.
func apply(ps []*policy.Policy, op Operation, p *policy.Policy) []*policy.Policy {
	out := make([]*policy.Policy, 0, len(ps)+1)
	for _, e := range ps {
		if e.Name != p.Name {
			out = append(out, e)
		}
	}
	if op != Delete {
		out = append(out, p)
	}
	return out
}

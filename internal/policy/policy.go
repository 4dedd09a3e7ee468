package policy

import (
	"fmt"
	"sort"
	"strings"

	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// OverrideAnnotation on a policy turns a denial into an audited allowance.
const OverrideAnnotation = "mtls-guard.io/override-reason"

// emptyPortsProblem is the problem of a portLevelMtls without entries.
const emptyPortsProblem = "spec.portLevelMtls is empty"

// Policy is a PeerAuthentication reduced to what decides strictness.
// It is immutable once built and safe to share between goroutines.
type Policy struct {
	Namespace string
	Name      string
	// Created is the creationTimestamp; zero means not yet created, which
	// makes the policy the newest.
	Created metav1.Time
	// Selector is spec.selector.matchLabels; empty means namespace- or
	// mesh-wide, as Istio treats an empty selector.
	Selector labels.Set
	Mode     Mode
	// Ports holds spec.portLevelMtls.
	Ports map[uint32]Mode
	// OverrideReason is the value of OverrideAnnotation.
	OverrideReason string
	// Problems lists why the policy is invalid; empty when it is valid.
	Problems []string
}

// Key returns "namespace/name".
func (p *Policy) Key() string { return p.Namespace + "/" + p.Name }

// HasSelector reports whether the policy is workload-level.
func (p *Policy) HasSelector() bool { return len(p.Selector) > 0 }

// Valid reports whether the policy passed the validity rules.
func (p *Policy) Valid() bool { return len(p.Problems) == 0 }

// Matches reports whether a workload policy selects a pod with these labels.
func (p *Policy) Matches(podLabels map[string]string) bool {
	for k, v := range p.Selector {
		if pv, ok := podLabels[k]; !ok || pv != v {
			return false
		}
	}
	return true
}

// AnyStrict reports whether the policy sets STRICT anywhere.
func (p *Policy) AnyStrict() bool {
	if p.Mode == Strict {
		return true
	}
	for _, m := range p.Ports {
		if m == Strict {
			return true
		}
	}
	return false
}

// Older reports whether a takes precedence over b under Istio's "oldest
// wins": earlier creationTimestamp, then name. Uncreated policies are newest.
func Older(a, b *Policy) bool {
	az, bz := a.Created.IsZero(), b.Created.IsZero()
	if az != bz {
		return bz
	}
	if !a.Created.Equal(&b.Created) {
		return a.Created.Before(&b.Created)
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.Namespace < b.Namespace
}

// SortOldestFirst orders policies by precedence.
func SortOldestFirst(ps []*Policy) {
	sort.SliceStable(ps, func(i, j int) bool { return Older(ps[i], ps[j]) })
}

// FromV1 compiles a security.istio.io/v1 PeerAuthentication.
func FromV1(pa *securityv1.PeerAuthentication) *Policy {
	return compile(&pa.ObjectMeta, &pa.Spec)
}

// FromV1beta1 compiles a security.istio.io/v1beta1 PeerAuthentication; the
// two versions share one schema.
func FromV1beta1(pa *securityv1beta1.PeerAuthentication) *Policy {
	return compile(&pa.ObjectMeta, &pa.Spec)
}

// From compiles obj when it is a PeerAuthentication of either version, and
// returns nil for any other object.
func From(obj any) *Policy {
	switch pa := obj.(type) {
	case *securityv1.PeerAuthentication:
		return FromV1(pa)
	case *securityv1beta1.PeerAuthentication:
		return FromV1beta1(pa)
	}
	return nil
}

var schemeBuilder = runtime.NewSchemeBuilder(securityv1.AddToScheme, securityv1beta1.AddToScheme)

// AddToScheme adds the PeerAuthentication versions that From compiles,
// security.istio.io v1 and v1beta1, to a scheme.
var AddToScheme = schemeBuilder.AddToScheme

func compile(meta *metav1.ObjectMeta, spec *apisecurity.PeerAuthentication) *Policy {
	p := &Policy{
		Namespace:      meta.Namespace,
		Name:           meta.Name,
		Created:        meta.CreationTimestamp,
		OverrideReason: strings.TrimSpace(meta.Annotations[OverrideAnnotation]),
	}
	if sel := spec.GetSelector(); sel != nil && len(sel.GetMatchLabels()) > 0 {
		p.Selector = labels.Set(sel.GetMatchLabels())
	}
	var err error
	if p.Mode, err = fromAPI(spec.GetMtls()); err != nil {
		p.Problems = append(p.Problems, "spec.mtls.mode: "+err.Error())
	}
	if plm := spec.GetPortLevelMtls(); plm != nil {
		p.Ports = make(map[uint32]Mode, len(plm))
		ports := make([]uint32, 0, len(plm))
		for port := range plm {
			ports = append(ports, port)
		}
		sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
		for _, port := range ports {
			m, err := fromAPI(plm[port])
			if err != nil {
				p.Problems = append(p.Problems, fmt.Sprintf("spec.portLevelMtls[%d].mode: %v", port, err))
			}
			if port < 1 || port > 65535 {
				p.Problems = append(p.Problems, fmt.Sprintf("spec.portLevelMtls: port %d is outside 1..65535", port))
			}
			p.Ports[port] = m
		}
		if len(plm) == 0 {
			p.Problems = append(p.Problems, emptyPortsProblem)
		}
		if !p.HasSelector() {
			p.Problems = append(p.Problems, "spec.portLevelMtls needs a workload selector (spec.selector.matchLabels)")
		}
	}
	return p
}

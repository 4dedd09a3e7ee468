package policy_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	apisecurity "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// FuzzDecode feeds arbitrary bytes to policy.Decode, which reads the object
// of every admission request. It must never panic, must return exactly one
// of a policy and an error, and a policy it calls valid must hold only what
// the validity rules allow and survive a round trip unchanged. The seed
// corpus is in testdata/fuzz/FuzzDecode; `make fuzz` searches further.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := policy.Decode(data)
		if (p == nil) == (err == nil) {
			t.Fatalf("Decode returned policy %+v and error %v; want exactly one", p, err)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if p.Name == "" {
			t.Fatal("a policy without a name")
		}
		agreeWithTyped(t, data, p)
		again, err := policy.Decode(data)
		if err != nil || !reflect.DeepEqual(p, again) {
			t.Fatalf("Decode is not deterministic: %+v then %+v, %v", p, again, err)
		}
		for i, pr := range p.Problems {
			if pr == "" || slices.Contains(p.Problems[i+1:], pr) {
				t.Fatalf("empty or repeated problem in %q", p.Problems)
			}
		}
		if !p.Valid() {
			return
		}
		checkValid(t, p)
		roundTrip(t, p)
	})
}

// agreeWithTyped compares Decode with the typed path that informers and
// the admission decoder take (JSON into securityv1.PeerAuthentication,
// then FromV1): where the typed decode reads the input, both must agree on
// validity, and a valid policy must come out the same.
func agreeWithTyped(t *testing.T, data []byte, p *policy.Policy) {
	t.Helper()
	var pa securityv1.PeerAuthentication
	if err := json.Unmarshal(data, &pa); err != nil {
		return // the typed path refuses what Decode read; nothing to compare
	}
	typed := policy.FromV1(&pa)
	if slices.ContainsFunc(p.Problems, func(s string) bool { return strings.HasSuffix(s, "appears twice") }) {
		return // the typed path keeps one of two spellings of a port, at random
	}
	if typed.Valid() != p.Valid() {
		t.Fatalf("Decode and FromV1 disagree on validity:\nDecode: %+v\nFromV1: %+v", p, typed)
	}
	if p.Valid() && !reflect.DeepEqual(p, typed) {
		t.Fatalf("Decode and FromV1 disagree:\nDecode: %+v\nFromV1: %+v", p, typed)
	}
}

// checkValid asserts what the validity rules promise of a valid policy.
func checkValid(t *testing.T, p *policy.Policy) {
	t.Helper()
	inRange := func(m policy.Mode) bool { return m >= policy.Unset && m <= policy.Strict }
	if !inRange(p.Mode) {
		t.Fatalf("valid policy with mode %v", p.Mode)
	}
	if p.Ports != nil && (len(p.Ports) == 0 || !p.HasSelector()) {
		t.Fatalf("valid policy with portLevelMtls %v and selector %v", p.Ports, p.Selector)
	}
	for port, m := range p.Ports {
		if port < 1 || port > 65535 || !inRange(m) {
			t.Fatalf("valid policy with port %d mode %v", port, m)
		}
	}
}

// roundTrip renders a valid policy as a PeerAuthentication and decodes it
// again: nothing may change.
func roundTrip(t *testing.T, p *policy.Policy) {
	t.Helper()
	pa := &securityv1.PeerAuthentication{
		TypeMeta:   metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: policy.Kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, CreationTimestamp: p.Created},
	}
	if p.OverrideReason != "" {
		pa.Annotations = map[string]string{policy.OverrideAnnotation: p.OverrideReason}
	}
	if p.HasSelector() {
		pa.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: p.Selector}
	}
	pa.Spec.Mtls = &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_Mode(p.Mode)}
	if p.Ports != nil {
		pa.Spec.PortLevelMtls = map[uint32]*apisecurity.PeerAuthentication_MutualTLS{}
		for port, m := range p.Ports {
			pa.Spec.PortLevelMtls[port] = &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_Mode(m)}
		}
	}
	data, err := json.Marshal(pa)
	if err != nil {
		t.Fatal(err)
	}
	back, err := policy.Decode(data)
	if err != nil {
		t.Fatalf("the rendering of a valid policy does not decode: %v\n%s", err, data)
	}
	if !back.Created.Equal(&p.Created) {
		t.Fatalf("creationTimestamp %v became %v", p.Created, back.Created)
	}
	back.Created = p.Created
	if !reflect.DeepEqual(p, back) {
		t.Fatalf("round trip changed the policy:\n%+v\n%+v\n%s", p, back, data)
	}
}

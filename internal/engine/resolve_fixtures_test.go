package engine

import (
	"fmt"
	"strings"
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// TestResolve describes policies as the decision table of the external
// tests does (fixtures_test.go, package engine_test). An internal test cannot
// share that builder, so it keeps the few parts it needs.
const (
	t2023 = "2023-12-01T00:00:00Z"
	jan   = "2024-01-01T00:00:00Z"
	feb   = "2024-02-01T00:00:00Z"
	mar   = "2024-03-01T00:00:00Z"

	strict     = "{mtls: {mode: STRICT}}"
	permissive = "{mtls: {mode: PERMISSIVE}}"
	disable    = "{mtls: {mode: DISABLE}}"
	unset      = "{mtls: {mode: UNSET}}"
)

// pa describes a PeerAuthentication compactly.
type pa struct {
	version   string // "v1" or "v1beta1"
	namespace string
	name      string
	created   string // RFC 3339; empty means no creationTimestamp
	spec      string // flow YAML for spec; empty means {}
}

// v1 and v1beta1 build a pa from "namespace/name".
func v1(key, created, spec string) pa      { return newPA("v1", key, created, spec) }
func v1beta1(key, created, spec string) pa { return newPA("v1beta1", key, created, spec) }

func newPA(version, key, created, spec string) pa {
	ns, name, _ := strings.Cut(key, "/")
	return pa{version: version, namespace: ns, name: name, created: created, spec: spec}
}

// typed compiles the policy through the typed object of its API version.
func (p pa) typed(t testing.TB) *policy.Policy {
	t.Helper()
	spec := p.spec
	if spec == "" {
		spec = "{}"
	}
	doc := fmt.Sprintf("metadata: {name: %s, namespace: %s}\nspec: %s\n", p.name, p.namespace, spec)
	if p.created != "" {
		doc = fmt.Sprintf("metadata: {name: %s, namespace: %s, creationTimestamp: %q}\nspec: %s\n", p.name, p.namespace, p.created, spec)
	}
	switch p.version {
	case "v1":
		var o securityv1.PeerAuthentication
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("%s/%s: %v", p.namespace, p.name, err)
		}
		return policy.FromV1(&o)
	case "v1beta1":
		var o securityv1beta1.PeerAuthentication
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("%s/%s: %v", p.namespace, p.name, err)
		}
		return policy.FromV1beta1(&o)
	default:
		t.Fatalf("unknown version %q", p.version)
		return nil
	}
}

package input_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mtls-guard/mtls-guard/internal/input"
)

// TestSchema checks Policies with Istio's CRD: what the schema refuses is
// INVALID in the API server's words (internal/plugine2e compares them with
// a real API server), the rest goes on to the guard's own rules.
func TestSchema(t *testing.T) {
	s := istioSchema(t)
	doc := func(version, spec string) string {
		return "apiVersion: security.istio.io/" + version + "\nkind: PeerAuthentication\nmetadata: {name: p, namespace: ns}\nspec: " + spec + "\n"
	}
	tests := []struct {
		name, in string
		want     []string // problems
	}{
		{"valid v1", doc("v1", "{mtls: {mode: STRICT}}"), nil},
		{"valid v1beta1", doc("v1beta1", "{selector: {matchLabels: {app: a}}, portLevelMtls: {8080: {mode: DISABLE}}}"), nil},
		{"unknown mode", doc("v1", "{mtls: {mode: STRICTT}}"), []string{
			`spec.mtls.mode: Unsupported value: "STRICTT": supported values: "UNSET", "DISABLE", "PERMISSIVE", "STRICT"`,
			"<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
		}},
		{"CEL rule", doc("v1", "{portLevelMtls: {8080: {mode: DISABLE}}}"), []string{"spec: Invalid value: portLevelMtls requires selector"}},
		{"unknown field", doc("v1beta1", "{mtls: {mode: STRICT, strict: true}}"), []string{
			`PeerAuthentication in version "v1beta1" cannot be handled as a PeerAuthentication: strict decoding error: unknown field "spec.mtls.strict"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := readString(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			ps, err := input.Policies(objs, input.DefaultNamespace, s)
			if err != nil {
				t.Fatal(err)
			}
			if got := ps[0].Policy.Problems; !slices.Equal(got, tt.want) {
				t.Errorf("problems\n%q\nwant\n%q", got, tt.want)
			}
		})
	}

	// Without the schema, the guard's own rules still refuse the typo.
	objs, _ := readString(doc("v1", "{mtls: {mode: STRICTT}}"))
	ps, err := input.Policies(objs, input.DefaultNamespace, nil)
	if err != nil || len(ps) != 1 || !strings.Contains(fmt.Sprint(ps[0].Policy.Problems), `unknown mTLS mode "STRICTT"`) {
		t.Errorf("without schema: %v, %v", ps, err)
	}
}

func TestNewSchemaErrors(t *testing.T) {
	crd := func(group, kind string, versions ...apiextensionsv1.CustomResourceDefinitionVersion) *apiextensionsv1.CustomResourceDefinition {
		return &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: "x"},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: group, Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: kind}, Versions: versions,
			},
		}
	}
	tests := []struct {
		crd  *apiextensionsv1.CustomResourceDefinition
		want string
	}{
		{crd("example.com", "Widget"), "CRD x is not Istio's PeerAuthentication CRD"},
		{crd("security.istio.io", "PeerAuthentication", apiextensionsv1.CustomResourceDefinitionVersion{Name: "v1", Served: true}), "CRD x serves no version with a schema"},
	}
	for _, tt := range tests {
		if _, err := input.NewSchema(tt.crd); err == nil || err.Error() != tt.want {
			t.Errorf("NewSchema() error %v, want %q", err, tt.want)
		}
	}
}

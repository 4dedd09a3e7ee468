package engine_test

import (
	"reflect"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/engine/enginetest"
)

// Alternate is another Cluster implementation that must decide every case
// of the decision table exactly as a Snapshot of the same objects does.
// Implementations (internal/index) register themselves from init functions
// in other test files, so this one does not import them.
type Alternate struct {
	Name string
	// Decider builds the implementation from objects, added in order (a
	// later object replaces an earlier one with the same key), and returns
	// how it decides.
	Decider func(t testing.TB, objs []runtime.Object, o engine.Options) func(engine.Change) (*engine.Decision, error)
}

// Alternates are registered by test files' init functions.
var Alternates []Alternate

// caseObjects returns the objects of a decision case in the order the
// snapshot of TestDecide adds them.
func caseObjects(t testing.TB, tc *decideCase) []runtime.Object {
	t.Helper()
	var objs []runtime.Object
	for _, f := range append([]string{"cluster.yaml"}, tc.fixtures...) {
		objs = append(objs, fixtureObjects(t, f)...)
	}
	for _, p := range tc.existing {
		objs = append(objs, p.object(t))
	}
	return objs
}

// TestDecideAlternates runs the whole decision table against every
// alternate implementation and wants decisions identical to the
// snapshot's, field by field.
func TestDecideAlternates(t *testing.T) {
	if len(Alternates) == 0 {
		t.Fatal("no alternate Cluster registered: index_test.go registers internal/index")
	}
	for _, alt := range Alternates {
		for _, tc := range slices.Concat(decideCases, plaintextCases) {
			for _, version := range apiVersions {
				for _, c := range compilers {
					t.Run(alt.Name+"/"+tc.name+"/"+version+"/"+c.name, func(t *testing.T) {
						objs := caseObjects(t, &tc)
						s := enginetest.NewSnapshot()
						for _, o := range objs {
							s.Add(o)
						}
						o := engine.DefaultOptions()
						if tc.opts != nil {
							o = tc.opts()
						}
						ch := engine.Change{Operation: tc.op, Policy: c.compile(t, tc.change.in(version))}
						if tc.old != nil {
							ch.Old = c.compile(t, tc.old.in(version))
						}
						want, err := engine.Decide(s, ch, o)
						if err != nil {
							t.Fatalf("snapshot: %v", err)
						}
						got, err := alt.Decider(t, objs, o)(ch)
						if err != nil {
							t.Fatalf("%s: %v", alt.Name, err)
						}
						if !reflect.DeepEqual(got, want) {
							t.Errorf("%s decided\n%+v\nthe snapshot\n%+v", alt.Name, got, want)
						}
						checkDecision(t, got, &tc)
					})
				}
			}
		}
	}
}

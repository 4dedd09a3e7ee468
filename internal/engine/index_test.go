package engine_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index"
)

// The index decides the whole decision table, both through its own facts
// (Index.Decide, what the webhook uses) and as a plain Cluster through its
// pods.
func init() {
	build := func(t testing.TB, objs []runtime.Object, o engine.Options) *index.Index {
		ix := index.New(o)
		for _, obj := range objs {
			if !ix.Add(obj) {
				t.Fatalf("the index does not take %T", obj)
			}
		}
		return ix
	}
	engine.Alternates = append(engine.Alternates,
		engine.Alternate{Name: "index", Decider: func(t testing.TB, objs []runtime.Object, o engine.Options) func(engine.Change) (*engine.Decision, error) {
			return build(t, objs, o).Decide
		}},
		engine.Alternate{Name: "index-as-cluster", Decider: func(t testing.TB, objs []runtime.Object, o engine.Options) func(engine.Change) (*engine.Decision, error) {
			ix := build(t, objs, o)
			return func(ch engine.Change) (*engine.Decision, error) { return engine.Decide(ix, ch, o) }
		}},
	)
}

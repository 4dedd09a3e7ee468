package engine_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/podrecord"
)

// The index decides the whole decision table from its facts, as the
// webhook does, with pods given as the cache hands them over: records.
func init() {
	build := func(t testing.TB, objs []runtime.Object, o engine.Options) *index.Index {
		ix := index.New(o)
		for _, obj := range objs {
			var in any = obj
			if pod, ok := obj.(*corev1.Pod); ok {
				in = podrecord.New(pod)
			}
			if !ix.Add(in) {
				t.Fatalf("the index does not take %T", obj)
			}
		}
		return ix
	}
	Alternates = append(Alternates,
		Alternate{Name: "index", Decider: func(t testing.TB, objs []runtime.Object, o engine.Options) func(engine.Change) (*engine.Decision, error) {
			return build(t, objs, o).Decide
		}},
	)
}

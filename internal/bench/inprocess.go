package main

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"text/tabwriter"
	"time"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/index/clustergen"
)

// measurement is one timed operation.
type measurement struct {
	perOp time.Duration
	runs  int
}

func (m measurement) String() string { return formatDuration(m.perOp) }

// measure runs f once to warm up and check it, then in growing batches
// until min has passed, and returns the mean time per run.
func measure(min time.Duration, f func() error) (measurement, error) {
	if err := f(); err != nil {
		return measurement{}, err
	}
	var total time.Duration
	runs := 0
	for batch := 1; total < min; batch *= 2 {
		start := time.Now()
		for range batch {
			if err := f(); err != nil {
				return measurement{}, err
			}
		}
		total += time.Since(start)
		runs += batch
	}
	return measurement{perOp: total / time.Duration(runs), runs: runs}, nil
}

func formatDuration(d time.Duration) string {
	if d < 0 {
		return "-" + formatDuration(-d)
	}
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%d ns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(d.Nanoseconds())/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d.Nanoseconds())/1e6)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func ratio(peer, guard time.Duration) string {
	if guard <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f×", float64(peer)/float64(guard))
}

// guardTimes holds the guard's time per decision and size, for the ratios
// of the API-server peer.
type guardTimes map[clustergen.Decision]map[int]time.Duration

// objects returns a generated cluster's objects, kinds set, as Gatekeeper
// syncs them into OPA: whole. The index turns pods into records itself.
func objects(gen *clustergen.Cluster) ([]k8sruntime.Object, error) {
	objs := gen.Objects()
	for i, o := range objs {
		if o.GetObjectKind().GroupVersionKind().Empty() {
			gvks, _, err := scheme.ObjectKinds(o)
			if err != nil {
				return nil, fmt.Errorf("the kind of %T: %w", o, err)
			}
			objs[i].GetObjectKind().SetGroupVersionKind(gvks[0])
		}
	}
	return objs, nil
}

// inProcess times the guard and the Rego peer at every size.
func inProcess(ctx context.Context, c config, out io.Writer) (guardTimes, error) {
	fmt.Fprintln(out, "== Decision time in process: guard (index) vs OPA/Rego over a Gatekeeper-style inventory")
	fmt.Fprintln(out, "   guard: index.Index.Decide; OPA: rego.PrepareForEval once, Eval per decision, input parsed once")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "decision\tpods\tnamespaces\tunmeshed listed\tguard\tOPA/Rego\tOPA/guard\t")
	times := guardTimes{}
	var loads []string
	for _, size := range c.sizes {
		gen := clustergen.New(c.cluster(size))
		objs, err := objects(gen)
		if err != nil {
			return nil, err
		}
		o := engine.DefaultOptions()
		ix := index.New(o)
		start := time.Now()
		for _, obj := range objs {
			ix.Add(obj)
		}
		indexLoad := time.Since(start)
		var peer *OPA
		var heap int64
		var opaLoad time.Duration
		if !c.skipOPA {
			before := liveHeap()
			start = time.Now()
			if peer, err = NewOPA(ctx, objs, o); err != nil {
				return nil, err
			}
			opaLoad = time.Since(start)
			heap = max(liveHeap()-before, 0)
		}
		loads = append(loads, fmt.Sprintf("   %d pods: index built in %s; OPA inventory loaded and policy prepared in %s, holding %d MiB",
			size, indexLoad.Round(time.Millisecond), opaLoad.Round(time.Millisecond), heap>>20))
		for _, d := range clustergen.Decisions {
			ch, pa, ok := gen.Change(d)
			if !ok {
				continue
			}
			want, err := ix.Decide(ch)
			if err != nil {
				return nil, err
			}
			g, err := measure(c.minTime, func() error { _, err := ix.Decide(ch); return err })
			if err != nil {
				return nil, err
			}
			if times[d] == nil {
				times[d] = map[int]time.Duration{}
			}
			times[d][size] = g.perOp
			peerTime, peerRatio := "-", "-"
			if peer != nil {
				in, err := peer.Input(ch.Operation, pa)
				if err != nil {
					return nil, err
				}
				got, err := peer.Decide(ctx, in)
				if err != nil {
					return nil, err
				}
				if !reflect.DeepEqual(got, OutcomeOf(want)) {
					return nil, fmt.Errorf("%s at %d pods: the Rego peer decided %+v, the guard %+v", d, size, got, OutcomeOf(want))
				}
				p, err := measure(c.minTime, func() error { _, err := peer.Decide(ctx, in); return err })
				if err != nil {
					return nil, err
				}
				peerTime, peerRatio = p.String(), ratio(p.perOp, g.perOp)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t\n", d, size, gen.Config().Namespaces, listedPods(want), g, peerTime, peerRatio)
		}
		peer, ix = nil, nil // let the next size have the memory
		runtime.GC()
	}
	if err := tw.Flush(); err != nil {
		return nil, err
	}
	for _, l := range loads {
		fmt.Fprintln(out, l)
	}
	fmt.Fprintln(out)
	return times, nil
}

func listedPods(d *engine.Decision) int {
	n := 0
	for _, w := range d.Unmeshed {
		n += len(w.Pods)
	}
	return n
}

func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

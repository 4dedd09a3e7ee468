package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/mtls-guard/mtls-guard/internal/index/clustergen"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// podBenchLabel marks the pods the pod-create load creates, so that each
// round deletes them again and the rounds stay alike.
const podBenchLabel = "mtls-guard-bench"

// benchPod is what the pod-create load creates: a Deployment's pod of the
// generated cluster's STRICT namespace, as its ReplicaSet controller would
// send it (the fields a real API server holds, no status), without a
// sidecar. Every create is therefore judged by the arrivals webhook and
// warned as unmeshed under STRICT, the most the guard does for a pod; a
// meshed pod never reaches it (deploy/'s matchConditions).
func benchPod(gen *clustergen.Cluster) (*corev1.Pod, error) {
	full := gen.Config()
	full.Full = true
	fg := clustergen.New(full)
	for i := range gen.NumPods() {
		p := fg.Pod(i)
		if p.Namespace != gen.ExemptNamespace() || len(p.Spec.InitContainers) == 0 {
			continue
		}
		p.Name, p.UID, p.ResourceVersion, p.ManagedFields = "", "", "", nil
		p.Spec.InitContainers, p.Spec.NodeName, p.Status = nil, "", corev1.PodStatus{}
		p.Labels[podBenchLabel] = "pod-create"
		return p, nil
	}
	return nil, errors.New("the generated cluster has no meshed pod in its STRICT namespace (needs two namespaces at least)")
}

// podSample is what one timed pod-create load produced.
type podSample struct {
	latencies      []time.Duration
	elapsed        time.Duration
	warned, errors int
	firstErr       error
	guardCount     uint64
	guardSeconds   float64
}

// warningCounter counts the admission warnings of the load's answers.
type warningCounter struct{ n atomic.Int64 }

func (w *warningCounter) HandleWarningHeaderWithContext(context.Context, int, string, string) {
	w.n.Add(1)
}

// podCreates measures pod CREATEs through the API server without and with
// the guard's webhooks registered, alternating as compare does, and prints
// the p50 the arrivals webhook adds.
func podCreates(ctx context.Context, c config, cfg *rest.Config, gen *clustergen.Cluster, g *guardProcess, register, deregister func() error, out io.Writer) error {
	pod, err := benchPod(gen)
	if err != nil {
		return err
	}
	warnings := &warningCounter{}
	cfg = unlimited(cfg)
	// The ReplicaSet controller's own content type.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.WarningHandlerWithContext = warnings
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	clients := []int{c.workers}
	if c.quietWorkers > 0 {
		clients = []int{c.quietWorkers, c.workers}
	}
	d := c.podDuration / time.Duration(c.e2eRounds)
	fmt.Fprintf(out, "\n== End to end: pod CREATEs through the API server, %v clients, without and with the arrivals webhook\n", clients)
	fmt.Fprintf(out, "   each pod (%s/%s*) is unmeshed where STRICT holds, so the guard judges and warns every one;\n", pod.Namespace, pod.GenerateName)
	fmt.Fprintf(out, "   each row pools %d rounds of %s that alternate without and with the webhooks registered (%s warm-up each);\n",
		c.e2eRounds, d, c.e2eWarmup)
	fmt.Fprintln(out, "   the pods are deleted after every round")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\twebhook\tcreates\tcreates/s\twarned\terrors\tp50\tp99\tmax\tadded p50\tp50 ratio\tin the guard (mean)\t")
	var notes []string
	for _, n := range clients {
		var offs, ons []podSample
		for range c.e2eRounds {
			off, err := timedPodLoad(ctx, cs, pod, n, c.e2eWarmup, d, g, warnings)
			if err != nil {
				return err
			}
			if off.warned > 0 {
				return fmt.Errorf("%d creates were warned with no webhook registered", off.warned)
			}
			if err := register(); err != nil {
				return err
			}
			on, err := timedPodLoad(ctx, cs, pod, n, c.e2eWarmup, d, g, warnings)
			if err != nil {
				return err
			}
			if err := deregister(); err != nil {
				return err
			}
			offs, ons = append(offs, off), append(ons, on)
		}
		without, with := summarizePods(offs), summarizePods(ons)
		if with.warned == 0 {
			return errors.New("no pod create was warned with the webhooks registered: was the arrivals webhook called?")
		}
		for _, r := range []struct {
			name string
			s    podStats
		}{{"not registered", without}, {"guard registered", with}} {
			added, times, inGuard := "", "", ""
			if r.s.warned > 0 {
				added = formatDuration(r.s.p50 - without.p50)
				times = fmt.Sprintf("%.2f×", float64(r.s.p50)/float64(without.p50))
				inGuard = formatDuration(r.s.guardMean)
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%.0f\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", n, r.name, r.s.requests, r.s.rate, r.s.warned, r.s.errors,
				formatDuration(r.s.p50), formatDuration(r.s.p99), formatDuration(r.s.max), added, times, inGuard)
			if r.s.firstErr != nil {
				notes = append(notes, fmt.Sprintf("   first error (%d clients, %s): %v", n, r.name, r.s.firstErr))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "   in the guard: mean time in the arrivals handler (controller_runtime_webhook_latency_seconds of "+webhook.ArrivalPath+")")
	for _, n := range notes {
		fmt.Fprintln(out, n)
	}
	return nil
}

// podStats summarises one arm.
type podStats struct {
	latencies
	warned, errors int
	firstErr       error
}

func summarizePods(samples []podSample) podStats {
	var s podStats
	var all []time.Duration
	var elapsed time.Duration
	var count uint64
	var seconds float64
	for _, x := range samples {
		all = append(all, x.latencies...)
		elapsed += x.elapsed
		s.warned += x.warned
		s.errors += x.errors
		if s.firstErr == nil {
			s.firstErr = x.firstErr
		}
		count += x.guardCount
		seconds += x.guardSeconds
	}
	s.latencies = pool(all, elapsed, count, seconds)
	return s
}

// timedPodLoad warms up, times d of pod creates, reads what the arrivals
// handler served meanwhile, and deletes the pods it created.
func timedPodLoad(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, workers int, warmup, d time.Duration, g *guardProcess, warnings *warningCounter) (podSample, error) {
	defer func() {
		// Not timed; a failure shows in the next round's creates.
		_ = cs.CoreV1().Pods(pod.Namespace).DeleteCollection(context.WithoutCancel(ctx),
			metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{LabelSelector: podBenchLabel})
	}()
	if _, err := podLoadFor(ctx, cs, pod, workers, warmup); err != nil {
		return podSample{}, err
	}
	n0, sum0, err := g.handlingAt(ctx, webhook.ArrivalPath)
	if err != nil {
		return podSample{}, err
	}
	w0 := warnings.n.Load()
	s, err := podLoadFor(ctx, cs, pod, workers, d)
	if err != nil {
		return s, err
	}
	s.warned = int(warnings.n.Load() - w0)
	n1, sum1, err := g.handlingAt(ctx, webhook.ArrivalPath)
	if err != nil {
		return s, err
	}
	s.guardCount, s.guardSeconds = n1-n0, sum1-sum0
	return s, nil
}

// podLoadFor creates pods from workers clients for d.
func podLoadFor(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, workers int, d time.Duration) (podSample, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	results := make([]podSample, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[w]
			for ctx.Err() == nil {
				t := time.Now()
				_, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
				lat := time.Since(t)
				switch {
				case err == nil:
				case ctx.Err() != nil:
					continue // cut off by the end of the load: not counted
				default:
					r.errors++
					if r.firstErr == nil {
						r.firstErr = err
					}
				}
				r.latencies = append(r.latencies, lat)
			}
		}()
	}
	wg.Wait()
	out := podSample{elapsed: time.Since(start)}
	for _, r := range results {
		out.latencies = append(out.latencies, r.latencies...)
		out.errors += r.errors
		if out.firstErr == nil {
			out.firstErr = r.firstErr
		}
	}
	if len(out.latencies) == 0 {
		return out, fmt.Errorf("no pod create completed in %s", d)
	}
	return out, nil
}

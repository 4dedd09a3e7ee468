package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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
		load := func() (sample, error) {
			defer func() {
				// Untimed, so that the rounds stay alike; a failure shows
				// in the next round's creates.
				_ = cs.CoreV1().Pods(pod.Namespace).DeleteCollection(context.WithoutCancel(ctx),
					metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{LabelSelector: podBenchLabel})
			}()
			return timed(ctx, g, webhook.ArrivalPath, c.e2eWarmup, d, func(d time.Duration) (sample, error) {
				return podLoad(ctx, cs, pod, n, d, warnings)
			})
		}
		without, with, err := alternate(c.e2eRounds, register, deregister, load)
		if err != nil {
			return err
		}
		if with.warned == 0 {
			return errors.New("no pod create was warned with the webhooks registered: was the arrivals webhook called?")
		}
		if with.denied > 0 {
			return fmt.Errorf("%d pod creates were denied: the load expects the guard's --unmeshed-pods=warn", with.denied)
		}
		notes = append(notes, printArms(tw, n, without, with,
			func(c counts) string { return fmt.Sprintf("%d\t%d", c.warned, c.errors) },
			func(s loadStats) bool { return s.warned > 0 })...)
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

// podLoad creates pods from workers clients for d and counts the
// warnings of their answers.
func podLoad(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, workers int, d time.Duration, warnings *warningCounter) (sample, error) {
	w0 := warnings.n.Load()
	s, err := runLoad(ctx, workers, d, func(ctx context.Context, _ int) error {
		_, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
	s.warned = int(warnings.n.Load() - w0)
	return s, err
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/certs"
	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/engine/enginetest"
	"github.com/mtls-guard/mtls-guard/internal/index/clustergen"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// unlimited lifts client-side rate limiting, which would measure the
// client rather than the server.
func unlimited(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	return cfg
}

// throughAPIServer starts envtest, loads the clusters up to
// c.apiserverPods, times the LIST peer at each size, then runs the
// end-to-end load with the guard's cache holding the largest.
func throughAPIServer(ctx context.Context, c config, guard guardTimes, out io.Writer) (err error) {
	fmt.Fprintln(out, "starting envtest (etcd and kube-apiserver from bin/) ...")
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() {
		if serr := env.Stop(); serr != nil && err == nil {
			err = fmt.Errorf("stopping envtest: %w", serr)
		}
	}()
	cfg := unlimited(env.Config)
	admin, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	// A Kyverno apiCall reads JSON.
	jsonCfg := rest.CopyConfig(cfg)
	jsonCfg.ContentType = "application/json"
	cs, err := kubernetes.NewForConfig(jsonCfg)
	if err != nil {
		return err
	}

	var sizes []int
	for _, s := range c.sizes {
		if s <= c.apiserverPods {
			sizes = append(sizes, s)
		}
	}
	if len(sizes) == 0 {
		return fmt.Errorf("no size up to -apiserver-pods=%d", c.apiserverPods)
	}
	fmt.Fprintln(out, "\n== Decision time with a LIST of the pods from the API server per request (as a Kyverno apiCall) vs the guard")
	fmt.Fprintln(out, "   peer: LIST pods of the policy's namespace (all pods for a mesh-wide policy), JSON, then the same engine decides")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "decision\tpods\tguard\tLIST+decide\tLIST/guard\t")
	loaded := 0
	var gen *clustergen.Cluster
	for _, size := range sizes {
		gen = clustergen.New(c.cluster(size))
		start := time.Now()
		if err := load(ctx, admin, gen, loaded); err != nil {
			return err
		}
		fmt.Fprintf(out, "   loaded %d pods into the API server in %s\n", size-loaded, time.Since(start).Round(time.Millisecond))
		loaded = size
		base, err := withoutPods(gen)
		if err != nil {
			return err
		}
		o := engine.DefaultOptions()
		for _, d := range clustergen.Decisions {
			ch, _, ok := gen.Change(d)
			if !ok {
				continue
			}
			peer := func() (*engine.Decision, error) { return listAndDecide(ctx, cs, base, ch, o) }
			got, err := peer()
			if err != nil {
				return err
			}
			want, err := engine.Decide(gen.Snapshot(), ch, o)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(OutcomeOf(got), OutcomeOf(want)) {
				return fmt.Errorf("%s at %d pods: the LIST peer decided %+v, the guard %+v", d, size, OutcomeOf(got), OutcomeOf(want))
			}
			m, err := measure(c.minTime, func() error { _, err := peer(); return err })
			if err != nil {
				return err
			}
			g := guard[d][size]
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t\n", d, size, formatDuration(g), m, ratio(m.perOp, g))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return endToEnd(ctx, c, env, admin, gen, out)
}

// load creates a generated cluster's namespaces, ReplicaSets and policies
// (again, ignoring those that exist) and its pods from pod number from on.
func load(ctx context.Context, c client.Client, gen *clustergen.Cluster, from int) error {
	var objs []client.Object
	for _, ns := range gen.Namespaces() {
		objs = append(objs, ns)
	}
	for _, rs := range gen.ReplicaSets() {
		objs = append(objs, rs)
	}
	for _, pa := range gen.Policies() {
		objs = append(objs, pa)
	}
	for i := from; i < gen.NumPods(); i++ {
		objs = append(objs, gen.Pod(i))
	}
	return createAll(ctx, c, objs, 16)
}

// createAll creates objects with a few workers; existing ones are kept.
func createAll(ctx context.Context, c client.Client, objs []client.Object, workers int) error {
	work := make(chan client.Object)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				o.SetResourceVersion("")
				o.SetUID("")
				if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
					errc <- fmt.Errorf("creating %T %s/%s: %w", o, o.GetNamespace(), o.GetName(), err)
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, o := range objs {
		select {
		case work <- o:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errc)
	if err == nil {
		err = <-errc // nil when the channel is empty
	}
	return err
}

// withoutPods is the rest of the cluster, which the peer is given for
// free: only the pods come from the API server on each request.
func withoutPods(gen *clustergen.Cluster) (*enginetest.Snapshot, error) {
	s := enginetest.NewSnapshot()
	for _, ns := range gen.Namespaces() {
		s.Add(ns)
	}
	for _, rs := range gen.ReplicaSets() {
		s.Add(rs)
	}
	for _, pa := range gen.Policies() {
		s.Add(pa)
	}
	return s, nil
}

// listed is a cluster whose pods were just listed from the API server.
type listed struct {
	engine.Cluster
	pods       map[string][]*corev1.Pod
	namespaces []string
}

func (l *listed) PodFacts(ns string, mode mesh.SidecarMode) (engine.PodFacts, error) {
	return engine.FactsOf(l.pods[ns], mode), nil
}
func (l *listed) PodNamespaces() ([]string, error) { return l.namespaces, nil }

// listAndDecide is the Kyverno-style peer: LIST, then decide.
func listAndDecide(ctx context.Context, cs kubernetes.Interface, base engine.Cluster, ch engine.Change, o engine.Options) (*engine.Decision, error) {
	ns := ch.Policy.Namespace
	if ns == o.RootNamespace {
		ns = metav1.NamespaceAll
	}
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	l := &listed{Cluster: base, pods: map[string][]*corev1.Pod{}}
	for i := range list.Items {
		p := &list.Items[i]
		if l.pods[p.Namespace] == nil {
			l.namespaces = append(l.namespaces, p.Namespace)
		}
		l.pods[p.Namespace] = append(l.pods[p.Namespace], p)
	}
	slices.Sort(l.namespaces)
	return engine.Decide(l, ch, o)
}

// guardProcess is `mtls-guard serve` from bin/, in its own process as
// deployed, so that it has its own heap, collector and scheduler.
type guardProcess struct {
	port, metricsPort int
	bundle            *certs.Bundle
	cmd               *exec.Cmd
	done              chan error
}

// startGuard runs bin/mtls-guard serve as the ServiceAccount of deploy/,
// on loopback, its log in dir, and waits until it is ready, its cache
// synced.
func startGuard(ctx context.Context, env *testenv.Env, dir string) (*guardProcess, error) {
	root, err := testenv.Root()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(root, "bin", "mtls-guard")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("the guard's binary: %w (run `make build`)", err)
	}
	ports, err := testenv.FreePorts(3)
	if err != nil {
		return nil, err
	}
	port, probePort, metricsPort := ports[0], ports[1], ports[2]
	certDir := dir + "/certs"
	bundle, err := certs.Issue("mtls-guard", "mtls-guard", certs.WithIPAddresses(net.IPv4(127, 0, 0, 1)), certs.WithDNSNames("localhost"))
	if err != nil {
		return nil, fmt.Errorf("issuing the serving certificate: %w", err)
	}
	if err := bundle.WriteDir(certDir); err != nil {
		return nil, err
	}
	kubeconfig, err := env.Kubeconfig(dir, testenv.GuardUser, testenv.GuardGroups...)
	if err != nil {
		return nil, err
	}
	// The guard logs every decision, as deployed; keep that out of the
	// tables.
	logFile, err := os.Create(filepath.Join(dir, "guard.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, "serve",
		"--kubeconfig", kubeconfig,
		"--host", "127.0.0.1",
		"--port", fmt.Sprint(port),
		"--cert-dir", certDir,
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", metricsPort),
		// Plain HTTP on loopback: the bench reads the latency histograms.
		"--metrics-secure=false",
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probePort),
		"--graceful-shutdown-timeout", "5s",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	g := &guardProcess{port: port, metricsPort: metricsPort, bundle: bundle, cmd: cmd, done: make(chan error, 1)}
	go func() { g.done <- cmd.Wait() }()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-g.done:
			g.done <- err
			return false, fmt.Errorf("the guard exited before it was ready (%v); see %s", err, logFile.Name())
		default:
		}
		return testenv.Ready(ctx, probePort)
	})
	if err != nil {
		g.stop()
		return nil, fmt.Errorf("waiting for the guard's /readyz: %w", err)
	}
	return g, nil
}

// stop sends SIGTERM, as the kubelet does, and kills the guard if it has
// not drained within 30 s.
func (g *guardProcess) stop() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

// metrics reads the guard's Prometheus metrics.
func (g *guardProcess) metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", g.metricsPort), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the guard's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading the guard's metrics: HTTP %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing the guard's metrics: %w", err)
	}
	return families, nil
}

// handlingAt reads the count and the sum of the guard's webhook latency
// histogram for the webhook served at path: how many requests its handler
// served, and in how long.
func (g *guardProcess) handlingAt(ctx context.Context, path string) (count uint64, sum float64, err error) {
	families, err := g.metrics(ctx)
	if err != nil {
		return 0, 0, err
	}
	if f := families["controller_runtime_webhook_latency_seconds"]; f != nil {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "webhook" && l.GetValue() == path {
					return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(), nil
				}
			}
		}
	}
	return 0, 0, nil // nothing served yet
}

// heapInUse is the guard's go_memstats_heap_inuse_bytes.
func (g *guardProcess) heapInUse(ctx context.Context) (float64, error) {
	families, err := g.metrics(ctx)
	if err != nil {
		return 0, err
	}
	f := families["go_memstats_heap_inuse_bytes"]
	if f == nil || len(f.GetMetric()) == 0 {
		return 0, errors.New("the guard exports no go_memstats_heap_inuse_bytes")
	}
	return f.GetMetric()[0].GetGauge().GetValue(), nil
}

// endToEnd runs the load without and then with the guard registered.
func endToEnd(ctx context.Context, c config, env *testenv.Env, admin client.Client, gen *clustergen.Cluster, out io.Writer) error {
	dir, err := os.MkdirTemp("", "mtls-guard-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	deploy, err := testenv.InstallRBAC(ctx, admin)
	if err != nil {
		return err
	}
	start := time.Now()
	g, err := startGuard(ctx, env, dir)
	if err != nil {
		return err
	}
	defer g.stop()
	// The quiet load first, then the saturating one, each compared in
	// alternating rounds.
	clients := []int{c.workers}
	if c.quietWorkers > 0 {
		clients = []int{c.quietWorkers, c.workers}
	}
	fmt.Fprintf(out, "\n== End to end: server-side dry-run applies of PeerAuthentications through the API server, %v clients\n", clients)
	fmt.Fprintf(out, "   each row pools %d rounds of %s that alternate without and with the guard registered (%s warm-up each)\n",
		c.e2eRounds, c.e2eDuration/time.Duration(c.e2eRounds), c.e2eWarmup)
	ready := time.Since(start)
	heap, err := g.heapInUse(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   the guard (bin/mtls-guard serve, its own process; its cache holding %d pods, heap in use %.1f MiB) was ready in %s;\n",
		gen.NumPods(), heap/(1<<20), ready.Round(time.Millisecond))
	fmt.Fprintf(out, "   requests alternate namespace-wide and workload STRICT over %d namespaces\n", gen.Config().Namespaces)

	dyn, err := dynamic.NewForConfig(unlimited(env.Config))
	if err != nil {
		return err
	}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", g.port, webhook.Path)
	register := func() error { return testenv.RegisterWebhook(ctx, admin, deploy, url, g.bundle.CACert) }
	deregister := func() error { return unregister(ctx, admin, deploy) }
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	var notes []string
	fmt.Fprintln(tw, "clients\twebhook\trequests\treq/s\tadmitted\tdenied\terrors\tp50\tp99\tmax\tadded p50\tp50 ratio\tin the guard (mean)\t")
	for _, n := range clients {
		load := func() (sample, error) {
			return timed(ctx, g, webhook.Path, c.e2eWarmup, c.e2eDuration/time.Duration(c.e2eRounds), func(d time.Duration) (sample, error) {
				return applyLoad(ctx, dyn, gen, n, d)
			})
		}
		without, with, err := alternate(c.e2eRounds, register, deregister, load)
		if err != nil {
			return err
		}
		notes = append(notes, printArms(tw, n, without, with,
			func(c counts) string { return fmt.Sprintf("%d\t%d\t%d", c.admitted, c.denied, c.errors) },
			func(s loadStats) bool { return s.denied > 0 })...)
		if with.denied == 0 {
			return errors.New("the guard denied nothing: was it called?")
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "   in the guard: mean time a request spent in the guard's handler (its controller_runtime_webhook_latency_seconds);")
	fmt.Fprintln(out, "   the rest of the added time is the API server's side of the webhook call, on the same CPUs")
	for _, n := range notes {
		fmt.Fprintln(out, n)
	}
	if c.podCreates {
		return podCreates(ctx, c, env.Config, gen, g, register, deregister, out)
	}
	return nil
}

// unregister deletes the guard's webhook configuration and waits until
// the API server no longer calls it: RegisterWebhook's probe, a STRICT
// next to an unmeshed pod, is admitted again.
func unregister(ctx context.Context, c client.Client, d *testenv.Deploy) error {
	if err := c.Delete(ctx, d.Webhook.DeepCopy()); err != nil {
		return fmt.Errorf("deleting the webhook configuration: %w", err)
	}
	probe := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: "mtls-guard-probe", Name: "probe"}}
	probe.Spec.Mtls = &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_STRICT}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		last = c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the API server still calls the guard after its configuration was deleted: %w (last answer: %v)", err, last)
	}
	return nil
}

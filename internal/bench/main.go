// Command bench measures the guard next to its peers in one run and prints
// tables with the ratio of each peer to the guard:
//
//   - in process, at every cluster size: the guard's decision from its
//     index, and the same decision by the equivalent Rego policy evaluated
//     by OPA over the inventory as Gatekeeper syncs it;
//   - through a real kube-apiserver (envtest from bin/): the same decision
//     made after LISTing the pods from the API server on every request, as
//     a Kyverno apiCall does;
//   - end to end: concurrent server-side dry-run applies of
//     PeerAuthentications through the API server, without and with the
//     guard registered as its webhook, with the guard's cache holding the
//     cluster's pods; then pod CREATEs that the arrivals webhook warns
//     about (-pod-creates), alternating the same way.
//
// It is a separate module so that OPA never becomes a dependency of the
// guard. Everything listens on 127.0.0.1 and every loop is bounded.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/mtls-guard/mtls-guard/internal/index/clustergen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	sizes         []int
	perNamespace  int
	minTime       time.Duration
	apiserverPods int
	e2eDuration   time.Duration
	e2eWarmup     time.Duration
	e2eRounds     int
	workers       int
	quietWorkers  int
	skipOPA       bool
	podCreates    bool
	podDuration   time.Duration
}

func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	sizes := fs.String("sizes", "1000,10000,100000", "comma-separated cluster sizes in pods")
	fs.IntVar(&c.perNamespace, "pods-per-namespace", 100, "pods per namespace; a cluster of N pods has N/100 namespaces")
	fs.DurationVar(&c.minTime, "min-time", time.Second, "how long each in-process measurement runs at least (one run at least)")
	fs.IntVar(&c.apiserverPods, "apiserver-pods", 10000, "largest cluster loaded into the API server for the LIST peer and the end-to-end load; 0 skips both")
	fs.DurationVar(&c.e2eDuration, "e2e-duration", 20*time.Second, "how long each end-to-end row is timed, over all its rounds")
	fs.DurationVar(&c.e2eWarmup, "e2e-warmup", time.Second, "unmeasured load before each timed round")
	fs.IntVar(&c.e2eRounds, "e2e-rounds", 4, "rounds that alternate without and with the guard in each end-to-end row")
	fs.IntVar(&c.workers, "workers", 8, "concurrent clients of the end-to-end load")
	fs.IntVar(&c.quietWorkers, "quiet-workers", 1, "clients of the quiet end-to-end load, run first, which leaves the CPUs idle to show the latency the guard adds rather than its CPU under saturation; 0 skips it")
	fs.BoolVar(&c.skipOPA, "skip-opa", false, "leave out the Rego peer")
	fs.BoolVar(&c.podCreates, "pod-creates", true, "after the end-to-end load, time pod CREATEs without and with the arrivals webhook (rule 3b)")
	fs.DurationVar(&c.podDuration, "pod-duration", 8*time.Second, "how long each pod-create row is timed, over all its rounds")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.e2eRounds < 1 || c.e2eDuration < time.Duration(c.e2eRounds)*time.Second {
		return c, fmt.Errorf("-e2e-rounds=%d and -e2e-duration=%s: want at least one round, of a second at least", c.e2eRounds, c.e2eDuration)
	}
	if c.podCreates && c.podDuration < time.Duration(c.e2eRounds)*time.Second {
		return c, fmt.Errorf("-e2e-rounds=%d and -pod-duration=%s: want rounds of a second at least", c.e2eRounds, c.podDuration)
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < c.perNamespace {
			return c, fmt.Errorf("bad size %q: want a number of pods of at least %d", s, c.perNamespace)
		}
		c.sizes = append(c.sizes, n)
	}
	return c, nil
}

func (c config) cluster(pods int) clustergen.Config {
	return clustergen.Config{Pods: pods, Namespaces: max(pods/c.perNamespace, 1)}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	c, err := parse(args, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "mtls-guard benchmarks: %s/%s, %d CPUs, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(out, "clusters: %d pods per namespace, 5%% unmeshed (one Deployment in 20), native sidecars elsewhere\n\n", c.perNamespace)

	// envtest logs through controller-runtime's global logger, which
	// otherwise complains that nobody set it; the guard logs through its own.
	ctrllog.SetLogger(logr.Discard())
	// client-go reports requests cut off at the end of a load phase; the
	// load generator counts those itself.
	klog.SetLogger(logr.Discard())
	start := time.Now()
	guard, err := inProcess(ctx, c, out)
	if err != nil {
		return err
	}
	if c.apiserverPods > 0 {
		if err := throughAPIServer(ctx, c, guard, out); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "\ntotal: %s\n", time.Since(start).Round(time.Second))
	return nil
}

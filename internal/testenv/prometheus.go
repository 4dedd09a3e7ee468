package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/wait"
)

// PrometheusBinary returns the path of bin/prometheus, or an error that
// says how to build it.
func PrometheusBinary() (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	path := filepath.Join(root, "bin", "prometheus")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("prometheus missing from %s: run `make testbin` (builds it from the Go module proxy)", filepath.Dir(path))
	}
	return path, nil
}

// Prometheus is a running Prometheus server on 127.0.0.1.
type Prometheus struct {
	// URL is the server's base URL, for the HTTP API.
	URL string
	// Log is the file with the server's output.
	Log string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // the process's exit, once done is closed
}

// prometheusConfig scrapes the targets at MetricsPath like a sidecar's
// stats endpoint.
const prometheusConfig = `global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
  evaluation_interval: %[1]s
scrape_configs:
- job_name: istio-sidecars
  metrics_path: /stats/prometheus
  static_configs:
  - targets: [%[2]s]
`

// StartPrometheus runs bin/prometheus on a free port of 127.0.0.1, with its
// configuration and storage in dir, scraping each target ("host:port",
// path /stats/prometheus) every scrapeInterval (1s when zero), and waits
// until it is ready. The caller must Stop it.
func StartPrometheus(ctx context.Context, dir string, targets []string, scrapeInterval time.Duration) (*Prometheus, error) {
	bin, err := PrometheusBinary()
	if err != nil {
		return nil, err
	}
	if scrapeInterval <= 0 {
		scrapeInterval = time.Second
	}
	quoted := make([]string, len(targets))
	for i, t := range targets {
		quoted[i] = fmt.Sprintf("%q", t)
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	data := fmt.Sprintf(prometheusConfig, model.Duration(scrapeInterval), strings.Join(quoted, ", "))
	if err := os.WriteFile(cfg, []byte(data), 0o600); err != nil {
		return nil, fmt.Errorf("writing the Prometheus config: %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the Prometheus log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
		// Scrape the static targets at once rather than after the default
		// 5s throttle of target updates.
		"--scrape.discovery-reload-interval=100ms",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &Prometheus{URL: "http://" + addr, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := p.waitReady(ctx); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// waitReady polls /-/ready until it answers 200, failing early when the
// process exits.
func (p *Prometheus) waitReady(ctx context.Context) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("prometheus exited: %v; its log:\n%s", p.err, p.tail())
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/-/ready", nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err
			return false, nil
		}
		resp.Body.Close()
		last = fmt.Errorf("/-/ready answered %s", resp.Status)
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for Prometheus at %s to be ready: %w (last: %v)", p.URL, err, last)
	}
	return nil
}

// tail returns the end of the server's log, for error messages.
func (p *Prometheus) tail() string {
	data, _ := os.ReadFile(p.Log)
	if len(data) > 4096 {
		data = data[len(data)-4096:]
	}
	return string(bytes.TrimSpace(data))
}

// Stop stops the server (SIGTERM, then SIGKILL after 30s) and waits for it
// to exit. It may be called more than once.
func (p *Prometheus) Stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping Prometheus: %w", err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("killing Prometheus: %w", err)
		}
		<-p.done
		return errors.New("prometheus did not stop within 30s of SIGTERM; killed")
	}
}

// WaitForSeries polls the Prometheus at url until the instant query
// returns at least one sample, for tests to wait for scrapes instead of
// sleeping. It gives up when ctx is done or after two minutes.
func WaitForSeries(ctx context.Context, url, query string) error {
	papi, err := PrometheusAPI(url)
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		v, _, _, err := papi.Query(ctx, query, time.Now())
		if err != nil {
			last = err
			return false, nil
		}
		vec, ok := v.(model.Vector)
		if !ok {
			return false, fmt.Errorf("query %s returned a %s, not a vector", query, v.Type())
		}
		last = errors.New("no sample yet")
		return len(vec) > 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s on %s: %w (last: %v)", query, url, err, last)
	}
	return nil
}

// PrometheusAPI returns a client of the HTTP API of the Prometheus at url.
func PrometheusAPI(url string) (promv1.API, error) {
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("prometheus client for %s: %w", url, err)
	}
	return promv1.NewAPI(c), nil
}

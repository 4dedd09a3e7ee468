package plaintext

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/mtls-guard/mtls-guard/internal/cli"
	"github.com/mtls-guard/mtls-guard/internal/demo/seed"
)

// TestReportPlaintextCallers: `report` with the evidence flags lists, per
// namespace, the workloads that the real Prometheus shows with plaintext
// callers: the seed's web, called from outside the mesh, in istio-demo.
func TestReportPlaintextCallers(t *testing.T) {
	args := append([]string{"--kubeconfig", suite.AdminConfig, "-o", "json"}, evidenceFlags(suite.prometheus.URL, longWindow, "allow")...)
	var out, errb bytes.Buffer
	if code := cli.Report(args, &out, &errb); code != 0 {
		t.Fatalf("report exited %d: %s", code, errb.String())
	}
	var rep struct {
		Namespaces []struct {
			Namespace        string `json:"namespace"`
			PlaintextCallers []struct {
				Workload string   `json:"workload"`
				Requests int64    `json:"requests"`
				Sources  []string `json:"sources"`
			} `json:"plaintextCallers"`
		} `json:"namespaces"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report output %q: %v", out.String(), err)
	}
	for _, ns := range rep.Namespaces {
		if ns.Namespace != seed.Namespace {
			continue
		}
		for _, c := range ns.PlaintextCallers {
			if c.Workload == "web" && c.Requests >= 1 && len(c.Sources) > 0 && c.Sources[0] == "unknown/unknown" {
				return
			}
		}
		t.Fatalf("%s's plaintext callers %+v lack web's request from outside the mesh", seed.Namespace, ns.PlaintextCallers)
	}
	t.Fatalf("report lists no namespace %s: %s", seed.Namespace, out.String())
}

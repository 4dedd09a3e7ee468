package engine

import (
	"cmp"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/mtls-guard/mtls-guard/internal/evidence"
)

// PlaintextWorkload is a workload that a change makes stricter although
// Istio's telemetry shows it accepted plaintext traffic in the window
// (section 3a): its callers would be cut off, wherever they live.
type PlaintextWorkload struct {
	Namespace   string `json:"namespace"`
	Kind        string `json:"kind"`
	Name        string `json:"name"`
	Requests    int64  `json:"requests"`
	Connections int64  `json:"connections"`
	// Sources are the callers Istio names, "unknown/unknown" for callers
	// outside the mesh; sorted.
	Sources []string `json:"sources"`
}

// String renders "Kind/name: 3 plaintext requests in the last 24h (from: unknown)".
func (w PlaintextWorkload) String(window time.Duration) string {
	var counts []string
	if w.Requests > 0 {
		counts = append(counts, fmt.Sprintf("%d plaintext %s", w.Requests, plural(int(min(w.Requests, 2)), "request", "requests")))
	}
	if w.Connections > 0 {
		counts = append(counts, fmt.Sprintf("%d plaintext TCP %s", w.Connections, plural(int(min(w.Connections, 2)), "connection", "connections")))
	}
	return fmt.Sprintf("%s/%s: %s in the last %s (from: %s)", w.Kind, w.Name, strings.Join(counts, " and "), shortDuration(window),
		listNames(w.Sources, 3))
}

// shortDuration renders 24h0m0s as 24h and 1h30m0s as 1h30m.
func shortDuration(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if s == "" {
		return "0s"
	}
	return s
}

// plaintextIn returns the evidence workloads of one touched namespace
// that some counted pod of which gains strictness.
func plaintextIn(f PodFacts, lb, la *level, byWorkload map[string]*evidence.Evidence) []PlaintextWorkload {
	var out []PlaintextWorkload
	for name, ev := range byWorkload {
		if f.IstioWorkload == nil {
			break
		}
		kind, sets := f.IstioWorkload(name)
		if sets == nil || !anyGains(sets, lb, la) {
			continue
		}
		w := PlaintextWorkload{Namespace: ev.Namespace, Kind: kind, Name: name, Requests: ev.Requests, Connections: ev.Connections,
			Sources: make([]string, 0, len(ev.Sources))}
		for _, s := range ev.Sources {
			w.Sources = append(w.Sources, sourceName(s))
		}
		out = append(out, w)
	}
	return out
}

func sourceName(s evidence.Source) string {
	if s.Namespace == evidence.UnknownWorkload && s.Workload == evidence.UnknownWorkload {
		return evidence.UnknownWorkload
	}
	return s.Namespace + "/" + s.Workload
}

func anyGains(sets iter.Seq2[map[string]string, int], lb, la *level) bool {
	for labels := range sets {
		if gains(lb.forPod(labels), la.forPod(labels)) {
			return true
		}
	}
	return false
}

func sortPlaintext(ws []PlaintextWorkload) {
	slices.SortFunc(ws, func(a, b PlaintextWorkload) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
}

// listPlaintext renders up to max workloads, one per line with the indent,
// then "and N more", with their namespace when they span several.
func listPlaintext(ws []PlaintextWorkload, window time.Duration, max int, indent string) string {
	var b strings.Builder
	many := len(ws) > 0 && ws[0].Namespace != ws[len(ws)-1].Namespace
	for i, w := range ws {
		if i == max {
			fmt.Fprintf(&b, "%sand %d more\n", indent, len(ws)-max)
			break
		}
		b.WriteString(indent)
		if many {
			b.WriteString(w.Namespace + "/")
		}
		b.WriteString(w.String(window) + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

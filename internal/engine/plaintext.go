package engine

import (
	"cmp"
	"iter"
	"slices"
	"strconv"
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
	var b strings.Builder
	w.write(&b, shortDuration(window))
	return b.String()
}

// write renders w into b, without fmt: a denial may list many.
func (w PlaintextWorkload) write(b *strings.Builder, window string) {
	b.WriteString(w.Kind)
	b.WriteByte('/')
	b.WriteString(w.Name)
	b.WriteString(": ")
	count := func(n int64, one, many string) {
		b.WriteString(strconv.FormatInt(n, 10))
		if n == 1 {
			b.WriteString(one)
		} else {
			b.WriteString(many)
		}
	}
	if w.Requests > 0 {
		count(w.Requests, " plaintext request", " plaintext requests")
	}
	if w.Connections > 0 {
		if w.Requests > 0 {
			b.WriteString(" and ")
		}
		count(w.Connections, " plaintext TCP connection", " plaintext TCP connections")
	}
	b.WriteString(" in the last ")
	b.WriteString(window)
	b.WriteString(" (from: ")
	b.WriteString(listNames(w.Sources, 3))
	b.WriteByte(')')
}

// shortDuration renders 24h0m0s as 24h, 1h30m0s as 1h30m and 20s as 20s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
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
	win := shortDuration(window)
	many := len(ws) > 0 && ws[0].Namespace != ws[len(ws)-1].Namespace
	for i, w := range ws {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(indent)
		if i == max {
			b.WriteString("and " + strconv.Itoa(len(ws)-max) + " more")
			break
		}
		if many {
			b.WriteString(w.Namespace + "/")
		}
		w.write(&b, win)
	}
	return b.String()
}

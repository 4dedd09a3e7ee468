package webhook_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// TestAnswersAreBounded: a denial naming more workloads than
// engine.MaxListed lists that many in its causes and audit annotation,
// then how many more, so that whoever reaches the port cannot read the
// whole cluster's unmeshed workloads from one answer.
func TestAnswersAreBounded(t *testing.T) {
	for _, n := range []int{engine.MaxListed - 1, engine.MaxListed, engine.MaxListed + 1, 500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ws := make([]engine.Workload, n)
			for i := range ws {
				ws[i] = engine.Workload{Namespace: fmt.Sprintf("ns-%03d", i), Kind: "Deployment", Name: "app", Pods: []string{"app-1"}, Reasons: []string{"no-sidecar"}}
			}
			decide := func(ch engine.Change) (*engine.Decision, error) {
				return &engine.Decision{Policy: ch.Policy.Key(), Operation: ch.Operation, Unmeshed: ws, Warnings: []string{}, Message: "denied"}, nil
			}
			h := &webhook.Handler{Reader: fixtureReader(t), Decide: decide, Options: engine.DefaultOptions(), Log: logr.Discard()}
			resp := h.Handle(context.Background(), request(t, admissionv1.Create, "bob", nil, paObj("istio-system", "default", "STRICT", metav1.Time{}, nil, nil)))
			if resp.Allowed {
				t.Fatal("allowed")
			}
			causes := resp.Result.Details.Causes
			listed := min(n, engine.MaxListed)
			more := n - listed
			wantCauses := listed
			if more > 0 {
				wantCauses++
			}
			if len(causes) != wantCauses {
				t.Fatalf("%d causes, want %d", len(causes), wantCauses)
			}
			if more > 0 {
				last := causes[len(causes)-1]
				if last.Type != webhook.CauseMoreWorkloads || !strings.Contains(last.Message, fmt.Sprint(more)) {
					t.Errorf("last cause %+v, want %s with %d", last, webhook.CauseMoreWorkloads, more)
				}
			}
			keys := strings.Split(resp.AuditAnnotations[webhook.AuditUnmeshed], ",")
			if len(keys) != wantCauses {
				t.Errorf("audit annotation lists %d entries, want %d", len(keys), wantCauses)
			}
		})
	}
}

// TestEventsDeduplicated: replaying one denial records one Event; another
// policy, or the same one after the interval, gets its own.
func TestEventsDeduplicated(t *testing.T) {
	rec := events.NewFakeRecorder(100)
	dedup := webhook.NewEventDeduper(time.Hour)
	h := &webhook.Handler{Reader: fixtureReader(t), Decide: fixtureDecide(t, engine.DefaultOptions()), Options: engine.DefaultOptions(),
		Recorder: rec, Events: dedup, Log: logr.Discard()}
	legacy := request(t, admissionv1.Create, "bob", nil, paObj(nsLegacy, "default", "STRICT", metav1.Time{}, nil, nil))
	for range 5 {
		if resp := h.Handle(context.Background(), legacy); resp.Allowed {
			t.Fatal("allowed")
		}
	}
	if got := len(rec.Events); got != 1 {
		t.Fatalf("%d Events after five replays, want 1", got)
	}
	other := request(t, admissionv1.Create, "bob", nil, paObj(nsLegacy, "other", "STRICT", metav1.Time{}, nil, nil))
	if resp := h.Handle(context.Background(), other); resp.Allowed {
		t.Fatal("allowed")
	}
	if got := len(rec.Events); got != 2 {
		t.Fatalf("%d Events after a denial of another policy, want 2", got)
	}
	if !dedup.First("x") || dedup.First("x") {
		t.Error("First: want true once, then false")
	}
}

// TestExemptPodsAreNamed: an unmeshed pod kept out by the exempt label is
// named in a warning and in the exempt-pods audit annotation whenever its
// namespace becomes stricter, so that the exemption is never silent.
func TestExemptPodsAreNamed(t *testing.T) {
	tool := podObj(nsMeshed, "tool", map[string]string{mesh.ExemptLabel: "true"}, false)
	h := &webhook.Handler{Reader: fixtureReader(t), Decide: fixtureDecide(t, engine.DefaultOptions(), tool), Options: engine.DefaultOptions(), Log: logr.Discard()}
	for _, tc := range []struct {
		name, ns string
		want     string
	}{
		{"stricter", nsMeshed, nsMeshed + "/tool"},
		{"not stricter: not named", nsCarve, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.Handle(context.Background(), request(t, admissionv1.Create, "bob", nil, paObj(tc.ns, "default", "STRICT", metav1.Time{}, nil, nil)))
			if got := resp.AuditAnnotations[webhook.AuditExempt]; got != tc.want {
				t.Fatalf("audit annotation %s = %q, want %q", webhook.AuditExempt, got, tc.want)
			}
			warned := slices.ContainsFunc(resp.Warnings, func(w string) bool { return strings.HasPrefix(w, "exempt:") && strings.Contains(w, "tool") })
			if warned != (tc.want != "") {
				t.Errorf("warnings %q: exempt warning present %v, want %v", resp.Warnings, warned, tc.want != "")
			}
		})
	}
}

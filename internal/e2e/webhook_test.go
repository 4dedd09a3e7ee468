package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/webhook"
)

var injected = map[string]string{"istio-injection": "enabled"}

// TestSeedScenario is the story the guard exists for: STRICT is admitted
// while every pod is meshed, denied with the workload named once an
// unmeshed pod runs, and admitted again when it is gone.
func TestSeedScenario(t *testing.T) {
	ns := namespace(t, "istio-demo", injected)
	create(t, deploymentPod(ns, "web", "a1b2c", native))
	create(t, deploymentPod(ns, "web", "d3e4f", native))

	strict := pa(ns, "default", "STRICT")
	eventually(t, strict, false)

	create(t, pod(ns, "mtls-test", map[string]string{"app": "mtls-test"}, unmeshed))
	err := eventually(t, strict, true)
	st := statusOf(t, err)
	if st.Code != 403 {
		t.Errorf("denial code = %d, want 403", st.Code)
	}
	for _, want := range []string{`admission webhook "` + suite.webhookName + `" denied the request`, "istio-demo/default", "namespace-wide", "Pod/mtls-test (1 pod: no-sidecar)", "PERMISSIVE first", "mtls-guard.io/exempt=true"} {
		if !strings.Contains(st.Message, want) {
			t.Errorf("denial message lacks %q:\n%s", want, st.Message)
		}
	}
	if strings.Contains(st.Message, "Deployment/web") {
		t.Errorf("denial names the meshed Deployment/web:\n%s", st.Message)
	}
	if st.Details == nil || len(st.Details.Causes) != 1 || !strings.Contains(st.Details.Causes[0].Message, "Pod/mtls-test") {
		t.Errorf("status details causes = %+v, want one cause for Pod/mtls-test", st.Details)
	}
	// A real (not dry-run) apply is denied the same way.
	createAs(suite.Admin, strict).mustDecide(t, webhook.OutcomeDenied)

	deletePod(t, ns, "mtls-test")
	eventually(t, strict, false)
	create(t, strict.DeepCopy())
}

// TestUpdateNoopAndDelete covers UPDATE PERMISSIVE->STRICT (denied), the
// GitOps no-op re-apply (allowed) and a DELETE that tightens (denied).
func TestUpdateNoopAndDelete(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "update-delete", injected)
	create(t, deploymentPod(ns, "legacy", "x1", unmeshed))
	eventually(t, pa(ns, "probe", "STRICT"), true)

	permissive := pa(ns, "default", "PERMISSIVE")
	create(t, permissive)

	t.Run("update to STRICT is denied", func(t *testing.T) {
		cur := pa(ns, "default", "")
		if err := suite.Admin.Get(ctx, client.ObjectKeyFromObject(cur), cur); err != nil {
			t.Fatal(err)
		}
		cur.Spec.Mtls.Mode = pa(ns, "", "STRICT").Spec.Mtls.Mode
		r := call(func(ctx context.Context) error { return suite.Admin.Update(ctx, cur) })
		r.mustDecide(t, webhook.OutcomeDenied)
		if !strings.Contains(r.Err.Error(), "UPDATE") || !strings.Contains(r.Err.Error(), "Deployment/legacy (1 pod: no-sidecar)") {
			t.Fatalf("want the UPDATE denial to name Deployment/legacy, got %v", r.Err)
		}
	})
	t.Run("no-op re-apply is allowed", func(t *testing.T) {
		cur := pa(ns, "default", "")
		if err := suite.Admin.Get(ctx, client.ObjectKeyFromObject(cur), cur); err != nil {
			t.Fatal(err)
		}
		if err := suite.Admin.Update(ctx, cur); err != nil {
			t.Fatalf("no-op update: %v", err)
		}
	})
	t.Run("delete that tightens is denied", func(t *testing.T) {
		// Namespace STRICT with a workload PERMISSIVE carve-out for the
		// meshed app, made while the namespace was empty: deleting the
		// carve-out makes web STRICT next to the unmeshed legacy pod.
		ns2 := namespace(t, "delete-tightens", injected)
		carve := carveOut(t, ns2, "w1", "l1")
		// Wait until the guard's cache holds both pods: a dry-run delete
		// is denied only then.
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			r := call(func(ctx context.Context) error { return suite.Admin.Delete(ctx, carve.DeepCopy(), client.DryRunAll) })
			return r.decidedAs(t, webhook.OutcomeDenied), nil
		})
		if err != nil {
			t.Fatalf("dry-run DELETE never denied: %v", err)
		}
		r := call(func(ctx context.Context) error { return suite.Admin.Delete(ctx, carve.DeepCopy()) })
		r.mustDecide(t, webhook.OutcomeDenied)
		if !strings.Contains(r.Err.Error(), "DELETE") || !strings.Contains(r.Err.Error(), "Deployment/legacy") {
			t.Fatalf("want the DELETE denial to name Deployment/legacy, got %v", r.Err)
		}
		// Deleting the namespace STRICT loosens, and is allowed.
		if err := suite.Admin.Delete(ctx, pa(ns2, "default", "")); err != nil {
			t.Fatalf("loosening delete: %v", err)
		}
	})
}

// TestV1beta1 proves that both served versions reach the guard.
func TestV1beta1(t *testing.T) {
	ns := namespace(t, "beta", injected)
	create(t, pod(ns, "bare", nil, unmeshed))
	err := eventually(t, paV1beta1(ns, "default", "STRICT"), true)
	if !strings.Contains(err.Error(), "Pod/bare (1 pod: no-sidecar)") {
		t.Errorf("v1beta1 denial lacks the workload: %v", err)
	}
	if err := suite.Admin.Create(context.Background(), paV1beta1(ns, "loose", "PERMISSIVE")); err != nil {
		t.Errorf("v1beta1 PERMISSIVE: %v", err)
	}
}

// TestEvents proves one Warning Event on the Namespace per denial, and
// none for a dry run.
func TestEvents(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "events", injected)
	create(t, pod(ns, "bare", nil, unmeshed))
	strict := pa(ns, "default", "STRICT")
	eventually(t, strict, true) // dry runs: no Event
	createAs(suite.Admin, strict).mustDecide(t, webhook.OutcomeDenied)
	var evs []eventsv1.Event
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		// Events about a cluster-scoped Namespace live in "default".
		var list eventsv1.EventList
		if err := suite.Admin.List(ctx, &list); err != nil {
			return false, err
		}
		evs = evs[:0]
		for _, ev := range list.Items {
			if ev.Regarding.Kind == "Namespace" && ev.Regarding.Name == ns {
				evs = append(evs, ev)
			}
		}
		return len(evs) > 0, nil
	})
	if err != nil {
		t.Fatalf("no Event recorded: %v", err)
	}
	if len(evs) != 1 {
		t.Fatalf("got %d Events, want exactly 1 (dry runs must record none): %+v", len(evs), evs)
	}
	ev := evs[0]
	if ev.Reason != webhook.ReasonDenied || ev.Type != "Warning" || ev.Regarding.Kind != "Namespace" || ev.Regarding.Name != ns {
		t.Errorf("event = reason %q type %q regarding %s/%s", ev.Reason, ev.Type, ev.Regarding.Kind, ev.Regarding.Name)
	}
	if ev.Related == nil || ev.Related.Kind != "PeerAuthentication" || ev.Related.Name != "default" {
		t.Errorf("event related = %+v, want the PeerAuthentication", ev.Related)
	}
	if !strings.Contains(ev.Note, ns+"/Pod/bare") {
		t.Errorf("event note %q lacks the workload", ev.Note)
	}
	if ev.Series != nil && ev.Series.Count > 1 {
		t.Errorf("event series count %d, want 1", ev.Series.Count)
	}
}

// TestPodUpdates: the guard's cache keeps pods as records, and a pod that
// changes in place (labelled exempt, then not) changes the decision.
func TestPodUpdates(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "pod-updates", injected)
	legacy := deploymentPod(ns, "legacy", "u1", unmeshed)
	create(t, legacy)
	strict := pa(ns, "default", "STRICT")
	eventually(t, strict, true)

	relabel := func(exempt string) {
		t.Helper()
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"mtls-guard.io/exempt":`+exempt+`}}}`))
		if err := suite.Admin.Patch(ctx, legacy.DeepCopy(), patch); err != nil {
			t.Fatal(err)
		}
	}
	relabel(`"true"`)
	eventually(t, strict, false)
	relabel(`null`)
	err := eventually(t, strict, true)
	if !strings.Contains(err.Error(), "Deployment/legacy (1 pod: no-sidecar)") {
		t.Errorf("denial does not name the pod's workload: %v", err)
	}
}

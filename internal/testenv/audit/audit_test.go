package audit

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// TestLog: the log keeps completed requests and started watches, reads a
// line written in two parts once it is whole, and finds after a mark.
func TestLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	appendTo(t, path, `{"auditID":"a","stage":"ResponseComplete","verb":"create","annotations":{"guard.io/decision":"denied","other.io/decision":"allowed"}}
{"auditID":"b","stage":"ResponseStarted","verb":"get"}
{"auditID":"w","stage":"ResponseStarted","verb":"watch"}
not json
{"auditID":"c","stage":"ResponseComplete","verb":"cre`)
	l := NewLog(path)
	mark := l.Mark(t)
	if got := ids(l.All(t)); !slices.Equal(got, []string{"a", "w"}) {
		t.Fatalf("events %v, want a and w", got)
	}
	appendTo(t, path, `ate","user":{"username":"u"}}`+"\n")
	ev := l.Find(t, mark, "c", func(e Event) bool { return e.Verb == "create" })
	if ev.AuditID != "c" || ev.User.Username != "u" {
		t.Fatalf("found %+v after the mark, want c by u", ev)
	}
	a, err := l.ByAuditID(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if got := a.WebhookAnnotations("guard.io"); len(got) != 1 || got["decision"] != "denied" {
		t.Errorf("guard.io's annotations %v, want decision=denied only", got)
	}
}

// TestDecided: a decision is the status of the answer and the webhook's
// audit decision on the record of that very call, found by its Audit-Id.
func TestDecided(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	appendTo(t, path, `{"auditID":"d","stage":"ResponseComplete","verb":"create","annotations":{"guard.io/decision":"denied"}}
{"auditID":"a","stage":"ResponseComplete","verb":"create","annotations":{"guard.io/decision":"allowed","other.io/decision":"denied"}}
{"auditID":"k","stage":"ResponseComplete","verb":"delete","userAgent":"kubectl/v1.35","objectRef":{"resource":"pods","namespace":"ns","name":"p"}}
`)
	l := NewLog(path)
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p", errors.New("no"))
	ctx := context.Background()
	for _, tc := range []struct {
		r       Response
		outcome string
		want    bool
	}{
		{Response{Err: forbidden, AuditID: "d"}, "denied", true},
		{Response{AuditID: "d"}, "denied", false},                 // admitted
		{Response{Err: forbidden, AuditID: "a"}, "denied", false}, // another decision
		{Response{AuditID: "a"}, "allowed", true},
		{Response{Err: forbidden, AuditID: "a"}, "allowed", false},
	} {
		if got, err := l.Decided(ctx, tc.r, "guard.io", tc.outcome); err != nil || got != tc.want {
			t.Errorf("Decided(%+v, %s) = %v, %v; want %v", tc.r, tc.outcome, got, err, tc.want)
		}
	}
	if got := l.MustDecide(t, Response{AuditID: "a"}, "guard.io", "allowed"); got["decision"] != "allowed" || len(got) != 1 {
		t.Errorf("MustDecide returned %v, want guard.io's annotations", got)
	}
	if _, err := l.Decided(ctx, Response{Err: forbidden}, "guard.io", "denied"); !errors.Is(err, ErrNoAuditID) {
		t.Errorf("a call without an Audit-Id: %v, want ErrNoAuditID", err)
	}
	if ev := l.Kubectl(t, 0, "delete", "pods", "ns", "p"); ev.AuditID != "k" {
		t.Errorf("kubectl's delete: %+v, want record k", ev)
	}
}

func ids(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.AuditID)
	}
	return out
}

// TestCall: a client of Recording reports each call's own Audit-Id and
// warnings.
func TestCall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Audit-Id", "id-"+r.URL.Query().Get("labelSelector"))
		w.Header().Add("Warning", `299 - "careful `+r.URL.Query().Get("labelSelector")+`"`)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"PodList","apiVersion":"v1","items":[]}`))
	}))
	t.Cleanup(srv.Close)
	cs, err := kubernetes.NewForConfig(Recording(&rest.Config{Host: srv.URL}))
	if err != nil {
		t.Fatal(err)
	}
	for _, sel := range []string{"one", "two"} {
		r := Call(func(ctx context.Context) error {
			_, err := cs.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{LabelSelector: sel})
			return err
		})
		if r.Err != nil || r.AuditID != "id-"+sel || !slices.Equal(r.Warnings, []string{"careful " + sel}) {
			t.Errorf("call %s: %+v, want Audit-Id id-%s and its one warning", sel, r, sel)
		}
	}
}

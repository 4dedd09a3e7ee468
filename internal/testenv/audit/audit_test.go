package audit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mtls-guard/mtls-guard/webhook"
)

// post sends a raw body to a guard's webhook endpoint and decodes the
// AdmissionReview it answers with.
func post(t *testing.T, g *guard, body []byte) (int, *admissionv1.AdmissionResponse) {
	t.Helper()
	url := g.URL(webhook.Path)
	resp, err := g.httpsClient().Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &review); err != nil || review.Response == nil {
		t.Fatalf("answer is not an AdmissionReview (%v): %s", err, data)
	}
	return resp.StatusCode, review.Response
}

func review(uid, kind, op string, object, old string) []byte {
	r := map[string]any{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid":       uid,
			"kind":      map[string]string{"group": "security.istio.io", "version": "v1", "kind": kind},
			"resource":  map[string]string{"group": "security.istio.io", "version": "v1", "resource": "peerauthentications"},
			"namespace": "istio-demo",
			"name":      "default",
			"operation": op,
			"userInfo":  map[string]any{"username": "e2e"},
		},
	}
	req := r["request"].(map[string]any)
	if object != "" {
		req["object"] = json.RawMessage(object)
	}
	if old != "" {
		req["oldObject"] = json.RawMessage(old)
	}
	b, _ := json.Marshal(r)
	return b
}

// reviewWith is a STRICT CREATE review changed by mutate.
func reviewWith(uid string, mutate func(map[string]any)) string {
	var r map[string]any
	if err := json.Unmarshal(review(uid, "PeerAuthentication", "CREATE", strictJSON, ""), &r); err != nil {
		panic(err)
	}
	mutate(r)
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// truncated cuts a review short after its request UID.
func truncated(body []byte) string {
	return string(body[:bytes.Index(body, []byte(`"userInfo"`))+5])
}

// sentUID finds request.uid in a JSON body, even a truncated one, the
// plain way.
func sentUID(body string) string {
	_, rest, ok := strings.Cut(body, `"uid":"`)
	if !ok {
		return ""
	}
	uid, _, _ := strings.Cut(rest, `"`)
	return uid
}

const strictJSON = `{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"istio-demo"},"spec":{"mtls":{"mode":"STRICT"}}}`

// TestBadRequests: whatever arrives, the answer is a clear error and never
// an allowance.
func TestBadRequests(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		wantCode int32
		wantMsg  string
	}{
		{"not an AdmissionReview", `{"hello":`, http.StatusBadRequest, "unexpected"},
		{"not a PeerAuthentication", string(review("u1", "Pod", "CREATE", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}`, "")), http.StatusBadRequest, "only decides security.istio.io/v1 and v1beta1 PeerAuthentications"},
		{"no object", string(review("u2", "PeerAuthentication", "CREATE", "", "")), http.StatusBadRequest, "has no object"},
		{"delete without oldObject", string(review("u3", "PeerAuthentication", "DELETE", "", "")), http.StatusBadRequest, "has no oldObject"},
		{"object does not decode", string(review("u4", "PeerAuthentication", "CREATE", `{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":7}}`, "")), http.StatusBadRequest, "decoding the PeerAuthentication"},
		{"wrong kind inside", string(review("u5", "PeerAuthentication", "CREATE", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"}}`, "")), http.StatusBadRequest, "wrong kind"},
		{"invalid mode", string(review("u6", "PeerAuthentication", "CREATE", `{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"istio-demo"},"spec":{"mtls":{"mode":"STRCT"}}}`, "")), http.StatusForbidden, `unknown mTLS mode "STRCT"`},
		{"unknown operation", string(review("u7", "PeerAuthentication", "CONNECT", strictJSON, "")), http.StatusBadRequest, "unsupported operation"},
		// controller-runtime's decoder reads any body shaped like a review
		// (another apiVersion or kind of the envelope, YAML); the API
		// server only sends admission.k8s.io/v1, and what is decided is the
		// request inside. What it cannot read gets a 400 without a UID.
		{"truncated JSON", truncated(review("u8", "PeerAuthentication", "CREATE", strictJSON, "")), http.StatusBadRequest, "unexpected end of JSON input"},
		{"YAML without a request", "apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\n", http.StatusBadRequest, "the AdmissionReview has no request.uid"},
		{"no UID", string(review("", "PeerAuthentication", "CREATE", strictJSON, "")), http.StatusBadRequest, "the AdmissionReview has no request.uid"},
		{"no request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, http.StatusBadRequest, "the AdmissionReview has no request.uid"},
		{"no namespace anywhere", reviewWith("u12", func(r map[string]any) {
			req := r["request"].(map[string]any)
			delete(req, "namespace")
			req["object"] = json.RawMessage(`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default"},"spec":{"mtls":{"mode":"STRICT"}}}`)
		}), http.StatusBadRequest, "PeerAuthentication default has no namespace"},
		{"10 MiB body", reviewWith("u13", func(r map[string]any) {
			r["request"].(map[string]any)["object"] = json.RawMessage(`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"istio-demo","annotations":{"pad":"` + strings.Repeat("x", 10<<20) + `"}},"spec":{"mtls":{"mode":"STRICT"}}}`)
		}), http.StatusRequestEntityTooLarge, "request entity is too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, resp := post(t, suite.guard, []byte(tc.body))
			if status != http.StatusOK {
				t.Errorf("HTTP status %d, want 200 with the error inside the AdmissionReview", status)
			}
			if resp.Allowed {
				t.Fatalf("allowed a bad request: %+v", resp)
			}
			if resp.Result == nil || resp.Result.Code != tc.wantCode || !strings.Contains(resp.Result.Message, tc.wantMsg) {
				t.Errorf("result = %+v, want code %d and message containing %q", resp.Result, tc.wantCode, tc.wantMsg)
			}
			// The UID is echoed whenever the review decodes; a body that
			// does not, or is refused unread (over the size limit), has
			// none to echo.
			if uid := sentUID(tc.body); tc.name != "truncated JSON" && tc.wantCode != http.StatusRequestEntityTooLarge && string(resp.UID) != uid {
				t.Errorf("response UID %q, want the request's %q", resp.UID, uid)
			}
		})
	}
}

// TestNotReadyBeforeSync: a guard whose cache cannot sync (here its user
// may not list pods, as with missing RBAC) is not ready, and answers a
// STRICT request with an error, never an allowance.
func TestNotReadyBeforeSync(t *testing.T) {
	kc, err := suite.Env.Kubeconfig(t.TempDir(), "system:serviceaccount:e2e:no-rbac", "system:authenticated")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g := startGuard(t, guardOptions{kubeconfig: kc, noWait: true})

	// Wait until the webhook server answers at all, then check that it
	// answers with an error while /readyz reports not ready.
	var resp *admissionv1.AdmissionResponse
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		url := g.URL(webhook.Path)
		r, err := g.httpsClient().Post(url, "application/json", bytes.NewReader(review("nr", "PeerAuthentication", "CREATE", strictJSON, "")))
		if err != nil {
			if g.Exited() {
				return false, fmt.Errorf("guard exited: %v", g.Err())
			}
			return false, nil // not listening yet
		}
		defer r.Body.Close()
		var rv admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&rv); err != nil {
			return false, err
		}
		resp = rv.Response
		return true, nil
	})
	if err != nil {
		t.Fatalf("webhook server never answered: %v", err)
	}
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusServiceUnavailable || !strings.Contains(resp.Result.Message, "not synced") {
		t.Fatalf("unsynced guard answered %+v, want a 503 error", resp.Result)
	}
	if ready, _ := g.Ready(ctx); ready {
		t.Fatal("/readyz is OK although the cache never synced")
	}

	// Grant the shipped ClusterRole: the caches sync, the guard becomes
	// ready and decides.
	grant := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-no-rbac"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: suite.Deploy.ClusterRole},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "system:serviceaccount:e2e:no-rbac"}},
	}
	create(t, grant)
	if err := g.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	_, resp = post(t, g, review("nr2", "PeerAuthentication", "CREATE", strictJSON, ""))
	if resp.Result != nil && resp.Result.Code == http.StatusServiceUnavailable {
		t.Fatalf("ready guard still answers %+v", resp.Result)
	}
}

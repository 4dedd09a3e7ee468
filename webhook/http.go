package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"
)

// MaxRequestBytes bounds an AdmissionReview body, as controller-runtime
// does: two objects of at most 3 MiB each, and 1 MiB for the rest.
const MaxRequestBytes = 7 << 20

// NewHTTPHandler serves h as an admission webhook through
// controller-runtime's admission.Webhook, behind limitBody.
//
// Measured against the hand-written layer it replaces, which decoded the
// review once: BenchmarkServeHTTP costs a few microseconds more here, well
// under 5% of the end-to-end latency a webhook call adds (docs/performance.md).
func NewHTTPHandler(h admission.Handler, log logr.Logger) http.Handler {
	return limitBody(newWebhook(h, log))
}

// NewArrivalHTTPHandler serves h as NewHTTPHandler does, except that a v1
// AdmissionReview of a Pod is decoded in one pass, the pod's judged fields
// (leanPod) with the rest of the review. Whatever else arrives (a workload,
// another version, a body that does not decode) goes to
// admission.Webhook, which answers it as before.
//
// Pod creation is the cluster's hot path, and controller-runtime reads a
// review three times (its kind sniffing, its decode, then the handler's
// decode of the object): 77% of BenchmarkServeHTTPPod for a 7.6 KB
// injected pod. One pass takes it from 150 to 64 µs; end to end
// (internal/bench) the guard's time per judged pod create fell from 304
// to 158 µs, over 10% of the 0.6 to 1.2 ms the arrivals webhook adds to a
// pod create (docs/performance.md): more than the 5% that keeps a
// hand-written layer.
func NewArrivalHTTPHandler(h *ArrivalHandler, log logr.Logger) http.Handler {
	wh := newWebhook(h, log)
	return limitBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/json" {
			wh.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		var review podReview
		if err != nil || sigsjson.UnmarshalCaseSensitivePreserveInts(body, &review) != nil || !review.isPod() {
			// admission.Webhook reads what was read, then the read's error.
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
			wh.ServeHTTP(w, r)
			return
		}
		req := admission.Request{AdmissionRequest: review.Request.AdmissionRequest}
		req.Object.Object = review.Request.Object.pod()
		writeReview(w, wh.Handle(r.Context(), req))
	}))
}

// errReader fails every read with err, or ends the body when err is nil.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err == nil {
		return 0, io.EOF
	}
	return 0, e.err
}

// podReview is a v1 AdmissionReview whose object is decoded as a leanPod:
// the outer Object field hides the embedded request's RawExtension.
type podReview struct {
	metav1.TypeMeta `json:",inline"`
	Request         *struct {
		admissionv1.AdmissionRequest `json:",inline"`
		Object                       *leanPod `json:"object"`
	} `json:"request"`
}

// isPod reports whether r is a v1 review of a core v1 Pod, with one.
func (r *podReview) isPod() bool {
	return r.GroupVersionKind() == admissionv1.SchemeGroupVersion.WithKind("AdmissionReview") &&
		r.Request != nil && r.Request.Object != nil && r.Request.Kind == metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
}

// newWebhook is controller-runtime's admission.Webhook for h: content type
// checked, the review decoded, panics recovered, the answer completed with
// the request's UID.
func newWebhook(h admission.Handler, log logr.Logger) *admission.Webhook {
	recoverPanic := true
	return &admission.Webhook{
		Handler:      h,
		RecoverPanic: &recoverPanic,
		// controller-runtime's default adds six request fields to a logger
		// for every request, for the few lines it logs itself; the
		// handler logs each decision with those fields already.
		LogConstructor: func(logr.Logger, *admission.Request) logr.Logger { return log },
	}
}

// limitBody cuts a body over MaxRequestBytes off as it is read, and
// refuses one that declares more before it is read. Whatever cannot be
// decoded is answered with an error, never an allowance.
func limitBody(h http.Handler) http.Handler {
	limited := http.MaxBytesHandler(h, MaxRequestBytes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxRequestBytes {
			// The connection closes rather than drain the body.
			w.Header().Set("Connection", "close")
			writeReview(w, admission.Errored(http.StatusRequestEntityTooLarge,
				fmt.Errorf("request entity is too large: Content-Length %d bytes; limit is %d bytes", r.ContentLength, MaxRequestBytes)))
			return
		}
		limited.ServeHTTP(w, r)
	})
}

// writeReview writes resp as a v1 AdmissionReview, as admission.Webhook
// does.
func writeReview(w http.ResponseWriter, resp admission.Response) {
	w.Header().Set("Content-Type", "application/json")
	ar := admissionv1.AdmissionReview{Response: &resp.AdmissionResponse}
	ar.SetGroupVersionKind(admissionv1.SchemeGroupVersion.WithKind("AdmissionReview"))
	_ = json.NewEncoder(w).Encode(ar)
}

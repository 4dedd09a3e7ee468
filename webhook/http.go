package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// MaxRequestBytes bounds an AdmissionReview body, as controller-runtime
// does: two objects of at most 3 MiB each, and 1 MiB for the rest.
const MaxRequestBytes = 7 << 20

// maxUIDLength bounds the request UID echoed in an error answer; the API
// server sends UUIDs.
const maxUIDLength = 128

// NewHTTPHandler serves h as an admission webhook. It is controller-runtime's
// admission.Webhook (panics recovered) with three additions:
//   - a body whose Content-Length is over MaxRequestBytes is refused before
//     any of it is read;
//   - a body that is not a JSON admission.k8s.io/v1 or v1beta1
//     AdmissionReview is refused, rather than decoded as YAML or answered
//     in a version the API server does not speak;
//   - an error answer to a request that could not be decoded still echoes
//     the request's UID when the body names one, and says it is an
//     admission.k8s.io/v1 AdmissionReview.
//
// Errors are answered as AdmissionReviews with HTTP status 200 and the code
// inside, which the API server reports to the user; never as allowances.
func NewHTTPHandler(h admission.Handler, log logr.Logger) http.Handler {
	recoverPanic := true
	wh := &admission.Webhook{
		Handler:      h,
		RecoverPanic: &recoverPanic,
		// controller-runtime's default adds six request fields to a logger
		// for every request, for the few lines it logs itself; the
		// handler logs each decision with those fields already.
		LogConstructor: func(logr.Logger, *admission.Request) logr.Logger { return log },
	}
	return &reviewHandler{wh: wh, log: log}
}

type reviewHandler struct {
	wh  *admission.Webhook
	log logr.Logger
}

func (s *reviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > MaxRequestBytes {
		// Refuse early: the body is never read, and the server closes the
		// connection rather than drain it.
		w.Header().Set("Connection", "close")
		s.refuse(w, http.StatusRequestEntityTooLarge,
			fmt.Errorf("request entity is too large: Content-Length %d bytes; limit is %d bytes", r.ContentLength, MaxRequestBytes), "")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		s.refuse(w, http.StatusBadRequest, fmt.Errorf("reading the request body: %w", err), "")
		return
	}
	if len(body) > MaxRequestBytes {
		w.Header().Set("Connection", "close")
		s.refuse(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request entity is too large; limit is %d bytes", MaxRequestBytes), "")
		return
	}
	r.Body = http.NoBody
	if len(body) > 0 {
		if err := checkReviewVersion(body); err != nil {
			s.refuse(w, http.StatusBadRequest, err, requestUID(body))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	out := &bufferWriter{header: w.Header()}
	s.wh.ServeHTTP(out, r)
	answer := out.buf.Bytes()
	// Only the error paths that never decoded the review write no
	// apiVersion and no UID.
	if bytes.HasPrefix(answer, []byte(`{"response":`)) {
		answer = s.complete(answer, requestUID(body))
	}
	w.Header().Set("Content-Type", "application/json")
	if out.code != 0 {
		w.WriteHeader(out.code)
	}
	if _, err := w.Write(answer); err != nil {
		s.log.V(1).Info("writing the answer", "error", err.Error())
	}
}

// refuse answers an error without running the webhook.
func (s *reviewHandler) refuse(w http.ResponseWriter, code int32, err error, uid string) {
	s.log.Error(err, "request refused", "code", code, "uid", uid)
	resp := admission.Errored(code, err)
	resp.UID = types.UID(uid)
	answer, merr := json.Marshal(review(resp.AdmissionResponse))
	if merr != nil {
		http.Error(w, merr.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(answer); err != nil {
		s.log.V(1).Info("writing the answer", "error", err.Error())
	}
}

// complete gives an error answer its apiVersion, kind and the UID.
func (s *reviewHandler) complete(answer []byte, uid string) []byte {
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(answer, &ar); err != nil || ar.Response == nil {
		return answer
	}
	if ar.Response.UID == "" {
		ar.Response.UID = types.UID(uid)
	}
	out, err := json.Marshal(review(*ar.Response))
	if err != nil {
		return answer
	}
	return out
}

func review(resp admissionv1.AdmissionResponse) admissionv1.AdmissionReview {
	ar := admissionv1.AdmissionReview{Response: &resp}
	ar.SetGroupVersionKind(admissionv1.SchemeGroupVersion.WithKind("AdmissionReview"))
	return ar
}

// checkReviewVersion refuses what is not a JSON AdmissionReview of a
// version the guard speaks. controller-runtime's decoder would also take
// YAML, and any version of the AdmissionReview kind, answering in that
// version, which the API server never sends nor reads.
func checkReviewVersion(body []byte) error {
	var tm metav1.TypeMeta
	// Case-sensitive, like the API machinery's decoder.
	if err := utiljson.Unmarshal(body, &tm); err != nil {
		return fmt.Errorf("the body is not a JSON AdmissionReview: %w", err)
	}
	if tm.Kind != "AdmissionReview" || (tm.APIVersion != admissionv1.SchemeGroupVersion.String() && tm.APIVersion != admissionv1beta1.SchemeGroupVersion.String()) {
		return fmt.Errorf("unsupported AdmissionReview version: got apiVersion %q kind %q, want admission.k8s.io/v1 (or v1beta1) AdmissionReview", tm.APIVersion, tm.Kind)
	}
	return nil
}

// requestUID finds request.uid in a body that may be truncated or not an
// AdmissionReview at all, reading JSON tokens up to the first error.
func requestUID(body []byte) string {
	type frame struct {
		object  bool
		key     string
		wantKey bool
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				stack = append(stack, frame{object: v == '{', wantKey: v == '{'})
				continue
			}
			stack = stack[:len(stack)-1]
		case string:
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
				stack[n-1].key, stack[n-1].wantKey = v, false
				continue
			}
			if len(stack) == 2 && stack[0].object && stack[0].key == "request" && stack[1].object && stack[1].key == "uid" {
				if len(v) > maxUIDLength {
					return ""
				}
				return v
			}
		}
		// A value ended: an object expects its next key.
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
}

// bufferWriter collects the webhook's answer so that it can be completed.
type bufferWriter struct {
	header http.Header
	buf    bytes.Buffer
	code   int
}

func (b *bufferWriter) Header() http.Header { return b.header }

func (b *bufferWriter) Write(p []byte) (int, error) { return b.buf.Write(p) }

func (b *bufferWriter) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

var _ http.ResponseWriter = (*bufferWriter)(nil)

package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
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

// maxUIDLength bounds the request UID echoed in an error answer; the API
// server sends UUIDs.
const maxUIDLength = 128

// NewHTTPHandler serves h as an admission webhook. It decodes the body
// once and runs h through controller-runtime's admission.Webhook (panics
// recovered, the answer completed with the request's UID). Before h runs:
//   - a body whose Content-Length is over MaxRequestBytes is refused before
//     any of it is read;
//   - a body that is not a JSON admission.k8s.io/v1 or v1beta1
//     AdmissionReview is refused, rather than decoded as YAML or answered
//     in a version the API server does not speak;
//   - a Content-Type other than application/json is refused, as
//     controller-runtime refuses it.
//
// A review is answered in its own version; a refusal as an
// admission.k8s.io/v1 AdmissionReview that echoes the request's UID when
// the body names one. Errors are answered with HTTP status 200 and the
// code inside, which the API server reports to the user; never as
// allowances.
func oldHTTPHandler(h admission.Handler, log logr.Logger) http.Handler {
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

// review is an AdmissionReview of either version as the API server sends
// it: both versions share one shape.
type review struct {
	metav1.TypeMeta `json:",inline"`
	Request         *admissionv1.AdmissionRequest `json:"request,omitempty"`
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
	if len(body) == 0 {
		s.refuse(w, http.StatusBadRequest, errors.New("request body is empty"), "")
		return
	}
	var in review
	// Case-sensitive, like the API machinery's decoder.
	if err := utiljson.Unmarshal(body, &in); err != nil {
		// Say what is wrong first about the review as a whole.
		if verr := checkReviewVersion(body); verr != nil {
			err = verr
		} else {
			err = fmt.Errorf("decoding the AdmissionReview: %w", err)
		}
		s.refuse(w, http.StatusBadRequest, err, requestUID(body))
		return
	}
	var req admission.Request
	if in.Request != nil {
		req.AdmissionRequest = *in.Request
	}
	if err := reviewVersion(in.TypeMeta); err != nil {
		s.refuse(w, http.StatusBadRequest, err, string(req.UID))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		s.refuse(w, http.StatusBadRequest, fmt.Errorf("contentType=%s, expected application/json", ct), string(req.UID))
		return
	}
	resp := s.wh.Handle(r.Context(), req)
	s.write(w, admissionv1.AdmissionReview{TypeMeta: in.TypeMeta, Response: &resp.AdmissionResponse})
}

// refuse answers an error without running the webhook.
func (s *reviewHandler) refuse(w http.ResponseWriter, code int32, err error, uid string) {
	s.log.Error(err, "request refused", "code", code, "uid", uid)
	resp := admission.Errored(code, err)
	resp.UID = types.UID(uid)
	ar := admissionv1.AdmissionReview{Response: &resp.AdmissionResponse}
	ar.SetGroupVersionKind(admissionv1.SchemeGroupVersion.WithKind("AdmissionReview"))
	s.write(w, ar)
}

// write sends an answer.
func (s *reviewHandler) write(w http.ResponseWriter, ar admissionv1.AdmissionReview) {
	answer, err := json.Marshal(ar)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(answer); err != nil {
		s.log.V(1).Info("writing the answer", "error", err.Error())
	}
}

// checkReviewVersion refuses what is not a JSON AdmissionReview of a
// version the guard speaks, reading only its apiVersion and kind.
func checkReviewVersion(body []byte) error {
	var tm metav1.TypeMeta
	if err := utiljson.Unmarshal(body, &tm); err != nil {
		return fmt.Errorf("the body is not a JSON AdmissionReview: %w", err)
	}
	return reviewVersion(tm)
}

// reviewVersion accepts admission.k8s.io/v1 and v1beta1 AdmissionReviews.
// controller-runtime's decoder would also take any version of the kind,
// answering in that version, which the API server never sends nor reads.
func reviewVersion(tm metav1.TypeMeta) error {
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

// OldHTTPHandler is the hand-written layer, kept here only to benchmark it
// side by side with the library's.
var OldHTTPHandler = oldHTTPHandler

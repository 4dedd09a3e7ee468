package webhook

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/mtls-guard/mtls-guard/internal/engine"
)

// ArrivalPath is where pods and workloads arriving where STRICT already
// holds are judged (rule 3b).
const ArrivalPath = "/validate-arrivals"

// ReasonUnmeshedUnderStrict is the Event reason of an unmeshed pod or
// workload template in a namespace where STRICT already holds.
const ReasonUnmeshedUnderStrict = "UnmeshedUnderStrict"

// AuditArrival names the pod or workload judged unmeshed under STRICT.
const AuditArrival = "unmeshed-under-strict"

// Outcomes of an arrival, besides OutcomeAllowed and OutcomeDenied.
const (
	OutcomeWarned = "warned"
	// OutcomeUnjudged is an arrival admitted because the guard could not
	// judge it: a guard that cannot answer never blocks a pod.
	OutcomeUnjudged = "unjudged"
)

// Action is what the guard does with an arrival that is unmeshed under
// STRICT: --unmeshed-pods and --unmeshed-workloads.
type Action string

// The actions.
const (
	ActionWarn Action = "warn"
	ActionDeny Action = "deny"
	ActionOff  Action = "off"
)

// ParseAction parses --unmeshed-pods and --unmeshed-workloads.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case ActionWarn, ActionDeny, ActionOff:
		return a, nil
	}
	return "", fmt.Errorf("unknown action %q (want warn, deny or off)", s)
}

// ArrivalHandler judges pods as they are created and workloads (their pod
// templates) as they are created or changed. It sits in the path of every
// pod of the cluster, so it never blocks one because the guard cannot
// answer: an unsynced cache, an index error or an undecodable object is
// admitted, logged and audited as unjudged.
type ArrivalHandler struct {
	// Synced reports whether the cache can answer; nil means always.
	Synced func(context.Context) error
	// DecidePod and DecideTemplate judge an arrival (internal/index).
	DecidePod      func(*corev1.Pod) (engine.Arrival, error)
	DecideTemplate func(namespace string, t *corev1.PodTemplateSpec) (engine.Arrival, error)
	// Owner names the workload a pod's Event goes to, so that
	// kubectl describe deployment shows it.
	Owner func(*corev1.Pod) corev1.ObjectReference
	// Pods and Workloads are the actions for pods and for templates.
	Pods, Workloads Action
	// Recorder records Warning Events; nil records none. Events
	// deduplicates them per workload.
	Recorder events.EventRecorder
	Events   *EventDeduper
	Log      logr.Logger
}

var _ admission.Handler = (*ArrivalHandler)(nil)

// arrivalDecoder decodes pods and the workload kinds.
var arrivalDecoder = admission.NewDecoder(func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	return s
}())

// arrival is one judged object.
type arrival struct {
	verdict engine.Arrival
	// ref is what the Event regards: the pod's workload, or the workload.
	ref    corev1.ObjectReference
	name   string // Kind/namespace/name of the judged object
	action Action
}

// Handle implements admission.Handler.
func (h *ArrivalHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	kind := req.Kind.Kind
	a, err := h.judge(ctx, req)
	ArrivalSeconds.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	kv := []any{"uid", req.UID, "operation", req.Operation, "kind", kind, "namespace", req.Namespace, "name", req.Name, "user", req.UserInfo.Username}
	if err != nil {
		Arrivals.WithLabelValues(kind, OutcomeUnjudged).Inc()
		h.Log.Error(err, "arrival not judged; admitted", kv...)
		resp := admission.Allowed("")
		resp.AuditAnnotations = map[string]string{AuditDecision: OutcomeUnjudged}
		return resp
	}
	if a == nil || !a.verdict.Problem() {
		Arrivals.WithLabelValues(kind, OutcomeAllowed).Inc()
		return admission.Allowed("")
	}
	msg := fmt.Sprintf("%s is unmeshed (%s) where STRICT mTLS already holds in namespace %s: its plaintext calls to the STRICT workloads there will be refused",
		a.name, a.verdict.Reason, req.Namespace)
	outcome := OutcomeWarned
	resp := admission.Allowed("").WithWarnings(shorten(msg, MaxWarningLength))
	if a.action == ActionDeny {
		outcome = OutcomeDenied
		resp = admission.Denied(msg + fmt.Sprintf(". To proceed: enable sidecar injection or ambient for it, or label it %s.", engine.ExemptHint))
	}
	resp.AuditAnnotations = map[string]string{AuditDecision: outcome, AuditArrival: a.name + " (" + string(a.verdict.Reason) + ")"}
	Arrivals.WithLabelValues(kind, outcome).Inc()
	h.Log.Info("arrival", append(kv, "outcome", outcome, "reason", a.verdict.Reason, "regarding", a.ref.Kind+"/"+a.ref.Name)...)
	if (req.DryRun == nil || !*req.DryRun) && h.Recorder != nil && h.Events.First(a.ref.Namespace+"/"+a.ref.Kind+"/"+a.ref.Name+"/"+ReasonUnmeshedUnderStrict) {
		h.Recorder.Eventf(&a.ref, nil, corev1.EventTypeWarning, ReasonUnmeshedUnderStrict, "Admit", "%s", shorten(msg, 1000))
	}
	return resp
}

// judge decodes the request and judges it; nil when the rule does not
// apply to it.
func (h *ArrivalHandler) judge(ctx context.Context, req admission.Request) (*arrival, error) {
	if h.Synced != nil {
		if err := h.Synced(ctx); err != nil {
			return nil, err
		}
	}
	if req.Kind.Kind == "Pod" {
		if h.Pods == ActionOff || req.Operation != admissionv1.Create {
			return nil, nil
		}
		// The HTTP layer may have decoded the pod with the review already.
		pod, ok := req.Object.Object.(*corev1.Pod)
		if !ok {
			var err error
			if pod, err = decodePod(req.Object.Raw); err != nil {
				return nil, fmt.Errorf("decoding the pod: %w", err)
			}
		}
		if pod.Namespace == "" {
			pod.Namespace = req.Namespace
		}
		v, err := h.DecidePod(pod)
		if err != nil {
			return nil, err
		}
		return &arrival{verdict: v, ref: h.Owner(pod), name: "Pod " + pod.Namespace + "/" + podName(pod, req), action: h.Pods}, nil
	}
	if h.Workloads == ActionOff || (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) {
		return nil, nil
	}
	obj, err := newWorkload(req.Kind.Kind)
	if err != nil {
		return nil, err
	}
	if err := arrivalDecoder.Decode(req, obj); err != nil {
		return nil, fmt.Errorf("decoding the %s: %w", req.Kind.Kind, err)
	}
	t := engine.TemplateOf(obj)
	if req.Operation == admissionv1.Update {
		old, _ := newWorkload(req.Kind.Kind)
		if err := arrivalDecoder.DecodeRaw(req.OldObject, old); err == nil && equality.Semantic.DeepEqual(engine.TemplateOf(old), t) {
			return nil, nil // scaling, status: the template is what it was
		}
	}
	v, err := h.DecideTemplate(req.Namespace, t)
	if err != nil {
		return nil, err
	}
	ref := corev1.ObjectReference{APIVersion: req.Kind.Group + "/" + req.Kind.Version, Kind: req.Kind.Kind, Namespace: req.Namespace, Name: req.Name, UID: obj.GetUID()}
	return &arrival{verdict: v, ref: ref, name: req.Kind.Kind + " " + req.Namespace + "/" + req.Name, action: h.Workloads}, nil
}

// leanPod is the part of a pod that judging it reads (mesh.Counted,
// mesh.Classify, its controller and identity). Pod creation is the
// cluster's hot path, and an injected pod's spec is mostly what the guard
// does not read: decoding only this costs a fraction of a whole Pod.
type leanPod struct {
	Metadata struct {
		Name              string                  `json:"name"`
		GenerateName      string                  `json:"generateName"`
		Namespace         string                  `json:"namespace"`
		UID               types.UID               `json:"uid"`
		Labels            map[string]string       `json:"labels"`
		Annotations       map[string]string       `json:"annotations"`
		OwnerReferences   []metav1.OwnerReference `json:"ownerReferences"`
		DeletionTimestamp *metav1.Time            `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		HostNetwork    bool `json:"hostNetwork"`
		InitContainers []struct {
			Name          string                         `json:"name"`
			RestartPolicy *corev1.ContainerRestartPolicy `json:"restartPolicy"`
		} `json:"initContainers"`
		Containers []struct {
			Name string   `json:"name"`
			Args []string `json:"args"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		Phase corev1.PodPhase `json:"phase"`
	} `json:"status"`
}

// decodePod decodes what judging a pod reads of it, case-sensitively as
// the API server does.
func decodePod(raw []byte) (*corev1.Pod, error) {
	var l leanPod
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &l); err != nil {
		return nil, err
	}
	return l.pod(), nil
}

// pod is the Pod that l was decoded from, with only the fields l holds.
func (l *leanPod) pod() *corev1.Pod {
	m := &l.Metadata
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: m.Name, GenerateName: m.GenerateName, Namespace: m.Namespace, UID: m.UID, Labels: m.Labels,
		Annotations: m.Annotations, OwnerReferences: m.OwnerReferences, DeletionTimestamp: m.DeletionTimestamp,
	}}
	pod.Spec.HostNetwork = l.Spec.HostNetwork
	pod.Status.Phase = l.Status.Phase
	for _, c := range l.Spec.InitContainers {
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: c.Name, RestartPolicy: c.RestartPolicy})
	}
	for _, c := range l.Spec.Containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c.Name, Args: c.Args})
	}
	return pod
}

// podName is the pod's name; a pod created through generateName has
// only that prefix until the API server names it.
func podName(pod *corev1.Pod, req admission.Request) string {
	switch {
	case pod.Name != "":
		return pod.Name
	case req.Name != "":
		return req.Name
	}
	return pod.GenerateName + "*"
}

// newWorkload returns an empty object of a workload kind the guard judges.
func newWorkload(kind string) (client.Object, error) {
	switch kind {
	case "Deployment":
		return &appsv1.Deployment{}, nil
	case "StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "DaemonSet":
		return &appsv1.DaemonSet{}, nil
	case "Job":
		return &batchv1.Job{}, nil
	case "CronJob":
		return &batchv1.CronJob{}, nil
	}
	return nil, fmt.Errorf("the arrivals webhook does not judge %s", kind)
}

package webhook_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/index/clustergen"
	"github.com/mtls-guard/mtls-guard/webhook"
)

// inject turns a generated pod (Full: as the API server holds it) into
// what a validating webhook receives after Istio's injector: the
// istio-validation init container and the istio-proxy native sidecar with
// the injector's args, env, probes, security context and volumes.
func inject(pod *corev1.Pod) {
	fieldRef := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}
	}
	env := []corev1.EnvVar{
		{Name: "PILOT_CERT_PROVIDER", Value: "istiod"},
		{Name: "CA_ADDR", Value: "istiod.istio-system.svc:15012"},
		{Name: "POD_NAME", ValueFrom: fieldRef("metadata.name")},
		{Name: "POD_NAMESPACE", ValueFrom: fieldRef("metadata.namespace")},
		{Name: "INSTANCE_IP", ValueFrom: fieldRef("status.podIP")},
		{Name: "SERVICE_ACCOUNT", ValueFrom: fieldRef("spec.serviceAccountName")},
		{Name: "HOST_IP", ValueFrom: fieldRef("status.hostIP")},
		{Name: "ISTIO_CPU_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu", Divisor: resource.MustParse("0")}}},
		{Name: "PROXY_CONFIG", Value: "{}\n"},
		{Name: "ISTIO_META_POD_PORTS", Value: "[\n    {\"name\":\"http\",\"containerPort\":8080,\"protocol\":\"TCP\"}\n]"},
		{Name: "ISTIO_META_APP_CONTAINERS", Value: "app"},
		{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("0")}}},
		{Name: "GOMAXPROCS", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu", Divisor: resource.MustParse("0")}}},
		{Name: "ISTIO_META_CLUSTER_ID", Value: "Kubernetes"},
		{Name: "ISTIO_META_NODE_NAME", ValueFrom: fieldRef("spec.nodeName")},
		{Name: "ISTIO_META_INTERCEPTION_MODE", Value: "REDIRECT"},
		{Name: "ISTIO_META_WORKLOAD_NAME", Value: pod.Labels["app"]},
		{Name: "ISTIO_META_OWNER", Value: "kubernetes://apis/apps/v1/namespaces/" + pod.Namespace + "/deployments/" + pod.Labels["app"]},
		{Name: "ISTIO_META_MESH_ID", Value: "cluster.local"},
		{Name: "TRUST_DOMAIN", Value: "cluster.local"},
	}
	mounts := []corev1.VolumeMount{
		{Name: "workload-socket", MountPath: "/var/run/secrets/workload-spiffe-uds"},
		{Name: "credential-socket", MountPath: "/var/run/secrets/credential-uds"},
		{Name: "workload-certs", MountPath: "/var/run/secrets/workload-spiffe-credentials"},
		{Name: "istiod-ca-cert", MountPath: "/var/run/secrets/istio"},
		{Name: "istio-data", MountPath: "/var/lib/istio/data"},
		{Name: "istio-envoy", MountPath: "/etc/istio/proxy"},
		{Name: "istio-token", MountPath: "/var/run/secrets/tokens"},
		{Name: "istio-podinfo", MountPath: "/etc/istio/pod"},
		{Name: "kube-api-access", ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"},
	}
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false), Privileged: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
		RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(1337)), RunAsGroup: ptr.To(int64(1337)),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	resources := corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")},
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
	}
	const image = "docker.io/istio/proxyv2:1.28.0"
	pod.Spec.InitContainers = []corev1.Container{
		{
			Name: "istio-validation", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
			Args: []string{"istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*",
				"-d", "15090,15021,15020", "--log_output_level=default:info", "--run-validation", "--skip-rule-apply"},
			Resources: resources, SecurityContext: sc,
			TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		},
		{
			Name: "istio-proxy", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
			RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
			Args: []string{"proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning",
				"--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"},
			Env:   env,
			Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090, Protocol: corev1.ProtocolTCP}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(15021), Scheme: corev1.URISchemeHTTP}},
				PeriodSeconds: 15, TimeoutSeconds: 3, SuccessThreshold: 1, FailureThreshold: 4},
			StartupProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(15021), Scheme: corev1.URISchemeHTTP}},
				PeriodSeconds: 1, TimeoutSeconds: 3, SuccessThreshold: 1, FailureThreshold: 600},
			Resources: resources, SecurityContext: sc, VolumeMounts: mounts,
			TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		},
	}
	emptyDir := func(name string, medium corev1.StorageMedium) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: medium}}}
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes,
		emptyDir("workload-socket", ""), emptyDir("credential-socket", ""), emptyDir("workload-certs", ""),
		emptyDir("istio-envoy", corev1.StorageMediumMemory), emptyDir("istio-data", ""),
		corev1.Volume{Name: "istio-podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.labels"}},
			{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.annotations"}},
		}}}},
		corev1.Volume{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "istio-ca", ExpirationSeconds: ptr.To(int64(43200)), Path: "istio-token"}},
		}}}},
		corev1.Volume{Name: "istiod-ca-cert", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "istio-ca-root-cert"}}}},
	)
	// Injection happens at CREATE, before the kubelet: no status yet.
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending}
	pod.Spec.NodeName = ""
}

// podReview is the AdmissionReview the API server sends for a pod CREATE
// by the ReplicaSet controller.
func podReview(b *testing.B, pod *corev1.Pod) []byte {
	b.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	kind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	res := metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
	no := false
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "9f0a6a52-52b3-4c4e-9d0b-6f2b1c1f8a10", Kind: kind, Resource: res, RequestKind: &kind, RequestResource: &res,
			Namespace: pod.Namespace, Name: pod.Name, Operation: admissionv1.Create,
			UserInfo: authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller",
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}},
			Object: runtime.RawExtension{Raw: raw}, DryRun: &no,
			Options: runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}`)},
		},
	}
	body, err := json.Marshal(ar)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkServeHTTPPod is the guard's side of one pod CREATE through the
// arrivals webhook's HTTP handler as served (decoding the review and the
// pod, the decision on an index of 10k pods, metrics, answer), in a
// namespace where STRICT holds:
//   - injected: a Deployment's pod as Istio's injector leaves it, admitted
//     quietly (deploy/'s matchConditions keep such pods away from the guard,
//     so this is the most a meshed pod can cost);
//   - unmeshed: the same pod without the sidecar, warned.
func BenchmarkServeHTTPPod(b *testing.B) {
	genCfg := clustergen.Config{Pods: 10000, Namespaces: 100}
	gen := clustergen.New(genCfg)
	ix := index.New(engine.DefaultOptions())
	for _, o := range gen.Objects() {
		ix.Add(o)
	}
	log := zap.New(zap.WriteTo(io.Discard))
	h := &webhook.ArrivalHandler{
		DecidePod: ix.DecidePod, DecideTemplate: ix.DecideTemplate, Owner: ix.Owner,
		Pods: webhook.ActionWarn, Workloads: webhook.ActionWarn, Log: log,
	}
	// served is the handler as served; webhook is controller-runtime's
	// admission.Webhook alone, which it spares the pod reviews, for the
	// comparison.
	layers := []struct {
		name string
		srv  http.Handler
	}{
		{"served", webhook.NewArrivalHTTPHandler(h, log)},
		{"webhook", webhook.NewHTTPHandler(h, log)},
	}

	// The exempt namespace's first pod, as the API server would hold it.
	genCfg.Full = true
	var pod *corev1.Pod
	for i := range gen.NumPods() {
		if p := clustergen.New(genCfg).Pod(i); p.Namespace == gen.ExemptNamespace() {
			pod = p
			break
		}
	}
	pod.Name, pod.UID, pod.ResourceVersion, pod.ManagedFields = pod.Name+"-new", "", "", nil
	inject(pod)
	unmeshed := pod.DeepCopy()
	unmeshed.Spec.InitContainers = nil
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		warn bool
	}{
		{"injected", pod, false},
		{"unmeshed", unmeshed, true},
	} {
		for _, l := range layers {
			b.Run(tc.name+"/"+l.name, func(b *testing.B) {
				body := podReview(b, tc.pod)
				b.ReportAllocs()
				for b.Loop() {
					r := httptest.NewRequest(http.MethodPost, webhook.ArrivalPath, bytes.NewReader(body))
					r.Header.Set("Content-Type", "application/json")
					w := httptest.NewRecorder()
					l.srv.ServeHTTP(w, r)
					if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(`"allowed":true`)) ||
						bytes.Contains(w.Body.Bytes(), []byte(`"warnings"`)) != tc.warn {
						b.Fatalf("got %d %s, want allowed with warnings %v", w.Code, w.Body, tc.warn)
					}
				}
				b.ReportMetric(float64(len(body)), "body-bytes")
			})
		}
	}
}

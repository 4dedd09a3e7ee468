// Package clustergen generates synthetic clusters for the guard's
// benchmarks: namespaces of Deployment pods, most of them with Istio's
// native sidecar and one workload in twenty unmeshed, the same for the same
// seed. Every pod can be generated on its own, so that a benchmark can
// stream a hundred thousand pods into a store without holding them all.
package clustergen

import (
	"fmt"
	"hash/fnv"
	"time"

	apisecurity "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/engine/enginetest"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// Names of the generated cluster.
const (
	// RootNamespace is Istio's root namespace, holding istiod.
	RootNamespace = engine.DefaultRootNamespace
	// SystemNamespace holds host-network pods that the guard excludes.
	SystemNamespace = "kube-system"
	// MeshPolicy is the mesh-wide policy, PERMISSIVE in the generated
	// cluster.
	MeshPolicy = "default"
	// ExemptPolicy is the workload policy that keeps the unmeshed
	// workload of ExemptNamespace PERMISSIVE under its namespace's STRICT.
	ExemptPolicy = "legacy"
)

// Config shapes a generated cluster.
type Config struct {
	// Pods is the number of application pods, spread evenly over the
	// namespaces.
	Pods int
	// Namespaces is the number of application namespaces.
	Namespaces int
	// PodsPerWorkload is the replica count of every Deployment; default 5.
	PodsPerWorkload int
	// UnmeshedEvery makes one workload in that many unmeshed; default 20,
	// that is 5% of the pods.
	UnmeshedEvery int
	// Seed varies the generated names and hashes.
	Seed uint64
	// Full fills in what an API server returns for a real pod (status,
	// env, volumes, probes, managed fields, Istio's annotations), for
	// measuring what a cache transform strips. Without it pods carry what
	// the API server needs to accept them and the engine reads.
	Full bool
}

// Cluster is a generated cluster. Its methods build fresh objects on every
// call.
type Cluster struct {
	cfg   Config
	perNS int
}

// New returns the cluster that cfg describes.
func New(cfg Config) *Cluster {
	if cfg.PodsPerWorkload <= 0 {
		cfg.PodsPerWorkload = 5
	}
	if cfg.UnmeshedEvery <= 0 {
		cfg.UnmeshedEvery = 20
	}
	if cfg.Namespaces <= 0 {
		cfg.Namespaces = 1
	}
	perNS := (cfg.Pods + cfg.Namespaces - 1) / cfg.Namespaces
	return &Cluster{cfg: cfg, perNS: max(perNS, 1)}
}

// Config returns the configuration, defaults filled in.
func (c *Cluster) Config() Config { return c.cfg }

// NumPods returns the number of application pods.
func (c *Cluster) NumPods() int { return c.cfg.Pods }

// NamespaceName returns the name of application namespace i.
func (c *Cluster) NamespaceName(i int) string { return fmt.Sprintf("ns-%04d", i) }

// ExemptNamespace is the namespace that runs STRICT with a PERMISSIVE
// exemption for its unmeshed workload; empty with a single namespace.
func (c *Cluster) ExemptNamespace() string {
	if c.cfg.Namespaces < 2 {
		return ""
	}
	return c.NamespaceName(1)
}

// created is the creationTimestamp of every generated object.
var created = metav1.NewTime(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))

// Namespaces returns the root, system and application namespaces.
func (c *Cluster) Namespaces() []*corev1.Namespace {
	out := []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: RootNamespace, CreationTimestamp: created}},
		{ObjectMeta: metav1.ObjectMeta{Name: SystemNamespace, CreationTimestamp: created}},
	}
	for i := range c.cfg.Namespaces {
		out = append(out, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: c.NamespaceName(i), CreationTimestamp: created,
			Labels: map[string]string{"istio-injection": "enabled", "kubernetes.io/metadata.name": c.NamespaceName(i)},
		}})
	}
	return out
}

// workloads returns the number of workloads of namespace ns.
func (c *Cluster) workloads(ns int) int {
	n := min(c.perNS, c.cfg.Pods-ns*c.perNS)
	return (max(n, 0) + c.cfg.PodsPerWorkload - 1) / c.cfg.PodsPerWorkload
}

// UnmeshedWorkload returns the index of the first unmeshed workload of
// namespace ns; every UnmeshedEvery-th workload after it is unmeshed too.
func (c *Cluster) UnmeshedWorkload(ns int) int { return (ns*7 + 3) % c.cfg.UnmeshedEvery }

func (c *Cluster) unmeshed(ns, w int) bool {
	return w%c.cfg.UnmeshedEvery == c.UnmeshedWorkload(ns)
}

// WorkloadName returns the Deployment name of workload w.
func WorkloadName(w int) string { return fmt.Sprintf("svc-%03d", w) }

// alphabet is the one Kubernetes uses for generated name suffixes.
const alphabet = "bcdfghjklmnpqrstvwxz2456789"

func (c *Cluster) hash(n int, parts ...int) string {
	h := fnv.New64a()
	fmt.Fprint(h, c.cfg.Seed)
	for _, p := range parts {
		fmt.Fprint(h, "/", p)
	}
	v := h.Sum64()
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[v%uint64(len(alphabet))]
		v /= uint64(len(alphabet))
	}
	return string(b)
}

func (c *Cluster) templateHash(ns, w int) string { return c.hash(10, ns, w) }

// ReplicaSets returns the ReplicaSet of every workload, each owned by its
// Deployment.
func (c *Cluster) ReplicaSets() []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for ns := range c.cfg.Namespaces {
		for w := range c.workloads(ns) {
			hash := c.templateHash(ns, w)
			labels := map[string]string{"app": WorkloadName(w), "pod-template-hash": hash}
			out = append(out, &appsv1.ReplicaSet{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: c.NamespaceName(ns), Name: WorkloadName(w) + "-" + hash, CreationTimestamp: created,
					UID:             types.UID(c.uid(ns, w, -1)),
					Labels:          labels,
					OwnerReferences: []metav1.OwnerReference{controllerRef("apps/v1", "Deployment", WorkloadName(w), c.uid(ns, w, -2))},
				},
				Spec: appsv1.ReplicaSetSpec{
					Replicas: ptr(int32(c.cfg.PodsPerWorkload)),
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1.0"}}},
					},
				},
			})
		}
	}
	return out
}

func (c *Cluster) uid(parts ...int) string {
	h := c.hash(32, parts...)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func controllerRef(apiVersion, kind, name, uid string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID(uid), Controller: &yes, BlockOwnerDeletion: &yes}
}

// SystemPods returns pods of the root and system namespaces, which the
// guard never counts.
func (c *Cluster) SystemPods() []*corev1.Pod {
	istiod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: RootNamespace, Name: "istiod-5d8f7b9c4-h7k2m", CreationTimestamp: created,
			Labels: map[string]string{"app": "istiod", "pod-template-hash": "5d8f7b9c4"},
		},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: "istio/pilot:1.24"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	proxy := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: SystemNamespace, Name: "kube-proxy-9xk2p", CreationTimestamp: created,
			Labels: map[string]string{"k8s-app": "kube-proxy"},
		},
		Spec:   corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "kube-proxy", Image: "registry.k8s.io/kube-proxy:v1.31.0"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	return []*corev1.Pod{istiod, proxy}
}

// Pod returns application pod i, 0 <= i < NumPods.
func (c *Cluster) Pod(i int) *corev1.Pod {
	ns, j := i/c.perNS, i%c.perNS
	w, r := j/c.cfg.PodsPerWorkload, j%c.cfg.PodsPerWorkload
	hash := c.templateHash(ns, w)
	rs := WorkloadName(w) + "-" + hash
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         c.NamespaceName(ns),
			Name:              rs + "-" + c.hash(5, ns, w, r),
			GenerateName:      rs + "-",
			UID:               types.UID(c.uid(ns, w, r)),
			ResourceVersion:   fmt.Sprint(100000 + i),
			CreationTimestamp: created,
			Labels: map[string]string{
				"app": WorkloadName(w), "version": "v1", "pod-template-hash": hash,
				"team": fmt.Sprintf("team-%d", w%7),
			},
			OwnerReferences: []metav1.OwnerReference{controllerRef("apps/v1", "ReplicaSet", rs, c.uid(ns, w, -1))},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/" + WorkloadName(w) + ":1.0"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	switch {
	case !c.unmeshed(ns, w):
		pod.Spec.InitContainers = []corev1.Container{nativeSidecar()}
	case ns%10 == 7:
		pod.Labels[mesh.InjectKey] = "false" // opted out: injection-disabled
	case ns%10 == 8:
		pod.Spec.Containers = append(pod.Spec.Containers, classicSidecar()) // classic-sidecar
	}
	if c.cfg.Full {
		fill(pod, i)
	}
	return pod
}

// Pods returns every application pod.
func (c *Cluster) Pods() []*corev1.Pod {
	out := make([]*corev1.Pod, c.cfg.Pods)
	for i := range out {
		out[i] = c.Pod(i)
	}
	return out
}

// Unmeshed returns the number of application pods unmeshed under
// --sidecar-mode=native.
func (c *Cluster) Unmeshed() int {
	n := 0
	for i := range c.cfg.Pods {
		ns, j := i/c.perNS, i%c.perNS
		if c.unmeshed(ns, j/c.cfg.PodsPerWorkload) {
			n++
		}
	}
	return n
}

func nativeSidecar() corev1.Container {
	always := corev1.ContainerRestartPolicyAlways
	return corev1.Container{Name: mesh.ProxyContainer, Image: "docker.io/istio/proxyv2:1.24.0", RestartPolicy: &always,
		Args: []string{"proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning"}}
}

func classicSidecar() corev1.Container {
	return corev1.Container{Name: mesh.ProxyContainer, Image: "docker.io/istio/proxyv2:1.24.0",
		Args: []string{"proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"}}
}

// fill adds what a real API server and kubelet put on a pod.
func fill(pod *corev1.Pod, i int) {
	pod.Annotations = map[string]string{
		"kubectl.kubernetes.io/default-container": "app",
		"prometheus.io/scrape":                    "true",
		"prometheus.io/port":                      "15020",
		"prometheus.io/path":                      "/stats/prometheus",
	}
	// The labels every Deployment's pods carry, and those Istio's injector
	// adds.
	pod.Labels["app.kubernetes.io/name"] = pod.Labels["app"]
	pod.Labels["app.kubernetes.io/part-of"] = "shop"
	pod.Labels["app.kubernetes.io/managed-by"] = "Helm"
	if len(pod.Spec.InitContainers) > 0 {
		pod.Labels["security.istio.io/tlsMode"] = "istio"
		pod.Labels["service.istio.io/canonical-name"] = pod.Labels["app"]
		pod.Labels["service.istio.io/canonical-revision"] = "v1"
		pod.Annotations["sidecar.istio.io/status"] = `{"initContainers":["istio-validation","istio-proxy"],"containers":null,"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"imagePullSecrets":null,"revision":"default"}`
		pod.Annotations["istio.io/rev"] = "default"
	}
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{
		Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &created,
		FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{},"f:team":{},"f:version":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"` + string(pod.OwnerReferences[0].UID) + `\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:env":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{},"f:resources":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}`)},
	}}
	pod.Spec.NodeName = fmt.Sprintf("node-%03d", i%50)
	pod.Spec.ServiceAccountName = "default"
	pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	pod.Spec.DNSPolicy = corev1.DNSClusterFirst
	pod.Spec.SchedulerName = "default-scheduler"
	pod.Spec.TerminationGracePeriodSeconds = ptr(int64(30))
	pod.Spec.Tolerations = []corev1.Toleration{
		{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(300))},
		{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(300))},
	}
	pod.Spec.Volumes = []corev1.Volume{{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr(int64(3607))}}},
	}}}}
	for k := range pod.Spec.Containers {
		ct := &pod.Spec.Containers[k]
		ct.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}
		ct.Env = []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}
		ct.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}}
		ct.VolumeMounts = []corev1.VolumeMount{{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}}
		ct.ImagePullPolicy = corev1.PullIfNotPresent
		ct.TerminationMessagePath = "/dev/termination-log"
		ct.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	}
	for k := range pod.Spec.InitContainers {
		ct := &pod.Spec.InitContainers[k]
		ct.Env = []corev1.EnvVar{
			{Name: "PILOT_CERT_PROVIDER", Value: "istiod"}, {Name: "CA_ADDR", Value: "istiod.istio-system.svc:15012"},
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "ISTIO_META_CLUSTER_ID", Value: "Kubernetes"}, {Name: "ISTIO_META_MESH_ID", Value: "cluster.local"},
		}
		ct.Ports = []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090, Protocol: corev1.ProtocolTCP}}
		ct.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(15021)}}, PeriodSeconds: 15, FailureThreshold: 4}
		ct.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}}
	}
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    fmt.Sprintf("10.0.%d.%d", i%50/250, i%50),
		PodIP:     fmt.Sprintf("10.244.%d.%d", i/250%250, i%250),
		PodIPs:    []corev1.PodIP{{IP: fmt.Sprintf("10.244.%d.%d", i/250%250, i%250)}},
		QOSClass:  corev1.PodQOSBurstable,
		StartTime: &created,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: created},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: created},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: created},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: created},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", Ready: true, Started: ptr(true), Image: pod.Spec.Containers[0].Image, ImageID: "registry.example/app@sha256:4f0b9c1e2d3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
			ContainerID: fmt.Sprintf("containerd://%064x", i), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: created}},
		}},
	}
}

func ptr[T any](v T) *T { return &v }

// Policies returns the generated cluster's PeerAuthentications: a
// PERMISSIVE mesh-wide policy, and in ExemptNamespace a namespace-wide
// STRICT with a PERMISSIVE exemption for its unmeshed workload.
func (c *Cluster) Policies() []*securityv1.PeerAuthentication {
	meshWide := PeerAuthentication(RootNamespace, MeshPolicy, apisecurity.PeerAuthentication_MutualTLS_PERMISSIVE, nil)
	meshWide.CreationTimestamp = metav1.NewTime(created.Add(-time.Hour))
	out := []*securityv1.PeerAuthentication{meshWide}
	if ns := c.ExemptNamespace(); ns != "" {
		strict := PeerAuthentication(ns, "default", apisecurity.PeerAuthentication_MutualTLS_STRICT, nil)
		exempt := PeerAuthentication(ns, ExemptPolicy, apisecurity.PeerAuthentication_MutualTLS_PERMISSIVE,
			map[string]string{"app": WorkloadName(c.UnmeshedWorkload(1))})
		out = append(out, strict, exempt)
	}
	return out
}

// PeerAuthentication builds a policy created with the cluster; a nil
// selector makes it namespace- or mesh-wide.
func PeerAuthentication(ns, name string, mode apisecurity.PeerAuthentication_MutualTLS_Mode, selector map[string]string) *securityv1.PeerAuthentication {
	pa := &securityv1.PeerAuthentication{
		TypeMeta:   metav1.TypeMeta{APIVersion: "security.istio.io/v1", Kind: "PeerAuthentication"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: created},
	}
	pa.Spec.Mtls = &apisecurity.PeerAuthentication_MutualTLS{Mode: mode}
	if selector != nil {
		pa.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: selector}
	}
	return pa
}

// Objects returns every object of the cluster, pods last.
func (c *Cluster) Objects() []runtime.Object {
	var out []runtime.Object
	for _, ns := range c.Namespaces() {
		out = append(out, ns)
	}
	for _, rs := range c.ReplicaSets() {
		out = append(out, rs)
	}
	for _, pa := range c.Policies() {
		out = append(out, pa)
	}
	for _, p := range c.SystemPods() {
		out = append(out, p)
	}
	for i := range c.cfg.Pods {
		out = append(out, c.Pod(i))
	}
	return out
}

// Snapshot returns the cluster as an enginetest.Snapshot.
func (c *Cluster) Snapshot() *enginetest.Snapshot {
	s := enginetest.NewSnapshot()
	for _, o := range c.Objects() {
		s.Add(o)
	}
	return s
}

// Decision names the changes the benchmarks decide.
type Decision string

// The benchmarked decisions.
const (
	// NamespaceWide creates a STRICT namespace-wide policy in namespace 0,
	// which holds an unmeshed workload: denied.
	NamespaceWide Decision = "namespace"
	// Workload creates a STRICT policy for a meshed workload of namespace
	// 0; the unmeshed workload next to it makes it a denial.
	Workload Decision = "workload"
	// MeshWide updates the mesh-wide policy from PERMISSIVE to STRICT: every
	// namespace but the one with its own STRICT is touched; denied.
	MeshWide Decision = "mesh"
	// Delete deletes the exemption of ExemptNamespace, which makes its
	// unmeshed workload STRICT: denied.
	Delete Decision = "delete"
)

// Decisions lists the benchmarked decisions in table order.
var Decisions = []Decision{NamespaceWide, Workload, MeshWide, Delete}

// Change returns the change of a benchmarked decision. Delete needs at
// least two namespaces; ok is false otherwise.
func (c *Cluster) Change(d Decision) (ch engine.Change, pa *securityv1.PeerAuthentication, ok bool) {
	strict := apisecurity.PeerAuthentication_MutualTLS_STRICT
	switch d {
	case NamespaceWide:
		pa = PeerAuthentication(c.NamespaceName(0), "default", strict, nil)
		pa.CreationTimestamp = metav1.Time{}
		ch.Operation = engine.Create
	case Workload:
		pa = PeerAuthentication(c.NamespaceName(0), "strict-"+WorkloadName(0), strict, map[string]string{"app": WorkloadName(0)})
		pa.CreationTimestamp = metav1.Time{}
		ch.Operation = engine.Create
	case MeshWide:
		pa = PeerAuthentication(RootNamespace, MeshPolicy, strict, nil)
		pa.CreationTimestamp = metav1.NewTime(created.Add(-time.Hour))
		ch.Operation = engine.Update
	case Delete:
		ns := c.ExemptNamespace()
		if ns == "" {
			return ch, nil, false
		}
		pa = PeerAuthentication(ns, ExemptPolicy, apisecurity.PeerAuthentication_MutualTLS_PERMISSIVE,
			map[string]string{"app": WorkloadName(c.UnmeshedWorkload(1))})
		ch.Operation = engine.Delete
	default:
		return ch, nil, false
	}
	ch.Policy = policy.FromV1(pa)
	return ch, pa, true
}

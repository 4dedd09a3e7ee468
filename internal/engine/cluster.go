package engine

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// Cluster is the read-only view of the cluster that a decision needs. It is
// indexed by namespace so that a decision costs what its namespaces hold.
// Lookups of a missing object return nil and no error; an error means the
// view cannot answer, and the decision fails rather than allows.
type Cluster interface {
	// Namespace returns the Namespace object, or nil when it is unknown.
	Namespace(name string) (*corev1.Namespace, error)
	// PodNamespaces lists the namespaces that hold pods.
	PodNamespaces() ([]string, error)
	// PodFacts returns what a decision reads of one namespace's counted
	// pods under a sidecar mode: FactsOf its pods, or facts kept up to
	// date (internal/index), so that a decision costs the namespaces it
	// looks at and their label sets and unmeshed pods, not every pod.
	// Callers read them within one decision and never modify them.
	PodFacts(namespace string, mode mesh.SidecarMode) (PodFacts, error)
	// ReplicaSet returns a ReplicaSet, or nil when it is unknown.
	ReplicaSet(namespace, name string) (*appsv1.ReplicaSet, error)
	// Job returns a Job, or nil when it is unknown.
	Job(namespace, name string) (*batchv1.Job, error)
	// Policies lists the PeerAuthentications of one namespace.
	Policies(namespace string) ([]*policy.Policy, error)
}

// NewScheme returns a scheme with the kinds a Cluster is read from:
// client-go's, which hold Namespaces, Pods, ReplicaSets and Jobs, and
// PeerAuthentications in both versions; and with the kinds add adds.
func NewScheme(add ...func(*runtime.Scheme) error) *runtime.Scheme {
	b := runtime.NewSchemeBuilder(clientgoscheme.AddToScheme, policy.AddToScheme)
	b.Register(add...)
	s := runtime.NewScheme()
	utilruntime.Must(b.AddToScheme(s))
	return s
}

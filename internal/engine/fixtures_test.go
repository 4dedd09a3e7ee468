package engine_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/engine/enginetest"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// The scheme the fixtures are decoded with: client-go's kinds plus both
// versions of security.istio.io.
var (
	testScheme = engine.NewScheme()
	testCodecs = serializer.NewCodecFactory(testScheme)
)

// decodeObjects decodes a multi-document YAML stream into typed objects.
func decodeObjects(data []byte) ([]runtime.Object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || bytes.Equal(t, []byte("null")) {
			continue // a document holding only comments
		}
		obj, _, err := testCodecs.UniversalDeserializer().Decode(js, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", firstLine(doc), err)
		}
		out = append(out, obj)
	}
}

func firstLine(doc []byte) string {
	s := strings.TrimSpace(string(doc))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// fixtureCache holds the decoded fixture files. The engine never modifies
// the objects it reads, so snapshots may share them.
var fixtureCache = struct {
	sync.Mutex
	objs map[string][]runtime.Object
}{objs: map[string][]runtime.Object{}}

func fixtureObjects(t testing.TB, file string) []runtime.Object {
	t.Helper()
	fixtureCache.Lock()
	defer fixtureCache.Unlock()
	if objs, ok := fixtureCache.objs[file]; ok {
		return objs
	}
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	fixtureCache.objs[file] = objs
	return objs
}

// loadFixtures builds a snapshot from files under testdata.
func loadFixtures(t testing.TB, files ...string) *enginetest.Snapshot {
	t.Helper()
	s := enginetest.NewSnapshot()
	for _, f := range files {
		for _, obj := range fixtureObjects(t, f) {
			if !s.Add(obj) {
				t.Fatalf("%s: snapshot does not take %T", f, obj)
			}
		}
	}
	return s
}

// pa describes a PeerAuthentication compactly, to be rendered as YAML in
// either API version.
type pa struct {
	version     string // "v1" or "v1beta1"; the decision table renders changes in both
	namespace   string
	name        string
	created     string // RFC 3339; empty means no creationTimestamp
	spec        string // flow YAML for spec; empty means {}
	annotations map[string]string
}

// v1 and v1beta1 build a pa from "namespace/name".
func v1(key, created, spec string) pa      { return newPA("v1", key, created, spec) }
func v1beta1(key, created, spec string) pa { return newPA("v1beta1", key, created, spec) }

func newPA(version, key, created, spec string) pa {
	ns, name, ok := strings.Cut(key, "/")
	if !ok {
		panic("policy key must be namespace/name: " + key)
	}
	return pa{version: version, namespace: ns, name: name, created: created, spec: spec}
}

// override returns a copy carrying the override annotation.
func (p pa) override(reason string) pa {
	p.annotations = map[string]string{policy.OverrideAnnotation: reason}
	return p
}

// in returns a copy in another API version.
func (p pa) in(version string) pa {
	p.version = version
	return p
}

func (p pa) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: security.istio.io/%s\nkind: PeerAuthentication\nmetadata:\n  name: %s\n  namespace: %s\n", p.version, p.name, p.namespace)
	if p.created != "" {
		fmt.Fprintf(&b, "  creationTimestamp: %q\n", p.created)
	}
	if len(p.annotations) > 0 {
		b.WriteString("  annotations:\n")
		keys := make([]string, 0, len(p.annotations))
		for k := range p.annotations {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "    %s: %q\n", k, p.annotations[k])
		}
	}
	spec := p.spec
	if spec == "" {
		spec = "{}"
	}
	fmt.Fprintf(&b, "spec: %s\n", spec)
	return b.String()
}

// object decodes the policy into its typed form.
func (p pa) object(t testing.TB) runtime.Object {
	t.Helper()
	objs, err := decodeObjects([]byte(p.yaml()))
	if err != nil {
		t.Fatalf("decoding %s/%s: %v\n%s", p.namespace, p.name, err, p.yaml())
	}
	if len(objs) != 1 {
		t.Fatalf("want one object, got %d", len(objs))
	}
	return objs[0]
}

// typed compiles the policy the way the snapshot does, through the typed
// object of its API version.
func (p pa) typed(t testing.TB) *policy.Policy {
	t.Helper()
	switch o := p.object(t).(type) {
	case *securityv1.PeerAuthentication:
		if p.version != "v1" {
			t.Fatalf("%s decoded as v1", p.version)
		}
		return policy.FromV1(o)
	case *securityv1beta1.PeerAuthentication:
		if p.version != "v1beta1" {
			t.Fatalf("%s decoded as v1beta1", p.version)
		}
		return policy.FromV1beta1(o)
	default:
		t.Fatalf("decoded %T", o)
		return nil
	}
}

// decoded compiles the policy the way the webhook does, with policy.Decode
// on the JSON of the admission request.
func (p pa) decoded(t testing.TB) *policy.Policy {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(p.yaml()))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Decode(js)
	if err != nil {
		t.Fatalf("policy.Decode: %v\n%s", err, js)
	}
	return pol
}

// addPolicies adds policies to a snapshot through their typed objects.
func addPolicies(t testing.TB, s *enginetest.Snapshot, ps ...pa) {
	t.Helper()
	for _, p := range ps {
		if !s.Add(p.object(t)) {
			t.Fatalf("snapshot does not take %s", p.yaml())
		}
	}
}

// failingCluster wraps a cluster and fails one method.
type failingCluster struct {
	engine.Cluster
	fail string
}

var errBroken = errors.New("cluster view unavailable")

func (f failingCluster) Namespace(name string) (*corev1.Namespace, error) {
	if f.fail == "Namespace" {
		return nil, errBroken
	}
	return f.Cluster.Namespace(name)
}

func (f failingCluster) PodNamespaces() ([]string, error) {
	if f.fail == "PodNamespaces" {
		return nil, errBroken
	}
	return f.Cluster.PodNamespaces()
}

func (f failingCluster) PodFacts(namespace string, mode mesh.SidecarMode) (engine.PodFacts, error) {
	if f.fail == "PodFacts" {
		return engine.PodFacts{}, errBroken
	}
	return f.Cluster.PodFacts(namespace, mode)
}

func (f failingCluster) ReplicaSet(namespace, name string) (*appsv1.ReplicaSet, error) {
	if f.fail == "ReplicaSet" {
		return nil, errBroken
	}
	return f.Cluster.ReplicaSet(namespace, name)
}

func (f failingCluster) Job(namespace, name string) (*batchv1.Job, error) {
	if f.fail == "Job" {
		return nil, errBroken
	}
	return f.Cluster.Job(namespace, name)
}

// Policies fails for every namespace, or for one with fail "Policies:ns".
func (f failingCluster) Policies(namespace string) ([]*policy.Policy, error) {
	if f.fail == "Policies" || f.fail == "Policies:"+namespace {
		return nil, errBroken
	}
	return f.Cluster.Policies(namespace)
}

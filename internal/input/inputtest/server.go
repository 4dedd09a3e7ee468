// Package inputtest serves a minimal fake Kubernetes API server for tests
// that read a live cluster: discovery, and list calls across all namespaces
// with paging (limit and continue).
package inputtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
)

// Options shape the fake server.
type Options struct {
	// PageSize caps the objects of one list response, below the limit the
	// client asks for, so that a few objects already need several pages.
	// Zero means no cap.
	PageSize int
	// PeerAuthenticationVersions are the security.istio.io versions served;
	// none means the CRD is not installed.
	PeerAuthenticationVersions []string
	// Fail maps a resource name ("pods") to an HTTP status its list calls
	// fail with.
	Fail map[string]int
}

// resource is one kind the server lists.
type resource struct {
	group, version, name, kind string
	namespaced                 bool
}

func (r resource) groupVersion() string {
	if r.group == "" {
		return r.version
	}
	return r.group + "/" + r.version
}

func (r resource) path() string {
	if r.group == "" {
		return "/api/" + r.version + "/" + r.name
	}
	return "/apis/" + r.groupVersion() + "/" + r.name
}

// ListRequest is one list call the server answered.
type ListRequest struct {
	Path     string
	Limit    string
	Continue string
}

// Server is a fake API server.
type Server struct {
	*httptest.Server
	opts      Options
	resources []resource
	objects   map[string][]any // by resource name

	mu       sync.Mutex
	requests []ListRequest
}

// NewServer starts a server holding objs (Namespaces, Pods, ReplicaSets,
// Jobs and v1 PeerAuthentications) and stops it when the test ends.
func NewServer(t testing.TB, opts Options, objs ...runtime.Object) *Server {
	t.Helper()
	s := &Server{opts: opts, objects: map[string][]any{}}
	s.resources = []resource{
		{"", "v1", "namespaces", "Namespace", false},
		{"", "v1", "pods", "Pod", true},
		{"apps", "v1", "replicasets", "ReplicaSet", true},
		{"batch", "v1", "jobs", "Job", true},
	}
	for _, v := range opts.PeerAuthenticationVersions {
		s.resources = append(s.resources, resource{"security.istio.io", v, "peerauthentications", "PeerAuthentication", true})
	}
	for _, obj := range objs {
		var name string
		switch obj.(type) {
		case *corev1.Namespace:
			name = "namespaces"
		case *corev1.Pod:
			name = "pods"
		case *appsv1.ReplicaSet:
			name = "replicasets"
		case *batchv1.Job:
			name = "jobs"
		case *securityv1.PeerAuthentication:
			name = "peerauthentications"
		default:
			t.Fatalf("inputtest: unsupported object %T", obj)
		}
		s.objects[name] = append(s.objects[name], obj)
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Config returns a client configuration for the server.
func (s *Server) Config() *rest.Config {
	return &rest.Config{Host: s.URL}
}

// Kubeconfig writes a kubeconfig file for the server and returns its path.
func (s *Server) Kubeconfig(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: %s
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
current-context: fake
users:
- name: fake
  user:
    token: fake
`, s.URL)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ListRequests returns the list calls answered so far.
func (s *Server) ListRequests() []ListRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ListRequest(nil), s.requests...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "only GET is served")
		return
	}
	switch p := r.URL.Path; p {
	case "/api":
		writeJSON(w, metav1.APIVersions{
			TypeMeta: metav1.TypeMeta{Kind: "APIVersions"},
			Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{
				{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host},
			},
		})
		return
	case "/apis":
		writeJSON(w, s.groups())
		return
	default:
		for _, res := range s.resources {
			switch p {
			case "/api/" + res.groupVersion(), "/apis/" + res.groupVersion():
				writeJSON(w, s.resourceList(res.group, res.version))
				return
			case res.path():
				s.list(w, r, res)
				return
			}
		}
	}
	writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
}

func (s *Server) groups() metav1.APIGroupList {
	list := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	index := map[string]int{}
	for _, res := range s.resources {
		if res.group == "" {
			continue
		}
		gv := metav1.GroupVersionForDiscovery{GroupVersion: res.groupVersion(), Version: res.version}
		i, ok := index[res.group]
		if !ok {
			i = len(list.Groups)
			index[res.group] = i
			list.Groups = append(list.Groups, metav1.APIGroup{Name: res.group, PreferredVersion: gv})
		}
		list.Groups[i].Versions = append(list.Groups[i].Versions, gv)
	}
	return list
}

func (s *Server) resourceList(group, version string) metav1.APIResourceList {
	list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}}
	for _, res := range s.resources {
		if res.group == group && res.version == version {
			list.GroupVersion = res.groupVersion()
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name: res.name, Kind: res.kind, Namespaced: res.namespaced,
				Verbs: metav1.Verbs{"get", "list", "watch"},
			})
		}
	}
	return list
}

// list answers one page; the continue token is the offset of the next one.
func (s *Server) list(w http.ResponseWriter, r *http.Request, res resource) {
	q := r.URL.Query()
	s.mu.Lock()
	s.requests = append(s.requests, ListRequest{Path: r.URL.Path, Limit: q.Get("limit"), Continue: q.Get("continue")})
	s.mu.Unlock()
	if code := s.opts.Fail[res.name]; code != 0 {
		writeStatus(w, code, http.StatusText(code), "injected failure")
		return
	}

	items := s.objects[res.name]
	start := 0
	if c := q.Get("continue"); c != "" {
		var err error
		if start, err = strconv.Atoi(c); err != nil || start < 0 || start > len(items) {
			writeStatus(w, http.StatusBadRequest, "BadRequest", "invalid continue token")
			return
		}
	}
	end := len(items)
	if limit, err := strconv.Atoi(q.Get("limit")); err == nil && limit > 0 && start+limit < end {
		end = start + limit
	}
	if s.opts.PageSize > 0 && start+s.opts.PageSize < end {
		end = start + s.opts.PageSize
	}
	meta := map[string]string{"resourceVersion": "42"}
	if end < len(items) {
		meta["continue"] = strconv.Itoa(end)
	}
	page := items[start:end]
	if page == nil {
		page = []any{}
	}
	writeJSON(w, map[string]any{
		"apiVersion": res.groupVersion(),
		"kind":       res.kind + "List",
		"metadata":   meta,
		"items":      page,
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  msg,
		Reason:   metav1.StatusReason(reason),
		Code:     int32(code),
	})
}

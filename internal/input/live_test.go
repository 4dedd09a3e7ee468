package input_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/input/inputtest"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

func liveObjects() []runtime.Object {
	objs := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}},
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-abc"}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "nightly-1"}},
		&securityv1.PeerAuthentication{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default", CreationTimestamp: metav1.Unix(1704067200, 0)},
			Spec:       apisecurity.PeerAuthentication{Mtls: &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_STRICT}},
		},
	}
	for i := range 5 {
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: fmt.Sprintf("pod-%d", i),
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		}})
	}
	return objs
}

func TestLoadLive(t *testing.T) {
	tests := []struct {
		name     string
		versions []string
		paPath   string
	}{
		{"v1", []string{"v1", "v1beta1"}, "/apis/security.istio.io/v1/peerauthentications"},
		{"v1beta1 only", []string{"v1beta1"}, "/apis/security.istio.io/v1beta1/peerauthentications"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := inputtest.NewServer(t, inputtest.Options{PageSize: 2, PeerAuthenticationVersions: tt.versions}, liveObjects()...)
			s, err := input.LoadLive(context.Background(), srv.Config())
			if err != nil {
				t.Fatal(err)
			}
			pods, _ := s.Pods("shop")
			var names []string
			for _, p := range pods {
				names = append(names, p.Name)
				if p.ManagedFields != nil {
					t.Errorf("pod %s kept its managedFields", p.Name)
				}
			}
			if want := []string{"pod-0", "pod-1", "pod-2", "pod-3", "pod-4"}; !slices.Equal(names, want) {
				t.Errorf("pods %v, want %v", names, want)
			}
			if p := s.Policy("shop", "default"); p == nil || p.Mode != policy.Strict || p.Created.Unix() != 1704067200 {
				t.Errorf("policy shop/default = %+v", p)
			}
			if ns, _ := s.Namespace("istio-system"); ns == nil {
				t.Error("namespace istio-system missing")
			}
			if rs, _ := s.ReplicaSet("shop", "web-abc"); rs == nil {
				t.Error("ReplicaSet missing")
			}
			if job, _ := s.Job("shop", "nightly-1"); job == nil {
				t.Error("Job missing")
			}

			// Every call asks for a page of PageSize; the server's pages of
			// 2 are followed through their continue tokens.
			var got []string
			for _, r := range srv.ListRequests() {
				if r.Limit != fmt.Sprint(input.PageSize) {
					t.Errorf("%s asked for limit %q, want %d", r.Path, r.Limit, input.PageSize)
				}
				got = append(got, r.Path+"?continue="+r.Continue)
			}
			want := []string{
				"/api/v1/namespaces?continue=",
				"/api/v1/pods?continue=", "/api/v1/pods?continue=2", "/api/v1/pods?continue=4",
				"/apis/apps/v1/replicasets?continue=",
				"/apis/batch/v1/jobs?continue=",
				tt.paPath + "?continue=",
			}
			if !slices.Equal(got, want) {
				t.Errorf("list calls\n%q\nwant\n%q", got, want)
			}
		})
	}
}

func TestLoadLiveErrors(t *testing.T) {
	tests := []struct {
		name    string
		opts    inputtest.Options
		wantErr error
		want    string
	}{
		{name: "no CRD", opts: inputtest.Options{}, wantErr: input.ErrNoPeerAuthenticationCRD, want: input.ErrNoPeerAuthenticationCRD.Error()},
		{name: "pods fail", opts: inputtest.Options{PeerAuthenticationVersions: []string{"v1"}, Fail: map[string]int{"pods": 403}},
			want: "listing pods: injected failure"},
		{name: "policies fail", opts: inputtest.Options{PeerAuthenticationVersions: []string{"v1"}, Fail: map[string]int{"peerauthentications": 500}},
			want: "listing peerauthentications: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := inputtest.NewServer(t, tt.opts, liveObjects()...)
			s, err := input.LoadLive(context.Background(), srv.Config())
			if err == nil || s != nil {
				t.Fatalf("LoadLive() = %v, %v; want an error", s, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error %q, want it to start with %q", err, tt.want)
			}
		})
	}
}

func TestRESTConfig(t *testing.T) {
	srv := inputtest.NewServer(t, inputtest.Options{}, liveObjects()...)
	cfg, err := input.RESTConfig(srv.Kubeconfig(t))
	if err != nil || cfg.Host != srv.URL {
		t.Errorf("RESTConfig() = %+v, %v", cfg, err)
	}
	t.Setenv("KUBECONFIG", srv.Kubeconfig(t))
	if cfg, err := input.RESTConfig(""); err != nil || cfg.Host != srv.URL {
		t.Errorf("RESTConfig(\"\") with KUBECONFIG = %+v, %v", cfg, err)
	}
	if _, err := input.RESTConfig("testdata/nope"); err == nil || !strings.HasPrefix(err.Error(), "loading kubeconfig testdata/nope: ") {
		t.Errorf("missing kubeconfig: %v", err)
	}
}

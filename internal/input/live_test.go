package input_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/input/inputtest"
)

func liveObjects() []client.Object {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}},
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-abc"}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "nightly-1"}},
		&securityv1.PeerAuthentication{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default", CreationTimestamp: metav1.Unix(1704067200, 0)},
			Spec:       apisecurity.PeerAuthentication{Mtls: &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_STRICT}},
		},
		&securityv1beta1.PeerAuthentication{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "old", CreationTimestamp: metav1.Unix(1704067200, 0)},
			Spec:       apisecurity.PeerAuthentication{Mtls: &apisecurity.PeerAuthentication_MutualTLS{Mode: apisecurity.PeerAuthentication_MutualTLS_DISABLE}},
		},
	}
	for i := range 5 {
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: fmt.Sprintf("pod-%d", i),
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate}},
		}})
	}
	return objs
}

// names renders objects as "TYPE namespace/name".
func names(objs []client.Object) []string {
	var out []string
	for _, obj := range objs {
		out = append(out, fmt.Sprintf("%T %s/%s", obj, obj.GetNamespace(), obj.GetName()))
	}
	return out
}

func TestLoad(t *testing.T) {
	crd := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: input.PeerAuthenticationCRD}}
	tests := []struct {
		name     string
		versions []string
		crd      bool
		paKind   string
		paObject string
	}{
		{"v1", []string{"v1", "v1beta1"}, true, "security.istio.io/v1 PeerAuthenticationList", "*v1.PeerAuthentication shop/default"},
		{"v1beta1 only, no CRD to read", []string{"v1beta1"}, false, "security.istio.io/v1beta1 PeerAuthenticationList", "*v1beta1.PeerAuthentication shop/old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := liveObjects()
			if tt.crd {
				objs = append(objs, crd.DeepCopy())
			}
			c := inputtest.New(t, inputtest.Options{PageSize: 2, PeerAuthenticationVersions: tt.versions}, objs...)
			cl, err := input.Load(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{
				"*v1.Namespace /istio-system", "*v1.Namespace /shop",
				"*v1.Pod shop/pod-0", "*v1.Pod shop/pod-1", "*v1.Pod shop/pod-2", "*v1.Pod shop/pod-3", "*v1.Pod shop/pod-4",
				"*v1.ReplicaSet shop/web-abc", "*v1.Job shop/nightly-1",
				tt.paObject,
			}
			if got := names(cl.Objects); !slices.Equal(got, want) {
				t.Errorf("objects\n%q\nwant\n%q", got, want)
			}
			for _, obj := range cl.Objects {
				if obj.GetManagedFields() != nil {
					t.Errorf("%s kept its managedFields", obj.GetName())
				}
			}
			if (cl.CRD != nil) != tt.crd {
				t.Errorf("CRD %v, want it: %v", cl.CRD, tt.crd)
			}

			// Every call asks for a page of PageSize; the client's pages
			// of 2 are followed through their continue tokens.
			var got []string
			for _, call := range c.ListCalls() {
				if call.Limit != input.PageSize {
					t.Errorf("%s asked for limit %d, want %d", call.Kind, call.Limit, input.PageSize)
				}
				got = append(got, call.Kind+"?continue="+call.Continue)
			}
			wantCalls := []string{
				"v1 NamespaceList?continue=",
				"v1 PodList?continue=", "v1 PodList?continue=2", "v1 PodList?continue=4",
				"apps/v1 ReplicaSetList?continue=",
				"batch/v1 JobList?continue=",
			}
			if len(tt.versions) == 1 {
				wantCalls = append(wantCalls, "security.istio.io/v1 PeerAuthenticationList?continue=")
			}
			wantCalls = append(wantCalls, tt.paKind+"?continue=")
			if !slices.Equal(got, wantCalls) {
				t.Errorf("list calls\n%q\nwant\n%q", got, wantCalls)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("injected failure"))
	tests := []struct {
		name    string
		opts    inputtest.Options
		wantErr error
		want    string
	}{
		{name: "no CRD", opts: inputtest.Options{}, wantErr: input.ErrNoPeerAuthenticationCRD, want: input.ErrNoPeerAuthenticationCRD.Error()},
		{name: "pods fail", opts: inputtest.Options{PeerAuthenticationVersions: []string{"v1"}, Fail: map[string]error{"PodList": forbidden}},
			wantErr: forbidden, want: "listing pods: pods is forbidden: injected failure"},
		{name: "policies fail", opts: inputtest.Options{PeerAuthenticationVersions: []string{"v1"}, Fail: map[string]error{"PeerAuthenticationList": apierrors.NewInternalError(errors.New("boom"))}},
			want: "listing peerauthentications: Internal error occurred: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, err := input.Load(context.Background(), inputtest.New(t, tt.opts, liveObjects()...))
			if err == nil || cl != nil {
				t.Fatalf("Load() = %v, %v; want an error", cl, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if err.Error() != tt.want {
				t.Errorf("error %q, want %q", err, tt.want)
			}
		})
	}
}

package engine_test

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/engine/enginetest"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
)

func ref(apiVersion, kind, name string, controller bool) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID("u-" + name), Controller: &controller}
}

func testPod(ns, name string, labels map[string]string, refs ...metav1.OwnerReference) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, OwnerReferences: refs}}
}

func TestOwner(t *testing.T) {
	s := enginetest.NewSnapshot()
	s.Add(&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-7d9f8",
		OwnerReferences: []metav1.OwnerReference{ref("apps/v1", "Deployment", "web", true)}}})
	s.Add(&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "canary-5b6c7",
		OwnerReferences: []metav1.OwnerReference{ref("argoproj.io/v1alpha1", "Rollout", "canary", true)}}})
	s.Add(&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "bare-84d5f"}})
	s.Add(&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "adopted-1a2b3",
		OwnerReferences: []metav1.OwnerReference{ref("apps/v1", "Deployment", "adopted", false)}}})
	s.Add(&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "nightly-28700000",
		OwnerReferences: []metav1.OwnerReference{ref("batch/v1", "CronJob", "nightly", true)}}})
	s.Add(&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "once"}})
	// Same names in another namespace must not be found.
	s.Add(&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "api-6c7d8",
		OwnerReferences: []metav1.OwnerReference{ref("apps/v1", "Deployment", "elsewhere", true)}}})

	hash := func(h string) map[string]string { return map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: h} }
	tests := []struct {
		name             string
		pod              *corev1.Pod
		wantKind, wantNm string
	}{
		{"no owner", testPod("ns", "debug", nil), "Pod", "debug"},
		{"only a non-controller owner", testPod("ns", "debug", nil, ref("v1", "ConfigMap", "cm", false)), "Pod", "debug"},
		{"ReplicaSet -> Deployment", testPod("ns", "web-7d9f8-abcde", hash("7d9f8"), ref("apps/v1", "ReplicaSet", "web-7d9f8", true)), "Deployment", "web"},
		{"ReplicaSet -> other controller", testPod("ns", "canary-5b6c7-x", hash("5b6c7"), ref("apps/v1", "ReplicaSet", "canary-5b6c7", true)), "Rollout", "canary"},
		{"ReplicaSet without owner", testPod("ns", "bare-84d5f-x", hash("84d5f"), ref("apps/v1", "ReplicaSet", "bare-84d5f", true)), "ReplicaSet", "bare-84d5f"},
		{"ReplicaSet with a non-controller owner", testPod("ns", "adopted-1a2b3-x", hash("1a2b3"), ref("apps/v1", "ReplicaSet", "adopted-1a2b3", true)), "ReplicaSet", "adopted-1a2b3"},
		{"unknown ReplicaSet, hash inference", testPod("ns", "api-6c7d8-x", hash("6c7d8"), ref("apps/v1", "ReplicaSet", "api-6c7d8", true)), "Deployment", "api"},
		{"unknown ReplicaSet, dashed name", testPod("ns", "my-api-v2-6c7d8-x", hash("6c7d8"), ref("apps/v1", "ReplicaSet", "my-api-v2-6c7d8", true)), "Deployment", "my-api-v2"},
		{"unknown ReplicaSet, no hash label", testPod("ns", "api-6c7d8-x", nil, ref("apps/v1", "ReplicaSet", "api-6c7d8", true)), "ReplicaSet", "api-6c7d8"},
		{"unknown ReplicaSet, other hash", testPod("ns", "api-6c7d8-x", hash("9f9f9"), ref("apps/v1", "ReplicaSet", "api-6c7d8", true)), "ReplicaSet", "api-6c7d8"},
		{"unknown ReplicaSet, name is only the hash", testPod("ns", "x", hash("6c7d8"), ref("apps/v1", "ReplicaSet", "-6c7d8", true)), "ReplicaSet", "-6c7d8"},
		{"unknown ReplicaSet, hash without dash", testPod("ns", "x", hash("6c7d8"), ref("apps/v1", "ReplicaSet", "api6c7d8", true)), "ReplicaSet", "api6c7d8"},
		{"Job -> CronJob", testPod("ns", "nightly-28700000-x", nil, ref("batch/v1", "Job", "nightly-28700000", true)), "CronJob", "nightly"},
		{"Job without owner", testPod("ns", "once-x", nil, ref("batch/v1", "Job", "once", true)), "Job", "once"},
		{"unknown Job", testPod("ns", "migrate-x", nil, ref("batch/v1", "Job", "migrate", true)), "Job", "migrate"},
		{"StatefulSet", testPod("ns", "db-0", nil, ref("apps/v1", "StatefulSet", "db", true)), "StatefulSet", "db"},
		{"DaemonSet", testPod("ns", "agent-x", nil, ref("apps/v1", "DaemonSet", "agent", true)), "DaemonSet", "agent"},
		{"other controller", testPod("ns", "wf-x", nil, ref("argoproj.io/v1alpha1", "Workflow", "wf", true)), "Workflow", "wf"},
		{"controller among other owners", testPod("ns", "db-0", nil, ref("v1", "ConfigMap", "cm", false), ref("apps/v1", "StatefulSet", "db", true)), "StatefulSet", "db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := engine.UnmeshedPodOf(tt.pod, mesh.NoSidecar)
			kind, name, err := engine.Owner(s, &up)
			if err != nil {
				t.Fatal(err)
			}
			if kind != tt.wantKind || name != tt.wantNm {
				t.Errorf("owner = %s/%s, want %s/%s", kind, name, tt.wantKind, tt.wantNm)
			}
		})
	}
}

func TestGroup(t *testing.T) {
	s := enginetest.NewSnapshot()
	rs := ref("apps/v1", "ReplicaSet", "web-7d9f8", true)
	web1 := testPod("b", "web-7d9f8-2", map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: "7d9f8"}, rs)
	web2 := testPod("b", "web-7d9f8-1", map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: "7d9f8"}, rs)
	webOther := testPod("a", "web-7d9f8-1", map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: "7d9f8"}, rs)
	db := testPod("b", "db-0", nil, ref("apps/v1", "StatefulSet", "db", true))
	bare := testPod("b", "zz", nil)
	deployPod := testPod("b", "aa", nil) // a Pod named like nothing else

	got, err := engine.Group(s, []engine.UnmeshedPod{
		engine.UnmeshedPodOf(web1, mesh.NoSidecar),
		engine.UnmeshedPodOf(db, mesh.HostNetwork),
		engine.UnmeshedPodOf(web2, mesh.ClassicSidecar),
		engine.UnmeshedPodOf(web1, mesh.NoSidecar), // the same pod twice
		engine.UnmeshedPodOf(bare, mesh.AmbientPending),
		engine.UnmeshedPodOf(webOther, mesh.InjectionDisabled),
		engine.UnmeshedPodOf(deployPod, mesh.NoSidecar),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []engine.Workload{
		{Namespace: "a", Kind: "Deployment", Name: "web", Pods: []string{"web-7d9f8-1"}, Reasons: []string{"injection-disabled"}},
		{Namespace: "b", Kind: "Deployment", Name: "web", Pods: []string{"web-7d9f8-1", "web-7d9f8-2"}, Reasons: []string{"classic-sidecar", "no-sidecar"}},
		{Namespace: "b", Kind: "Pod", Name: "aa", Pods: []string{"aa"}, Reasons: []string{"no-sidecar"}},
		{Namespace: "b", Kind: "Pod", Name: "zz", Pods: []string{"zz"}, Reasons: []string{"ambient-pending"}},
		{Namespace: "b", Kind: "StatefulSet", Name: "db", Pods: []string{"db-0"}, Reasons: []string{"host-network"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("group:\n got %+v\nwant %+v", got, want)
	}

	empty, err := engine.Group(s, nil)
	if err != nil || empty == nil || len(empty) != 0 {
		t.Errorf("group(nil) = %#v, %v; want an empty, non-nil list", empty, err)
	}
}

func TestWorkloadRendering(t *testing.T) {
	one := engine.Workload{Namespace: "billing", Kind: "Deployment", Name: "invoicer", Pods: []string{"invoicer-1"}, Reasons: []string{"no-sidecar"}}
	two := engine.Workload{Namespace: "legacy", Kind: "StatefulSet", Name: "db", Pods: []string{"db-0", "db-1"}, Reasons: []string{"classic-sidecar", "no-sidecar"}}
	three := engine.Workload{Namespace: "legacy", Kind: "Pod", Name: "debug", Pods: []string{"debug"}, Reasons: []string{"ambient-pending"}}
	if got, want := one.String(), "Deployment/invoicer (1 pod: no-sidecar)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := two.String(), "StatefulSet/db (2 pods: classic-sidecar, no-sidecar)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	ws := []engine.Workload{one, two, three}
	for _, tt := range []struct {
		max  int
		want string
	}{
		{10, "  billing/Deployment/invoicer (1 pod: no-sidecar)\n  legacy/StatefulSet/db (2 pods: classic-sidecar, no-sidecar)\n  legacy/Pod/debug (1 pod: ambient-pending)"},
		{3, "  billing/Deployment/invoicer (1 pod: no-sidecar)\n  legacy/StatefulSet/db (2 pods: classic-sidecar, no-sidecar)\n  legacy/Pod/debug (1 pod: ambient-pending)"},
		{2, "  billing/Deployment/invoicer (1 pod: no-sidecar)\n  legacy/StatefulSet/db (2 pods: classic-sidecar, no-sidecar)\n  and 1 more"},
		{0, "  and 3 more"},
	} {
		if got := engine.ListWorkloads(ws, tt.max, "  "); got != tt.want {
			t.Errorf("ListWorkloads(max %d) =\n%s\nwant\n%s", tt.max, got, tt.want)
		}
	}
	if got := engine.ListWorkloads(nil, 10, "  "); got != "" {
		t.Errorf("ListWorkloads(nil) = %q", got)
	}
	if got := engine.WorkloadNames(ws, 2); got != "Deployment/invoicer, StatefulSet/db, and 1 more" {
		t.Errorf("workloadNames = %q", got)
	}
}

package mesh

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The expectations follow istio/istio pkg/kube/util.go,
// GetDeployMetaFromPod and GetWorkloadMetaFromPod (the workload-name label),
// and the cases of its util_test.go TestGetDeployMetaFromPod.
func TestWorkloadName(t *testing.T) {
	tests := []struct {
		name             string
		pod              string
		labels           map[string]string
		ctrlKind, ctrl   string
		wantKind, wantNm string
	}{
		{name: "Deployment", pod: "web-7d4b9c8f6d-x2k4p", labels: map[string]string{"app": "web", PodTemplateHashLabel: "7d4b9c8f6d"},
			ctrlKind: "ReplicaSet", ctrl: "web-7d4b9c8f6d", wantKind: "Deployment", wantNm: "web"},
		{name: "Deployment with dashes in its name", pod: "my-web-app-5f6c7-abcde", labels: map[string]string{PodTemplateHashLabel: "5f6c7"},
			ctrlKind: "ReplicaSet", ctrl: "my-web-app-5f6c7", wantKind: "Deployment", wantNm: "my-web-app"},
		{name: "bare ReplicaSet", pod: "cache-q8w2z", labels: map[string]string{"app": "cache"},
			ctrlKind: "ReplicaSet", ctrl: "cache", wantKind: "ReplicaSet", wantNm: "cache"},
		{name: "ReplicaSet whose hash is not its suffix", pod: "cache-q8w2z", labels: map[string]string{PodTemplateHashLabel: "abc"},
			ctrlKind: "ReplicaSet", ctrl: "cache-def", wantKind: "ReplicaSet", wantNm: "cache-def"},
		{name: "ReplicaSet ending in the hash without a dash", pod: "cacheabc-q8w2z", labels: map[string]string{PodTemplateHashLabel: "abc"},
			ctrlKind: "ReplicaSet", ctrl: "cacheabc", wantKind: "ReplicaSet", wantNm: "cacheabc"},
		{name: "Argo Rollout", pod: "shop-6b8d9f-zz9xk", labels: map[string]string{RolloutsPodTemplateHashLabel: "6b8d9f"},
			ctrlKind: "ReplicaSet", ctrl: "shop-6b8d9f", wantKind: "Rollout", wantNm: "shop"},
		{name: "OpenShift DeploymentConfig", pod: "legacy-3-abcde", labels: map[string]string{DeploymentConfigLabel: "legacy"},
			ctrlKind: "ReplicationController", ctrl: "legacy-3", wantKind: "DeploymentConfig", wantNm: "legacy"},
		{name: "bare ReplicationController", pod: "old-abcde",
			ctrlKind: "ReplicationController", ctrl: "old", wantKind: "ReplicationController", wantNm: "old"},
		{name: "StatefulSet", pod: "db-0", labels: map[string]string{"statefulset.kubernetes.io/pod-name": "db-0"},
			ctrlKind: "StatefulSet", ctrl: "db", wantKind: "StatefulSet", wantNm: "db"},
		{name: "DaemonSet", pod: "agent-7xk2p", labels: map[string]string{"controller-revision-hash": "6d5f8"},
			ctrlKind: "DaemonSet", ctrl: "agent", wantKind: "DaemonSet", wantNm: "agent"},
		{name: "CronJob", pod: "nightly-28751040-4kq7z", labels: map[string]string{"job-name": "nightly-28751040"},
			ctrlKind: "Job", ctrl: "nightly-28751040", wantKind: "CronJob", wantNm: "nightly"},
		{name: "CronJob with a ten-digit suffix", pod: "report-1700000000-abcde",
			ctrlKind: "Job", ctrl: "report-1700000000", wantKind: "CronJob", wantNm: "report"},
		{name: "Job", pod: "migrate-x7c2v", labels: map[string]string{"job-name": "migrate"},
			ctrlKind: "Job", ctrl: "migrate", wantKind: "Job", wantNm: "migrate"},
		{name: "Job with a seven-digit suffix", pod: "batch-1234567-abcde",
			ctrlKind: "Job", ctrl: "batch-1234567", wantKind: "Job", wantNm: "batch-1234567"},
		{name: "Job with an eleven-digit suffix", pod: "batch-12345678901-abcde",
			ctrlKind: "Job", ctrl: "batch-12345678901", wantKind: "Job", wantNm: "batch-12345678901"},
		{name: "other controller", pod: "vm-launcher-abcde",
			ctrlKind: "VirtualMachineInstance", ctrl: "vm", wantKind: "VirtualMachineInstance", wantNm: "vm"},
		{name: "bare Pod", pod: "mtls-test", labels: map[string]string{"run": "mtls-test"},
			wantKind: "Pod", wantNm: "mtls-test"},
		{name: "override label on a Deployment's pod", pod: "web-7d4b9c8f6d-x2k4p",
			labels:   map[string]string{WorkloadNameLabel: "frontend", PodTemplateHashLabel: "7d4b9c8f6d"},
			ctrlKind: "ReplicaSet", ctrl: "web-7d4b9c8f6d", wantKind: "Deployment", wantNm: "frontend"},
		{name: "override label on a bare Pod", pod: "mtls-test", labels: map[string]string{WorkloadNameLabel: "probe"},
			wantKind: "Pod", wantNm: "probe"},
		{name: "empty override label is ignored", pod: "db-0", labels: map[string]string{WorkloadNameLabel: ""},
			ctrlKind: "StatefulSet", ctrl: "db", wantKind: "StatefulSet", wantNm: "db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, name := WorkloadName(tt.pod, tt.labels, tt.ctrlKind, tt.ctrl)
			if kind != tt.wantKind || name != tt.wantNm {
				t.Errorf("WorkloadName(%q, %v, %q, %q) = %s/%s, want %s/%s",
					tt.pod, tt.labels, tt.ctrlKind, tt.ctrl, kind, name, tt.wantKind, tt.wantNm)
			}
		})
	}
}

func TestWorkloadNameOf(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name             string
		pod              *corev1.Pod
		wantKind, wantNm string
	}{
		{name: "nil pod", pod: nil},
		{name: "controller reference", pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d4b9c8f6d-x2k4p", GenerateName: "web-7d4b9c8f6d-",
			Labels: map[string]string{PodTemplateHashLabel: "7d4b9c8f6d"},
			OwnerReferences: []metav1.OwnerReference{
				{APIVersion: "v1", Kind: "Node", Name: "n1", Controller: &no},
				{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d4b9c8f6d", Controller: &yes},
			},
		}}, wantKind: "Deployment", wantNm: "web"},
		{name: "owner that is not the controller", pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name:            "standalone",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "cm"}},
		}}, wantKind: "Pod", wantNm: "standalone"},
		{name: "override label", pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name: "nightly-28751040-4kq7z", Labels: map[string]string{WorkloadNameLabel: "reports"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "nightly-28751040", Controller: &yes}},
		}}, wantKind: "CronJob", wantNm: "reports"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, name := WorkloadNameOf(tt.pod)
			if kind != tt.wantKind || name != tt.wantNm {
				t.Errorf("WorkloadNameOf = %s/%s, want %s/%s", kind, name, tt.wantKind, tt.wantNm)
			}
		})
	}
}

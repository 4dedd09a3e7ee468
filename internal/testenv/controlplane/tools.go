//go:build tools

// Package controlplane pins the control-plane commands that
// `make testbin` builds into bin/.
package controlplane

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)

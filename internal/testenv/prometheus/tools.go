//go:build tools

// Package prometheus pins the Prometheus server that `make testbin`
// builds into bin/.
package prometheus

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
)

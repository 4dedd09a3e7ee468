// Package version holds the build version, stamped with -ldflags -X.
package version

// Version is set at build time:
// -ldflags "-X github.com/mtls-guard/mtls-guard/internal/version.Version=v1.2.3".
var Version = "dev"

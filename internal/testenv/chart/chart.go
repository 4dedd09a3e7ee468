// Package chart renders deploy/chart/mtls-guard with the Helm SDK into
// typed Kubernetes objects, the way `helm install` would, so that tests
// can compare the chart with deploy/ and install it for real. It is its
// own module so that Helm never becomes a dependency of the guard.
package chart

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mtls-guard/mtls-guard/internal/manifests"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
)

// Release is the name and namespace deploy/ is rendered with.
const (
	ReleaseName      = "mtls-guard"
	ReleaseNamespace = "mtls-guard"
)

// Path is the chart's directory relative to the repository root.
const Path = "deploy/chart/mtls-guard"

// Dir returns the chart's directory.
func Dir() (string, error) {
	root, err := testenv.Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, Path), nil
}

// Load loads the chart from the repository.
func Load() (*chart.Chart, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	c, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", dir, err)
	}
	return c, nil
}

// Options say how to render.
type Options struct {
	// Values override the chart's values.yaml, as with `helm install -f`.
	Values map[string]any
	// Service is .Release.Service, the app.kubernetes.io/managed-by label:
	// "Helm" when empty. deploy/ is rendered with "kustomize", since
	// kubectl applies it and Helm does not own its objects.
	Service string
	// ReleaseName and Namespace default to ReleaseName and ReleaseNamespace.
	ReleaseName, Namespace string
}

// Manifest is one rendered object with the template it came from.
type Manifest struct {
	Source  string
	Content string
	Object  client.Object
}

// Render renders the chart as `helm template` would (by default for
// release ReleaseName in ReleaseNamespace): values are checked against
// values.schema.json, lookups find nothing, and the objects come back in
// Helm's install order, strictly decoded.
func Render(c *chart.Chart, opts Options) ([]Manifest, error) {
	name, ns := opts.ReleaseName, opts.Namespace
	if name == "" {
		name = ReleaseName
	}
	if ns == "" {
		ns = ReleaseNamespace
	}
	caps := chartutil.DefaultCapabilities.Copy()
	top, err := chartutil.ToRenderValues(c, opts.Values, chartutil.ReleaseOptions{
		Name: name, Namespace: ns, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	if opts.Service != "" {
		release, ok := top["Release"].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("render values: .Release is %T", top["Release"])
		}
		release["Service"] = opts.Service
	}
	files, err := engine.Render(c, top)
	if err != nil {
		return nil, fmt.Errorf("rendering chart %s: %w", c.Name(), err)
	}
	for name := range files {
		// NOTES.txt is printed, not applied.
		if !strings.HasSuffix(name, ".yaml") {
			delete(files, name)
		}
	}
	hooks, sorted, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, fmt.Errorf("sorting manifests: %w", err)
	}
	if len(hooks) > 0 {
		// Hooks run outside the release's life cycle; an uninstall could
		// leave their objects (a webhook configuration) behind.
		return nil, fmt.Errorf("chart renders %d hooks, want none", len(hooks))
	}
	out := make([]Manifest, 0, len(sorted))
	for _, m := range sorted {
		obj, err := Decode([]byte(m.Content))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		out = append(out, Manifest{Source: m.Name, Content: m.Content, Object: obj})
	}
	return out, nil
}

// Objects returns the objects of manifests.
func Objects(ms []Manifest) []client.Object {
	objs := make([]client.Object, len(ms))
	for i, m := range ms {
		objs[i] = m.Object
	}
	return objs
}

// NewScheme is internal/manifests' scheme plus the Prometheus Operator's
// types, for the ServiceMonitor.
func NewScheme() *runtime.Scheme {
	s := manifests.NewScheme()
	utilruntime.Must(monitoringv1.AddToScheme(s))
	return s
}

var decode = manifests.NewDecoder(NewScheme())

// Decode strictly decodes one YAML or JSON object, as manifests.Decode
// does, with ServiceMonitors known too.
func Decode(data []byte) (client.Object, error) { return decode(data) }

// Header starts every file that `make manifests-chart` writes.
const Header = "# Generated from deploy/chart/mtls-guard by `make manifests-chart`; do not edit.\n"

// BaseValues are the values deploy/base is rendered with: the chart's
// defaults without cert-manager (the Secret is created and the caBundle
// patched in by the operator, or by the cert-manager component), with the
// namespace.
func BaseValues() map[string]any {
	return map[string]any{
		"createNamespace": true,
		"certificates":    map[string]any{"mode": "secret"},
	}
}

// CertManagerValues are BaseValues with cert-manager on: what deploy/ (base
// plus the cert-manager component) must equal.
func CertManagerValues() map[string]any {
	return map[string]any{
		"createNamespace": true,
		"certificates":    map[string]any{"mode": "certManager"},
	}
}

// Generated renders the files under deploy/ that come from the chart, keyed
// by their path relative to the repository root: base/mtls-guard.yaml
// (BaseValues) and cert-manager/certificates.yaml (the cert-manager
// objects of CertManagerValues).
func Generated(c *chart.Chart) (map[string][]byte, error) {
	base, err := Render(c, Options{Values: BaseValues(), Service: "kustomize"})
	if err != nil {
		return nil, fmt.Errorf("rendering deploy/base: %w", err)
	}
	withCM, err := Render(c, Options{Values: CertManagerValues(), Service: "kustomize"})
	if err != nil {
		return nil, fmt.Errorf("rendering deploy/cert-manager: %w", err)
	}
	var cm []Manifest
	for _, m := range withCM {
		if strings.HasPrefix(m.Object.GetObjectKind().GroupVersionKind().Group, "cert-manager.io") {
			cm = append(cm, m)
		}
	}
	if len(cm) == 0 {
		return nil, fmt.Errorf("the chart with %v renders no cert-manager objects", CertManagerValues())
	}
	return map[string][]byte{
		"deploy/base/mtls-guard.yaml":           join(base),
		"deploy/cert-manager/certificates.yaml": join(cm),
	}, nil
}

// join writes manifests as one YAML stream, each after its source.
func join(ms []Manifest) []byte {
	var b bytes.Buffer
	b.WriteString(Header)
	for _, m := range ms {
		b.WriteString("---\n# Source: " + m.Source + "\n")
		b.WriteString(strings.TrimSpace(m.Content))
		b.WriteString("\n")
	}
	return b.Bytes()
}

// Values parses a YAML values document, as `helm install -f` reads it.
func Values(doc string) (map[string]any, error) {
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(doc), &vals); err != nil {
		return nil, fmt.Errorf("parsing values: %w", err)
	}
	return vals, nil
}

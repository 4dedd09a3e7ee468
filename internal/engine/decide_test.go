package engine_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// The unmeshed workloads of cluster.yaml, rendered "namespace/Workload.String()".
var (
	invoicer   = "billing/Deployment/invoicer (1 pod: no-sidecar)"
	classicApp = "classic/Deployment/classic-app (1 pod: classic-sidecar)"
	oldApp     = "dying/Pod/old-app (1 pod: no-sidecar)"
	guardPod   = "mtls-guard/Deployment/mtls-guard (1 pod: no-sidecar)"
	istiod     = "istio-system/Deployment/istiod (1 pod: no-sidecar)"
	kubeProxy  = "kube-system/DaemonSet/kube-proxy (1 pod: host-network)"

	// legacyNative is every unmeshed workload of legacy under
	// --sidecar-mode=native, sorted by kind and name: one of every owner
	// kind and every reason. Succeeded, Failed, deleting and exempt pods
	// are not there.
	legacyNative = []string{
		"legacy/CronJob/nightly (1 pod: injection-disabled)",
		"legacy/DaemonSet/node-agent (1 pod: host-network)",
		"legacy/Deployment/legacy (2 pods: no-sidecar)",
		"legacy/Deployment/reporter (1 pod: classic-sidecar)",
		"legacy/Job/migrate (1 pod: injection-disabled)",
		"legacy/Job/seed (1 pod: no-sidecar)",
		"legacy/Pod/debug (1 pod: ambient-pending)",
		"legacy/ReplicaSet/orphan-84d5f (1 pod: no-sidecar)",
		"legacy/ReplicaSet/stray-rs (1 pod: no-sidecar)",
		"legacy/StatefulSet/db (2 pods: classic-sidecar, no-sidecar)",
	}
	// legacyAny is the same under --sidecar-mode=any: the classic sidecars
	// of reporter, db-0 and node-agent (whose host network does not matter
	// once it is meshed) count as meshed.
	legacyAny = []string{
		"legacy/CronJob/nightly (1 pod: injection-disabled)",
		"legacy/Deployment/legacy (2 pods: no-sidecar)",
		"legacy/Job/migrate (1 pod: injection-disabled)",
		"legacy/Job/seed (1 pod: no-sidecar)",
		"legacy/Pod/debug (1 pod: ambient-pending)",
		"legacy/ReplicaSet/orphan-84d5f (1 pod: no-sidecar)",
		"legacy/ReplicaSet/stray-rs (1 pod: no-sidecar)",
		"legacy/StatefulSet/db (1 pod: no-sidecar)",
	}
	// everyNamespace lists the namespaces with counted pods outside the
	// default exclusions, which a mesh-wide STRICT touches.
	everyNamespace = []string{"ambient", "billing", "classic", "dying", "gateways", "legacy", "mtls-guard", "plain", "shop"}
	// everyUnmeshed is what a mesh-wide STRICT without opt-outs cuts off.
	everyUnmeshed = concat([]string{invoicer, classicApp, oldApp}, legacyNative, []string{guardPod})
)

func concat(ss ...[]string) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s...)
	}
	return out
}

const (
	t2023 = "2023-12-01T00:00:00Z"
	jan   = "2024-01-01T00:00:00Z"
	feb   = "2024-02-01T00:00:00Z"
	mar   = "2024-03-01T00:00:00Z"

	strict     = "{mtls: {mode: STRICT}}"
	permissive = "{mtls: {mode: PERMISSIVE}}"
	disable    = "{mtls: {mode: DISABLE}}"
	unset      = "{mtls: {mode: UNSET}}"
)

func ownNamespaceOptions() engine.Options {
	o, err := engine.NewOptions(engine.DefaultRootNamespace, mesh.Native, strings.Split(engine.DefaultExcludedNamespaces, ","), "mtls-guard", true)
	if err != nil {
		panic(err)
	}
	return o
}

func withSidecarMode(m mesh.SidecarMode) engine.Options {
	o := engine.DefaultOptions()
	o.SidecarMode = m
	return o
}

func noOverride() engine.Options {
	o := engine.DefaultOptions()
	o.AllowOverride = false
	return o
}

type decideCase struct {
	name     string
	fixtures []string // loaded after cluster.yaml
	existing []pa     // added after the fixtures
	op       engine.Operation
	change   pa  // rendered in both API versions
	old      *pa // the request's oldObject of an UPDATE; nil: the view's
	opts     func() engine.Options

	allowed    bool
	overridden bool
	scope      engine.Scope
	touched    []string
	unmeshed   []string // "namespace/Kind/name (N pods: reasons)"
	plaintext  []string // "namespace/Kind/name"
	// evidenceUnavailable: the decision says the evidence was missing.
	evidenceUnavailable bool
	warnings            []string // one substring per warning, in order
	message             []string // substrings of the message
}

// exemptWarning names the fixture's exempt unmeshed pod wherever a change
// makes its namespace stricter.
const exemptWarning = "exempt: 1 unmeshed pod labelled mtls-guard.io/exempt=true not judged: legacy/exempt-tool"

var decideCases = []decideCase{
	// ---- 1. Mesh level: the root namespace's selector-less policies.
	{
		name:   "mesh STRICT cuts off every unmeshed pod outside the excluded namespaces",
		op:     engine.Create,
		change: v1("istio-system/default", "", strict),
		scope:  engine.MeshWide, touched: everyNamespace, unmeshed: everyUnmeshed,
		message: []string{
			"CREATE of PeerAuthentication istio-system/default (mesh-wide) denied",
			"while 14 workloads there have no Istio sidecar",
			"  billing/Deployment/invoicer (1 pod: no-sidecar)\n",
			"  legacy/Pod/debug (1 pod: ambient-pending)\n  and 4 more\n",
			"To proceed:",
		},
		warnings: []string{exemptWarning},
	},
	{
		name:     "mesh STRICT skips namespaces whose own namespace policy decides",
		fixtures: []string{"optouts.yaml"},
		op:       engine.Create,
		change:   v1("istio-system/default", "", strict),
		scope:    engine.MeshWide,
		touched:  []string{"ambient", "gateways", "mtls-guard", "plain", "shop"},
		unmeshed: []string{guardPod},
		message:  []string{"STRICT mTLS while 1 workload there has no Istio sidecar", "\n  Deployment/mtls-guard (1 pod: no-sidecar)"},
	},
	{
		name:     "mesh STRICT: the guard's own namespace (POD_NAMESPACE) is excluded",
		fixtures: []string{"optouts.yaml"},
		op:       engine.Create,
		change:   v1("istio-system/default", "", strict),
		opts:     ownNamespaceOptions,
		allowed:  true, scope: engine.MeshWide,
		touched: []string{"ambient", "gateways", "plain", "shop"},
		message: []string{"allowed: every pod it makes stricter is in the mesh (namespaces: ambient, gateways, plain, shop)"},
	},
	{
		name:     "mesh STRICT: a namespace policy with UNSET does not decide, it inherits",
		fixtures: []string{"optouts.yaml"},
		existing: []pa{v1beta1("mtls-guard/default", feb, unset)},
		op:       engine.Create,
		change:   v1("istio-system/default", "", strict),
		scope:    engine.MeshWide,
		touched:  []string{"ambient", "gateways", "mtls-guard", "plain", "shop"},
		unmeshed: []string{guardPod},
	},
	{
		name:     "mesh STRICT: a namespace policy with only workload policies is still decided",
		fixtures: []string{"optouts.yaml"},
		existing: []pa{v1("mtls-guard/webhook", feb, "{selector: {matchLabels: {app: other}}, mtls: {mode: PERMISSIVE}}")},
		op:       engine.Create,
		change:   v1("istio-system/default", "", strict),
		scope:    engine.MeshWide,
		touched:  []string{"ambient", "gateways", "mtls-guard", "plain", "shop"},
		unmeshed: []string{guardPod},
	},
	{
		name:     "mesh STRICT: a workload policy keeps its own pods out",
		fixtures: []string{"optouts.yaml"},
		existing: []pa{v1("mtls-guard/webhook", feb, "{selector: {matchLabels: {app: mtls-guard}}, mtls: {mode: PERMISSIVE}}")},
		op:       engine.Create,
		change:   v1("istio-system/default", "", strict),
		allowed:  true, scope: engine.MeshWide,
		touched: []string{"ambient", "gateways", "plain", "shop"},
	},
	{
		name:     "mesh: the oldest policy wins, a newer STRICT is ignored",
		existing: []pa{v1beta1("istio-system/zz-permissive", t2023, permissive)},
		op:       engine.Create,
		change:   v1("istio-system/default", "", strict),
		allowed:  true, scope: engine.MeshWide,
		warnings: []string{"Istio ignores istio-system/default: the older mesh-wide policy istio-system/zz-permissive takes precedence"},
		message:  []string{"CREATE of PeerAuthentication istio-system/default (mesh-wide) allowed: no pod becomes stricter"},
	},
	{
		name:     "mesh: a policy without creationTimestamp is the newest, whatever its name",
		existing: []pa{v1("istio-system/zzz", "2030-01-01T00:00:00Z", "")},
		op:       engine.Create,
		change:   v1("istio-system/aaa", "", strict),
		allowed:  true, scope: engine.MeshWide,
		warnings: []string{"Istio ignores istio-system/aaa: the older mesh-wide policy istio-system/zzz takes precedence"},
	},
	{
		name:     "mesh: equal timestamps, the smaller name wins",
		existing: []pa{v1("istio-system/b-permissive", jan, permissive)},
		op:       engine.Create,
		change:   v1("istio-system/a-strict", jan, strict),
		scope:    engine.MeshWide, touched: everyNamespace, unmeshed: everyUnmeshed,
		warnings: []string{exemptWarning},
	},
	{
		name:     "mesh: equal timestamps, the larger name is ignored",
		existing: []pa{v1("istio-system/a-permissive", jan, permissive)},
		op:       engine.Create,
		change:   v1("istio-system/b-strict", jan, strict),
		allowed:  true, scope: engine.MeshWide,
		warnings: []string{"Istio ignores istio-system/b-strict: the older mesh-wide policy istio-system/a-permissive takes precedence"},
	},
	{
		name:     "mesh: UNSET in the oldest policy is PERMISSIVE and masks a newer STRICT",
		existing: []pa{v1("istio-system/base", jan, ""), v1beta1("istio-system/default", feb, strict)},
		op:       engine.Update,
		change:   v1("istio-system/default", feb, strict),
		allowed:  true, scope: engine.MeshWide,
		warnings: []string{"Istio ignores istio-system/default: the older mesh-wide policy istio-system/base takes precedence"},
	},
	{
		name:     "mesh: deleting the UNSET oldest policy exposes the newer STRICT",
		existing: []pa{v1("istio-system/base", jan, ""), v1beta1("istio-system/default", feb, strict)},
		op:       engine.Delete,
		change:   v1("istio-system/base", jan, ""),
		scope:    engine.MeshWide, touched: everyNamespace, unmeshed: everyUnmeshed,
		message:  []string{"DELETE of PeerAuthentication istio-system/base (mesh-wide) denied"},
		warnings: []string{exemptWarning},
	},
	{
		name:     "mesh: giving the oldest PERMISSIVE mesh policy a selector exposes a newer STRICT",
		existing: []pa{v1("istio-system/base", jan, permissive), v1beta1("istio-system/default", feb, strict)},
		op:       engine.Update,
		change:   v1("istio-system/base", jan, "{selector: {matchLabels: {app: istiod}}, mtls: {mode: PERMISSIVE}}"),
		scope:    engine.Ignored, touched: everyNamespace, unmeshed: everyUnmeshed,
		warnings: []string{"Istio ignores istio-system/base: selector policies in the root namespace istio-system have no effect", exemptWarning},
		message:  []string{"UPDATE of PeerAuthentication istio-system/base (ignored) denied"},
	},
	{
		name:     "mesh: giving a newer ignored mesh policy a selector changes nothing",
		existing: []pa{v1("istio-system/base", jan, permissive), v1beta1("istio-system/default", feb, strict)},
		op:       engine.Update,
		change:   v1beta1("istio-system/default", feb, "{selector: {matchLabels: {app: istiod}}, mtls: {mode: STRICT}}"),
		allowed:  true, scope: engine.Ignored,
		warnings: []string{"Istio ignores istio-system/default: selector policies in the root namespace istio-system have no effect"},
	},
	{
		name:     "mesh: UPDATE keeps the existing creationTimestamp (object without one)",
		existing: []pa{v1("istio-system/old", jan, permissive), v1("istio-system/new", feb, strict)},
		op:       engine.Update,
		change:   v1("istio-system/old", "", unset),
		allowed:  true, scope: engine.MeshWide,
	},
	{
		name:     "mesh: UPDATE keeps the existing creationTimestamp (object with another one)",
		existing: []pa{v1("istio-system/old", jan, permissive), v1("istio-system/new", feb, strict)},
		op:       engine.Update,
		change:   v1("istio-system/old", mar, unset),
		allowed:  true, scope: engine.MeshWide,
	},
	{
		name:     "mesh: UPDATE of the older policy to STRICT",
		existing: []pa{v1("istio-system/old", jan, permissive), v1("istio-system/new", feb, disable)},
		op:       engine.Update,
		change:   v1("istio-system/old", jan, strict),
		scope:    engine.MeshWide, touched: everyNamespace, unmeshed: everyUnmeshed,
		warnings: []string{exemptWarning},
	},
	{
		name:   "mesh: no policy is PERMISSIVE, so a PERMISSIVE mesh policy changes nothing",
		op:     engine.Create,
		change: v1("istio-system/default", "", permissive),
		scope:  engine.MeshWide, allowed: true,
		message: []string{"allowed: no pod becomes stricter"},
	},
	{
		name:     "mesh: DELETE of STRICT loosens",
		fixtures: []string{"mesh-strict.yaml"},
		op:       engine.Delete,
		change:   v1("istio-system/default", jan, strict),
		allowed:  true, scope: engine.MeshWide,
	},
	{
		name:     "mesh: re-applying the same STRICT (GitOps sync) is allowed",
		fixtures: []string{"mesh-strict.yaml"},
		op:       engine.Update,
		change:   v1("istio-system/default", jan, strict),
		allowed:  true, scope: engine.MeshWide,
		message: []string{"UPDATE of PeerAuthentication istio-system/default (mesh-wide) allowed: no pod becomes stricter"},
	},
	{
		name:     "mesh: re-applying from a file without creationTimestamp is allowed",
		fixtures: []string{"mesh-strict.yaml"},
		existing: []pa{v1("istio-system/later", feb, permissive)},
		op:       engine.Update,
		change:   v1("istio-system/default", "", strict),
		allowed:  true, scope: engine.MeshWide,
	},
	// ---- 1. Namespace level.
	{
		name:     "namespace STRICT is denied while an unmeshed pod is there",
		op:       engine.Create,
		change:   v1("billing/default", "", strict),
		scope:    engine.NamespaceWide,
		touched:  []string{"billing"},
		unmeshed: []string{invoicer},
		message: []string{
			"CREATE of PeerAuthentication billing/default (namespace-wide) denied: it makes pods in billing STRICT mTLS while 1 workload there has no Istio sidecar and would be cut off:\n  Deployment/invoicer (1 pod: no-sidecar)\n",
			"label their pods mtls-guard.io/exempt=true",
		},
	},
	{
		name:     "namespace: the oldest policy wins, a newer STRICT is ignored",
		existing: []pa{v1beta1("billing/permissive", mar, permissive)},
		op:       engine.Create,
		change:   v1("billing/strict", "", strict),
		allowed:  true, scope: engine.NamespaceWide,
		warnings: []string{"Istio ignores billing/strict: the older namespace-wide policy billing/permissive takes precedence"},
	},
	{
		name:     "namespace: equal timestamps, the smaller name wins",
		existing: []pa{v1beta1("billing/b", mar, permissive)},
		op:       engine.Create,
		change:   v1("billing/a", mar, strict),
		scope:    engine.NamespaceWide, touched: []string{"billing"}, unmeshed: []string{invoicer},
	},
	{
		name:     "namespace: UNSET inherits the mesh STRICT",
		fixtures: []string{"mesh-strict.yaml", "optouts.yaml"},
		op:       engine.Update,
		change:   v1("billing/default", feb, ""),
		scope:    engine.NamespaceWide, touched: []string{"billing"}, unmeshed: []string{invoicer},
	},
	{
		name:    "namespace: UNSET inherits the mesh PERMISSIVE",
		op:      engine.Create,
		change:  v1("billing/default", "", unset),
		allowed: true, scope: engine.NamespaceWide,
	},
	{
		name:     "namespace: STRICT under a mesh STRICT changes nothing",
		fixtures: []string{"mesh-strict.yaml"},
		op:       engine.Create,
		change:   v1("shop/default", "", strict),
		allowed:  true, scope: engine.NamespaceWide,
	},
	{
		name:    "namespace: every meshed pod (native sidecars) may go STRICT",
		op:      engine.Create,
		change:  v1("shop/default", "", strict),
		allowed: true, scope: engine.NamespaceWide, touched: []string{"shop"},
		message: []string{"CREATE of PeerAuthentication shop/default (namespace-wide) allowed: every pod it makes stricter is in the mesh (namespaces: shop)"},
	},
	{
		name:    "namespace: ambient pods are meshed",
		op:      engine.Create,
		change:  v1("ambient/default", "", strict),
		allowed: true, scope: engine.NamespaceWide, touched: []string{"ambient"},
	},
	{
		name:    "namespace: gateways are meshed",
		op:      engine.Create,
		change:  v1("gateways/default", "", strict),
		allowed: true, scope: engine.NamespaceWide, touched: []string{"gateways"},
	},
	{
		name:    "namespace: STRICT without an injection label warns",
		op:      engine.Create,
		change:  v1("plain/default", "", strict),
		allowed: true, scope: engine.NamespaceWide, touched: []string{"plain"},
		warnings: []string{"namespace plain has no injection or ambient label: new pods may start unmeshed under STRICT"},
	},
	{
		name:    "namespace: a STRICT port in a namespace without an injection label warns",
		op:      engine.Create,
		change:  v1("plain/web", "", "{selector: {matchLabels: {app: web}}, portLevelMtls: {8080: {mode: STRICT}}}"),
		allowed: true, scope: engine.WorkloadScope, touched: []string{"plain"},
		warnings: []string{"namespace plain has no injection or ambient label"},
	},
	{
		name:    "namespace: PERMISSIVE without an injection label does not warn",
		op:      engine.Create,
		change:  v1("plain/default", "", permissive),
		allowed: true, scope: engine.NamespaceWide,
	},
	{
		name:    "namespace: STRICT in a namespace that has no Namespace object warns",
		op:      engine.Create,
		change:  v1("ghost/default", "", strict),
		allowed: true, scope: engine.NamespaceWide,
		warnings: []string{"namespace ghost has no injection or ambient label"},
	},
	{
		name:    "namespace: pods that are never counted do not block",
		op:      engine.Create,
		change:  v1("batch/default", "", strict),
		allowed: true, scope: engine.NamespaceWide,
		message: []string{"allowed: no pod becomes stricter"},
	},
	{
		name:   "namespace: every reason and every owner kind (native)",
		op:     engine.Create,
		change: v1("legacy/default", "", strict),
		scope:  engine.NamespaceWide, touched: []string{"legacy"}, unmeshed: legacyNative,
		message:  []string{"while 10 workloads there have no Istio sidecar", "  StatefulSet/db (2 pods: classic-sidecar, no-sidecar)\nTo proceed"},
		warnings: []string{exemptWarning},
	},
	{
		name:   "namespace: every reason and every owner kind (--sidecar-mode=any)",
		op:     engine.Create,
		change: v1("legacy/default", "", strict),
		opts:   func() engine.Options { return withSidecarMode(mesh.Any) },
		scope:  engine.NamespaceWide, touched: []string{"legacy"}, unmeshed: legacyAny,
		warnings: []string{exemptWarning},
	},
	{
		name:   "namespace: classic sidecars are unmeshed by default",
		op:     engine.Create,
		change: v1("classic/default", "", strict),
		scope:  engine.NamespaceWide, touched: []string{"classic"}, unmeshed: []string{classicApp},
	},
	{
		name:    "namespace: classic sidecars are meshed with --sidecar-mode=any",
		op:      engine.Create,
		change:  v1("classic/default", "", strict),
		opts:    func() engine.Options { return withSidecarMode(mesh.Any) },
		allowed: true, scope: engine.NamespaceWide, touched: []string{"classic"},
	},
	{
		name:   "namespace: STRICT in a namespace being deleted is still decided",
		op:     engine.Create,
		change: v1("dying/strict", "", strict),
		scope:  engine.NamespaceWide, touched: []string{"dying"}, unmeshed: []string{oldApp},
	},

	// ---- 3. DELETE.
	{
		name:     "DELETE of a namespace PERMISSIVE under a mesh STRICT tightens: denied",
		fixtures: []string{"mesh-strict.yaml", "optouts.yaml"},
		op:       engine.Delete,
		change:   v1("billing/default", feb, permissive),
		scope:    engine.NamespaceWide, touched: []string{"billing"}, unmeshed: []string{invoicer},
		message: []string{"DELETE of PeerAuthentication billing/default (namespace-wide) denied: it makes pods in billing STRICT mTLS"},
	},
	{
		name:     "DELETE of a namespace STRICT loosens: allowed, and ends the drift without a warning",
		existing: []pa{v1("billing/default", feb, strict)},
		op:       engine.Delete,
		change:   v1("billing/default", feb, strict),
		allowed:  true, scope: engine.NamespaceWide,
	},
	{
		name:     "DELETE of a workload PERMISSIVE under a mesh STRICT tightens meshed pods next to an unmeshed one: denied",
		fixtures: []string{"mesh-strict.yaml"},
		existing: []pa{v1beta1("billing/payments", feb, "{selector: {matchLabels: {app: payments}}, mtls: {mode: PERMISSIVE}}")},
		op:       engine.Delete,
		change:   v1beta1("billing/payments", feb, "{selector: {matchLabels: {app: payments}}, mtls: {mode: PERMISSIVE}}"),
		scope:    engine.WorkloadScope, touched: []string{"billing"}, unmeshed: []string{invoicer},
		warnings: []string{"drift: 1 unmeshed pod in billing already under STRICT: Deployment/invoicer"},
	},
	{
		name:     "DELETE in a namespace being deleted is always allowed",
		fixtures: []string{"mesh-strict.yaml", "optouts.yaml"},
		op:       engine.Delete,
		change:   v1("dying/default", feb, permissive),
		allowed:  true, scope: engine.NamespaceWide,
		message: []string{"DELETE of PeerAuthentication dying/default (namespace-wide) allowed: namespace dying is being deleted"},
	},
	{
		name:     "DELETE with the override annotation on the deleted object",
		fixtures: []string{"mesh-strict.yaml", "optouts.yaml"},
		op:       engine.Delete,
		change:   v1("billing/default", feb, permissive).override("CHG-42 invoicer retires today"),
		allowed:  true, overridden: true, scope: engine.NamespaceWide, touched: []string{"billing"}, unmeshed: []string{invoicer},
		warnings: []string{"override: admitted with 1 unmeshed workload cut off (reason: \"CHG-42 invoicer retires today\")"},
		message:  []string{`DELETE of PeerAuthentication billing/default (namespace-wide) allowed by override (mtls-guard.io/override-reason: "CHG-42 invoicer retires today")`, "\n  Deployment/invoicer (1 pod: no-sidecar)"},
	},
	{
		name:     "DELETE with the override annotation, overrides disabled",
		fixtures: []string{"mesh-strict.yaml", "optouts.yaml"},
		op:       engine.Delete,
		change:   v1("billing/default", feb, permissive).override("CHG-42"),
		opts:     noOverride,
		scope:    engine.NamespaceWide, touched: []string{"billing"}, unmeshed: []string{invoicer},
		message: []string{"denied", "The mtls-guard.io/override-reason annotation is ignored: overrides are disabled (--allow-override=false)."},
	},
	{
		name:     "DELETE of the oldest namespace policy exposes a newer STRICT",
		existing: []pa{v1("billing/a", jan, permissive), v1beta1("billing/b", feb, strict)},
		op:       engine.Delete,
		change:   v1("billing/a", jan, permissive),
		scope:    engine.NamespaceWide, touched: []string{"billing"}, unmeshed: []string{invoicer},
	},
	{
		name:     "DELETE of an ignored newer namespace policy changes nothing",
		existing: []pa{v1("billing/a", jan, permissive), v1beta1("billing/b", feb, strict)},
		op:       engine.Delete,
		change:   v1beta1("billing/b", feb, strict),
		allowed:  true, scope: engine.NamespaceWide,
	},
	{
		name:     "DELETE of a policy the cluster view does not hold yet is decided on the deleted object",
		fixtures: []string{"mesh-strict.yaml"},
		op:       engine.Delete,
		change:   v1("billing/default", feb, permissive),
		scope:    engine.NamespaceWide, touched: []string{"billing"}, unmeshed: []string{invoicer},
	},
	{
		name:     "DELETE is decided on the deleted object, not a stale copy in the view",
		fixtures: []string{"mesh-strict.yaml"},
		existing: []pa{v1("billing/default", feb, strict)},
		op:       engine.Delete,
		change:   v1("billing/default", feb, permissive),
		scope:    engine.NamespaceWide, touched: []string{"billing"}, unmeshed: []string{invoicer},
	},
	{
		name:     "DELETE of a mesh STRICT with opt-outs is allowed",
		fixtures: []string{"mesh-strict.yaml", "optouts.yaml"},
		op:       engine.Delete,
		change:   v1("istio-system/default", jan, strict),
		allowed:  true, scope: engine.MeshWide,
	},
	{
		name:     "DELETE of a PERMISSIVE mesh policy under nothing else is allowed",
		existing: []pa{v1("istio-system/default", jan, permissive)},
		op:       engine.Delete,
		change:   v1("istio-system/default", jan, permissive),
		allowed:  true, scope: engine.MeshWide,
	},

	// ---- 1. Workload level and strictness gain.
	{
		name:   "workload STRICT on meshed pods still lists every unmeshed pod of the namespace",
		op:     engine.Create,
		change: v1("billing/payments", "", "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}}"),
		scope:  engine.WorkloadScope, touched: []string{"billing"}, unmeshed: []string{invoicer},
		message: []string{"CREATE of PeerAuthentication billing/payments (workload) denied: it makes pods in billing STRICT mTLS"},
	},
	{
		name:    "workload: every matchLabels entry must match",
		op:      engine.Create,
		change:  v1("billing/nobody", "", "{selector: {matchLabels: {app: payments, tier: frontend}}, mtls: {mode: STRICT}}"),
		allowed: true, scope: engine.WorkloadScope,
		warnings: []string{"the selector of billing/nobody matches no counted pod in billing"},
	},
	{
		name:    "workload: a selector that only matches uncounted pods warns",
		op:      engine.Create,
		change:  v1("batch/report", "", "{selector: {matchLabels: {app: report}}, mtls: {mode: STRICT}}"),
		allowed: true, scope: engine.WorkloadScope,
		warnings: []string{"the selector of batch/report matches no counted pod in batch"},
	},
	{
		name:   "workload: a subset of the labels selects meshed and unmeshed pods",
		op:     engine.Create,
		change: v1("billing/backend", "", "{selector: {matchLabels: {tier: backend}}, mtls: {mode: STRICT}}"),
		scope:  engine.WorkloadScope, touched: []string{"billing"}, unmeshed: []string{invoicer},
	},
	{
		name:     "workload: the oldest matching policy wins, a newer STRICT is ignored",
		existing: []pa{v1beta1("billing/payments-permissive", jan, "{selector: {matchLabels: {app: payments}}, mtls: {mode: PERMISSIVE}}")},
		op:       engine.Create,
		change:   v1("billing/payments-strict", "", "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}}"),
		allowed:  true, scope: engine.WorkloadScope,
	},
	{
		name:     "workload: a workload policy beats the namespace policy, whatever their ages",
		existing: []pa{v1beta1("billing/default", mar, strict)},
		op:       engine.Create,
		change:   v1("billing/invoicer", "", "{selector: {matchLabels: {app: invoicer}}, mtls: {mode: PERMISSIVE}}"),
		allowed:  true, scope: engine.WorkloadScope,
	},
	{
		name:     "workload: UNSET inherits the namespace STRICT",
		existing: []pa{v1("billing/default", jan, strict), v1beta1("billing/payments", feb, "{selector: {matchLabels: {app: payments}}, mtls: {mode: PERMISSIVE}}")},
		op:       engine.Update,
		change:   v1("billing/payments", feb, "{selector: {matchLabels: {app: payments}}, mtls: {mode: UNSET}}"),
		scope:    engine.WorkloadScope, touched: []string{"billing"}, unmeshed: []string{invoicer},
		warnings: []string{"drift: 1 unmeshed pod in billing already under STRICT: Deployment/invoicer"},
	},
	{
		name:     "workload: pods already STRICT do not gain",
		existing: []pa{v1("billing/default", jan, strict)},
		op:       engine.Create,
		change:   v1("billing/payments", "", "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}}"),
		allowed:  true, scope: engine.WorkloadScope,
		warnings: []string{"drift: 1 unmeshed pod in billing already under STRICT: Deployment/invoicer"},
	},
	{
		name:     "workload: narrowing a PERMISSIVE exemption under a STRICT mesh is denied",
		fixtures: []string{"mesh-strict.yaml", "optouts.yaml"},
		op:       engine.Update,
		change:   v1("billing/default", feb, "{selector: {matchLabels: {app: payments}}, mtls: {mode: PERMISSIVE}}"),
		scope:    engine.WorkloadScope, touched: []string{"billing"}, unmeshed: []string{invoicer},
	},
	{
		name:    "workload: a selector policy in an excluded namespace is never blocked",
		op:      engine.Create,
		change:  v1("kube-system/proxy", "", "{selector: {matchLabels: {k8s-app: kube-proxy}}, mtls: {mode: STRICT}}"),
		allowed: true, scope: engine.WorkloadScope,
		message: []string{"CREATE of PeerAuthentication kube-system/proxy (workload) allowed: namespace kube-system is excluded from the guard"},
	},

	// ---- 1. Port level.
	{
		name:   "port: one STRICT port gains strictness",
		op:     engine.Create,
		change: v1("billing/payments", "", "{selector: {matchLabels: {app: payments}}, mtls: {mode: PERMISSIVE}, portLevelMtls: {8080: {mode: STRICT}}}"),
		scope:  engine.WorkloadScope, touched: []string{"billing"}, unmeshed: []string{invoicer},
	},
	{
		name:     "port: a PERMISSIVE port on a STRICT namespace gains nothing",
		existing: []pa{v1("billing/default", jan, strict)},
		op:       engine.Create,
		change:   v1("billing/payments", "", "{selector: {matchLabels: {app: payments}}, portLevelMtls: {8080: {mode: PERMISSIVE}}}"),
		allowed:  true, scope: engine.WorkloadScope,
		warnings: []string{"drift: 1 unmeshed pod in billing already under STRICT"},
	},
	{
		name:     "port: an UNSET port inherits the workload's STRICT",
		existing: []pa{v1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: PERMISSIVE}}}")},
		op:       engine.Update,
		change:   v1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: UNSET}}}"),
		scope:    engine.WorkloadScope, touched: []string{"billing"}, unmeshed: []string{invoicer},
	},
	{
		name:     "port: an UNSET port inherits the namespace's STRICT through an UNSET workload mode",
		existing: []pa{v1("billing/default", jan, strict), v1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, portLevelMtls: {8080: {mode: DISABLE}}}")},
		op:       engine.Update,
		change:   v1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, portLevelMtls: {8080: {}}}"),
		scope:    engine.WorkloadScope, touched: []string{"billing"}, unmeshed: []string{invoicer},
		warnings: []string{"drift: 1 unmeshed pod in billing already under STRICT"},
	},
	{
		name:     "port: turning a PERMISSIVE port to DISABLE is allowed",
		existing: []pa{v1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: PERMISSIVE}}}")},
		op:       engine.Update,
		change:   v1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}"),
		allowed:  true, scope: engine.WorkloadScope,
	},
	{
		name:     "port: dropping portLevelMtls makes the excepted port STRICT",
		existing: []pa{v1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: PERMISSIVE}}}")},
		op:       engine.Update,
		change:   v1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}}"),
		scope:    engine.WorkloadScope, touched: []string{"billing"}, unmeshed: []string{invoicer},
	},
	{
		name:     "port: moving the STRICT port to another port gains on the new one",
		existing: []pa{v1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, portLevelMtls: {8080: {mode: STRICT}}}")},
		op:       engine.Update,
		change:   v1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, portLevelMtls: {9090: {mode: STRICT}}}"),
		scope:    engine.WorkloadScope, touched: []string{"billing"}, unmeshed: []string{invoicer},
	},
	{
		name:     "port: a STRICT port on an already STRICT pod gains nothing",
		existing: []pa{v1("billing/default", jan, strict)},
		op:       engine.Create,
		change:   v1("billing/payments", "", "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: STRICT}}}"),
		allowed:  true, scope: engine.WorkloadScope,
		warnings: []string{"drift:"},
	},
	{
		name:     "port: drift through a STRICT port",
		existing: []pa{v1("billing/invoicer", jan, "{selector: {matchLabels: {app: invoicer}}, portLevelMtls: {8443: {mode: STRICT}}}")},
		op:       engine.Update,
		change:   v1("billing/invoicer", jan, "{selector: {matchLabels: {app: invoicer}}, portLevelMtls: {8443: {mode: STRICT}}}"),
		allowed:  true, scope: engine.WorkloadScope,
		warnings: []string{"drift: 1 unmeshed pod in billing already under STRICT: Deployment/invoicer"},
	},

	// ---- 1. Root-namespace selector policies are ignored.
	{
		name:    "root: a selector policy is ignored by Istio: allowed with a warning",
		op:      engine.Create,
		change:  v1("istio-system/gateway", "", "{selector: {matchLabels: {istio: ingressgateway}}, mtls: {mode: STRICT}}"),
		allowed: true, scope: engine.Ignored,
		warnings: []string{"Istio ignores istio-system/gateway: selector policies in the root namespace istio-system have no effect"},
		message:  []string{"CREATE of PeerAuthentication istio-system/gateway (ignored) allowed: no pod becomes stricter"},
	},
	{
		name:     "root: deleting an ignored selector policy is allowed",
		fixtures: []string{"mesh-strict.yaml"},
		existing: []pa{v1("istio-system/gateway", t2023, "{selector: {matchLabels: {istio: ingressgateway}}, mtls: {mode: PERMISSIVE}}")},
		op:       engine.Delete,
		change:   v1("istio-system/gateway", t2023, "{selector: {matchLabels: {istio: ingressgateway}}, mtls: {mode: PERMISSIVE}}"),
		allowed:  true, scope: engine.Ignored,
	},
	{
		name:    "root: a namespace-wide policy in the root namespace is the mesh policy, even as PERMISSIVE",
		op:      engine.Create,
		change:  v1("istio-system/default", "", disable),
		allowed: true, scope: engine.MeshWide,
	},

	// ---- Excluded namespaces.
	{
		name:    "excluded: kube-system policies are never blocked",
		op:      engine.Create,
		change:  v1("kube-system/default", "", strict),
		allowed: true, scope: engine.NamespaceWide,
		message: []string{"CREATE of PeerAuthentication kube-system/default (namespace-wide) allowed: namespace kube-system is excluded from the guard"},
	},
	{
		name:   "excluded: the guard's namespace is counted by default",
		op:     engine.Create,
		change: v1("mtls-guard/default", "", strict),
		scope:  engine.NamespaceWide, touched: []string{"mtls-guard"}, unmeshed: []string{guardPod},
		warnings: []string{"namespace mtls-guard has no injection or ambient label"},
	},
	{
		name:    "excluded: POD_NAMESPACE is excluded",
		op:      engine.Create,
		change:  v1("mtls-guard/default", "", strict),
		opts:    ownNamespaceOptions,
		allowed: true, scope: engine.NamespaceWide,
		message: []string{"namespace mtls-guard is excluded"},
	},
	{
		name:   "excluded: --exclude-namespaces replaces the default list",
		op:     engine.Create,
		change: v1("legacy/default", "", strict),
		opts: func() engine.Options {
			o, _ := engine.NewOptions(engine.DefaultRootNamespace, mesh.Native, []string{" legacy ", ""}, "", true)
			return o
		},
		allowed: true, scope: engine.NamespaceWide,
		message: []string{"namespace legacy is excluded"},
	},
	{
		name:   "excluded: kube-system is counted when not listed",
		op:     engine.Create,
		change: v1("kube-system/default", "", strict),
		opts: func() engine.Options {
			o, _ := engine.NewOptions(engine.DefaultRootNamespace, mesh.Native, []string{"legacy"}, "", true)
			return o
		},
		scope: engine.NamespaceWide, touched: []string{"kube-system"}, unmeshed: []string{kubeProxy},
		warnings: []string{"namespace kube-system has no injection or ambient label"},
	},
	{
		name:   "excluded: another root namespace (AKS) makes istio-system an ordinary namespace",
		op:     engine.Create,
		change: v1("istio-system/default", "", strict),
		opts: func() engine.Options {
			o, _ := engine.NewOptions("aks-istio-system", mesh.Native, strings.Split(engine.DefaultExcludedNamespaces, ","), "", true)
			return o
		},
		scope: engine.NamespaceWide, touched: []string{"istio-system"}, unmeshed: []string{istiod},
		warnings: []string{"namespace istio-system has no injection or ambient label"},
	},
	{
		name:     "excluded: the AKS root namespace holds the mesh policy",
		fixtures: []string{"optouts.yaml"},
		op:       engine.Create,
		change:   v1("aks-istio-system/default", "", strict),
		opts: func() engine.Options {
			o, _ := engine.NewOptions("aks-istio-system", mesh.Native, strings.Split(engine.DefaultExcludedNamespaces, ","), "mtls-guard", true)
			return o
		},
		scope:    engine.MeshWide,
		touched:  []string{"ambient", "gateways", "istio-system", "plain", "shop"},
		unmeshed: []string{istiod},
	},
	{
		name:   "excluded: a selector policy in the AKS root namespace is ignored",
		op:     engine.Create,
		change: v1("aks-istio-system/gw", "", "{selector: {matchLabels: {app: x}}, mtls: {mode: STRICT}}"),
		opts: func() engine.Options {
			o, _ := engine.NewOptions("aks-istio-system", mesh.Native, nil, "", true)
			return o
		},
		allowed: true, scope: engine.Ignored,
		warnings: []string{"selector policies in the root namespace aks-istio-system have no effect"},
	},

	// ---- 3. Override.
	{
		name:       "override: a denial becomes an audited allowance that still lists the workloads",
		op:         engine.Create,
		change:     v1("billing/default", "", strict).override("CHG-7: invoicer is decommissioned at 18:00"),
		allowed:    true,
		overridden: true,
		scope:      engine.NamespaceWide, touched: []string{"billing"}, unmeshed: []string{invoicer},
		warnings: []string{"override: admitted with 1 unmeshed workload cut off (reason: \"CHG-7: invoicer is decommissioned at 18:00\")"},
		message: []string{
			`CREATE of PeerAuthentication billing/default (namespace-wide) allowed by override (mtls-guard.io/override-reason: "CHG-7: invoicer is decommissioned at 18:00"), although 1 unmeshed workload would be cut off by STRICT mTLS:`,
			"\n  Deployment/invoicer (1 pod: no-sidecar)",
		},
	},
	{
		name:    "override: a long reason is truncated in the warning",
		op:      engine.Create,
		change:  v1("legacy/default", "", strict).override(strings.Repeat("x", 60)),
		allowed: true, overridden: true,
		scope: engine.NamespaceWide, touched: []string{"legacy"}, unmeshed: legacyNative,
		warnings: []string{exemptWarning, "override: admitted with 10 unmeshed workloads cut off (reason: \"" + strings.Repeat("x", 49) + "…\")"},
	},
	{
		name:   "override: disabled with --allow-override=false",
		op:     engine.Create,
		change: v1("billing/default", "", strict).override("CHG-7"),
		opts:   noOverride,
		scope:  engine.NamespaceWide, touched: []string{"billing"}, unmeshed: []string{invoicer},
		message: []string{"denied", "overrides are disabled (--allow-override=false)"},
	},
	{
		name:    "override: without a denial there is nothing to override",
		op:      engine.Create,
		change:  v1("shop/default", "", strict).override("CHG-7"),
		allowed: true, scope: engine.NamespaceWide, touched: []string{"shop"},
	},
	{
		name:   "override: a blank reason is no override",
		op:     engine.Create,
		change: v1("billing/default", "", strict).override("   "),
		scope:  engine.NamespaceWide, touched: []string{"billing"}, unmeshed: []string{invoicer},
		message: []string{"denied"},
	},

	// ---- 3. PERMISSIVE and DISABLE are never denied; no-op re-applies.
	{
		name:     "PERMISSIVE namespace policy over unmeshed pods under a STRICT mesh",
		fixtures: []string{"mesh-strict.yaml"},
		op:       engine.Create,
		change:   v1("legacy/default", "", permissive),
		allowed:  true, scope: engine.NamespaceWide,
	},
	{
		name:    "DISABLE namespace policy over unmeshed pods",
		op:      engine.Create,
		change:  v1("legacy/default", "", disable),
		allowed: true, scope: engine.NamespaceWide,
		message: []string{"allowed: no pod becomes stricter"},
	},
	{
		name:     "PERMISSIVE workload policy",
		fixtures: []string{"mesh-strict.yaml", "optouts.yaml"},
		op:       engine.Create,
		change:   v1("billing/invoicer", "", "{selector: {matchLabels: {app: invoicer}}, mtls: {mode: PERMISSIVE}}"),
		allowed:  true, scope: engine.WorkloadScope,
	},
	{
		name:     "UPDATE from STRICT to PERMISSIVE",
		existing: []pa{v1("legacy/default", jan, strict)},
		op:       engine.Update,
		change:   v1("legacy/default", jan, permissive),
		allowed:  true, scope: engine.NamespaceWide,
	},
	{
		name:     "re-applying an unchanged namespace STRICT (GitOps sync) is allowed despite drift",
		existing: []pa{v1("billing/default", jan, strict)},
		op:       engine.Update,
		change:   v1("billing/default", jan, strict),
		allowed:  true, scope: engine.NamespaceWide,
		warnings: []string{"drift: 1 unmeshed pod in billing already under STRICT: Deployment/invoicer"},
		message:  []string{"UPDATE of PeerAuthentication billing/default (namespace-wide) allowed: no pod becomes stricter"},
	},
	{
		name:     "re-applying an unchanged workload STRICT from a file without creationTimestamp",
		existing: []pa{v1("billing/payments-old", jan, "{selector: {matchLabels: {app: payments}}, mtls: {mode: PERMISSIVE}}"), v1("billing/payments-new", feb, "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}}")},
		op:       engine.Update,
		change:   v1("billing/payments-old", "", "{selector: {matchLabels: {app: payments}}, mtls: {mode: PERMISSIVE}}"),
		allowed:  true, scope: engine.WorkloadScope,
	},
	// ---- The change's own object comes from the request, not the view.
	{
		// kubectl replace --force: the view still holds the deleted
		// object, but a CREATE has no same-named policy before it.
		name:     "CREATE decides with no same-named policy before, whatever a lagging view holds",
		existing: []pa{v1("billing/default", jan, strict).override("INC-1")},
		op:       engine.Create,
		change:   v1("billing/default", feb, strict),
		scope:    engine.NamespaceWide, touched: []string{"billing"},
		unmeshed: []string{"billing/Deployment/invoicer (1 pod: no-sidecar)"},
		message:  []string{"CREATE of PeerAuthentication billing/default (namespace-wide) denied"},
	},
	{
		// STRICT (overridden), then PERMISSIVE, then STRICT again within
		// the informer's lag: the view still holds the first STRICT.
		name:     "UPDATE decides against the request's oldObject, not the view's copy",
		existing: []pa{v1("billing/default", jan, strict).override("INC-1")},
		op:       engine.Update,
		old:      ptr(v1("billing/default", jan, permissive)),
		change:   v1("billing/default", jan, strict),
		scope:    engine.NamespaceWide, touched: []string{"billing"},
		unmeshed: []string{"billing/Deployment/invoicer (1 pod: no-sidecar)"},
		message:  []string{"UPDATE of PeerAuthentication billing/default (namespace-wide) denied"},
	},
	{
		name:     "UPDATE keeps the oldObject's creationTimestamp, which the API server never changes",
		existing: []pa{v1("billing/new", feb, strict)},
		op:       engine.Update,
		old:      ptr(v1("billing/old", jan, permissive)),
		change:   v1("billing/old", "", permissive),
		// With a zero creationTimestamp billing/old would be the newest:
		// Istio would ignore it, and billing would drift under STRICT.
		allowed: true, scope: engine.NamespaceWide,
	},
	{
		name:    "DELETE decides on the object the request sends, even when the view lacks it",
		op:      engine.Delete,
		change:  v1("billing/default", jan, permissive),
		allowed: true, scope: engine.NamespaceWide,
		message: []string{"DELETE of PeerAuthentication billing/default (namespace-wide) allowed: no pod becomes stricter"},
	},
}

func ptr[T any](v T) *T { return &v }

// compilers turn a pa into a policy the two ways the guard does.
var compilers = []struct {
	name    string
	compile func(testing.TB, pa) *policy.Policy
}{
	{"typed", func(t testing.TB, p pa) *policy.Policy { return p.typed(t) }},
	{"decode", func(t testing.TB, p pa) *policy.Policy { return p.decoded(t) }},
}

var apiVersions = []string{"v1", "v1beta1"}

func TestDecide(t *testing.T) {
	for _, tc := range slices.Concat(decideCases, plaintextCases) {
		for _, version := range apiVersions {
			for _, c := range compilers {
				t.Run(tc.name+"/"+version+"/"+c.name, func(t *testing.T) {
					s := loadFixtures(t, append([]string{"cluster.yaml"}, tc.fixtures...)...)
					addPolicies(t, s, tc.existing...)
					o := engine.DefaultOptions()
					if tc.opts != nil {
						o = tc.opts()
					}
					ch := engine.Change{Operation: tc.op, Policy: c.compile(t, tc.change.in(version))}
					if tc.old != nil {
						ch.Old = c.compile(t, tc.old.in(version))
					}
					d, err := engine.Decide(s, ch, o)
					if err != nil {
						t.Fatalf("Decide: %v", err)
					}
					checkDecision(t, d, &tc)
				})
			}
		}
	}
}

func checkDecision(t *testing.T, d *engine.Decision, tc *decideCase) {
	t.Helper()
	if want := tc.change.namespace + "/" + tc.change.name; d.Policy != want || d.Operation != tc.op {
		t.Errorf("decision for %s %s, want %s %s", d.Operation, d.Policy, tc.op, want)
	}
	if d.Allowed != tc.allowed || d.Overridden != tc.overridden || d.Invalid {
		t.Errorf("Allowed=%v Overridden=%v Invalid=%v, want Allowed=%v Overridden=%v Invalid=false\nmessage: %s",
			d.Allowed, d.Overridden, d.Invalid, tc.allowed, tc.overridden, d.Message)
	}
	if d.Overridden != (d.OverrideReason != "") {
		t.Errorf("Overridden=%v with OverrideReason %q", d.Overridden, d.OverrideReason)
	}
	if d.Scope != tc.scope {
		t.Errorf("Scope %q, want %q", d.Scope, tc.scope)
	}
	if !equalStrings(d.Touched, tc.touched) {
		t.Errorf("Touched %q, want %q", d.Touched, tc.touched)
	}
	if got := renderWorkloads(d.Unmeshed); !equalStrings(got, tc.unmeshed) {
		t.Errorf("Unmeshed\n got %q\nwant %q", got, tc.unmeshed)
	}
	var plain []string
	for _, w := range d.Plaintext {
		plain = append(plain, w.Namespace+"/"+w.Kind+"/"+w.Name)
	}
	if !equalStrings(plain, tc.plaintext) {
		t.Errorf("Plaintext %q, want %q", plain, tc.plaintext)
	}
	if (d.EvidenceUnavailable != "") != tc.evidenceUnavailable {
		t.Errorf("EvidenceUnavailable %q, want it set: %v", d.EvidenceUnavailable, tc.evidenceUnavailable)
	}
	if d.Unmeshed == nil || d.Warnings == nil || d.Plaintext == nil {
		t.Errorf("Unmeshed (%v) and Warnings (%v) must never be nil", d.Unmeshed == nil, d.Warnings == nil)
	}
	if len(d.Warnings) != len(tc.warnings) {
		t.Errorf("Warnings\n got %q\nwant %q", d.Warnings, tc.warnings)
	} else {
		for i, w := range tc.warnings {
			if !strings.Contains(d.Warnings[i], w) {
				t.Errorf("Warnings[%d] = %q, want it to contain %q", i, d.Warnings[i], w)
			}
		}
	}
	for _, m := range tc.message {
		if !strings.Contains(d.Message, m) {
			t.Errorf("Message does not contain %q:\n%s", m, d.Message)
		}
	}
	// Every denial names each workload it lists (up to MaxListed).
	if !d.Allowed || d.Overridden {
		for i, w := range d.Unmeshed {
			if i == engine.MaxListed {
				break
			}
			if !strings.Contains(d.Message, w.Kind+"/"+w.Name+" (") {
				t.Errorf("Message does not name %s/%s:\n%s", w.Kind, w.Name, d.Message)
			}
		}
	}
	blocked := len(d.Unmeshed) > 0 || len(d.Plaintext) > 0 || (d.EvidenceUnavailable != "" && !strings.Contains(strings.Join(d.Warnings, "\n"), d.EvidenceUnavailable))
	if d.Allowed == blocked && !d.Overridden {
		t.Errorf("Allowed=%v with %d unmeshed and %d plaintext workloads, evidence unavailable %q", d.Allowed, len(d.Unmeshed), len(d.Plaintext), d.EvidenceUnavailable)
	}
}

func renderWorkloads(ws []engine.Workload) []string {
	out := make([]string, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.Namespace+"/"+w.String())
	}
	return out
}

func equalStrings(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

// TestDecideUnmeshedWorkloads checks the full grouping, pods included, of
// the namespace with every owner kind.
func TestDecideUnmeshedWorkloads(t *testing.T) {
	s := loadFixtures(t, "cluster.yaml")
	d, err := engine.Decide(s, engine.Change{Operation: engine.Create, Policy: v1("legacy/default", "", strict).typed(t)}, engine.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	w := func(kind, name string, pods, reasons []string) engine.Workload {
		return engine.Workload{Namespace: "legacy", Kind: kind, Name: name, Pods: pods, Reasons: reasons}
	}
	want := []engine.Workload{
		// Pod -> Job -> CronJob
		w("CronJob", "nightly", []string{"nightly-28700000-k8s9d"}, []string{"injection-disabled"}),
		w("DaemonSet", "node-agent", []string{"node-agent-7hx4k"}, []string{"host-network"}),
		// Pod -> ReplicaSet -> Deployment, pods sorted
		w("Deployment", "legacy", []string{"legacy-5c6d8-abcde", "legacy-5c6d8-fghij"}, []string{"no-sidecar"}),
		// unknown ReplicaSet reporter-6b7c9d with pod-template-hash 6b7c9d
		w("Deployment", "reporter", []string{"reporter-6b7c9d-xyz12"}, []string{"classic-sidecar"}),
		// unknown Job: the nearest known owner
		w("Job", "migrate", []string{"migrate-x7b2p"}, []string{"injection-disabled"}),
		// known Job without an owner
		w("Job", "seed", []string{"seed-5tq8v"}, []string{"no-sidecar"}),
		// only a non-controller owner reference
		w("Pod", "debug", []string{"debug"}, []string{"ambient-pending"}),
		// known ReplicaSet without an owner, although its name fits the hash
		w("ReplicaSet", "orphan-84d5f", []string{"orphan-84d5f-q1w2e"}, []string{"no-sidecar"}),
		// unknown ReplicaSet whose name does not end in the hash
		w("ReplicaSet", "stray-rs", []string{"stray-rs-zz9zz"}, []string{"no-sidecar"}),
		// StatefulSet, reasons sorted and unique
		w("StatefulSet", "db", []string{"db-0", "db-1"}, []string{"classic-sidecar", "no-sidecar"}),
	}
	if !reflect.DeepEqual(d.Unmeshed, want) {
		got, _ := json.MarshalIndent(d.Unmeshed, "", "  ")
		t.Errorf("Unmeshed:\n%s", got)
	}
}

// TestDecideMeshWideAcrossNamespaces checks that a mesh-wide STRICT is
// decided in every namespace, sorted by namespace.
func TestDecideMeshWideAcrossNamespaces(t *testing.T) {
	s := loadFixtures(t, "cluster.yaml")
	d, err := engine.Decide(s, engine.Change{Operation: engine.Create, Policy: v1beta1("istio-system/default", "", strict).decoded(t)}, engine.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, w := range d.Unmeshed {
		if len(ns) == 0 || ns[len(ns)-1] != w.Namespace {
			ns = append(ns, w.Namespace)
		}
	}
	if want := []string{"billing", "classic", "dying", "legacy", "mtls-guard"}; !reflect.DeepEqual(ns, want) {
		t.Errorf("namespaces of the unmeshed workloads %v, want %v", ns, want)
	}
	for _, w := range d.Unmeshed {
		switch w.Namespace {
		case "istio-system", "kube-system", "kube-public", "kube-node-lease", "local-path-storage":
			t.Errorf("workload %s/%s of an excluded namespace listed", w.Namespace, w.Name)
		}
	}
}

func TestDecideInvalid(t *testing.T) {
	tests := []struct {
		name     string
		key      string
		spec     string // JSON
		problems string
	}{
		{"unknown mode", "billing/x", `{"mtls":{"mode":"STRCT"}}`, `spec.mtls.mode: unknown mTLS mode "STRCT"`},
		{"unknown mode in the root namespace", "istio-system/default", `{"mtls":{"mode":"STRICTER"}}`, `spec.mtls.mode: unknown mTLS mode "STRICTER"`},
		{"unknown mode in an excluded namespace", "kube-system/x", `{"mtls":{"mode":"STRCT"}}`, `spec.mtls.mode: unknown mTLS mode "STRCT"`},
		{"portLevelMtls without selector", "billing/x", `{"portLevelMtls":{"8080":{"mode":"STRICT"}}}`, "spec.portLevelMtls needs a workload selector (spec.selector.matchLabels)"},
		{"empty portLevelMtls", "billing/x", `{"selector":{"matchLabels":{"app":"payments"}},"portLevelMtls":{}}`, "spec.portLevelMtls is empty"},
		{"port 0", "billing/x", `{"selector":{"matchLabels":{"app":"payments"}},"portLevelMtls":{"0":{"mode":"STRICT"}}}`, `spec.portLevelMtls: port "0" is outside 1..65535`},
		{"port 70000", "billing/x", `{"selector":{"matchLabels":{"app":"payments"}},"portLevelMtls":{"70000":{"mode":"PERMISSIVE"}}}`, `spec.portLevelMtls: port "70000" is outside 1..65535`},
		{"port abc", "billing/x", `{"selector":{"matchLabels":{"app":"payments"}},"portLevelMtls":{"abc":{"mode":"DISABLE"}}}`, `spec.portLevelMtls: port "abc" is outside 1..65535`},
		{"invalid PERMISSIVE with override", "billing/x", `{"mtls":{"mode":"PERMISSIVE"},"portLevelMtls":{"8080":{"mode":"PERMISSIVE"}}}`, "spec.portLevelMtls needs a workload selector"},
	}
	for _, tt := range tests {
		for _, version := range apiVersions {
			for _, op := range []engine.Operation{engine.Create, engine.Update} {
				t.Run(tt.name+"/"+version+"/"+string(op), func(t *testing.T) {
					ns, name, _ := strings.Cut(tt.key, "/")
					js := `{"apiVersion":"security.istio.io/` + version + `","kind":"PeerAuthentication","metadata":{"name":"` + name +
						`","namespace":"` + ns + `","annotations":{"mtls-guard.io/override-reason":"please"}},"spec":` + tt.spec + `}`
					p, err := policy.Decode([]byte(js))
					if err != nil {
						t.Fatalf("Decode: %v", err)
					}
					s := loadFixtures(t, "cluster.yaml")
					d, err := engine.Decide(s, engine.Change{Operation: op, Policy: p}, engine.DefaultOptions())
					if err != nil {
						t.Fatal(err)
					}
					if !d.Invalid || d.Allowed || d.Overridden {
						t.Errorf("Invalid=%v Allowed=%v Overridden=%v, want an invalid denial", d.Invalid, d.Allowed, d.Overridden)
					}
					want := "PeerAuthentication " + tt.key + " is invalid: " + tt.problems
					if !strings.HasPrefix(d.Message, want) {
						t.Errorf("Message %q, want prefix %q", d.Message, want)
					}
					if d.Unmeshed == nil || d.Warnings == nil || len(d.Unmeshed) != 0 {
						t.Errorf("Unmeshed %v Warnings %v", d.Unmeshed, d.Warnings)
					}
				})
			}
		}
	}

	// Deleting an invalid object is decided like any other delete.
	t.Run("DELETE of an invalid policy", func(t *testing.T) {
		p, err := policy.Decode([]byte(`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"x","namespace":"billing"},"spec":{"portLevelMtls":{"8080":{"mode":"STRICT"}}}}`))
		if err != nil {
			t.Fatal(err)
		}
		d, err := engine.Decide(loadFixtures(t, "cluster.yaml"), engine.Change{Operation: engine.Delete, Policy: p}, engine.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		if d.Invalid || !d.Allowed {
			t.Errorf("Invalid=%v Allowed=%v: %s", d.Invalid, d.Allowed, d.Message)
		}
	})

	// A typed object can be invalid too.
	t.Run("typed portLevelMtls without selector", func(t *testing.T) {
		for _, version := range apiVersions {
			p := newPA(version, "billing/x", "", "{mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: PERMISSIVE}}}").typed(t)
			d, err := engine.Decide(loadFixtures(t, "cluster.yaml"), engine.Change{Operation: engine.Create, Policy: p}, engine.DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			if !d.Invalid || d.Allowed || !strings.Contains(d.Message, "needs a workload selector") {
				t.Errorf("%s: Invalid=%v Allowed=%v: %s", version, d.Invalid, d.Allowed, d.Message)
			}
		}
	})
}

func TestDecideClusterErrors(t *testing.T) {
	tests := []struct {
		name     string
		fail     string
		existing []pa
		op       engine.Operation
		change   pa
	}{
		{"policies of the namespace", "Policies:billing", nil, engine.Create, v1("billing/default", "", strict)},
		{"policies of the root namespace", "Policies:istio-system", nil, engine.Create, v1("billing/default", "", strict)},
		{"policies of another namespace for a mesh policy", "Policies:legacy", nil, engine.Create, v1("istio-system/default", "", strict)},
		{"pod namespaces for a mesh policy", "PodNamespaces", nil, engine.Create, v1("istio-system/default", "", strict)},
		{"pods", "PodFacts", nil, engine.Create, v1("billing/default", "", strict)},
		{"pods for what would be an allowance", "PodFacts", nil, engine.Create, v1("shop/default", "", strict)},
		{"replica set of a blocking pod", "ReplicaSet", nil, engine.Create, v1("billing/default", "", strict)},
		{"replica set of an overridden denial", "ReplicaSet", nil, engine.Create, v1("billing/default", "", strict).override("x")},
		{"replica set of a drifting pod", "ReplicaSet", []pa{v1("billing/default", jan, strict)}, engine.Update, v1("billing/default", jan, strict)},
		{"job of a blocking pod", "Job", nil, engine.Create, v1("legacy/default", "", strict)},
		{"namespace of a delete", "Namespace", []pa{v1("billing/default", jan, permissive)}, engine.Delete, v1("billing/default", jan, permissive)},
		{"namespace for the injection warning", "Namespace", nil, engine.Create, v1("shop/default", "", strict)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := loadFixtures(t, "cluster.yaml")
			addPolicies(t, s, tt.existing...)
			o := engine.DefaultOptions()
			// The same change succeeds against the healthy view.
			if _, err := engine.Decide(s, engine.Change{Operation: tt.op, Policy: tt.change.typed(t)}, o); err != nil {
				t.Fatalf("healthy view: %v", err)
			}
			d, err := engine.Decide(failingCluster{Cluster: s, fail: tt.fail}, engine.Change{Operation: tt.op, Policy: tt.change.typed(t)}, o)
			if err == nil {
				t.Fatalf("Decide succeeded: allowed=%v %s", d.Allowed, d.Message)
			}
			if !errors.Is(err, errBroken) {
				t.Errorf("error %v does not wrap the cluster's error", err)
			}
			if d != nil {
				t.Errorf("Decide returned a decision with its error: %+v", d)
			}
		})
	}
}

func TestDecideBadChange(t *testing.T) {
	s := loadFixtures(t, "cluster.yaml")
	if d, err := engine.Decide(s, engine.Change{Operation: engine.Create}, engine.DefaultOptions()); err == nil || d != nil {
		t.Errorf("a change without a policy: %v, %v", d, err)
	}
	for _, op := range []engine.Operation{"CONNECT", "", "create"} {
		if d, err := engine.Decide(s, engine.Change{Operation: op, Policy: v1("billing/x", "", strict).typed(t)}, engine.DefaultOptions()); err == nil || d != nil {
			t.Errorf("operation %q: %v, %v", op, d, err)
		}
	}
}

// TestDecisionJSON checks that Unmeshed and Warnings encode as [] on every
// path, early returns included.
func TestDecisionJSON(t *testing.T) {
	s := loadFixtures(t, "cluster.yaml", "mesh-strict.yaml", "optouts.yaml")
	invalid, err := policy.Decode([]byte(`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"x","namespace":"billing"},"spec":{"mtls":{"mode":"STRCT"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []engine.Change{
		{Operation: engine.Create, Policy: invalid},
		{Operation: engine.Create, Policy: v1("kube-system/x", "", strict).typed(t)},
		{Operation: engine.Delete, Policy: v1("dying/default", feb, permissive).typed(t)},
		{Operation: engine.Create, Policy: v1("shop/x", "", permissive).typed(t)},
	} {
		d, err := engine.Decide(s, ch, engine.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"Unmeshed":[]`) || !strings.Contains(string(b), `"Warnings":[]`) {
			t.Errorf("%s: %s", ch.Policy.Key(), b)
		}
	}
}

func TestScopeOf(t *testing.T) {
	o := engine.DefaultOptions()
	for _, tt := range []struct {
		p    pa
		want engine.Scope
	}{
		{v1("istio-system/default", "", strict), engine.MeshWide},
		{v1("istio-system/default", "", "{selector: {matchLabels: {}}}"), engine.MeshWide},
		{v1("istio-system/gw", "", "{selector: {matchLabels: {app: gw}}}"), engine.Ignored},
		{v1("billing/default", "", strict), engine.NamespaceWide},
		{v1("billing/default", "", "{selector: {}}"), engine.NamespaceWide},
		{v1("billing/payments", "", "{selector: {matchLabels: {app: payments}}}"), engine.WorkloadScope},
		{v1("kube-system/x", "", "{selector: {matchLabels: {app: x}}}"), engine.WorkloadScope},
	} {
		if got := engine.ScopeOf(tt.p.typed(t), o); got != tt.want {
			t.Errorf("ScopeOf(%s) = %q, want %q", tt.p.yaml(), got, tt.want)
		}
	}
}

// TestDecideLeavesTheClusterAlone checks that deciding never changes the
// view, and that decisions on one shared view may run concurrently (run
// with -race).
func TestDecideLeavesTheClusterAlone(t *testing.T) {
	s := loadFixtures(t, "cluster.yaml", "mesh-strict.yaml", "optouts.yaml")
	addPolicies(t, s, v1("billing/payments", jan, "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: PERMISSIVE}}}"))
	snapshotPolicies := func() map[string]policy.Policy {
		out := map[string]policy.Policy{}
		for _, ns := range s.NamespaceNames() {
			ps, _ := s.Policies(ns)
			for _, p := range ps {
				out[p.Key()] = *p
			}
		}
		return out
	}
	before := snapshotPolicies()
	changes := []engine.Change{
		{Operation: engine.Update, Policy: v1("billing/default", "", strict).typed(t)},
		{Operation: engine.Update, Policy: v1("billing/payments", "", "{selector: {matchLabels: {app: payments}}, mtls: {mode: STRICT}}").typed(t)},
		{Operation: engine.Delete, Policy: v1("legacy/default", "", permissive).typed(t)},
		{Operation: engine.Delete, Policy: v1("istio-system/default", jan, strict).typed(t)},
		{Operation: engine.Create, Policy: v1("istio-system/second", "", disable).typed(t)},
		{Operation: engine.Create, Policy: v1("shop/default", "", strict).override("x").typed(t)},
	}
	errs := make(chan error, len(changes)*8)
	done := make(chan struct{})
	for i := 0; i < 8; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for _, ch := range changes {
				if _, err := engine.Decide(s, ch, engine.DefaultOptions()); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < 8; i++ {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if after := snapshotPolicies(); !reflect.DeepEqual(before, after) {
		t.Errorf("the policies of the view changed:\n%v\n%v", before, after)
	}
	for _, ch := range changes {
		if ch.Policy.Created.IsZero() != (ch.Policy.Key() != "istio-system/default") {
			t.Errorf("the change's policy %s was modified: %v", ch.Policy.Key(), ch.Policy.Created)
		}
	}
}

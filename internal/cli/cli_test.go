package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/mtls-guard/mtls-guard/internal/input"
	"github.com/mtls-guard/mtls-guard/internal/input/inputtest"
	"github.com/mtls-guard/mtls-guard/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func TestMain(m *testing.M) {
	// The host's settings must not leak into the commands under test.
	os.Unsetenv(podNamespaceEnv)
	os.Unsetenv("KUBECONFIG")
	os.Exit(m.Run())
}

type command func(args []string, stdout, stderr io.Writer) int

type result struct {
	code           int
	stdout, stderr string
}

// run runs a command with in as its stdin. Tests that use it must not run
// in parallel: stdin is a package variable.
func run(cmd command, args []string, in io.Reader) result {
	if in != nil {
		old := stdin
		stdin = in
		defer func() { stdin = old }()
	}
	var out, errb bytes.Buffer
	code := cmd(args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test -update to rewrite it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

const (
	seedCluster   = "testdata/seed/cluster.yaml"
	reportCluster = "testdata/report/cluster.yaml"
)

func TestGolden(t *testing.T) {
	tests := []struct {
		golden string
		cmd    command
		args   []string
		code   int
	}{
		// The seed scenario: STRICT in istio-demo cuts off Pod/mtls-test.
		{"check/seed.txt", Check, []string{"-f", "testdata/seed/strict.yaml", "--from-file", seedCluster}, 1},
		{"check/seed.json", Check, []string{"-f", "testdata/seed/strict.yaml", "--from-file", seedCluster, "-o", "json"}, 1},
		{"check/seed-permissive.txt", Check, []string{"-f", "testdata/seed/permissive.json", "--from-file", seedCluster}, 0},
		{"check/seed-permissive.json", Check, []string{"--output=json", "--filename=testdata/seed/permissive.json", "--from-file=" + seedCluster}, 0},
		{"check/seed-excluded.txt", Check, []string{"-f", "testdata/seed/strict.yaml", "--from-file", seedCluster, "--exclude-namespaces", "kube-system,istio-demo"}, 0},
		// Policies applied in order: override, then one that sees it, an
		// UPDATE of the first, and an invalid one.
		{"check/sequence.txt", Check, []string{"-f", "testdata/sequence/policies.yaml", "--from-file", seedCluster}, 1},
		{"check/sequence.json", Check, []string{"-f", "testdata/sequence/policies.yaml", "--from-file", seedCluster, "-o", "json"}, 1},
		{"check/sequence-no-override.txt", Check, []string{"-f", "testdata/sequence/policies.yaml", "--from-file", seedCluster, "--allow-override=false"}, 1},
		// An UPDATE keeps its creationTimestamp and stays the applied policy.
		{"check/update.txt", Check, []string{"-f", "testdata/update/policies.yaml", "--from-file", "testdata/update/cluster.yaml"}, 1},
		{"check/update.json", Check, []string{"-f", "testdata/update/policies.yaml", "--from-file", "testdata/update/cluster.yaml", "-o", "json"}, 1},
		// Deletes decide on the cluster's objects and their annotations.
		{"check/delete.txt", Check, []string{"--delete", "-f", "testdata/delete/policies.yaml", "--from-file", "testdata/delete/cluster.json"}, 1},
		{"check/delete.json", Check, []string{"--delete", "-f", "testdata/delete/policies.yaml", "--from-file", "testdata/delete/cluster.json", "-o", "json"}, 1},
		{"check/delete-no-override.txt", Check, []string{"--delete", "--allow-override=false", "-f", "testdata/delete/policies.yaml", "--from-file", "testdata/delete/cluster.json"}, 1},

		{"report/seed.txt", Report, []string{"--from-file", seedCluster}, 0},
		{"report/seed.json", Report, []string{"--from-file", seedCluster, "-o", "json"}, 0},
		{"report/mid-migration.txt", Report, []string{"--from-file", reportCluster}, 0},
		{"report/mid-migration.json", Report, []string{"--from-file", reportCluster, "-o", "json"}, 0},
		{"report/mid-migration-sidecar-any.txt", Report, []string{"--from-file", reportCluster, "--sidecar-mode", "any"}, 0},
		{"report/two-files.txt", Report, []string{"--from-file", seedCluster, "--from-file", "testdata/delete/cluster.json"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			r := run(tt.cmd, tt.args, nil)
			if r.code != tt.code {
				t.Errorf("exit status %d, want %d; stderr: %s", r.code, tt.code, r.stderr)
			}
			if r.stderr != "" {
				t.Errorf("stderr not empty: %q", r.stderr)
			}
			golden(t, tt.golden, r.stdout)
		})
	}
}

func TestHelp(t *testing.T) {
	for _, tt := range []struct {
		cmd  command
		want string
	}{
		{Check, "Usage:\n  mtls-guard check -f FILENAME [flags]\n"},
		{Report, "Usage:\n  mtls-guard report [flags]\n"},
	} {
		r := run(tt.cmd, []string{"-h"}, nil)
		// As kubectl: help on stdout, with the kubeconfig flags.
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, tt.want) || !strings.Contains(r.stdout, "--sidecar-mode") || !strings.Contains(r.stdout, "--context") {
			t.Errorf("-h: exit %d, stdout %q, stderr %q; want 0, usage, nothing", r.code, r.stdout, r.stderr)
		}
	}
}

// TestUnusable checks exit status 2: nothing on stdout, and one line on
// stderr naming the file and document.
func TestUnusable(t *testing.T) {
	const (
		strict = "testdata/seed/strict.yaml"
		label  = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
	)
	cluster := []string{"--from-file", seedCluster}
	withCluster := func(args ...string) []string { return append(args, cluster...) }
	tests := []struct {
		name  string
		cmd   command
		args  []string
		stdin string
		want  string
	}{
		{"no -f", Check, cluster, "", "mtls-guard check: -f is required (see mtls-guard check -h)"},
		{"missing file", Check, withCluster("-f", "testdata/nope.yaml"), "", `mtls-guard check: the path "testdata/nope.yaml" does not exist`},
		{"missing cluster file", Check, []string{"-f", strict, "--from-file", "testdata/nope.yaml"}, "", `mtls-guard check: the path "testdata/nope.yaml" does not exist`},
		{"directory", Check, withCluster("-f", "testdata/seed"), "",
			"mtls-guard check: testdata/seed/cluster.yaml: document 1: item 1: wrong kind: got v1 Namespace, want security.istio.io/v1 or v1beta1 PeerAuthentication"},
		{"directory without manifests", Check, withCluster("-f", "testdata"), "",
			"mtls-guard check: error reading [testdata]: recognized file extensions are [.json .yaml .yml]"},
		{"wrong kind", Check, withCluster("-f", "testdata/bad/wrong-kind.yaml"), "",
			"mtls-guard check: testdata/bad/wrong-kind.yaml: document 2: wrong kind: got apps/v1 Deployment, want security.istio.io/v1 or v1beta1 PeerAuthentication"},
		{"wrong kind in a List", Check, withCluster("-f", "testdata/bad/list-wrong-item.yaml"), "",
			"mtls-guard check: testdata/bad/list-wrong-item.yaml: document 1: item 2: wrong kind: got v1 ConfigMap, want security.istio.io/v1 or v1beta1 PeerAuthentication"},
		{"cluster file as policies", Check, withCluster("-f", seedCluster), "",
			"mtls-guard check: testdata/seed/cluster.yaml: document 1: item 1: wrong kind: got v1 Namespace, want security.istio.io/v1 or v1beta1 PeerAuthentication"},
		{"malformed YAML", Check, withCluster("-f", "testdata/bad/malformed.yaml"), "",
			"mtls-guard check: testdata/bad/malformed.yaml: document 3: error converting YAML to JSON: yaml: line 4: did not find expected key"},
		{"bad separator", Check, withCluster("-f", "testdata/bad/bad-separator.yaml"), "",
			"mtls-guard check: testdata/bad/bad-separator.yaml: document 1: invalid Yaml document separator: kind: PeerAuthentication"},
		{"truncated JSON", Check, withCluster("-f", "testdata/bad/truncated.json"), "",
			"mtls-guard check: testdata/bad/truncated.json: document 2: unexpected EOF"},
		{"scalar", Check, withCluster("-f", "testdata/bad/scalar.yaml"), "",
			"mtls-guard check: testdata/bad/scalar.yaml: document 1: not a Kubernetes object: got a string, want a mapping with apiVersion and kind"},
		{"no kind", Check, withCluster("-f", "testdata/bad/no-kind.yaml"), "",
			"mtls-guard check: testdata/bad/no-kind.yaml: document 1: not a Kubernetes object: kind is missing"},
		{"no apiVersion", Check, withCluster("-f", "testdata/bad/no-apiversion.yaml"), "",
			"mtls-guard check: testdata/bad/no-apiversion.yaml: document 1: not a Kubernetes object: apiVersion is missing"},
		{"no name", Check, withCluster("-f", "testdata/bad/no-name.yaml"), "",
			"mtls-guard check: testdata/bad/no-name.yaml: document 1: PeerAuthentication has no metadata.name"},
		{"bad name", Check, withCluster("-f", "testdata/bad/bad-name.yaml"), "",
			`mtls-guard check: testdata/bad/bad-name.yaml: document 1: invalid metadata.name "Default_Policy": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
		{"bad spec", Check, withCluster("-f", "testdata/bad/bad-spec.yaml"), "",
			"mtls-guard check: testdata/bad/bad-spec.yaml: document 1: decoding PeerAuthentication: json: cannot unmarshal string into Go struct field PeerAuthentication.spec of type map[string]json.RawMessage"},
		{"no policies", Check, withCluster("-f", "testdata/bad/empty.yaml"), "", "mtls-guard check: testdata/bad/empty.yaml: no PeerAuthentication found"},
		{"empty stdin", Check, withCluster("-f", "-"), "", "mtls-guard check: stdin: no PeerAuthentication found"},
		{"bad stdin", Check, withCluster("-f", "-"), "kind: Pod\n", "mtls-guard check: stdin: document 1: not a Kubernetes object: apiVersion is missing"},
		{"stdin twice", Check, []string{"-f", "-", "--from-file", "-"}, "", "mtls-guard check: stdin (-) can be read only once"},
		{"bad pod in cluster", Check, []string{"-f", strict, "--from-file", "testdata/bad/cluster-bad-pod.yaml"}, "",
			"mtls-guard check: testdata/bad/cluster-bad-pod.yaml: document 2: decoding v1 Pod: json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type []v1.Container"},
		{"no apiVersion in cluster List", Check, []string{"-f", strict, "--from-file", "testdata/bad/cluster-no-apiversion.yaml"}, "",
			"mtls-guard check: testdata/bad/cluster-no-apiversion.yaml: document 1: item 2: not a Kubernetes object: apiVersion is missing"},
		{"bad mode in cluster", Check, []string{"-f", strict, "--from-file", "testdata/bad/cluster-bad-mode.yaml"}, "",
			`mtls-guard check: testdata/bad/cluster-bad-mode.yaml: document 1: decoding security.istio.io/v1 PeerAuthentication: unknown value "\"STRICTT\"" for enum istio.security.v1beta1.PeerAuthentication.MutualTLS.Mode`},
		{"second cluster file bad", Check, []string{"-f", strict, "--from-file", seedCluster, "--from-file", "testdata/bad/malformed.yaml"}, "",
			"mtls-guard check: testdata/bad/malformed.yaml: document 3: error converting YAML to JSON: yaml: line 4: did not find expected key"},
		{"delete of a missing policy", Check, withCluster("--delete", "-f", strict), "",
			"mtls-guard check: testdata/seed/strict.yaml: document 1: PeerAuthentication istio-demo/default does not exist in the cluster, so it cannot be deleted"},
		{"sidecar mode", Check, withCluster("-f", strict, "--sidecar-mode", "foo"), "",
			`mtls-guard check: invalid --sidecar-mode: unknown sidecar mode "foo" (want native or any)`},
		{"output yaml", Check, withCluster("-f", strict, "-o", "yaml"), "", `mtls-guard check: invalid -o "yaml": want text or json`},
		{"allow-override", Check, withCluster("-f", strict, "--allow-override=maybe"), "",
			`mtls-guard check: invalid argument "maybe" for "--allow-override" flag: strconv.ParseBool: parsing "maybe": invalid syntax (see mtls-guard check -h)`},
		{"empty root namespace", Check, withCluster("-f", strict, "--root-namespace", ""), "", `mtls-guard check: invalid --root-namespace "": ` + label},
		{"bad excluded namespace", Check, withCluster("-f", strict, "--exclude-namespaces", "kube-system,Bad_NS"), "",
			`mtls-guard check: invalid --exclude-namespaces entry "Bad_NS": ` + label},
		{"unknown flag", Check, withCluster("-f", strict, "--nope"), "", "mtls-guard check: unknown flag: --nope (see mtls-guard check -h)"},
		{"empty -f", Check, withCluster("-f", ""), "", "mtls-guard check: -f is required (see mtls-guard check -h)"},
		{"extra argument", Check, []string{"-f", strict, "extra"}, "", `mtls-guard check: unexpected argument "extra" (see mtls-guard check -h)`},
		{"cluster and kubeconfig", Check, withCluster("-f", strict, "--kubeconfig", "kc"), "",
			"mtls-guard check: --from-file and --kubeconfig are exclusive: give the cluster state from files or from a live cluster"},
		{"cluster and context", Check, withCluster("-f", strict, "--context", "prod"), "",
			"mtls-guard check: --from-file and --context are exclusive: give the cluster state from files or from a live cluster"},
		{"missing kubeconfig", Check, []string{"-f", strict, "--kubeconfig", "testdata/nope"}, "",
			"mtls-guard check: loading the kubeconfig: stat testdata/nope: no such file or directory"},

		{"report output yaml", Report, withCluster("-o", "yaml"), "", `mtls-guard report: invalid -o "yaml": want text or json`},
		{"report bad cluster", Report, []string{"--from-file", "testdata/bad/cluster-bad-pod.yaml"}, "",
			"mtls-guard report: testdata/bad/cluster-bad-pod.yaml: document 2: decoding v1 Pod: json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type []v1.Container"},
		{"report -f", Report, withCluster("-f", strict), "", "mtls-guard report: unknown shorthand flag: 'f' in -f (see mtls-guard report -h)"},
		{"report sidecar mode", Report, withCluster("--sidecar-mode", "classic"), "",
			`mtls-guard report: invalid --sidecar-mode: unknown sidecar mode "classic" (want native or any)`},
		{"report extra argument", Report, withCluster("now"), "", `mtls-guard report: unexpected argument "now" (see mtls-guard report -h)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(tt.cmd, tt.args, strings.NewReader(tt.stdin))
			if r.code != 2 {
				t.Errorf("exit status %d, want 2", r.code)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty: %q", r.stdout)
			}
			if r.stderr != tt.want+"\n" {
				t.Errorf("stderr:\n got %q\nwant %q", r.stderr, tt.want+"\n")
			}
		})
	}
}

func TestHugeInput(t *testing.T) {
	in := io.LimitReader(inputtest.Endless('#'), input.MaxInputSize+1)
	r := run(Check, []string{"-f", "-", "--from-file", seedCluster}, in)
	want := "mtls-guard check: stdin: input is larger than the limit of 64 MiB\n"
	if r.code != 2 || r.stdout != "" || r.stderr != want {
		t.Errorf("got exit %d, stdout %d bytes, stderr %q; want 2, nothing, %q", r.code, len(r.stdout), r.stderr, want)
	}
}

func TestStdin(t *testing.T) {
	policies, err := os.ReadFile("testdata/seed/strict.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := run(Check, []string{"-f", "-", "--from-file", seedCluster}, bytes.NewReader(policies))
	fromFile := run(Check, []string{"-f", "testdata/seed/strict.yaml", "--from-file", seedCluster}, nil)
	if r.code != 1 || r.stdout != fromFile.stdout || r.stderr != "" {
		t.Errorf("-f - gave exit %d, stderr %q and output\n%s\nwant the output for the file:\n%s", r.code, r.stderr, r.stdout, fromFile.stdout)
	}
	cluster, err := os.ReadFile(seedCluster)
	if err != nil {
		t.Fatal(err)
	}
	r = run(Check, []string{"-f", "testdata/seed/strict.yaml", "--from-file", "-"}, bytes.NewReader(cluster))
	if r.code != 1 || r.stdout != fromFile.stdout {
		t.Errorf("--from-file - gave exit %d and output\n%s\nwant the output for the file:\n%s", r.code, r.stdout, fromFile.stdout)
	}
}

func TestOwnNamespaceExcluded(t *testing.T) {
	t.Setenv(podNamespaceEnv, "istio-demo")
	r := run(Check, []string{"-f", "testdata/seed/strict.yaml", "--from-file", seedCluster}, nil)
	if r.code != 0 || !strings.Contains(r.stdout, "namespace istio-demo is excluded from the guard") {
		t.Errorf("with POD_NAMESPACE=istio-demo: exit %d, output:\n%s", r.code, r.stdout)
	}
}

// jsonKeys returns the keys of a JSON object in their order.
func jsonKeys(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", raw)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// TestCheckJSONContract checks section 6 of the spec on every check
// output, independently of the golden files.
func TestCheckJSONContract(t *testing.T) {
	runs := [][]string{
		{"-f", "testdata/seed/strict.yaml", "--from-file", seedCluster},
		{"-f", "testdata/seed/permissive.json", "--from-file", seedCluster},
		{"-f", "testdata/sequence/policies.yaml", "--from-file", seedCluster},
		{"-f", "testdata/update/policies.yaml", "--from-file", "testdata/update/cluster.yaml"},
		{"--delete", "-f", "testdata/delete/policies.yaml", "--from-file", "testdata/delete/cluster.json"},
		{"-f", "testdata/seed/strict.yaml", "--from-file", reportCluster},
	}
	for _, args := range runs {
		r := run(Check, append(args, "-o", "json"), nil)
		if r.code == 2 {
			t.Fatalf("%v: exit 2: %s", args, r.stderr)
		}
		if !strings.HasPrefix(r.stdout, "{\n  \"allowed\": ") {
			t.Errorf("%v: not indented by two spaces:\n%s", args, r.stdout)
		}
		raw := json.RawMessage(r.stdout)
		if got, want := jsonKeys(t, raw), []string{"allowed", "results"}; !slices.Equal(got, want) {
			t.Errorf("%v: top-level keys %v, want %v", args, got, want)
		}
		var out struct {
			Allowed bool              `json:"allowed"`
			Results []json.RawMessage `json:"results"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		all := true
		for _, res := range out.Results {
			if got, want := jsonKeys(t, res), []string{"policy", "operation", "allowed", "message", "unmeshed", "warnings"}; !slices.Equal(got, want) {
				t.Errorf("%v: result keys %v, want %v", args, got, want)
			}
			var rr struct {
				Allowed  bool              `json:"allowed"`
				Unmeshed []json.RawMessage `json:"unmeshed"`
				Warnings []string          `json:"warnings"`
			}
			if err := json.Unmarshal(res, &rr); err != nil {
				t.Fatal(err)
			}
			all = all && rr.Allowed
			if rr.Unmeshed == nil || rr.Warnings == nil {
				t.Errorf("%v: unmeshed or warnings is null in %s", args, res)
			}
			var prev []string
			for _, w := range rr.Unmeshed {
				if got, want := jsonKeys(t, w), []string{"namespace", "kind", "name", "pods", "reasons"}; !slices.Equal(got, want) {
					t.Errorf("%v: workload keys %v, want %v", args, got, want)
				}
				var wl struct {
					Namespace, Kind, Name string
					Pods, Reasons         []string
				}
				if err := json.Unmarshal(w, &wl); err != nil {
					t.Fatal(err)
				}
				key := []string{wl.Namespace, wl.Kind, wl.Name}
				if prev != nil && slices.Compare(prev, key) >= 0 {
					t.Errorf("%v: unmeshed not sorted: %v before %v", args, prev, key)
				}
				prev = key
				for _, s := range [][]string{wl.Pods, wl.Reasons} {
					if len(s) == 0 || !sort.StringsAreSorted(s) || len(slices.Compact(slices.Clone(s))) != len(s) {
						t.Errorf("%v: pods or reasons empty, unsorted or repeated: %v", args, s)
					}
				}
			}
		}
		if out.Allowed != all {
			t.Errorf("%v: top-level allowed %v, but the results say %v", args, out.Allowed, all)
		}
		if wantCode := map[bool]int{true: 0, false: 1}[all]; r.code != wantCode {
			t.Errorf("%v: exit %d, want %d", args, r.code, wantCode)
		}
	}
}

func TestReportJSONContract(t *testing.T) {
	r := run(Report, []string{"--from-file", reportCluster, "-o", "json"}, nil)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out struct {
		Namespaces []json.RawMessage `json:"namespaces"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Namespaces) == 0 {
		t.Fatal("no namespaces")
	}
	for _, ns := range out.Namespaces {
		if got, want := jsonKeys(t, ns), []string{"namespace", "mode", "meshed", "unmeshed", "unmeshedWorkloads", "strictAdmitted", "strictNow", "unmeshedUnderStrict"}; !slices.Equal(got, want) {
			t.Errorf("keys %v, want %v", got, want)
		}
		if strings.Contains(string(ns), "null") {
			t.Errorf("null in %s", ns)
		}
	}
	// An empty cluster still gives a list.
	r = run(Report, []string{"--from-file", "-", "-o", "json"}, strings.NewReader(""))
	if r.code != 0 || r.stdout != "{\n  \"namespaces\": []\n}\n" {
		t.Errorf("empty cluster: exit %d, output %q", r.code, r.stdout)
	}
}

// TestSchemaFromFile gives check Istio's CRD (from the istio.io/api
// module, as kubectl get crd would print it) among the cluster files:
// the typo is then INVALID in the API server's words, and the other
// decisions are those of the golden file.
func TestSchemaFromFile(t *testing.T) {
	crds, err := testenv.IstioCRDs()
	if err != nil {
		t.Fatal(err)
	}
	r := run(Check, []string{"-f", "testdata/sequence/policies.yaml", "--from-file", seedCluster, "--from-file", crds, "-o", "json"}, nil)
	golden := run(Check, []string{"-f", "testdata/sequence/policies.yaml", "--from-file", seedCluster, "-o", "json"}, nil)
	var got, want checkOutput
	for _, o := range []struct {
		r   result
		out *checkOutput
	}{{r, &got}, {golden, &want}} {
		if o.r.code != 1 || o.r.stderr != "" {
			t.Fatalf("exit %d, stderr %q", o.r.code, o.r.stderr)
		}
		if err := json.Unmarshal([]byte(o.r.stdout), o.out); err != nil {
			t.Fatal(err)
		}
	}
	if len(got.Results) != 4 || len(want.Results) != 4 {
		t.Fatalf("%d and %d results, want 4", len(got.Results), len(want.Results))
	}
	const apiServer = `PeerAuthentication istio-demo/typo is invalid: spec.mtls.mode: Unsupported value: "STRICTT": supported values: "UNSET", "DISABLE", "PERMISSIVE", "STRICT"; ` +
		`<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation`
	if typo := got.Results[3]; typo.Allowed || typo.Message != apiServer {
		t.Errorf("typo: allowed %v, message %q; want denied with %q", typo.Allowed, typo.Message, apiServer)
	}
	got.Results[3].Message = want.Results[3].Message
	if gotJSON, wantJSON := fmt.Sprint(got), fmt.Sprint(want); gotJSON != wantJSON {
		t.Errorf("with the CRD:\n%s\nwithout:\n%s", gotJSON, wantJSON)
	}
}

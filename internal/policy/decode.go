package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of PeerAuthentication.
const GroupName = "security.istio.io"

// Kind is the PeerAuthentication kind.
const Kind = "PeerAuthentication"

// IsPeerAuthentication reports whether gvk names a PeerAuthentication in a
// version the guard understands.
func IsPeerAuthentication(gvk schema.GroupVersionKind) bool {
	return gvk.Group == GroupName && gvk.Kind == Kind && (gvk.Version == "v1" || gvk.Version == "v1beta1")
}

// Decode parses one PeerAuthentication, v1 or v1beta1, from JSON.
//
// An error means the input cannot be read as a PeerAuthentication at all.
// A policy that reads but breaks the validity rules (an unknown mode, a bad
// port, portLevelMtls without a selector) is returned with Problems set, so
// that it can be denied with a precise message.
func Decode(data []byte) (*Policy, error) {
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if doc == nil {
		return nil, errors.New("empty document")
	}
	apiVersion, _ := doc["apiVersion"].(string)
	kind, _ := doc["kind"].(string)
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil || !IsPeerAuthentication(gv.WithKind(kind)) {
		return nil, fmt.Errorf("wrong kind: got apiVersion %q kind %q, want %s/v1 or %s/v1beta1 %s",
			apiVersion, kind, GroupName, GroupName, Kind)
	}
	problems := sanitizeSpec(doc)
	clean, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("re-encoding PeerAuthentication: %w", err)
	}
	// v1 and v1beta1 share one schema, so one typed decode serves both.
	var pa securityv1.PeerAuthentication
	if err := json.Unmarshal(clean, &pa); err != nil {
		return nil, fmt.Errorf("decoding PeerAuthentication: %w", err)
	}
	if pa.Name == "" {
		return nil, errors.New("PeerAuthentication has no metadata.name")
	}
	p := FromV1(&pa)
	if !slices.Contains(problems, emptyPortsProblem) {
		// The map was not empty: sanitizeSpec removed its invalid ports,
		// which it already reported.
		p.Problems = slices.DeleteFunc(p.Problems, func(s string) bool { return s == emptyPortsProblem })
	}
	p.Problems = dedupe(append(problems, p.Problems...))
	return p, nil
}

// sanitizeSpec finds invalid modes and ports in the raw spec, removes them so
// that the typed decoder accepts the rest, and returns what it found.
func sanitizeSpec(doc map[string]any) []string {
	spec, ok := doc["spec"].(map[string]any)
	if !ok {
		return nil
	}
	var problems []string
	if mtls, ok := spec["mtls"].(map[string]any); ok {
		if msg := checkMode(mtls); msg != "" {
			problems = append(problems, "spec.mtls.mode: "+msg)
		}
	}
	plm, ok := spec["portLevelMtls"].(map[string]any)
	if !ok {
		return problems
	}
	if len(plm) == 0 {
		problems = append(problems, emptyPortsProblem)
	}
	for _, key := range slices.Sorted(maps.Keys(plm)) {
		port, err := parsePort(key)
		if err != nil || port < 1 || port > 65535 {
			problems = append(problems, fmt.Sprintf("spec.portLevelMtls: port %q is outside 1..65535", key))
			delete(plm, key)
			continue
		}
		if canonical := strconv.FormatUint(port, 10); canonical != key {
			// " 80" is port 80 to Istio's decoder, as to this one.
			if _, dup := plm[canonical]; dup {
				problems = append(problems, fmt.Sprintf("spec.portLevelMtls: port %d appears twice", port))
				delete(plm, key)
				continue
			}
			plm[canonical] = plm[key]
			delete(plm, key)
			key = canonical
		}
		if m, ok := plm[key].(map[string]any); ok {
			if msg := checkMode(m); msg != "" {
				problems = append(problems, fmt.Sprintf("spec.portLevelMtls[%s].mode: %s", key, msg))
			}
		}
	}
	if len(plm) == 0 && len(problems) > 0 {
		// Keep an emptied map from reading as "no portLevelMtls".
		spec["portLevelMtls"] = map[string]any{}
	}
	return problems
}

// checkMode validates m["mode"] and blanks it when invalid.
func checkMode(m map[string]any) string {
	switch v := m["mode"].(type) {
	case nil:
		return ""
	case string:
		if _, err := ParseMode(v); err != nil {
			delete(m, "mode")
			return err.Error()
		}
	case float64:
		if v != math.Trunc(v) || v < float64(Unset) || v > float64(Strict) {
			delete(m, "mode")
			return fmt.Sprintf("unknown mTLS mode %v (want UNSET, DISABLE, PERMISSIVE or STRICT)", v)
		}
	default:
		delete(m, "mode")
		return fmt.Sprintf("mode must be a string, got %T", v)
	}
	return ""
}

// parsePort reads a portLevelMtls key as Istio's decoder (jsonpb) does:
// a JSON number, blanks around it allowed.
func parsePort(key string) (uint64, error) {
	var port uint64
	err := json.Unmarshal([]byte(key), &port)
	return port, err
}

func dedupe(ss []string) []string {
	seen := make(map[string]bool, len(ss))
	out := ss[:0]
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

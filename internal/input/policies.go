package input

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// Policy is a PeerAuthentication read from a file, with where it was.
type Policy struct {
	Loc    Location
	Policy *policy.Policy
}

// ReadPolicies reads the PeerAuthentications of files, in order; the path
// "-" reads stdin. See Policies.
func ReadPolicies(paths []string, stdin io.Reader) ([]Policy, error) {
	var out []Policy
	for _, path := range paths {
		objs, err := readPath(path, stdin)
		if err != nil {
			return nil, err
		}
		ps, err := Policies(objs)
		if err != nil {
			return nil, err
		}
		if len(ps) == 0 {
			name := path
			if path == "-" {
				name = "stdin"
			}
			return nil, &Error{Loc: Location{File: name}, Err: errors.New("no PeerAuthentication found")}
		}
		out = append(out, ps...)
	}
	return out, nil
}

// Policies decodes objects that must all be PeerAuthentications, v1 or
// v1beta1, with policy.Decode: a policy that breaks the validity rules (an
// unknown mode, say) is returned with Problems set, to be denied as
// invalid, while an object of another kind or one that does not read as a
// PeerAuthentication is an *Error. A policy without a namespace gets
// DefaultNamespace.
func Policies(objs []Object) ([]Policy, error) {
	out := make([]Policy, 0, len(objs))
	for _, o := range objs {
		if !policy.IsPeerAuthentication(o.GVK) {
			return nil, &Error{Loc: o.Loc, Err: fmt.Errorf("wrong kind: got %s, want %s/v1 or v1beta1 %s",
				gvkString(o.GVK), policy.GroupName, policy.Kind)}
		}
		p, err := policy.Decode(o.JSON)
		if err != nil {
			return nil, &Error{Loc: o.Loc, Err: err}
		}
		if p.Namespace == "" {
			p.Namespace = DefaultNamespace
		}
		// The API server would refuse these names; refusing them here also
		// keeps them out of the output.
		if errs := validation.IsDNS1123Subdomain(p.Name); len(errs) > 0 {
			return nil, &Error{Loc: o.Loc, Err: fmt.Errorf("invalid metadata.name %q: %s", p.Name, strings.Join(errs, "; "))}
		}
		if errs := validation.IsDNS1123Label(p.Namespace); len(errs) > 0 {
			return nil, &Error{Loc: o.Loc, Err: fmt.Errorf("invalid metadata.namespace %q: %s", p.Namespace, strings.Join(errs, "; "))}
		}
		out = append(out, Policy{Loc: o.Loc, Policy: p})
	}
	return out, nil
}

package input

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// Policy is a PeerAuthentication read from a manifest, with where it was.
type Policy struct {
	Loc    Location
	Policy *policy.Policy
}

// ReadPolicies reads manifests that must hold PeerAuthentications (see
// Read), each name at least one; Policies decodes them. The objects are
// checked for their kind here, so that a wrong file fails before the
// cluster is read.
func ReadPolicies(names []string, recursive bool, stdin io.Reader) ([]Object, error) {
	var out []Object
	for _, name := range names {
		objs, err := Read([]string{name}, recursive, stdin)
		if err != nil {
			return nil, err
		}
		if len(objs) == 0 {
			if name == "-" {
				name = Stdin
			}
			return nil, &Error{Loc: Location{File: name}, Err: errors.New("no PeerAuthentication found")}
		}
		for _, o := range objs {
			if err := checkKind(o); err != nil {
				return nil, &Error{Loc: o.Loc, Err: err}
			}
		}
		out = append(out, objs...)
	}
	return out, nil
}

func checkKind(o Object) error {
	if gvk := o.GroupVersionKind(); !policy.IsPeerAuthentication(gvk) {
		return fmt.Errorf("wrong kind: got %s, want %s/v1 or v1beta1 %s", gvkString(gvk), policy.GroupName, policy.Kind)
	}
	return nil
}

// Policies decodes objects that must all be PeerAuthentications, v1 or
// v1beta1; one without a namespace gets namespace. Validity is decided in
// one place, here: with a schema, what the API server would refuse, in
// its words; then the guard's own rules (policy.Decode). A policy that
// breaks them is returned with Problems set, to be denied as invalid. An
// object of another kind, one without a usable name, or one that does not
// read as a PeerAuthentication at all is an *Error.
func Policies(objs []Object, namespace string, s *Schema) ([]Policy, error) {
	out := make([]Policy, 0, len(objs))
	for _, o := range objs {
		p, err := decodePolicy(o, namespace, s)
		if err != nil {
			return nil, &Error{Loc: o.Loc, Err: err}
		}
		out = append(out, Policy{Loc: o.Loc, Policy: p})
	}
	return out, nil
}

func decodePolicy(o Object, namespace string, s *Schema) (*policy.Policy, error) {
	if err := checkKind(o); err != nil {
		return nil, err
	}
	if o.GetNamespace() == "" {
		o.SetNamespace(namespace)
	}
	// The API server would refuse these names; refusing them here also
	// keeps them out of the output.
	if o.GetName() == "" {
		return nil, errors.New("PeerAuthentication has no metadata.name")
	}
	if errs := validation.IsDNS1123Subdomain(o.GetName()); len(errs) > 0 {
		return nil, fmt.Errorf("invalid metadata.name %q: %s", o.GetName(), strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(o.GetNamespace()); len(errs) > 0 {
		return nil, fmt.Errorf("invalid metadata.namespace %q: %s", o.GetNamespace(), strings.Join(errs, "; "))
	}
	if s != nil {
		if problems := s.Validate(context.Background(), o.Unstructured, nil); len(problems) > 0 {
			return &policy.Policy{Namespace: o.GetNamespace(), Name: o.GetName(), Problems: problems}, nil
		}
	}
	js, err := o.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", policy.Kind, err)
	}
	return policy.Decode(js)
}

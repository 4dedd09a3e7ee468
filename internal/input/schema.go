package input

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"

	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// PeerAuthenticationCRD is the name of Istio's PeerAuthentication CRD.
const PeerAuthenticationCRD = "peerauthentications.security.istio.io"

// Schema validates PeerAuthentications against the schema of Istio's CRD
// the way the API server validates a custom resource on create and update:
// object metadata, the structural OpenAPI schema, unknown fields (kubectl
// asks for strict field validation), and the x-kubernetes-validations CEL
// rules.
type Schema struct {
	versions map[string]*versionSchema
}

type versionSchema struct {
	openAPI    validation.SchemaValidator
	structural *structuralschema.Structural
	cel        *cel.Validator // nil when the version has no CEL rules
}

// NewSchema compiles the served versions of the PeerAuthentication CRD.
func NewSchema(crd *apiextensionsv1.CustomResourceDefinition) (*Schema, error) {
	if crd.Spec.Group != policy.GroupName || crd.Spec.Names.Kind != policy.Kind {
		return nil, fmt.Errorf("CRD %s is not Istio's PeerAuthentication CRD", crd.Name)
	}
	s := &Schema{versions: map[string]*versionSchema{}}
	for _, v := range crd.Spec.Versions {
		if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			continue
		}
		var internal apiextensions.JSONSchemaProps
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
			return nil, fmt.Errorf("CRD %s version %s: converting the schema: %w", crd.Name, v.Name, err)
		}
		openAPI, _, err := validation.NewSchemaValidator(&internal)
		if err != nil {
			return nil, fmt.Errorf("CRD %s version %s: %w", crd.Name, v.Name, err)
		}
		structural, err := structuralschema.NewStructural(&internal)
		if err != nil {
			return nil, fmt.Errorf("CRD %s version %s: the schema is not structural: %w", crd.Name, v.Name, err)
		}
		s.versions[v.Name] = &versionSchema{
			openAPI:    openAPI,
			structural: structural,
			cel:        cel.NewValidator(structural, true, celconfig.PerCallLimit),
		}
	}
	if len(s.versions) == 0 {
		return nil, fmt.Errorf("CRD %s serves no version with a schema", crd.Name)
	}
	return s, nil
}

// Validate returns what the API server would refuse in obj, in its
// words; old is the object before an UPDATE, for CEL transition rules, or
// nil. obj must carry its namespace.
func (s *Schema) Validate(ctx context.Context, obj, old *unstructured.Unstructured) []string {
	gvk := obj.GroupVersionKind()
	v := s.versions[gvk.Version]
	if v == nil {
		return []string{field.NotSupported(field.NewPath("apiVersion"), obj.GetAPIVersion(), s.served()).Error()}
	}
	// Unknown fields fail decoding before any validation, as kubectl asks
	// for strict field validation. Pruning works on a copy.
	u := obj.DeepCopy()
	if unknown := pruning.PruneWithOptions(u.Object, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}); len(unknown) > 0 {
		for i, path := range unknown {
			unknown[i] = fmt.Sprintf("unknown field %q", path)
		}
		return []string{fmt.Sprintf("%s in version %q cannot be handled as a %s: strict decoding error: %s",
			gvk.Kind, gvk.Version, gvk.Kind, strings.Join(unknown, ", "))}
	}
	var errs field.ErrorList
	errs = append(errs, apivalidation.ValidateObjectMetaAccessor(u, true, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))...)
	errs = append(errs, validation.ValidateCustomResource(nil, u.Object, v.openAPI)...)
	errs = append(errs, schemaobjectmeta.Validate(ctx, nil, u.Object, v.structural, false)...)
	if v.cel != nil {
		errs = append(errs, s.validateCEL(ctx, v, errs, u, old)...)
	}
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	return msgs
}

// validateCEL runs the x-kubernetes-validations rules, unless errs already
// hold an error that leaves them unchecked, as the API server's strategy
// does; then it says so.
func (s *Schema) validateCEL(ctx context.Context, v *versionSchema, errs field.ErrorList, u, old *unstructured.Unstructured) field.ErrorList {
	for _, e := range errs {
		switch e.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return field.ErrorList{field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation")}
		}
	}
	var oldObj any
	if old != nil {
		oldObj = old.Object
	}
	celErrs, _ := v.cel.Validate(ctx, nil, v.structural, u.Object, oldObj, celconfig.RuntimeCELCostBudget)
	return celErrs
}

func (s *Schema) served() []string {
	out := make([]string, 0, len(s.versions))
	for v := range s.versions {
		out = append(out, v)
	}
	return out
}

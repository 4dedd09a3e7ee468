package webhook

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// The RBAC attributes that authorise an override: the verb "override" on
// peerauthentications in the API group mtls-guard.io, in the policy's
// namespace, for its name. deploy/ ships the ClusterRole
// mtls-guard-override that grants them, bound to nobody.
const (
	OverrideVerb     = "override"
	OverrideGroup    = "mtls-guard.io"
	OverrideResource = "peerauthentications"
)

// OverrideAuthorizer decides whether a user may override a denial of one
// policy. An error means it could not tell; the override then does not
// count.
type OverrideAuthorizer interface {
	AuthorizeOverride(ctx context.Context, user authenticationv1.UserInfo, namespace, name string) (allowed bool, reason string, err error)
}

// SubjectAccessReviewer authorises overrides through the API server's
// authorizer, as cert-manager's approver check does: one
// SubjectAccessReview per override attempt.
type SubjectAccessReviewer struct {
	Client client.Client
}

var _ OverrideAuthorizer = SubjectAccessReviewer{}

// AuthorizeOverride implements OverrideAuthorizer.
func (r SubjectAccessReviewer) AuthorizeOverride(ctx context.Context, user authenticationv1.UserInfo, namespace, name string) (bool, string, error) {
	extra := make(map[string]authorizationv1.ExtraValue, len(user.Extra))
	for k, v := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, Groups: user.Groups, UID: user.UID, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Name: name,
			Verb: OverrideVerb, Group: OverrideGroup, Resource: OverrideResource,
		},
	}}
	if err := r.Client.Create(ctx, sar); err != nil {
		return false, "", fmt.Errorf("creating a SubjectAccessReview: %w", err)
	}
	if sar.Status.EvaluationError != "" && !sar.Status.Allowed {
		return false, "", fmt.Errorf("the SubjectAccessReview could not be evaluated: %s", sar.Status.EvaluationError)
	}
	return sar.Status.Allowed, sar.Status.Reason, nil
}

// overrideRefusal says why an override annotation does not count.
func overrideRefusal(user authenticationv1.UserInfo, namespace, name string, err error) string {
	if err != nil {
		return fmt.Sprintf("The %s annotation is ignored: the guard could not check that user %q may override (%v).",
			policy.OverrideAnnotation, user.Username, err)
	}
	return fmt.Sprintf("The %s annotation is ignored: user %q may not %s %s.%s %s in namespace %s (grant the ClusterRole mtls-guard-override).",
		policy.OverrideAnnotation, user.Username, OverrideVerb, OverrideResource, OverrideGroup, name, namespace)
}

package atlasapi

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// apiError is Atlas's error envelope (the ApiError schema).
type apiError struct {
	Detail     string `json:"detail"`
	Error      int    `json:"error"`
	ErrorCode  string `json:"errorCode"`
	Parameters []any  `json:"parameters"`
	Reason     string `json:"reason"`
}

func envelope(ae *controlplane.APIError) apiError {
	params := ae.Parameters
	if params == nil {
		params = []any{}
	}
	return apiError{Detail: ae.Detail, Error: ae.Status, ErrorCode: ae.Code, Parameters: params, Reason: ae.Reason()}
}

func newErr(status int, code, detail string, params ...any) *controlplane.APIError {
	return &controlplane.APIError{Status: status, Code: code, Detail: detail, Parameters: params}
}

// errUnauthorized is what Atlas answers a request without valid
// credentials: detail "You are not authorized for this resource." and
// reason "Unauthorized" (observed in Atlas answers quoted in
// terraform-provider-mongodbatlas#1327). Atlas leaves errorCode out there;
// cmkdb fills it because the envelope's schema requires it.
func errUnauthorized() *controlplane.APIError {
	return newErr(http.StatusUnauthorized, "UNAUTHORIZED", "You are not authorized for this resource.")
}

// errForbidden is Atlas's answer to a valid key without the role: errorCode
// USER_UNAUTHORIZED (the code Atlas clients test for, e.g.
// terraform-provider-mongodbatlas#664).
func errForbidden() *controlplane.APIError {
	return newErr(http.StatusForbidden, "USER_UNAUTHORIZED", "Current user is not authorized to perform this action.")
}

func errNotFound(path string) *controlplane.APIError {
	return newErr(http.StatusNotFound, "RESOURCE_NOT_FOUND", fmt.Sprintf("Cannot find resource %s.", truncate(path)), truncate(path))
}

func errMethodNotAllowed(method, path string) *controlplane.APIError {
	return newErr(http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED",
		fmt.Sprintf("Method %s is not allowed on resource %s.", truncate(method), truncate(path)))
}

func errInvalidJSON(detail string) *controlplane.APIError {
	return newErr(http.StatusBadRequest, "INVALID_JSON", detail)
}

func errInvalidAttr(attr string) *controlplane.APIError {
	attr = truncate(attr)
	return newErr(http.StatusBadRequest, "INVALID_ATTRIBUTE", fmt.Sprintf("Invalid attribute %s specified.", attr), attr)
}

func errMissingAttr(attr string) *controlplane.APIError {
	return newErr(http.StatusBadRequest, "MISSING_ATTRIBUTE", fmt.Sprintf("The required attribute %s was not specified.", attr), attr)
}

func errInvalidQuery(name string) *controlplane.APIError {
	return newErr(http.StatusBadRequest, "INVALID_QUERY_PARAMETER", fmt.Sprintf("Invalid query parameter %s specified.", name), name)
}

// truncate bounds client-controlled text echoed in an error.
func truncate(s string) string {
	const max = 128
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// redacted returns a copy of ae with its detail and parameters passed
// through scrub, so a KMS error that quotes a credential never reaches the
// client.
func redacted(ae *controlplane.APIError, scrub func(string) string) *controlplane.APIError {
	out := *ae
	out.Detail = scrub(ae.Detail)
	out.Parameters = make([]any, len(ae.Parameters))
	for i, p := range ae.Parameters {
		out.Parameters[i] = p
		if s := fmt.Sprint(p); scrub(s) != s {
			out.Parameters[i] = scrub(s)
		}
	}
	return &out
}

// scrubSecrets replaces every one of secrets in s (the credentials of the
// request being answered, which the control plane may not hold yet).
func scrubSecrets(secrets []string) func(string) string {
	return func(s string) string {
		for _, sec := range secrets {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
		return s
	}
}

// redact scrubs an error body of every credential the control plane holds,
// whatever path built it.
func (h *handler) redact(ae *controlplane.APIError) *controlplane.APIError {
	return redacted(ae, h.svc.Redact)
}

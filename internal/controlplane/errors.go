package controlplane

import (
	"errors"
	"fmt"
	"net/http"
)

// APIError is an error the admin API reports in Atlas's envelope:
// {error, errorCode, detail, reason, parameters}. Every refusal the control
// plane makes is one, so the HTTP layer never guesses a status code.
type APIError struct {
	Status     int
	Code       string
	Detail     string
	Parameters []any
}

func (e *APIError) Error() string { return e.Code + ": " + e.Detail }

// Reason is the HTTP reason phrase Atlas puts in "reason".
func (e *APIError) Reason() string { return http.StatusText(e.Status) }

func apiErr(status int, code, format string, args ...any) *APIError {
	return &APIError{Status: status, Code: code, Detail: fmt.Sprintf(format, args...), Parameters: args}
}

// AsAPIError returns err as an *APIError, or a 500 that reveals nothing.
func AsAPIError(err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	return &APIError{Status: http.StatusInternalServerError, Code: "UNEXPECTED_ERROR", Detail: "Unexpected error."}
}

func notFound(kind, id string) *APIError {
	switch kind {
	case "group":
		return apiErr(http.StatusNotFound, "GROUP_NOT_FOUND", "No group with ID %s exists.", id)
	case "cluster":
		return apiErr(http.StatusNotFound, "CLUSTER_NOT_FOUND", "No cluster named %s exists in group.", id)
	case "alertConfig":
		return apiErr(http.StatusNotFound, "ALERT_CONFIG_NOT_FOUND", "No alert configuration with ID %s exists.", id)
	case "alert":
		return apiErr(http.StatusNotFound, "ALERT_NOT_FOUND", "No alert with ID %s exists.", id)
	case "apiKey":
		return apiErr(http.StatusNotFound, "API_KEY_NOT_FOUND", "No API key with ID %s exists.", id)
	}
	return apiErr(http.StatusNotFound, "RESOURCE_NOT_FOUND", "Cannot find resource %s.", id)
}

func invalidAttr(attr, why string) *APIError {
	return &APIError{Status: http.StatusBadRequest, Code: "INVALID_ATTRIBUTE",
		Detail: fmt.Sprintf("Invalid attribute %s specified: %s", attr, why), Parameters: []any{attr}}
}

func missingAttr(attr string) *APIError {
	return &APIError{Status: http.StatusBadRequest, Code: "MISSING_ATTRIBUTE",
		Detail: fmt.Sprintf("The required attribute %s was not specified.", attr), Parameters: []any{attr}}
}

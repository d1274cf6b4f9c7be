package ctl

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// APIError is an error the admin API answered, in Atlas's envelope.
type APIError struct {
	Status     int    `json:"error"`
	ErrorCode  string `json:"errorCode"`
	Detail     string `json:"detail"`
	Reason     string `json:"reason"`
	Parameters []any  `json:"parameters"`

	// api and publicKey name the server and the key, for hints.
	api, publicKey string
}

func (e *APIError) Error() string {
	if e.Detail == "" {
		return e.ErrorCode
	}
	return e.ErrorCode + ": " + e.Detail
}

// hint says what to do about the errors an operator can fix from here.
func (e *APIError) hint() string {
	switch e.Status {
	case http.StatusUnauthorized:
		return fmt.Sprintf("the admin API at %s rejected API key %q (HTTP 401): the public key is unknown or the private key does not match it; check --public-key and --private-key-file (or the key in up.json)", e.api, e.publicKey)
	case http.StatusForbidden:
		return fmt.Sprintf("API key %q lacks the role this needs (HTTP 403): a Project Owner or Organization Owner key can do it", e.publicKey)
	}
	return ""
}

// KeyError says the project's key is still not usable after a check.
type KeyError struct {
	Validity  string
	Reachable bool
	Reason    string
	Detail    string
}

func (e *KeyError) Error() string {
	what := "the customer master key is " + e.Validity
	if !e.Reachable {
		what = "the KMS is unreachable"
	}
	if e.Reason != "" {
		what += " (" + e.Reason + ")"
	}
	if e.Detail != "" {
		what += ": " + e.Detail
	}
	return what
}

// ErrorText is how a command's failure is shown: "error: CODE: detail" for
// an API error, "error: message" otherwise, then a hint line when there is
// something to check.
func ErrorText(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		if h := ae.hint(); h != "" {
			return "error: " + err.Error() + "\nhint: " + h
		}
	}
	return "error: " + err.Error()
}

// Failure is a command's error as ErrorText shows it, so a caller that
// prints errors verbatim prints that.
type Failure struct{ Err error }

func (f *Failure) Error() string { return ErrorText(f.Err) }
func (f *Failure) Unwrap() error { return f.Err }

// Report returns err as a *Failure (nil stays nil).
func Report(err error) error {
	if err == nil {
		return nil
	}
	var f *Failure
	if errors.As(err, &f) {
		return err
	}
	return &Failure{Err: err}
}

// scrub returns err with every secret replaced, so a message that quotes a
// credential (a KMS error echoing what it was sent) never prints it.
func scrub(err error, secrets []string) error {
	if err == nil || len(secrets) == 0 {
		return err
	}
	var ae *APIError
	if errors.As(err, &ae) {
		c := *ae
		c.Detail = scrubString(c.Detail, secrets)
		c.Parameters = make([]any, len(ae.Parameters))
		for i, p := range ae.Parameters {
			c.Parameters[i] = p
			if s := fmt.Sprint(p); scrubString(s, secrets) != s {
				c.Parameters[i] = scrubString(s, secrets)
			}
		}
		return &c
	}
	if s := err.Error(); scrubString(s, secrets) != s {
		return errors.New(scrubString(s, secrets))
	}
	return err
}

func scrubString(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

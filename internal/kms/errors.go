package kms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
)

// Sentinels for errors.Is. Every *Error matches exactly one of ErrInvalid or
// ErrUnreachable, and also the sentinel of its own reason (ErrKeyDisabled…).
// ErrDecrypt is separate: the key is fine, the ciphertext or aad is not.
var (
	ErrInvalid     = errors.New("kms: key is invalid")
	ErrUnreachable = errors.New("kms: key service unreachable")
	ErrDecrypt     = errors.New("kms: ciphertext failed authentication (altered, or wrong associated data)")

	ErrCredentialsRejected = reasonSentinel(ReasonCredentialsRejected)
	ErrPermissionDenied    = reasonSentinel(ReasonPermissionDenied)
	ErrKeyDisabled         = reasonSentinel(ReasonKeyDisabled)
	ErrKeyDeleted          = reasonSentinel(ReasonKeyDeleted)
	ErrKeyPendingDeletion  = reasonSentinel(ReasonKeyPendingDeletion)
	ErrKeyExpired          = reasonSentinel(ReasonKeyExpired)
	ErrKeyNotYetActive     = reasonSentinel(ReasonKeyNotYetActive)
	ErrWrongKeyType        = reasonSentinel(ReasonWrongKeyType)
	ErrKeyNotFound         = reasonSentinel(ReasonKeyNotFound)
	ErrKeyMalformed        = reasonSentinel(ReasonKeyMalformed)
	ErrNetwork             = reasonSentinel(ReasonNetwork)
	ErrTimeout             = reasonSentinel(ReasonTimeout)
	ErrThrottled           = reasonSentinel(ReasonThrottled)
	ErrServerError         = reasonSentinel(ReasonServerError)
)

// reasonError is the sentinel type for one reason; *Error.Is matches it.
type reasonError struct{ reason Reason }

func (e *reasonError) Error() string { return "kms: " + string(e.reason) }

func reasonSentinel(r Reason) error { return &reasonError{reason: r} }

// Error is a classified failure of a KMS call. Providers return it (or wrap
// it) so callers can branch on errors.Is(err, kms.ErrInvalid),
// errors.Is(err, kms.ErrKeyDisabled), or errors.As(err, &*kms.Error).
type Error struct {
	Op     string // "wrap", "unwrap", "check", "describe"...
	Key    KeyRef
	Reason Reason
	// Detail explains the cause in words; it never contains secrets.
	Detail string
	// Err is the underlying cause, if any. Providers must make sure it
	// carries no secret either.
	Err error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("kms %s %s: %s (%s)", e.Op, e.Key, e.Reason, e.Reason.Validity())
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches the class sentinel and the reason sentinel.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrInvalid:
		return e.Reason.Validity() == Invalid
	case ErrUnreachable:
		return e.Reason.Validity() == Unreachable
	}
	if re, ok := target.(*reasonError); ok {
		return re.reason == e.Reason
	}
	return false
}

// Validity is the class of the failure.
func (e *Error) Validity() Validity { return e.Reason.Validity() }

// ReasonOf classifies any error returned by a provider. Errors that are not
// *Error are classified by their shape: context deadlines are timeouts,
// network errors are network errors, anything else is a server error.
func ReasonOf(err error) Reason {
	var ke *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ke):
		return ke.Reason
	case errors.Is(err, context.DeadlineExceeded), os.IsTimeout(err):
		return ReasonTimeout
	case errors.Is(err, context.Canceled):
		return ReasonTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) {
		if ne.Timeout() {
			return ReasonTimeout
		}
		return ReasonNetwork
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return ReasonNetwork
	}
	return ReasonServerError
}

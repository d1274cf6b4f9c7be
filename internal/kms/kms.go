// Package kms defines the contract between cmkdb and a key management
// service that holds a customer master key (CMK).
//
// Every provider — the local key file, AWS KMS, Azure Key Vault, Google Cloud
// KMS, Vault Transit, KMIP, PKCS#11, and the control plane's key service as
// seen from a node — implements Provider. cmkdb never sees the CMK itself: it
// asks the provider to wrap and unwrap its own keys under it, bound to
// associated data, and to check whether the key is still usable.
//
// The package has no provider code; providers live in sub-packages, one per
// package, and the conformance suite every provider must pass lives in
// kmstest.
package kms

import (
	"context"
	"fmt"
	"time"
)

// Provider is the one contract every KMS provider implements.
//
// Implementations must be safe for concurrent use, must honour ctx
// cancellation and deadlines on every call, and must never include key
// material or credentials in errors.
type Provider interface {
	// Wrap encrypts plaintext (a key) under the provider's current CMK
	// version, binding aad to the result: Unwrap with any other aad fails.
	Wrap(ctx context.Context, plaintext, aad []byte) (Wrapped, error)

	// Unwrap reverses Wrap. It uses the CMK version recorded in w, so keys
	// wrapped before a CMK rotation keep unwrapping. A ciphertext that was
	// altered, or aad that differs from the one given to Wrap, yields an
	// error matching ErrDecrypt.
	Unwrap(ctx context.Context, w Wrapped, aad []byte) ([]byte, error)

	// Check asks the KMS whether the CMK is usable now and classifies the
	// answer as VALID, INVALID or UNREACHABLE with a precise reason. It
	// never returns an error: an error is itself a classified answer.
	Check(ctx context.Context) Status
}

// KeyRef names a customer master key version without revealing anything
// secret. It is recorded next to every wrapped key.
type KeyRef struct {
	// Provider is the provider kind: "local", "aws", "azure", "gcp",
	// "vault", "kmip", "pkcs11", "controlplane".
	Provider string `json:"provider"`
	// KeyID is the provider's identifier of the key (ARN, key URL, key
	// resource name, file path...).
	KeyID string `json:"keyId"`
	// KeyVersion is the key version used, or "" for providers whose
	// ciphertext carries the version itself.
	KeyVersion string `json:"keyVersion,omitempty"`
}

func (r KeyRef) String() string {
	if r.KeyVersion == "" {
		return r.Provider + ":" + r.KeyID
	}
	return r.Provider + ":" + r.KeyID + "@" + r.KeyVersion
}

// Wrapped is a key encrypted under a CMK version.
type Wrapped struct {
	Key        KeyRef `json:"key"`
	Ciphertext []byte `json:"ciphertext"`
}

// Validity is the outcome class of a key check.
type Validity int

const (
	// Valid: the key answers wrap and unwrap.
	Valid Validity = iota + 1
	// Invalid: the KMS answered and the key cannot be used (revoked,
	// disabled, deleted, wrong credentials...). Clusters using it are
	// disabled.
	Invalid
	// Unreachable: the KMS did not give an answer about the key (network,
	// timeout, throttling, server error). Nothing is shut down.
	Unreachable
)

func (v Validity) String() string {
	switch v {
	case Valid:
		return "VALID"
	case Invalid:
		return "INVALID"
	case Unreachable:
		return "UNREACHABLE"
	}
	return fmt.Sprintf("Validity(%d)", int(v))
}

// Reason is the precise cause behind an Invalid or Unreachable answer.
type Reason string

// Reasons that make a key INVALID.
const (
	ReasonCredentialsRejected Reason = "CREDENTIALS_REJECTED"
	ReasonPermissionDenied    Reason = "PERMISSION_DENIED"
	ReasonKeyDisabled         Reason = "KEY_DISABLED"
	ReasonKeyDeleted          Reason = "KEY_DELETED"
	ReasonKeyPendingDeletion  Reason = "KEY_PENDING_DELETION"
	ReasonKeyExpired          Reason = "KEY_EXPIRED"
	ReasonKeyNotYetActive     Reason = "KEY_NOT_YET_ACTIVE"
	ReasonWrongKeyType        Reason = "WRONG_KEY_TYPE"
	ReasonKeyNotFound         Reason = "KEY_NOT_FOUND"
	ReasonKeyMalformed        Reason = "KEY_MALFORMED"
)

// Reasons that make a key UNREACHABLE.
const (
	ReasonNetwork     Reason = "NETWORK_ERROR"
	ReasonTimeout     Reason = "TIMEOUT"
	ReasonThrottled   Reason = "THROTTLED"
	ReasonServerError Reason = "SERVER_ERROR"
)

// Validity returns the class a reason belongs to. Unknown reasons are
// treated as Unreachable: when in doubt, cmkdb does not shut a cluster down.
func (r Reason) Validity() Validity {
	switch r {
	case ReasonCredentialsRejected, ReasonPermissionDenied, ReasonKeyDisabled,
		ReasonKeyDeleted, ReasonKeyPendingDeletion, ReasonKeyExpired,
		ReasonKeyNotYetActive, ReasonWrongKeyType, ReasonKeyNotFound,
		ReasonKeyMalformed:
		return Invalid
	}
	return Unreachable
}

// Status is the result of a key check.
type Status struct {
	Validity Validity
	// Reason is empty when Validity is Valid.
	Reason Reason
	// Detail is a human-readable explanation, free of secrets.
	Detail string
	// Key is the CMK version the provider wraps with now, when known.
	Key KeyRef
	// LastRotated is when the current key version was created, when the
	// provider knows it (for the rotation-age alert).
	LastRotated time.Time
	CheckedAt   time.Time
}

// Err returns nil for a valid status and the equivalent *Error otherwise.
func (s Status) Err() error {
	if s.Validity == Valid {
		return nil
	}
	return &Error{Op: "check", Key: s.Key, Reason: s.Reason, Detail: s.Detail}
}

// StatusFromError classifies err (as returned by a provider call) into a
// Status. A nil error is Valid.
func StatusFromError(key KeyRef, err error) Status {
	now := time.Now().UTC()
	if err == nil {
		return Status{Validity: Valid, Key: key, CheckedAt: now}
	}
	reason, detail := ReasonOf(err), err.Error()
	return Status{Validity: reason.Validity(), Reason: reason, Detail: detail, Key: key, CheckedAt: now}
}

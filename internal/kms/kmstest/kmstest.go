// Package kmstest is the conformance suite every kms.Provider must pass, so
// that the key lifecycle (checks, disabling, rotation, restore) can treat the
// local key file, the cloud KMSs, Vault, KMIP and PKCS#11 exactly alike.
//
// A provider's test supplies a Harness that can create a key and switch it
// between states; Run then drives the provider only through kms.Provider.
package kmstest

import (
	"fmt"
	"testing"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// Harness gives the suite a key it controls. Run never runs subtests in
// parallel, so a harness may keep one "current key": SetState and RotateKey
// act on the key behind the most recent Provider call.
type Harness interface {
	// Provider returns a provider for a fresh, enabled key.
	Provider(t testing.TB) kms.Provider
	// SetState puts the harness's key into a state; it returns false if the
	// provider cannot express it, and the subtest is skipped. Every harness
	// must support going back to Enabled from any state it supports, keeping
	// the key's material: that is the "restore without data loss" promise.
	SetState(t testing.TB, s State) bool
	// RotateKey creates a new CMK version (false if unsupported).
	RotateKey(t testing.TB) bool
}

// SecretHarness is implemented by harnesses that can see the CMK material
// (local file, test servers). The suite then also checks that no error or
// status detail ever carries it.
type SecretHarness interface {
	Harness
	// Secrets returns the material of every version of the current key.
	Secrets(t testing.TB) [][]byte
}

// State is a condition of the key, or of the KMS in front of it, that a check
// must classify. Each state has exactly one expected kms.Reason.
type State int

const (
	Enabled State = iota + 1
	Disabled
	Deleted
	PendingDeletion
	Expired
	NotYetActive
	PermissionDenied
	CredentialsRejected
	WrongKeyType
	NotFound
	Malformed
	// Unreachable: the endpoint cannot be reached at all (DNS failure,
	// connection refused).
	Unreachable
	Throttled
	ServerError
	// Timeout: the KMS does not answer before the caller's deadline. The
	// suite gives such calls a short deadline; the harness must make the
	// provider hang (not fail fast) until it passes.
	Timeout
)

var stateInfo = map[State]struct {
	name   string
	reason kms.Reason
}{
	Enabled:             {"Enabled", ""},
	Disabled:            {"Disabled", kms.ReasonKeyDisabled},
	Deleted:             {"Deleted", kms.ReasonKeyDeleted},
	PendingDeletion:     {"PendingDeletion", kms.ReasonKeyPendingDeletion},
	Expired:             {"Expired", kms.ReasonKeyExpired},
	NotYetActive:        {"NotYetActive", kms.ReasonKeyNotYetActive},
	PermissionDenied:    {"PermissionDenied", kms.ReasonPermissionDenied},
	CredentialsRejected: {"CredentialsRejected", kms.ReasonCredentialsRejected},
	WrongKeyType:        {"WrongKeyType", kms.ReasonWrongKeyType},
	NotFound:            {"NotFound", kms.ReasonKeyNotFound},
	Malformed:           {"Malformed", kms.ReasonKeyMalformed},
	Unreachable:         {"Unreachable", kms.ReasonNetwork},
	Throttled:           {"Throttled", kms.ReasonThrottled},
	ServerError:         {"ServerError", kms.ReasonServerError},
	Timeout:             {"Timeout", kms.ReasonTimeout},
}

func (s State) String() string {
	if i, ok := stateInfo[s]; ok {
		return i.name
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Reason is the reason a check must report in this state ("" for Enabled).
func (s State) Reason() kms.Reason { return stateInfo[s].reason }

// Validity is the class a check must report in this state.
func (s State) Validity() kms.Validity {
	if s == Enabled {
		return kms.Valid
	}
	return s.Reason().Validity()
}

// States lists every state but Enabled, in declaration order.
func States() []State {
	var out []State
	for s := Enabled + 1; s <= Timeout; s++ {
		out = append(out, s)
	}
	return out
}

var sentinels = map[kms.Reason]error{
	kms.ReasonCredentialsRejected: kms.ErrCredentialsRejected,
	kms.ReasonPermissionDenied:    kms.ErrPermissionDenied,
	kms.ReasonKeyDisabled:         kms.ErrKeyDisabled,
	kms.ReasonKeyDeleted:          kms.ErrKeyDeleted,
	kms.ReasonKeyPendingDeletion:  kms.ErrKeyPendingDeletion,
	kms.ReasonKeyExpired:          kms.ErrKeyExpired,
	kms.ReasonKeyNotYetActive:     kms.ErrKeyNotYetActive,
	kms.ReasonWrongKeyType:        kms.ErrWrongKeyType,
	kms.ReasonKeyNotFound:         kms.ErrKeyNotFound,
	kms.ReasonKeyMalformed:        kms.ErrKeyMalformed,
	kms.ReasonNetwork:             kms.ErrNetwork,
	kms.ReasonTimeout:             kms.ErrTimeout,
	kms.ReasonThrottled:           kms.ErrThrottled,
	kms.ReasonServerError:         kms.ErrServerError,
}

// Sentinel returns the errors.Is sentinel of a reason (kms.ErrKeyDisabled
// for kms.ReasonKeyDisabled...), or nil for an unknown reason.
func Sentinel(r kms.Reason) error { return sentinels[r] }

// ClassSentinel returns kms.ErrInvalid or kms.ErrUnreachable.
func ClassSentinel(v kms.Validity) error {
	switch v {
	case kms.Invalid:
		return kms.ErrInvalid
	case kms.Unreachable:
		return kms.ErrUnreachable
	}
	return nil
}

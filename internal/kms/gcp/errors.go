package gcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// Atlas error codes (atlas-ear-api.md) reported in Detail.
const (
	AtlasKeyVersionDestroyScheduled  = "GOOGLE_CLOUD_KMS_KEY_VERSION_DESTROY_SCHEDULED"
	AtlasKeyVersionDestroyed         = "GOOGLE_CLOUD_KMS_KEY_VERSION_DESTROYED"
	AtlasKeyVersionDisabled          = "GOOGLE_CLOUD_KMS_KEY_VERSION_DISABLED"
	AtlasKeyVersionNotFound          = "GOOGLE_CLOUD_KMS_KEY_VERSION_NOT_FOUND"
	AtlasKeyVersionPendingGeneration = "GOOGLE_CLOUD_KMS_KEY_VERSION_PENDING_GENERATION"
	AtlasInvalidCredentials          = "INVALID_GOOGLE_CLOUD_CREDENTIALS"
	AtlasNoPermission                = "NO_PERMISSION_TO_ENCRYPT_DECRYPT"
)

// AtlasCode is the Atlas error code for a reason, or "" when Atlas has
// none for Google Cloud KMS.
func AtlasCode(r kms.Reason) string {
	switch r {
	case kms.ReasonKeyDisabled:
		return AtlasKeyVersionDisabled
	case kms.ReasonKeyDeleted:
		return AtlasKeyVersionDestroyed
	case kms.ReasonKeyPendingDeletion:
		return AtlasKeyVersionDestroyScheduled
	case kms.ReasonKeyNotYetActive:
		return AtlasKeyVersionPendingGeneration
	case kms.ReasonKeyNotFound:
		return AtlasKeyVersionNotFound
	case kms.ReasonCredentialsRejected:
		return AtlasInvalidCredentials
	case kms.ReasonPermissionDenied:
		return AtlasNoPermission
	}
	return ""
}

// fail builds a classified error; the Atlas code, if any, leads the detail.
func (p *Provider) fail(op string, ref kms.KeyRef, r kms.Reason, detail string) *kms.Error {
	if code := AtlasCode(r); code != "" {
		detail = code + ": " + detail
	}
	return &kms.Error{Op: op, Key: ref, Reason: r, Detail: detail}
}

// ctxError classifies a dead context: never a verdict on the key.
func (p *Provider) ctxError(op string, ref kms.KeyRef, err error) *kms.Error {
	return &kms.Error{Op: op, Key: ref, Reason: kms.ReasonTimeout,
		Detail: "the call's context ended before Cloud KMS answered", Err: err}
}

// integrityError is a response that failed CRC32C or name verification:
// corrupted in transit, so transient.
func (p *Provider) integrityError(op string, ref kms.KeyRef, what string) *kms.Error {
	return p.fail(op, ref, kms.ReasonServerError, "Cloud KMS response failed integrity verification: "+what)
}

// stateReason maps a version state that is not ENABLED to a reason.
func stateReason(s kmspb.CryptoKeyVersion_CryptoKeyVersionState) (kms.Reason, bool) {
	switch s {
	case kmspb.CryptoKeyVersion_ENABLED:
		return "", false
	case kmspb.CryptoKeyVersion_DISABLED:
		return kms.ReasonKeyDisabled, true
	case kmspb.CryptoKeyVersion_DESTROYED:
		return kms.ReasonKeyDeleted, true
	case kmspb.CryptoKeyVersion_DESTROY_SCHEDULED:
		return kms.ReasonKeyPendingDeletion, true
	case kmspb.CryptoKeyVersion_PENDING_GENERATION, kmspb.CryptoKeyVersion_PENDING_IMPORT:
		return kms.ReasonKeyNotYetActive, true
	case kmspb.CryptoKeyVersion_IMPORT_FAILED, kmspb.CryptoKeyVersion_GENERATION_FAILED:
		return kms.ReasonKeyMalformed, true
	case kmspb.CryptoKeyVersion_PENDING_EXTERNAL_DESTRUCTION, kmspb.CryptoKeyVersion_EXTERNAL_DESTRUCTION_FAILED:
		return kms.ReasonKeyDeleted, true
	}
	// Unknown states: not a verdict, so no shutdown.
	return kms.ReasonServerError, true
}

// stateFromMessage reads the state out of Cloud KMS's FAILED_PRECONDITION
// message "…/cryptoKeyVersions/N is not enabled, current state is: X.".
func stateFromMessage(msg string) (kmspb.CryptoKeyVersion_CryptoKeyVersionState, bool) {
	_, rest, ok := strings.Cut(msg, "current state is: ")
	if !ok {
		return 0, false
	}
	name := strings.TrimRight(strings.Fields(rest + " ")[0], ".")
	v, ok := kmspb.CryptoKeyVersion_CryptoKeyVersionState_value[name]
	return kmspb.CryptoKeyVersion_CryptoKeyVersionState(v), ok
}

// classify turns a client error into a *kms.Error. Only the gRPC code and
// the service's message are kept, never the client error itself, so
// nothing of the request or the credentials can leak through it.
// FAILED_PRECONDITION and INVALID_ARGUMENT are left to the caller when
// they need a look at the key (see diagnose).
func (p *Provider) classify(ctx context.Context, op string, ref kms.KeyRef, err error) *kms.Error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return p.ctxError(op, ref, ctxErr)
	}
	st, ok := status.FromError(err)
	if !ok {
		return p.classifyTransport(op, ref, err)
	}
	msg := sanitize(st.Message())
	detail := "Cloud KMS answered " + st.Code().String()
	if msg != "" {
		detail += ": " + msg
	}
	switch st.Code() {
	case codes.PermissionDenied:
		return p.fail(op, ref, kms.ReasonPermissionDenied, detail)
	case codes.Unauthenticated:
		return p.fail(op, ref, kms.ReasonCredentialsRejected, detail)
	case codes.NotFound:
		return p.fail(op, ref, kms.ReasonKeyNotFound, detail)
	case codes.Unavailable:
		return p.fail(op, ref, kms.ReasonNetwork, detail)
	case codes.DeadlineExceeded, codes.Canceled:
		return p.fail(op, ref, kms.ReasonTimeout, detail)
	case codes.ResourceExhausted:
		return p.fail(op, ref, kms.ReasonThrottled, detail)
	case codes.FailedPrecondition:
		if s, ok := stateFromMessage(msg); ok {
			if r, bad := stateReason(s); bad {
				return p.fail(op, ref, r, detail)
			}
		}
	}
	// Internal, Unknown, DataLoss, and anything that says nothing
	// definite about the key: when in doubt, do not shut clusters down.
	return p.fail(op, ref, kms.ReasonServerError, detail)
}

// classifyTransport handles errors that are not gRPC statuses (rare: the
// client turns transport failures into UNAVAILABLE).
func (p *Provider) classifyTransport(op string, ref kms.KeyRef, err error) *kms.Error {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), os.IsTimeout(err), errors.As(err, &ne) && ne.Timeout():
		return p.fail(op, ref, kms.ReasonTimeout, "Cloud KMS did not answer in time")
	case errors.As(err, &ne):
		return p.fail(op, ref, kms.ReasonNetwork, "network error talking to Cloud KMS")
	}
	return p.fail(op, ref, kms.ReasonServerError, "unexpected error from the Cloud KMS client: "+errShape(err))
}

// isCode reports whether err is a gRPC status with code c.
func isCode(err error, c codes.Code) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == c
}

// isChecksumError reports Cloud KMS's INVALID_ARGUMENT for a request whose
// CRC32C did not match: the request was damaged on the way, a transient
// fault, not bad ciphertext.
func isChecksumError(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.InvalidArgument && strings.Contains(st.Message(), "crc32c")
}

// sanitize bounds a service message and strips control characters.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}

// errShape names an unexpected error's type, not its text: the text of an
// unknown error could carry anything.
func errShape(err error) string { return fmt.Sprintf("%T", err) }

package apiauth

import (
	"errors"
	"fmt"
)

// Errors returned by Authenticate. Every one of them means "answer 401 with a
// Challenge"; callers branch only on ErrStaleNonce (to set stale=true) and,
// for metrics, on the rest. Messages never carry key material.
var (
	// ErrNoCredentials: the request has no Digest Authorization header.
	ErrNoCredentials = errors.New("apiauth: no digest credentials")

	// ErrBadCredentials: the credentials were present but not accepted. A
	// wrong private key and an unknown public key both yield exactly this
	// value so that callers cannot tell them apart.
	ErrBadCredentials = errors.New("apiauth: invalid credentials")

	// ErrStaleNonce: the digest was correct but its nonce has expired; the
	// client should retry with the fresh nonce of a stale=true challenge.
	ErrStaleNonce = errors.New("apiauth: stale nonce")

	// ErrMalformedCredentials: the header could not be parsed or lacks a
	// required parameter. It wraps ErrBadCredentials.
	ErrMalformedCredentials = fmt.Errorf("%w: malformed digest header", ErrBadCredentials)

	// ErrURIMismatch: the digest covers a different URI than the one
	// requested, so it must not authorize this request. It wraps
	// ErrBadCredentials.
	ErrURIMismatch = fmt.Errorf("%w: digest uri does not match request", ErrBadCredentials)

	// ErrReplayedNonce: the nonce count was not higher than one already
	// accepted for this nonce. It wraps ErrBadCredentials.
	ErrReplayedNonce = fmt.Errorf("%w: nonce count replayed", ErrBadCredentials)
)

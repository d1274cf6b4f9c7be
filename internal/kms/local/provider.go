// Package local is the embedded default KMS provider: a customer master key
// kept in a key file on local disk, for development, first runs and `cmkdb
// up`. It behaves like a real KMS — versions, rotation, disable, soft delete,
// validity window, classified failures — so the whole key lifecycle can be
// exercised without a cloud account.
//
// The key file holds the CMK in the clear (mode 0600). That is what makes it
// a development provider: whoever can read the file holds the key.
//
// The provider reads the file on every call, so an admin operation run from
// another process (`cmkdb kms local disable`) takes effect at the next call
// or check. KMS calls are rare (one per node start and one per check), so
// this costs nothing that matters.
//
// Unwrap names its key through Wrapped.Key. A record that names another
// provider, another key id, or a version the file does not hold fails with
// KEY_NOT_FOUND (INVALID): the key it needs is not here. Tampered ciphertext
// or a different aad fails with kms.ErrDecrypt.
package local

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// ProviderName is KeyRef.Provider for keys of this package.
const ProviderName = "local"

const (
	nonceSize = 12 // the GCM standard nonce: random 96 bits
	tagSize   = 16
	// aadDomain keeps a local-provider wrap from ever verifying as some
	// other use of the same key.
	aadDomain = "cmkdb/kms/local/wrap/v1"
	probeAAD  = "cmkdb/kms/local/check-probe"
)

// Provider wraps keys under the CMK in one key file. It is safe for
// concurrent use: it holds no key state between calls.
type Provider struct {
	path string
	// readFile and now are seams for tests that inject I/O faults and
	// hangs, or move the clock.
	readFile func(ctx context.Context, path string) ([]byte, error)
	now      func() time.Time
	// last is the key last read from the file, so errors raised when the
	// file cannot be read still name the key the node was using.
	last atomic.Pointer[kms.KeyRef]
}

var _ kms.Provider = (*Provider)(nil)

// Open returns a provider for the key file at path. It does not read the
// file: a missing or unusable key is a classified answer of Check, Wrap and
// Unwrap (the lifecycle must see KEY_NOT_FOUND, not fail to start).
func Open(path string) (*Provider, error) {
	if path == "" {
		return nil, errors.New("local kms: no key file path")
	}
	// Absolute, so a later chdir cannot point the provider at another file.
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("local kms: key file path %s: %w", path, err)
	}
	return &Provider{
		path:     abs,
		readFile: func(_ context.Context, p string) ([]byte, error) { return readKeyFile(p) },
		now:      time.Now,
	}, nil
}

// Path is the absolute path of the key file.
func (p *Provider) Path() string { return p.path }

func (p *Provider) String() string { return "local key file " + p.path }

func (p *Provider) lastRef() kms.KeyRef {
	if r := p.last.Load(); r != nil {
		return *r
	}
	return kms.KeyRef{Provider: ProviderName}
}

func ref(f *keyFile, version int) kms.KeyRef {
	return kms.KeyRef{Provider: ProviderName, KeyID: f.KeyID, KeyVersion: strconv.Itoa(version)}
}

func ctxError(op string, key kms.KeyRef, err error) *kms.Error {
	return &kms.Error{Op: op, Key: key, Reason: kms.ReasonTimeout, Detail: "the caller gave up before the key file was used", Err: err}
}

// load reads and verifies the key file. Every failure is classified; the
// caller wipes the returned file.
func (p *Provider) load(ctx context.Context, op string) (*keyFile, *kms.Error) {
	if err := ctx.Err(); err != nil {
		return nil, ctxError(op, p.lastRef(), err)
	}
	data, err := p.readFile(ctx, p.path)
	defer clear(data)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(op, p.lastRef(), ctx.Err())
		}
		return nil, classifyRead(op, p.lastRef(), p.path, err)
	}
	f, err := parseKeyFile(data)
	if err != nil {
		return nil, &kms.Error{Op: op, Key: p.lastRef(), Reason: kms.ReasonKeyMalformed, Detail: "key file " + p.path + " cannot be used", Err: err}
	}
	r := ref(f, f.current().Version)
	p.last.Store(&r)
	// The read may have been slow; do no crypto for a caller who left.
	if err := ctx.Err(); err != nil {
		f.wipe()
		return nil, ctxError(op, r, err)
	}
	return f, nil
}

// classifyRead maps file-system errors to reasons. Anything not understood
// is SERVER_ERROR (UNREACHABLE): when in doubt, cmkdb does not shut a cluster
// down.
func classifyRead(op string, key kms.KeyRef, path string, err error) *kms.Error {
	e := &kms.Error{Op: op, Key: key, Err: err}
	switch {
	case errors.Is(err, kms.ErrKeyMalformed), errors.Is(err, errNotRegular):
		e.Reason, e.Detail = kms.ReasonKeyMalformed, "no usable key file at "+path
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		e.Reason, e.Detail = kms.ReasonKeyNotFound, "no key file at "+path
	case errors.Is(err, fs.ErrPermission):
		e.Reason, e.Detail = kms.ReasonPermissionDenied, "this process may not read the key file "+path
	default:
		e.Reason, e.Detail = kms.ReasonServerError, "reading the key file "+path+" failed"
	}
	return e
}

// usable is the key-state half of every call.
func (p *Provider) usable(op string, f *keyFile, key kms.KeyRef) *kms.Error {
	e := &kms.Error{Op: op, Key: key}
	now := p.now()
	switch {
	case f.State == StateDisabled:
		e.Reason, e.Detail = kms.ReasonKeyDisabled, "the key is disabled; enable it to use it"
	case f.State == StateDeleted:
		e.Reason, e.Detail = kms.ReasonKeyDeleted, "the key is deleted; restore it to use it"
	case f.State == StatePendingDeletion:
		e.Reason, e.Detail = kms.ReasonKeyPendingDeletion, "the key is scheduled for deletion; restore it to use it"
	case f.NotBefore != nil && now.Before(*f.NotBefore):
		e.Reason, e.Detail = kms.ReasonKeyNotYetActive, "the key is not active before "+f.NotBefore.Format(time.RFC3339)
	case f.ExpiresAt != nil && !now.Before(*f.ExpiresAt):
		e.Reason, e.Detail = kms.ReasonKeyExpired, "the key expired at "+f.ExpiresAt.Format(time.RFC3339)
	default:
		return nil
	}
	return e
}

// Wrap encrypts plaintext under the current key version with AES-256-GCM.
// The output is nonce || ciphertext || tag.
func (p *Provider) Wrap(ctx context.Context, plaintext, aad []byte) (kms.Wrapped, error) {
	f, kerr := p.load(ctx, "wrap")
	if kerr != nil {
		return kms.Wrapped{}, kerr
	}
	defer f.wipe()
	v := f.current()
	key := ref(f, v.Version)
	if kerr := p.usable("wrap", f, key); kerr != nil {
		return kms.Wrapped{}, kerr
	}
	ct, err := sealKey(v.Material, f.KeyID, v.Version, plaintext, aad)
	if err != nil {
		return kms.Wrapped{}, &kms.Error{Op: "wrap", Key: key, Reason: kms.ReasonServerError, Detail: "encryption failed", Err: err}
	}
	return kms.Wrapped{Key: key, Ciphertext: ct}, nil
}

// Unwrap decrypts w with the version named in w.Key, so keys wrapped before
// a rotation keep unwrapping.
func (p *Provider) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	f, kerr := p.load(ctx, "unwrap")
	if kerr != nil {
		return nil, kerr
	}
	defer f.wipe()
	if kerr := p.usable("unwrap", f, w.Key); kerr != nil {
		return nil, kerr
	}
	notFound := func(detail string) error {
		return &kms.Error{Op: "unwrap", Key: w.Key, Reason: kms.ReasonKeyNotFound, Detail: detail}
	}
	if w.Key.Provider != ProviderName {
		return nil, notFound(fmt.Sprintf("the key was wrapped by provider %q, not %q", truncate(w.Key.Provider), ProviderName))
	}
	if w.Key.KeyID != f.KeyID {
		return nil, notFound(fmt.Sprintf("the key was wrapped under key %q but %s holds key %s", truncate(w.Key.KeyID), p.path, f.KeyID))
	}
	n, err := strconv.Atoi(w.Key.KeyVersion)
	v := f.version(n)
	if err != nil || v == nil {
		return nil, notFound(fmt.Sprintf("key version %q is not in %s", truncate(w.Key.KeyVersion), p.path))
	}
	pt, err := openKey(v.Material, f.KeyID, v.Version, w.Ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("kms unwrap %s: %w", w.Key, kms.ErrDecrypt)
	}
	return pt, nil
}

// Check verifies the key file and state, then wraps and unwraps a random
// probe: a key that reads fine but cannot encrypt is not valid.
func (p *Provider) Check(ctx context.Context) kms.Status {
	now := p.now().UTC()
	f, kerr := p.load(ctx, "check")
	if kerr != nil {
		return status(kerr, time.Time{}, now)
	}
	defer f.wipe()
	v := f.current()
	key := ref(f, v.Version)
	if kerr := p.usable("check", f, key); kerr != nil {
		return status(kerr, v.CreatedAt, now)
	}
	probe := make([]byte, materialSize)
	rand.Read(probe)
	defer clear(probe)
	ct, err := sealKey(v.Material, f.KeyID, v.Version, probe, []byte(probeAAD))
	var back []byte
	if err == nil {
		back, err = openKey(v.Material, f.KeyID, v.Version, ct, []byte(probeAAD))
		defer clear(back)
	}
	if err == nil && !bytes.Equal(back, probe) {
		err = errors.New("probe came back different")
	}
	if err != nil {
		return status(&kms.Error{Op: "check", Key: key, Reason: kms.ReasonServerError, Detail: "wrap/unwrap probe failed", Err: err}, v.CreatedAt, now)
	}
	return kms.Status{Validity: kms.Valid, Key: key, LastRotated: v.CreatedAt, CheckedAt: now}
}

func status(e *kms.Error, lastRotated, now time.Time) kms.Status {
	return kms.Status{
		Validity:    e.Validity(),
		Reason:      e.Reason,
		Detail:      e.Error(),
		Key:         e.Key,
		LastRotated: lastRotated,
		CheckedAt:   now,
	}
}

// additionalData binds a ciphertext to this provider, this key, this version
// and the caller's aad. Every part is length-prefixed so bytes cannot move
// from one part to the next (key "ab" + aad "c" vs key "a" + aad "bc").
func additionalData(keyID string, version int, aad []byte) []byte {
	ad := make([]byte, 0, 3*8+len(aadDomain)+len(keyID)+8+len(aad))
	ad = binary.BigEndian.AppendUint64(ad, uint64(len(aadDomain)))
	ad = append(ad, aadDomain...)
	ad = binary.BigEndian.AppendUint64(ad, uint64(len(keyID)))
	ad = append(ad, keyID...)
	ad = binary.BigEndian.AppendUint64(ad, uint64(version))
	ad = binary.BigEndian.AppendUint64(ad, uint64(len(aad)))
	return append(ad, aad...)
}

func newGCM(material []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(material)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func sealKey(material []byte, keyID string, version int, plaintext, aad []byte) ([]byte, error) {
	gcm, err := newGCM(material)
	if err != nil {
		return nil, err
	}
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+tagSize)
	rand.Read(out)
	return gcm.Seal(out, out, plaintext, additionalData(keyID, version, aad)), nil
}

func openKey(material []byte, keyID string, version int, ct, aad []byte) ([]byte, error) {
	if len(ct) < nonceSize+tagSize {
		return nil, errors.New("ciphertext too short")
	}
	gcm, err := newGCM(material)
	if err != nil {
		return nil, err
	}
	return gcm.Open(nil, ct[:nonceSize], ct[nonceSize:], additionalData(keyID, version, aad))
}

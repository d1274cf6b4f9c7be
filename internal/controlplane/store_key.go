package controlplane

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"

	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/encfs"
)

// The store key file (DIR/controlplane/state/store.key, mode 0600):
//
//	magic "CMKDBSK1" | key [32] | SHA-256(magic | key) [32]
//
// The checksum lets the control plane tell a damaged key file from a key
// that does not match the state: a flipped byte is reported as damage to
// store.key itself, not as an authentication failure somewhere in the
// store. The previous release wrote the 32 key bytes alone; such a file is
// still read, and rewritten (durably) in this format the first time.
const (
	storeKeyMagic = "CMKDBSK1"
	storeKeyLen   = 32
	storeKeyFile  = len(storeKeyMagic) + storeKeyLen + sha256.Size
)

// secretKeyFile holds the control plane's store key.
const secretKeyFile = "store.key"

// storeFilesInfo is the HKDF info of the key the store's Pebble files are
// encrypted under (encfs).
//
// Why derived from the store key rather than a second key file: the store
// key already is the one secret that must be kept with the state (without it
// no value opens), so a second file would only add a way to lose the state
// (one file restored, the other not) without adding protection. Deriving
// with HKDF keeps the two uses cryptographically independent: the value
// AEAD and the file keys never share key bytes.
const storeFilesInfo = "cmkdb controlplane store files v1"

// storeFilesScope is the encfs scope of the control plane's store: bound
// into every file key, so a node's database file cannot pass for one.
const storeFilesScope = "cmkdb-controlplane-store"

// errKeyMissing is returned by readStoreKey for an absent key file.
var errKeyMissing = errors.New("store key file is missing")

// readStoreKey reads the store key at path (either format). The caller
// clears the returned key.
func readStoreKey(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &StateError{Path: path, Err: errKeyMissing}
	}
	if err != nil {
		return nil, &StateError{Path: path, Err: err}
	}
	defer clear(raw)
	switch {
	case len(raw) == storeKeyLen: // previous release: the bare key
		return bytes.Clone(raw), nil
	case len(raw) == storeKeyFile && string(raw[:len(storeKeyMagic)]) == storeKeyMagic:
		body := raw[:len(storeKeyMagic)+storeKeyLen]
		sum := sha256.Sum256(body)
		if !bytes.Equal(sum[:], raw[len(body):]) {
			return nil, &StateError{Path: path, Err: errors.New("store key file is damaged (checksum mismatch)")}
		}
		return bytes.Clone(body[len(storeKeyMagic):]), nil
	default:
		return nil, &StateError{Path: path, Err: fmt.Errorf("not a store key file (%d bytes)", len(raw))}
	}
}

// writeStoreKey writes key at path in the checked format, durably.
func writeStoreKey(path string, key []byte) error {
	raw := make([]byte, 0, storeKeyFile)
	raw = append(raw, storeKeyMagic...)
	raw = append(raw, key...)
	sum := sha256.Sum256(raw)
	raw = append(raw, sum[:]...)
	defer clear(raw)
	if err := durable.WriteFile(path, raw, 0o600); err != nil {
		return fmt.Errorf("controlplane: write store key: %w", err)
	}
	return nil
}

// upgradeStoreKey rewrites a previous release's bare key file in the
// checked format; a key already in that format is left alone.
func upgradeStoreKey(path string, key []byte) error {
	fi, err := os.Stat(path)
	if err != nil {
		return &StateError{Path: path, Err: err}
	}
	if fi.Size() == storeKeyLen {
		return writeStoreKey(path, key)
	}
	return nil
}

// newStoreKey draws a new store key and writes it at path.
func newStoreKey(path string) ([]byte, error) {
	key := make([]byte, storeKeyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := writeStoreKey(path, key); err != nil {
		clear(key)
		return nil, err
	}
	return key, nil
}

// keyAEAD is the AES-256-GCM that seals the store's values.
func keyAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	return cipher.NewGCM(block)
}

// storeFileKeys is the encfs key source of the store's files: one version,
// derived from the store key. It keeps the derived key for as long as the
// store is open (encfs asks for it at every file open).
type storeFileKeys struct{ key []byte }

var _ encfs.KeySource = (*storeFileKeys)(nil)

func newStoreFileKeys(storeKey []byte) (*storeFileKeys, error) {
	k, err := hkdf.Key(sha256.New, storeKey, nil, storeFilesInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("controlplane: derive store file key: %w", err)
	}
	return &storeFileKeys{key: k}, nil
}

func (s *storeFileKeys) CurrentKey() (uint32, []byte, error) { return 1, s.key, nil }

func (s *storeFileKeys) Key(version uint32) ([]byte, error) {
	if version != 1 {
		return nil, fmt.Errorf("store file key v%d: %w", version, encfs.ErrUnknownKeyVersion)
	}
	return s.key, nil
}

// StateError says which file or directory of the control plane's state
// cannot be read. The control plane refuses to start on it: it never
// initialises over state it cannot read.
type StateError struct {
	Path string
	Err  error
}

// ErrUnreadableState is matched (errors.Is) by every *StateError.
var ErrUnreadableState = errors.New("control plane state cannot be read")

func (e *StateError) Error() string {
	return fmt.Sprintf("controlplane: the state in %s cannot be read (%v); refusing to start rather than initialise over it: restore it from a backup, or move the control plane directory away to start afresh", e.Path, e.Err)
}

func (e *StateError) Unwrap() error { return e.Err }

func (e *StateError) Is(target error) bool { return target == ErrUnreadableState }

package controlplane

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cmkdb/cmkdb/internal/durable"
)

// store is the control plane's embedded state: one Pebble database whose
// every value is sealed with AES-256-GCM under the control plane's own key,
// with the record's key as associated data. KMS credentials, API key
// secrets and webhook secrets therefore never reach the disk in plaintext,
// and a value moved to another key fails to open. Its Pebble files are
// themselves encrypted and authenticated chunk by chunk (encfs), so damage
// anywhere in them is an error naming the file (store_open.go).
//
// Every write is synced before it returns: a state change the API
// acknowledged survives kill -9.
type store struct {
	db   *pebble.DB
	aead cipher.AEAD
	// fileKeys encrypt the Pebble files (encfs); lock is the directory
	// lock taken before the files were verified (nil for a store being
	// created). Both are released by close.
	fileKeys *storeFileKeys
	lock     *pebble.Lock
}

// orgKey is the organization record: every store has it from its creation.
const orgKey = "org"

// close closes the database, releases its directory lock and zeroes the
// file key.
func (s *store) close() error {
	err := s.db.Close()
	if s.lock != nil {
		err = errors.Join(err, s.lock.Close())
	}
	if s.fileKeys != nil {
		clear(s.fileKeys.key)
	}
	return err
}

func (s *store) seal(key string, v any) ([]byte, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	defer clear(js)
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(js)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, js, []byte(key)), nil
}

func (s *store) open(key string, sealed []byte, v any) error {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return fmt.Errorf("controlplane: record %q is truncated", key)
	}
	js, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(key))
	if err != nil {
		return fmt.Errorf("controlplane: record %q fails authentication", key)
	}
	defer clear(js)
	return json.Unmarshal(js, v)
}

// put writes records atomically and durably; a nil value deletes.
func (s *store) put(recs map[string]any) error {
	b := s.db.NewBatch()
	defer b.Close()
	for k, v := range recs {
		if v == nil {
			if err := b.Delete([]byte(k), nil); err != nil {
				return err
			}
			continue
		}
		sealed, err := s.seal(k, v)
		if err != nil {
			return err
		}
		if err := b.Set([]byte(k), sealed, nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("controlplane: commit: %w", err)
	}
	return nil
}

// get reads one record into v; found says whether it exists.
func (s *store) get(key string, v any, found *bool) error {
	val, closer, err := s.db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		*found = false
		return nil
	}
	if err != nil {
		return err
	}
	raw := bytes.Clone(val)
	closer.Close()
	*found = true
	return s.open(key, raw, v)
}

// scan calls fn for every record under prefix, in key order.
func (s *store) scan(prefix string, fn func(key string, open func(v any) error) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd([]byte(prefix))})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := string(it.Key())
		val := bytes.Clone(it.Value())
		if err := fn(k, func(v any) error { return s.open(k, val, v) }); err != nil {
			return err
		}
	}
	return it.Error()
}

func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// Blob returns the blob stored under name in dir (the control plane's
// directory), creating it with create when it does not exist and create
// is not nil (only while the state is being created: Options.OnCreate). Blobs (the control
// plane's CA key, for one) live in DIR/blobs/<name>.sealed, sealed with the
// store key, outside Pebble: a command can read them while the control
// plane runs (`cmkdb controlplane issue-node-cert`).
func Blob(dir, name string, create func() ([]byte, error)) ([]byte, error) {
	// The key is never created here: the store creates it on first run,
	// and a blob without its key is state that cannot be read.
	key, err := readStoreKey(filepath.Join(dir, "state", secretKeyFile))
	if err != nil {
		return nil, err
	}
	aead, err := keyAEAD(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	sealer := &store{aead: aead}
	path := filepath.Join(dir, "blobs", name+".sealed")
	if sealed, err := os.ReadFile(path); err == nil {
		var b []byte
		if err := sealer.open("blob/"+name, sealed, &b); err != nil {
			return nil, &StateError{Path: path, Err: err}
		}
		return b, nil
	} else if !errors.Is(err, os.ErrNotExist) || create == nil {
		return nil, &StateError{Path: path, Err: err}
	}
	b, err := create()
	if err != nil {
		return nil, err
	}
	sealed, err := sealer.seal("blob/"+name, b)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := durable.WriteFile(path, sealed, 0o600); err != nil {
		return nil, fmt.Errorf("controlplane: blob %s: %w", name, err)
	}
	return b, nil
}

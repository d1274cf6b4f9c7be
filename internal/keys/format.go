package keys

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// The keystore file:
//
//	magic "CMKDBKS1" | body length u32 LE | body (JSON, no key bytes in clear)
//	| SHA-256(magic..body) | HMAC-SHA256(mac key, magic..body)
//
// The SHA-256 lets anyone (inspect, without keys) tell accidental damage from
// a well-formed file. The HMAC, keyed from the node master key, proves the
// file was written by someone holding that key: any edit — a swapped wrapped
// key, a renamed database, a changed version — is refused on open. The
// master key's own wrapping is authenticated by the KMS, with the node id
// and master version as associated data.
const (
	ksMagic      = "CMKDBKS1"
	ksFormat     = 1
	maxBodyBytes = 64 << 20
	trailerLen   = 2 * sha256.Size
)

// Errors callers branch on.
var (
	// ErrCorrupt: the keystore file is damaged or not a keystore.
	ErrCorrupt = errors.New("keystore is damaged")
	// ErrTampered: the file is well formed but its MAC does not verify:
	// it was modified by someone without the master key.
	ErrTampered = errors.New("keystore failed authentication (modified outside cmkdb)")
	// ErrWrongKey: the CMK could not unwrap the master key: another CMK,
	// or an altered wrapped master key.
	ErrWrongKey = errors.New("the customer master key cannot unwrap this node's master key")
	// ErrExists / ErrNotFound: create over an existing keystore, open a
	// missing one.
	ErrExists   = errors.New("keystore already exists")
	ErrNotFound = errors.New("no keystore")
	// ErrClosed: keys were dropped (node disabled or closed).
	ErrClosed = errors.New("keys are not loaded (node disabled or keystore closed)")
	// ErrNoDatabase / ErrDatabaseExists for database operations.
	ErrNoDatabase     = errors.New("no such database key")
	ErrDatabaseExists = errors.New("database key already exists")
)

// body is the JSON document inside the keystore file.
type body struct {
	Format     int         `json:"format"`
	NodeID     string      `json:"nodeId"`
	Generation uint64      `json:"generation"`
	CreatedAt  time.Time   `json:"createdAt"`
	UpdatedAt  time.Time   `json:"updatedAt"`
	Master     masterEntry `json:"master"`
	Databases  []dbEntry   `json:"databases"`
	// Dropped are tombstones of dropped databases, newest last: written
	// in the same commit that destroys a database's key, so a directory
	// without a key is deleted only when its drop is on record (storage
	// quarantines any other). Bounded by maxDropped; a directory whose
	// tombstone aged out is quarantined, never deleted.
	Dropped []droppedEntry `json:"dropped,omitempty"`
	Events  []eventRecord  `json:"events,omitempty"`
}

// droppedEntry records one database drop (no key bytes: those are gone).
type droppedEntry struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

const maxDropped = 1000

type masterEntry struct {
	Version   uint32      `json:"version"`
	CreatedAt time.Time   `json:"createdAt"`
	WrappedAt time.Time   `json:"wrappedAt"`
	Wrapped   kms.Wrapped `json:"wrapped"`
}

type dbEntry struct {
	Name      string           `json:"name"`
	ID        string           `json:"id"`
	CreatedAt time.Time        `json:"createdAt"`
	Current   uint32           `json:"current"`
	Versions  []dbVersionEntry `json:"versions"`
}

type dbVersionEntry struct {
	Version   uint32    `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	// Wrapped is nonce || AES-256-GCM(master wrap key, db key) || tag.
	Wrapped []byte `json:"wrapped"`
}

// eventRecord is the keystore's own short history of key changes (no key
// bytes): what inspect shows and what an operator audits.
type eventRecord struct {
	At     time.Time `json:"at"`
	Event  string    `json:"event"`
	Detail string    `json:"detail,omitempty"`
}

const maxEvents = 100

// encodeFile frames a body and seals it with macKey.
func encodeFile(b *body, macKey []byte) ([]byte, error) {
	js, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("keystore: encode: %w", err)
	}
	out := make([]byte, 0, len(ksMagic)+4+len(js)+trailerLen)
	out = append(out, ksMagic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(js)))
	out = append(out, js...)
	sum := sha256.Sum256(out)
	out = append(out, sum[:]...)
	m := hmac.New(sha256.New, macKey)
	m.Write(out)
	return m.Sum(out), nil
}

// parseFile checks the frame and checksum and decodes the body. It does not
// authenticate (that needs the master key): callers must verifyMAC.
func parseFile(raw []byte) (*body, []byte, error) {
	if len(raw) < len(ksMagic)+4+trailerLen {
		return nil, nil, fmt.Errorf("%w: file is %d bytes, too short", ErrCorrupt, len(raw))
	}
	if string(raw[:len(ksMagic)]) != ksMagic {
		return nil, nil, fmt.Errorf("%w: not a cmkdb keystore (bad magic)", ErrCorrupt)
	}
	n := binary.LittleEndian.Uint32(raw[len(ksMagic):])
	if n > maxBodyBytes || int(n) != len(raw)-len(ksMagic)-4-trailerLen {
		return nil, nil, fmt.Errorf("%w: body length %d does not match file size %d", ErrCorrupt, n, len(raw))
	}
	signed := raw[:len(raw)-sha256.Size]
	content := signed[:len(signed)-sha256.Size]
	sum := sha256.Sum256(content)
	if !bytes.Equal(sum[:], signed[len(content):]) {
		return nil, nil, fmt.Errorf("%w: checksum mismatch (file damaged or edited)", ErrCorrupt)
	}
	var b body
	dec := json.NewDecoder(bytes.NewReader(content[len(ksMagic)+4:]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if b.Format != ksFormat {
		return nil, nil, fmt.Errorf("%w: unsupported keystore format %d (this build reads %d)", ErrCorrupt, b.Format, ksFormat)
	}
	if err := b.validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return &b, raw, nil
}

// verifyMAC authenticates the file with the key derived from the master.
func verifyMAC(raw, macKey []byte) bool {
	signed := raw[:len(raw)-sha256.Size]
	m := hmac.New(sha256.New, macKey)
	m.Write(signed)
	return hmac.Equal(m.Sum(nil), raw[len(signed):])
}

// validate checks the body's internal consistency, so later code can index
// without checking.
func (b *body) validate() error {
	if b.NodeID == "" {
		return errors.New("missing node id")
	}
	if b.Master.Version == 0 || len(b.Master.Wrapped.Ciphertext) == 0 {
		return errors.New("missing master key")
	}
	names, ids := map[string]bool{}, map[string]bool{}
	for _, d := range b.Databases {
		if d.Name == "" || d.ID == "" {
			return errors.New("database entry without name or id")
		}
		if names[d.Name] || ids[d.ID] {
			return fmt.Errorf("database %q listed twice", d.Name)
		}
		names[d.Name], ids[d.ID] = true, true
		found := false
		seen := map[uint32]bool{}
		for _, v := range d.Versions {
			if v.Version == 0 || seen[v.Version] {
				return fmt.Errorf("database %q: bad or repeated key version %d", d.Name, v.Version)
			}
			seen[v.Version] = true
			if len(v.Wrapped) != wrappedDBKeyLen {
				return fmt.Errorf("database %q key version %d: wrapped key is %d bytes", d.Name, v.Version, len(v.Wrapped))
			}
			found = found || v.Version == d.Current
		}
		if !found {
			return fmt.Errorf("database %q: current key version %d missing", d.Name, d.Current)
		}
	}
	return nil
}

package keys

import (
	"bytes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
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
//
// Body formats: 1 kept database names in the clear (and in the event
// history); 2 seals each name (sealedName: nonce | AES-256-GCM | tag under
// a key derived from the master key, the node and database ids as
// associated data) and its events name databases by id only. Both are
// read; every commit writes format 2, so a format 1 keystore is upgraded by
// its first change (and the name-bearing details of its old events are
// dropped then).
const (
	ksMagic      = "CMKDBKS1"
	ksFormatV1   = 1
	ksFormat     = 2
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
	// Name is in the clear only in format 1 and in memory; format 2 writes
	// SealedName instead.
	Name       string           `json:"name,omitempty"`
	SealedName []byte           `json:"sealedName,omitempty"`
	ID         string           `json:"id"`
	CreatedAt  time.Time        `json:"createdAt"`
	Current    uint32           `json:"current"`
	Versions   []dbVersionEntry `json:"versions"`
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
	if b.Format != ksFormat && b.Format != ksFormatV1 {
		return nil, nil, fmt.Errorf("%w: unsupported keystore format %d (this build reads %d and %d)", ErrCorrupt, b.Format, ksFormatV1, ksFormat)
	}
	if err := b.validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return &b, raw, nil
}

// namesAEAD is the cipher that seals database names: keyed by a subkey of
// the master key, like the MAC key and the database-key wrapping key, and
// independent of both. Why not the MAC key itself: one key, one use.
func namesAEAD(master []byte, nodeID string) (cipher.AEAD, error) {
	return subkeyAEAD(master, "cmkdb keystore names v1|"+nodeID)
}

func nameAAD(nodeID, dbID string) []byte {
	return []byte("cmkdb database name v1|" + nodeID + "|" + dbID)
}

// sealNames returns a copy of b as format 2 writes it: every database name
// sealed, none in the clear.
func sealNames(b *body, master []byte) (*body, error) {
	aead, err := namesAEAD(master, b.NodeID)
	if err != nil {
		return nil, err
	}
	c := *b
	c.Databases = make([]dbEntry, len(b.Databases))
	for i, d := range b.Databases {
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(d.Name)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("keystore: draw nonce: %w", err)
		}
		d.SealedName = aead.Seal(nonce, nonce, []byte(d.Name), nameAAD(b.NodeID, d.ID))
		d.Name = ""
		c.Databases[i] = d
	}
	return &c, nil
}

// openNames fills in the names of a format 2 body (authenticated already)
// and checks they are distinct.
func openNames(b *body, master []byte) error {
	names := map[string]bool{}
	if b.Format != ksFormatV1 {
		aead, err := namesAEAD(master, b.NodeID)
		if err != nil {
			return err
		}
		n := aead.NonceSize()
		for i := range b.Databases {
			d := &b.Databases[i]
			if len(d.SealedName) < n+aead.Overhead() {
				return fmt.Errorf("%w: database %s: sealed name truncated", ErrTampered, d.ID)
			}
			name, err := aead.Open(nil, d.SealedName[:n], d.SealedName[n:], nameAAD(b.NodeID, d.ID))
			if err != nil || len(name) == 0 {
				return fmt.Errorf("%w: database %s: sealed name", ErrTampered, d.ID)
			}
			d.Name, d.SealedName = string(name), nil
		}
	}
	for _, d := range b.Databases {
		if names[d.Name] {
			return fmt.Errorf("%w: database %q listed twice", ErrCorrupt, d.Name)
		}
		names[d.Name] = true
	}
	return nil
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
	ids := map[string]bool{}
	for _, d := range b.Databases {
		named := d.Name != ""
		if b.Format != ksFormatV1 {
			named = len(d.SealedName) > 0 && d.Name == ""
		}
		if !named || d.ID == "" {
			return errors.New("database entry without name or id")
		}
		if ids[d.ID] {
			return fmt.Errorf("database %s listed twice", d.ID)
		}
		ids[d.ID] = true
		found := false
		seen := map[uint32]bool{}
		for _, v := range d.Versions {
			if v.Version == 0 || seen[v.Version] {
				return fmt.Errorf("database %s: bad or repeated key version %d", d.ID, v.Version)
			}
			seen[v.Version] = true
			if len(v.Wrapped) != wrappedDBKeyLen {
				return fmt.Errorf("database %s key version %d: wrapped key is %d bytes", d.ID, v.Version, len(v.Wrapped))
			}
			found = found || v.Version == d.Current
		}
		if !found {
			return fmt.Errorf("database %s: current key version %d missing", d.ID, d.Current)
		}
	}
	return nil
}

// Package keys is a node's key hierarchy: a node master key wrapped by the
// customer master key (through a kms.Provider), and one versioned key per
// database wrapped by the master key, kept in one authenticated, durably
// written keystore file.
//
//	CMK (in the KMS) --wraps--> node master key --wraps--> database key vN
//
// Rotating the master key re-wraps the database keys only; rotating a
// database key adds a version (old files stay readable); dropping a database
// destroys all its versions (crypto-shredding). Every change is one durable
// replacement of the keystore file: a crash leaves the old or the new file.
package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/encfs"
	"github.com/cmkdb/cmkdb/internal/kms"
)

// FileName is the keystore's name inside the node directory.
const FileName = "keystore"

const (
	keyLen          = 32
	wrappedDBKeyLen = 12 + keyLen + 16
)

// Keystore is an open keystore with its keys unwrapped in memory. Its
// methods are safe for concurrent use.
type Keystore struct {
	path     string
	provider kms.Provider

	// wmu serializes changes: a change holds it from reading ks.b to
	// installing its successor, so the slow part of a master-key rotation
	// (the KMS calls, the durable write) runs without mu and readers — every
	// file open asks for a database key — are not held up by it. mu guards
	// the fields below; changes take it only to install their result.
	wmu    sync.Mutex
	mu     sync.RWMutex
	b      *body
	master []byte // nil once closed
	// dbKeys[id][version] are the unwrapped database keys.
	dbKeys map[string]map[uint32][]byte
	now    func() time.Time
}

// MoveTo renames the keystore file into dir (replacing the keystore there
// atomically, on the same file system) and makes the rename durable. It is
// the commit point of an in-place re-encryption.
func (ks *Keystore) MoveTo(dir string) error {
	ks.wmu.Lock()
	defer ks.wmu.Unlock()
	to := Path(dir)
	if err := os.Rename(ks.path, to); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	ks.mu.Lock()
	ks.path = to
	ks.mu.Unlock()
	return nil
}

// Path returns the keystore file path under dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// Create makes a new node keystore in dir: a fresh master key wrapped by
// provider. It fails with ErrExists if dir already has one.
func Create(ctx context.Context, dir string, provider kms.Provider) (*Keystore, error) {
	return create(ctx, dir, provider, nil)
}

// Replacement says what a keystore replacing another (in-place
// re-encryption: a fresh hierarchy for the same node) inherits from it.
type Replacement struct {
	// Generation is the replaced keystore's generation: the replacement
	// starts above it, so the control plane's rollback guard (a generation
	// never goes down) accepts it and refuses the old one put back.
	Generation uint64
}

// CreateReplacement makes a keystore, as Create does, that replaces
// another once moved in its place (MoveTo).
func CreateReplacement(ctx context.Context, dir string, provider kms.Provider, r Replacement) (*Keystore, error) {
	return create(ctx, dir, provider, &r)
}

func create(ctx context.Context, dir string, provider kms.Provider, r *Replacement) (*Keystore, error) {
	path := Path(dir)
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("keystore %s: %w", path, ErrExists)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	now := time.Now().UTC()
	ks := &Keystore{path: path, provider: provider, dbKeys: map[string]map[uint32][]byte{}, now: func() time.Time { return time.Now().UTC() }}
	master, err := randomKey()
	if err != nil {
		return nil, err
	}
	b := &body{Format: ksFormat, NodeID: newID(), CreatedAt: now, UpdatedAt: now}
	b.Master = masterEntry{Version: 1, CreatedAt: now}
	if err := ks.wrapMaster(ctx, b, master, provider); err != nil {
		clear(master)
		return nil, err
	}
	b.addEvent(now, "create", "node master key v1 wrapped by "+b.Master.Wrapped.Key.String())
	if r != nil {
		b.Generation = r.Generation
		b.addEvent(now, "replace", fmt.Sprintf("replaces a keystore of generation %d", r.Generation))
	}
	if err := ks.commit(b, master); err != nil {
		clear(master)
		return nil, err
	}
	ks.b, ks.master = b, master
	return ks, nil
}

// Open reads dir's keystore and unwraps its keys: one KMS call (the master
// key), then local AES for every database key.
func Open(ctx context.Context, dir string, provider kms.Provider) (*Keystore, error) {
	path := Path(dir)
	durable.RemoveTemps(path)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("keystore %s: %w", path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	b, raw, err := parseFile(raw)
	if err != nil {
		return nil, fmt.Errorf("keystore %s: %w", path, err)
	}
	master, err := provider.Unwrap(ctx, b.Master.Wrapped, masterAAD(b.NodeID, b.Master.Version))
	if err != nil {
		if errors.Is(err, kms.ErrDecrypt) {
			return nil, fmt.Errorf("keystore %s: %w (%s): %w", path, ErrWrongKey, b.Master.Wrapped.Key, err)
		}
		return nil, fmt.Errorf("keystore %s: unwrap master key with %s: %w", path, b.Master.Wrapped.Key, err)
	}
	if len(master) != keyLen {
		clear(master)
		return nil, fmt.Errorf("keystore %s: %w: unwrapped master key has %d bytes", path, ErrWrongKey, len(master))
	}
	macKey, err := deriveMACKey(master, b.NodeID)
	if err != nil {
		clear(master)
		return nil, err
	}
	ok := verifyMAC(raw, macKey)
	clear(macKey)
	if !ok {
		clear(master)
		return nil, fmt.Errorf("keystore %s: %w", path, ErrTampered)
	}
	if err := openNames(b, master); err != nil {
		clear(master)
		return nil, fmt.Errorf("keystore %s: %w", path, err)
	}
	ks := &Keystore{path: path, provider: provider, b: b, master: master,
		dbKeys: map[string]map[uint32][]byte{}, now: func() time.Time { return time.Now().UTC() }}
	aead, err := masterAEAD(master)
	if err != nil {
		ks.Close()
		return nil, err
	}
	for _, d := range b.Databases {
		m := map[uint32][]byte{}
		for _, v := range d.Versions {
			k, err := openDBKey(aead, b.NodeID, d.ID, v)
			if err != nil {
				ks.Close()
				return nil, fmt.Errorf("keystore %s: database %q key v%d: %w", path, d.Name, v.Version, err)
			}
			m[v.Version] = k
		}
		ks.dbKeys[d.ID] = m
	}
	return ks, nil
}

// Close drops every key from memory (zeroing it). The keystore file is
// untouched; Open brings the keys back.
func (ks *Keystore) Close() {
	ks.wmu.Lock()
	defer ks.wmu.Unlock()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	clear(ks.master)
	ks.master = nil
	for _, m := range ks.dbKeys {
		for _, k := range m {
			clear(k)
		}
	}
	ks.dbKeys = nil
}

// NodeID is the node's stable identifier, bound into every wrapping.
func (ks *Keystore) NodeID() string {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.b.NodeID
}

// AddDatabase creates a key (version 1) for a new database and returns the
// database's id, which names its directory and scopes its file keys.
func (ks *Keystore) AddDatabase(name string) (string, error) {
	ks.wmu.Lock()
	defer ks.wmu.Unlock()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.master == nil {
		return "", ErrClosed
	}
	if ks.b.find(name) >= 0 {
		return "", fmt.Errorf("%w: %q", ErrDatabaseExists, name)
	}
	now := ks.now()
	b := ks.b.clone()
	id := newID()
	key, err := randomKey()
	if err != nil {
		return "", err
	}
	v, err := ks.sealDBKey(ks.master, b.NodeID, id, 1, key, now)
	if err != nil {
		clear(key)
		return "", err
	}
	b.Databases = append(b.Databases, dbEntry{Name: name, ID: id, CreatedAt: now, Current: 1, Versions: []dbVersionEntry{v}})
	b.addEvent(now, "add-database", fmt.Sprintf("%s key v1", id))
	if err := ks.commit(b, ks.master); err != nil {
		clear(key)
		return "", err
	}
	ks.b = b
	ks.dbKeys[id] = map[uint32][]byte{1: key}
	return id, nil
}

// DropDatabase destroys every version of the database's key. Once this
// returns, the database's files are unreadable even if they survive.
func (ks *Keystore) DropDatabase(name string) error {
	ks.wmu.Lock()
	defer ks.wmu.Unlock()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.master == nil {
		return ErrClosed
	}
	i := ks.b.find(name)
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrNoDatabase, name)
	}
	b := ks.b.clone()
	id := b.Databases[i].ID
	b.Databases = slices.Delete(b.Databases, i, i+1)
	b.Dropped = append(b.Dropped, droppedEntry{ID: id, At: ks.now()})
	if len(b.Dropped) > maxDropped {
		b.Dropped = b.Dropped[len(b.Dropped)-maxDropped:]
	}
	b.addEvent(ks.now(), "drop-database", fmt.Sprintf("%s: all key versions destroyed", id))
	if err := ks.commit(b, ks.master); err != nil {
		return err
	}
	ks.b = b
	for _, k := range ks.dbKeys[id] {
		clear(k)
	}
	delete(ks.dbKeys, id)
	return nil
}

// RaiseGeneration commits the keystore with a generation above floor (and
// above its own): a keystore restored from a snapshot replaces a newer one,
// and the control plane's rollback guard must see it as the newest.
func (ks *Keystore) RaiseGeneration(floor uint64) error {
	ks.wmu.Lock()
	defer ks.wmu.Unlock()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.master == nil {
		return ErrClosed
	}
	b := ks.b.clone()
	b.Generation = max(b.Generation, floor)
	b.addEvent(ks.now(), "restore", fmt.Sprintf("restored from a snapshot in place of a keystore of generation %d", floor))
	if err := ks.commit(b, ks.master); err != nil {
		return err
	}
	ks.b = b
	return nil
}

// Retire records ids — the databases of the keystore this one replaces
// (CreateReplacement) — as dropped, in one durable change: once this
// keystore is in place, their directories are explained and deleted
// (storage.Open), never quarantined.
func (ks *Keystore) Retire(ids []string) error {
	ks.wmu.Lock()
	defer ks.wmu.Unlock()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.master == nil {
		return ErrClosed
	}
	b := ks.b.clone()
	for _, id := range ids {
		b.Dropped = append(b.Dropped, droppedEntry{ID: id, At: ks.now()})
	}
	if len(b.Dropped) > maxDropped {
		b.Dropped = b.Dropped[len(b.Dropped)-maxDropped:]
	}
	b.addEvent(ks.now(), "retire", fmt.Sprintf("%d database ids of the replaced keystore retired", len(ids)))
	if err := ks.commit(b, ks.master); err != nil {
		return err
	}
	ks.b = b
	return nil
}

// RotateDatabaseKey adds a new key version for the database; new files use
// it, files written under older versions stay readable.
func (ks *Keystore) RotateDatabaseKey(name string) (uint32, error) {
	ks.wmu.Lock()
	defer ks.wmu.Unlock()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.master == nil {
		return 0, ErrClosed
	}
	i := ks.b.find(name)
	if i < 0 {
		return 0, fmt.Errorf("%w: %q", ErrNoDatabase, name)
	}
	now := ks.now()
	b := ks.b.clone()
	d := &b.Databases[i]
	next := d.Current + 1
	for _, v := range d.Versions {
		next = max(next, v.Version+1)
	}
	key, err := randomKey()
	if err != nil {
		return 0, err
	}
	v, err := ks.sealDBKey(ks.master, b.NodeID, d.ID, next, key, now)
	if err != nil {
		clear(key)
		return 0, err
	}
	d.Versions = append(d.Versions, v)
	d.Current = next
	b.addEvent(now, "rotate-database-key", fmt.Sprintf("%s key v%d", d.ID, next))
	if err := ks.commit(b, ks.master); err != nil {
		clear(key)
		return 0, err
	}
	ks.b = b
	ks.dbKeys[d.ID][next] = key
	return next, nil
}

// RotateMasterKey replaces the node master key: every database key version
// is re-wrapped under the new one and the new one is wrapped by the CMK (one
// KMS call). No data file is read or written, whatever the data size.
func (ks *Keystore) RotateMasterKey(ctx context.Context) error {
	ks.wmu.Lock()
	defer ks.wmu.Unlock()
	cur, provider, err := ks.snapshot()
	if err != nil {
		return err
	}
	now := ks.now()
	master, err := randomKey()
	if err != nil {
		return err
	}
	b := cur.clone()
	b.Master = masterEntry{Version: cur.Master.Version + 1, CreatedAt: now}
	if err := ks.wrapMaster(ctx, b, master, provider); err != nil {
		clear(master)
		return err
	}
	// dbKeys changes only under wmu, which this holds: reading it without
	// mu is safe.
	if err := ks.rewrapDatabases(b, master, now); err != nil {
		clear(master)
		return err
	}
	b.addEvent(now, "rotate-master-key", fmt.Sprintf("node master key v%d wrapped by %s", b.Master.Version, b.Master.Wrapped.Key))
	if err := ks.commit(b, master); err != nil {
		clear(master)
		return err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.master == nil { // closed meanwhile: Close zeroed the old key
		clear(master)
		return ErrClosed
	}
	clear(ks.master)
	ks.b, ks.master = b, master
	return nil
}

// snapshot returns the current body and provider for a change; callers hold
// wmu, so neither can change until they install their result.
func (ks *Keystore) snapshot() (*body, kms.Provider, error) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	if ks.master == nil {
		return nil, nil, ErrClosed
	}
	return ks.b, ks.provider, nil
}

// RewrapMaster wraps the current master key under another CMK, or the
// provider's newest CMK version, and from then on uses that provider. The
// new wrapping is unwrapped once before it is committed, so a CMK that can
// wrap but not unwrap never replaces a working one.
func (ks *Keystore) RewrapMaster(ctx context.Context, provider kms.Provider) error {
	ks.wmu.Lock()
	defer ks.wmu.Unlock()
	cur, _, err := ks.snapshot()
	if err != nil {
		return err
	}
	// ks.master changes only under wmu: reading it without mu is safe.
	master := ks.master
	now := ks.now()
	b := cur.clone()
	old := b.Master.Wrapped.Key
	if err := ks.wrapMaster(ctx, b, master, provider); err != nil {
		return err
	}
	b.addEvent(now, "rewrap-master-key", fmt.Sprintf("node master key v%d: %s -> %s", b.Master.Version, old, b.Master.Wrapped.Key))
	if err := ks.commit(b, master); err != nil {
		return err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.master == nil {
		return ErrClosed
	}
	ks.b, ks.provider = b, provider
	return nil
}

// wrapMaster wraps master under provider into b.Master and proves the
// wrapping by unwrapping it.
func (ks *Keystore) wrapMaster(ctx context.Context, b *body, master []byte, provider kms.Provider) error {
	aad := masterAAD(b.NodeID, b.Master.Version)
	w, err := provider.Wrap(ctx, master, aad)
	if err != nil {
		return fmt.Errorf("keystore: wrap master key: %w", err)
	}
	back, err := provider.Unwrap(ctx, w, aad)
	if err != nil {
		return fmt.Errorf("keystore: verify new master key wrapping with %s: %w", w.Key, err)
	}
	same := string(back) == string(master)
	clear(back)
	if !same {
		return fmt.Errorf("keystore: %s returned a different key when unwrapping", w.Key)
	}
	b.Master.Wrapped = w
	b.Master.WrappedAt = ks.now()
	return nil
}

func (ks *Keystore) rewrapDatabases(b *body, master []byte, now time.Time) error {
	aead, err := masterAEAD(master)
	if err != nil {
		return err
	}
	for i := range b.Databases {
		d := &b.Databases[i]
		for j := range d.Versions {
			v := &d.Versions[j]
			w, err := sealDBKeyWith(aead, b.NodeID, d.ID, v.Version, ks.dbKeys[d.ID][v.Version])
			if err != nil {
				return err
			}
			v.Wrapped = w
		}
	}
	return nil
}

func (ks *Keystore) sealDBKey(master []byte, nodeID, dbID string, version uint32, key []byte, now time.Time) (dbVersionEntry, error) {
	aead, err := masterAEAD(master)
	if err != nil {
		return dbVersionEntry{}, err
	}
	w, err := sealDBKeyWith(aead, nodeID, dbID, version, key)
	return dbVersionEntry{Version: version, CreatedAt: now, Wrapped: w}, err
}

// commit writes b, sealed with a MAC key derived from master, durably.
func (ks *Keystore) commit(b *body, master []byte) error {
	b.Generation++
	b.UpdatedAt = ks.now()
	if b.Format == ksFormatV1 {
		// Upgrade: format 1 events name databases in the clear.
		for i := range b.Events {
			b.Events[i].Detail = ""
		}
		b.Format = ksFormat
		b.addEvent(b.UpdatedAt, "upgrade", "keystore format 2: database names sealed; earlier event details removed")
	}
	sealed, err := sealNames(b, master)
	if err != nil {
		return err
	}
	macKey, err := deriveMACKey(master, b.NodeID)
	if err != nil {
		return err
	}
	raw, err := encodeFile(sealed, macKey)
	clear(macKey)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(ks.path, raw, 0o600); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	return nil
}

// DatabaseInfo describes a database key without its bytes.
type DatabaseInfo struct {
	Name, ID       string
	CreatedAt      time.Time
	CurrentVersion uint32
	Versions       []VersionInfo
}

// VersionInfo describes one key version.
type VersionInfo struct {
	Version   uint32
	CreatedAt time.Time
}

// Databases lists the database keys, sorted by name.
func (ks *Keystore) Databases() []DatabaseInfo {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.b.databases()
}

// Database returns one database's key info.
func (ks *Keystore) Database(name string) (DatabaseInfo, bool) {
	for _, d := range ks.Databases() {
		if d.Name == name {
			return d, true
		}
	}
	return DatabaseInfo{}, false
}

// DatabaseIDs maps every database's name to its id.
func (ks *Keystore) DatabaseIDs() map[string]string {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	m := make(map[string]string, len(ks.b.Databases))
	for _, d := range ks.b.Databases {
		m[d.Name] = d.ID
	}
	return m
}

// Dropped reports whether the database with id was dropped (its tombstone
// is on record): its files, if any survive, may be deleted.
func (ks *Keystore) Dropped(id string) bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for _, d := range ks.b.Dropped {
		if d.ID == id {
			return true
		}
	}
	return false
}

// Generation counts the keystore's commits. It only grows: a keystore
// presenting a lower generation than one seen before is an older copy put
// back (a rollback).
func (ks *Keystore) Generation() uint64 {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.b.Generation
}

// MasterInfo describes the node master key and the CMK wrapping it.
type MasterInfo struct {
	Version   uint32
	CreatedAt time.Time
	WrappedAt time.Time
	CMK       kms.KeyRef
}

// Master returns the master key's description.
func (ks *Keystore) Master() MasterInfo {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	m := ks.b.Master
	return MasterInfo{Version: m.Version, CreatedAt: m.CreatedAt, WrappedAt: m.WrappedAt, CMK: m.Wrapped.Key}
}

// Loaded reports whether the keys are in memory.
func (ks *Keystore) Loaded() bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.master != nil
}

// KeySource returns the encfs key source of a database, by id. It fails
// (ErrClosed) once the keystore is closed, and (ErrNoDatabase) once the
// database is dropped.
func (ks *Keystore) KeySource(dbID string) encfs.KeySource { return dbKeySource{ks: ks, id: dbID} }

type dbKeySource struct {
	ks *Keystore
	id string
}

func (s dbKeySource) CurrentKey() (uint32, []byte, error) {
	s.ks.mu.RLock()
	defer s.ks.mu.RUnlock()
	if s.ks.master == nil {
		return 0, nil, ErrClosed
	}
	for _, d := range s.ks.b.Databases {
		if d.ID == s.id {
			return d.Current, s.ks.dbKeys[d.ID][d.Current], nil
		}
	}
	return 0, nil, fmt.Errorf("%w: id %s", ErrNoDatabase, s.id)
}

func (s dbKeySource) Key(version uint32) ([]byte, error) {
	s.ks.mu.RLock()
	defer s.ks.mu.RUnlock()
	if s.ks.master == nil {
		return nil, ErrClosed
	}
	m, ok := s.ks.dbKeys[s.id]
	if !ok {
		return nil, fmt.Errorf("%w: id %s", ErrNoDatabase, s.id)
	}
	k, ok := m[version]
	if !ok {
		return nil, fmt.Errorf("database %s key v%d: %w", s.id, version, encfs.ErrUnknownKeyVersion)
	}
	return k, nil
}

// --- helpers ---

func (b *body) find(name string) int {
	for i, d := range b.Databases {
		if d.Name == name {
			return i
		}
	}
	return -1
}

func (b *body) clone() *body {
	c := *b
	c.Databases = make([]dbEntry, len(b.Databases))
	for i, d := range b.Databases {
		d.Versions = slices.Clone(d.Versions)
		c.Databases[i] = d
	}
	c.Dropped = slices.Clone(b.Dropped)
	c.Events = slices.Clone(b.Events)
	return &c
}

func (b *body) addEvent(at time.Time, event, detail string) {
	b.Events = append(b.Events, eventRecord{At: at, Event: event, Detail: detail})
	if len(b.Events) > maxEvents {
		b.Events = b.Events[len(b.Events)-maxEvents:]
	}
}

func (b *body) databases() []DatabaseInfo {
	out := make([]DatabaseInfo, 0, len(b.Databases))
	for _, d := range b.Databases {
		info := DatabaseInfo{Name: d.Name, ID: d.ID, CreatedAt: d.CreatedAt, CurrentVersion: d.Current}
		for _, v := range d.Versions {
			info.Versions = append(info.Versions, VersionInfo{Version: v.Version, CreatedAt: v.CreatedAt})
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func randomKey() ([]byte, error) {
	k := make([]byte, keyLen)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("keystore: draw key: %w", err)
	}
	return k, nil
}

func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func masterAAD(nodeID string, version uint32) []byte {
	return []byte("cmkdb node master key v1|" + nodeID + "|" + strconv.FormatUint(uint64(version), 10))
}

func deriveMACKey(master []byte, nodeID string) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, master, nil, "cmkdb keystore mac v1|"+nodeID, 32)
	if err != nil {
		return nil, fmt.Errorf("keystore: derive mac key: %w", err)
	}
	return k, nil
}

// masterAEAD is the cipher that wraps database keys, keyed by a subkey of
// the master key (never the master key itself, which also keys the MAC).
func masterAEAD(master []byte) (cipher.AEAD, error) {
	return subkeyAEAD(master, "cmkdb database key wrap v1")
}

// subkeyAEAD is the AES-256-GCM of the subkey of master named info (HKDF):
// each use of the master key gets its own key.
func subkeyAEAD(master []byte, info string) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, master, nil, info, 32)
	if err != nil {
		return nil, fmt.Errorf("keystore: derive %q key: %w", info, err)
	}
	defer clear(k)
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func dbKeyAAD(nodeID, dbID string, version uint32) []byte {
	a := []byte("cmkdb database key v1|" + nodeID + "|" + dbID + "|")
	return binary.LittleEndian.AppendUint32(a, version)
}

func sealDBKeyWith(aead cipher.AEAD, nodeID, dbID string, version uint32, key []byte) ([]byte, error) {
	out := make([]byte, 12, wrappedDBKeyLen)
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("keystore: draw nonce: %w", err)
	}
	return aead.Seal(out, out[:12], key, dbKeyAAD(nodeID, dbID, version)), nil
}

func openDBKey(aead cipher.AEAD, nodeID, dbID string, v dbVersionEntry) ([]byte, error) {
	k, err := aead.Open(nil, v.Wrapped[:12], v.Wrapped[12:], dbKeyAAD(nodeID, dbID, v.Version))
	if err != nil {
		return nil, ErrTampered
	}
	return k, nil
}

// Package storage runs one Pebble instance per database, each on an
// encrypting file system (encfs) keyed by that database's key from the
// node's keystore, all sharing one block cache.
//
// A database per Pebble instance is what makes crypto-shredding real: a
// dropped database's key is destroyed, and every file it ever wrote —
// sstables, WAL, MANIFEST, OPTIONS — becomes unreadable at once.
package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/encfs"
)

// Keys is what storage needs of a keystore: the database keys, by name and
// id. Storage knows no KMS and no keystore format; the node's keystore
// (package keys) implements this.
type Keys interface {
	// DatabaseIDs maps every database's name to its id (its directory
	// name and encfs scope).
	DatabaseIDs() map[string]string
	// AddDatabase creates the key of a new database and returns its id.
	AddDatabase(name string) (id string, err error)
	// DropDatabase destroys every version of a database's key, recording
	// a tombstone for its id in the same durable change.
	DropDatabase(name string) error
	// RotateDatabaseKey adds a key version; new files use it.
	RotateDatabaseKey(name string) (uint32, error)
	// Dropped reports whether a tombstone for id is on record.
	Dropped(id string) bool
	// KeySource gives encfs the database's key versions.
	KeySource(id string) encfs.KeySource
}

// Options configure an Engine.
type Options struct {
	// Dir holds one subdirectory per database, named by database id.
	Dir string
	// CacheSize is the shared block cache, in bytes (default 128 MiB).
	CacheSize int64
	// Plaintext switches file encryption off. It exists only so benchmarks
	// can measure what encryption costs on the same build; a node refuses
	// it unless explicitly configured.
	Plaintext bool
	// Logger receives Pebble's messages (default: slog.Default()).
	Logger *slog.Logger
	// Tune lets callers adjust Pebble options (benchmarks, tests).
	Tune func(*pebble.Options)
	// QuarantineDir receives database directories that no key names and
	// no drop record explains (default: "quarantine" beside Dir).
	QuarantineDir string
	// ReadOnly opens every database read-only (Pebble's ReadOnly: nothing
	// is written to Dir, the WAL is replayed in memory) and refuses every
	// change (ErrReadOnly): a node serving a snapshot. Directories no key
	// names are left where they are.
	ReadOnly bool
}

// ErrReadOnly is returned for a change to a read-only engine.
var ErrReadOnly = errors.New("storage: the databases are open read-only")

// Quarantined is a database directory set aside because no key names it
// and no drop is on record: typically the node's keystore was replaced by
// an older copy (a rollback). Its files are kept, unreadable without the
// key, for the operator to restore the right keystore.
type Quarantined struct {
	ID   string // the directory's name: the database id
	Path string
}

// Engine owns the databases of a node.
type Engine struct {
	opts  Options
	ks    Keys
	cache *pebble.Cache
	// quarantined lists the directories in QuarantineDir (set at Open).
	quarantined []Quarantined

	mu  sync.Mutex
	dbs map[string]*DB // open databases by name
	// copying counts the holds on each database (a Copy reading it, a
	// checkpoint: copy.go); a held database cannot be dropped.
	copying map[string]int
}

// DB is one open database.
type DB struct {
	Name string
	ID   string
	// Dir is the database's directory and FS the file system its files
	// are written through (encrypting under the database's key): what
	// keeps files beside Pebble's, such as a replica set member's raft
	// snapshots in its local database, uses both.
	Dir string
	FS  vfs.FS
	*pebble.DB
	// tap receives the batches committed while a Copy runs (copy.go).
	tap atomic.Pointer[tap]
}

// ErrNoDatabase is returned for a database that does not exist.
var ErrNoDatabase = errors.New("storage: no such database")

// Open starts an engine over a keystore whose keys are loaded. Databases
// open lazily, on first use.
//
// A directory that no key names is deleted only if its drop is on record
// (a drop interrupted after the key was destroyed: the files are already
// unreadable). Any other such directory is moved to QuarantineDir and
// reported (Quarantined), never deleted: it is what an older keystore put
// back in place looks like, and the right keystore would read it.
func Open(opts Options, ks Keys) (*Engine, error) {
	if opts.CacheSize == 0 {
		opts.CacheSize = 128 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.QuarantineDir == "" {
		opts.QuarantineDir = filepath.Join(filepath.Dir(filepath.Clean(opts.Dir)), "quarantine")
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(opts.Dir, encfs.DirMode); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
	}
	e := &Engine{opts: opts, ks: ks, cache: pebble.NewCache(opts.CacheSize), dbs: map[string]*DB{}}
	if opts.ReadOnly {
		return e, nil
	}
	if err := e.settleOrphans(); err != nil {
		e.cache.Unref()
		return nil, err
	}
	return e, nil
}

// settleOrphans deletes the directories of dropped databases and
// quarantines every other directory no key names.
func (e *Engine) settleOrphans() error {
	known := map[string]bool{}
	for _, id := range e.ks.DatabaseIDs() {
		known[id] = true
	}
	if err := e.restoreQuarantined(known); err != nil {
		return err
	}
	entries, err := os.ReadDir(e.opts.Dir)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	for _, ent := range entries {
		if !ent.IsDir() || known[ent.Name()] {
			continue
		}
		path := filepath.Join(e.opts.Dir, ent.Name())
		if e.ks.Dropped(ent.Name()) {
			e.opts.Logger.Info("removing files of a dropped database (its key is destroyed)", "dir", ent.Name())
			if err := os.RemoveAll(path); err != nil {
				return fmt.Errorf("storage: remove dropped database files: %w", err)
			}
			continue
		}
		if err := e.quarantine(ent.Name(), path); err != nil {
			return err
		}
	}
	return e.listQuarantine()
}

// restoreQuarantined moves a quarantined directory back once a key names
// it again (the newest keystore was restored) and its place is free.
func (e *Engine) restoreQuarantined(known map[string]bool) error {
	entries, err := os.ReadDir(e.opts.QuarantineDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: quarantine: %w", err)
	}
	for _, ent := range entries {
		if !ent.IsDir() || !known[ent.Name()] {
			continue
		}
		dst := filepath.Join(e.opts.Dir, ent.Name())
		if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := os.Rename(filepath.Join(e.opts.QuarantineDir, ent.Name()), dst); err != nil {
			return fmt.Errorf("storage: restore quarantined database %s: %w", ent.Name(), err)
		}
		if err := durable.SyncDir(e.opts.Dir); err != nil {
			return err
		}
		e.opts.Logger.Warn("a quarantined database directory is named by the keystore again: moved back", "id", ent.Name())
	}
	return nil
}

// quarantine moves a database directory no key names into QuarantineDir.
func (e *Engine) quarantine(id, path string) error {
	if err := os.MkdirAll(e.opts.QuarantineDir, encfs.DirMode); err != nil {
		return fmt.Errorf("storage: quarantine: %w", err)
	}
	dst := filepath.Join(e.opts.QuarantineDir, id)
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
			break
		}
		dst = filepath.Join(e.opts.QuarantineDir, fmt.Sprintf("%s.%d", id, i))
	}
	if err := os.Rename(path, dst); err != nil {
		return fmt.Errorf("storage: quarantine database directory %s: %w", id, err)
	}
	if err := durable.SyncDir(e.opts.Dir); err != nil {
		return err
	}
	if err := durable.SyncDir(e.opts.QuarantineDir); err != nil {
		return err
	}
	e.opts.Logger.Error("QUARANTINED a database directory that no key in the keystore names and no drop explains: "+
		"the keystore is probably an older copy (rollback); the files are kept, restore the newest keystore to read them",
		"id", id, "moved to", dst)
	return nil
}

func (e *Engine) listQuarantine() error {
	entries, err := os.ReadDir(e.opts.QuarantineDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: quarantine: %w", err)
	}
	for _, ent := range entries {
		if ent.IsDir() {
			e.quarantined = append(e.quarantined, Quarantined{ID: ent.Name(), Path: filepath.Join(e.opts.QuarantineDir, ent.Name())})
		}
	}
	return nil
}

// Quarantined lists the database directories set aside in QuarantineDir
// (by this open or an earlier one).
func (e *Engine) Quarantined() []Quarantined { return slices.Clone(e.quarantined) }

// CreateDatabase adds a key for name and opens its (empty) database.
func (e *Engine) CreateDatabase(name string) (*DB, error) {
	if e.opts.ReadOnly {
		return nil, fmt.Errorf("%w: cannot create database %q", ErrReadOnly, name)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.ks.AddDatabase(name); err != nil {
		return nil, fmt.Errorf("storage: create database %q: %w", name, err)
	}
	return e.openLocked(name)
}

// Database returns the open database name, opening it if needed.
func (e *Engine) Database(name string) (*DB, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if db, ok := e.dbs[name]; ok {
		return db, nil
	}
	return e.openLocked(name)
}

// Databases lists the names of all databases, open or not.
func (e *Engine) Databases() []string {
	var names []string
	for name := range e.ks.DatabaseIDs() {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func (e *Engine) openLocked(name string) (*DB, error) {
	id, ok := e.ks.DatabaseIDs()[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoDatabase, name)
	}
	dir := filepath.Join(e.opts.Dir, id)
	fs := encfs.Private(vfs.Default)
	if e.opts.ReadOnly {
		fs = readOnlyFS{fs}
	}
	if !e.opts.Plaintext {
		fs = encfs.New(fs, id, e.ks.KeySource(id))
	}
	po := &pebble.Options{
		FS:                 fs,
		Cache:              e.cache,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{l: e.opts.Logger.With("db", name)},
		ReadOnly:           e.opts.ReadOnly,
	}
	if e.opts.Tune != nil {
		e.opts.Tune(po)
	}
	pdb, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("storage: open database %q: %w", name, err)
	}
	db := &DB{Name: name, ID: id, Dir: dir, FS: fs, DB: pdb}
	e.dbs[name] = db
	return db, nil
}

// DropDatabase closes the database, destroys its key, then deletes its
// files. The key goes first: if the process dies before the files are
// deleted, they are already unreadable, and Open removes them (the drop is
// on record in the keystore).
func (e *Engine) DropDatabase(name string) error {
	if e.opts.ReadOnly {
		return fmt.Errorf("%w: cannot drop database %q", ErrReadOnly, name)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.ks.DatabaseIDs()[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoDatabase, name)
	}
	if e.copying[name] > 0 {
		return fmt.Errorf("%w: %q", ErrDatabaseBusy, name)
	}
	if db, ok := e.dbs[name]; ok {
		delete(e.dbs, name)
		if err := db.DB.Close(); err != nil {
			e.opts.Logger.Warn("closing dropped database", "db", name, "err", err)
		}
	}
	if err := e.ks.DropDatabase(name); err != nil {
		return fmt.Errorf("storage: drop database %q: %w", name, err)
	}
	if err := os.RemoveAll(filepath.Join(e.opts.Dir, id)); err != nil {
		return fmt.Errorf("storage: database %q key destroyed, but removing its files failed: %w", name, err)
	}
	return nil
}

// DiskUsage is the bytes the database's files take on disk (sstables, WAL,
// MANIFEST): an estimate of what copying it writes.
func (db *DB) DiskUsage() int64 { return int64(db.Metrics().DiskSpaceUsage()) }

// Dir is the directory holding the databases.
func (e *Engine) Dir() string { return e.opts.Dir }

// Flush writes every open database's memtable to sstables, synced, and
// returns how many databases it flushed (fsync). Read-only engines have
// nothing to flush.
func (e *Engine) Flush() (int, error) {
	if e.opts.ReadOnly {
		return 0, nil
	}
	// Held throughout: a database cannot be dropped (closed) while it
	// is flushed.
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, db := range e.dbs {
		if err := db.Flush(); err != nil {
			return 0, fmt.Errorf("storage: flush database %q: %w", db.Name, err)
		}
	}
	return len(e.dbs), nil
}

// RotateDatabaseKey gives the database a new key version: files written
// from now on use it; existing files keep theirs and stay readable.
func (e *Engine) RotateDatabaseKey(name string) (uint32, error) {
	if e.opts.ReadOnly {
		return 0, fmt.Errorf("%w: cannot rotate database keys", ErrReadOnly)
	}
	return e.ks.RotateDatabaseKey(name)
}

// Close closes every open database. The keystore stays open: the caller
// owns it and decides whether to drop the keys.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for name, db := range e.dbs {
		if err := db.DB.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %q: %w", name, err))
		}
		delete(e.dbs, name)
	}
	if e.cache != nil {
		e.cache.Unref()
		e.cache = nil
	}
	return errors.Join(errs...)
}

// pebbleLogger routes Pebble's messages to slog. Pebble's Fatalf means an
// invariant broke; it must not return, as Pebble's default logger does not.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble", "fatal", true)
	os.Exit(70)
}

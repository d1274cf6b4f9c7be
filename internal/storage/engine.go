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
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cmkdb/cmkdb/internal/encfs"
	"github.com/cmkdb/cmkdb/internal/keys"
)

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
}

// Engine owns the databases of a node.
type Engine struct {
	opts  Options
	ks    *keys.Keystore
	cache *pebble.Cache

	mu  sync.Mutex
	dbs map[string]*DB // open databases by name
}

// DB is one open database.
type DB struct {
	Name string
	ID   string
	*pebble.DB
}

// ErrNoDatabase is returned for a database that does not exist.
var ErrNoDatabase = errors.New("storage: no such database")

// Open starts an engine over a keystore whose keys are loaded. Databases
// open lazily, on first use. Directories that no key names any more (a drop
// interrupted after the key was destroyed) are removed: they are unreadable.
func Open(opts Options, ks *keys.Keystore) (*Engine, error) {
	if opts.CacheSize == 0 {
		opts.CacheSize = 128 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	e := &Engine{opts: opts, ks: ks, cache: pebble.NewCache(opts.CacheSize), dbs: map[string]*DB{}}
	if err := e.removeOrphans(); err != nil {
		e.cache.Unref()
		return nil, err
	}
	return e, nil
}

func (e *Engine) removeOrphans() error {
	known := map[string]bool{}
	for _, d := range e.ks.Databases() {
		known[d.ID] = true
	}
	entries, err := os.ReadDir(e.opts.Dir)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	for _, ent := range entries {
		if ent.IsDir() && !known[ent.Name()] {
			e.opts.Logger.Info("removing files of a dropped database (its key is destroyed)", "dir", ent.Name())
			if err := os.RemoveAll(filepath.Join(e.opts.Dir, ent.Name())); err != nil {
				return fmt.Errorf("storage: remove dropped database files: %w", err)
			}
		}
	}
	return nil
}

// CreateDatabase adds a key for name and opens its (empty) database.
func (e *Engine) CreateDatabase(name string) (*DB, error) {
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
	for _, d := range e.ks.Databases() {
		names = append(names, d.Name)
	}
	sort.Strings(names)
	return names
}

func (e *Engine) openLocked(name string) (*DB, error) {
	info, ok := e.ks.Database(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoDatabase, name)
	}
	dir := filepath.Join(e.opts.Dir, info.ID)
	var fs vfs.FS = vfs.Default
	if !e.opts.Plaintext {
		fs = encfs.New(vfs.Default, info.ID, e.ks.KeySource(info.ID))
	}
	po := &pebble.Options{
		FS:                 fs,
		Cache:              e.cache,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{l: e.opts.Logger.With("db", name)},
	}
	if e.opts.Tune != nil {
		e.opts.Tune(po)
	}
	pdb, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("storage: open database %q: %w", name, err)
	}
	db := &DB{Name: name, ID: info.ID, DB: pdb}
	e.dbs[name] = db
	return db, nil
}

// DropDatabase closes the database, destroys its key, then deletes its
// files. The key goes first: if the process dies before the files are
// deleted, they are already unreadable, and Open removes them.
func (e *Engine) DropDatabase(name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	info, ok := e.ks.Database(name)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoDatabase, name)
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
	if err := os.RemoveAll(filepath.Join(e.opts.Dir, info.ID)); err != nil {
		return fmt.Errorf("storage: database %q key destroyed, but removing its files failed: %w", name, err)
	}
	return nil
}

// RotateDatabaseKey gives the database a new key version: files written
// from now on use it; existing files keep theirs and stay readable.
func (e *Engine) RotateDatabaseKey(name string) (uint32, error) {
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

package controlplane

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/encfs"
)

// The control plane's state directory (DIR/controlplane/state):
//
//	store.key          the store key (store_key.go), 0600
//	store/             the store: Pebble on encfs, every file authenticated
//	                   chunk by chunk under a key derived from store.key
//	store.tmp/         a store being created or migrated; it becomes store/
//	                   by one rename (the commit point) and is discarded if
//	                   a crash left it behind
//	state/             a previous release's plaintext Pebble store: migrated
//	                   once into store/, then renamed state.pre-encfs/ (kept
//	                   for the operator, never read again)
//
// Invariants:
//   - "First run" means store/ is absent or empty. Existing state that does
//     not open — a damaged file, a missing or damaged key — is an error
//     naming the file: it is never initialised over, rolled back or deleted.
//   - Before Pebble opens store/ read-write, every file in it is read
//     through encfs end to end, so damage anywhere (MANIFEST, WAL, sstables,
//     OPTIONS) is reported with the file's name before anything is written.
//     Pebble itself would treat a damaged MANIFEST or WAL record as the end
//     of the log and silently open older state.
//   - A store is created (or migrated) completely in store.tmp/, with its
//     first records, before it is renamed into place: a crash leaves either
//     no store (first run again) or a complete one.
const (
	storeDirName    = "store"
	storeTmpName    = "store.tmp"
	legacyDirName   = "state"
	legacyAsideName = "state.pre-encfs"
)

// openStore opens the store in dir. On first run (no store yet) it creates
// the store key if there is none, migrates a previous release's plaintext
// store if there is one, or else calls init to write the first records,
// and commits the new store.
func openStore(dir string, log *slog.Logger, init func(*store) error) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	// One process at a time decides "first run" and creates the key and the
	// store: two racing first runs would otherwise each write a store key,
	// and the store committed under the first would be sealed with a key the
	// second replaced. Once open, the store's own lock keeps others out.
	lock, err := pebble.LockDirectory(dir, encfs.Private(vfs.Default))
	if err != nil {
		return nil, &StateError{Path: dir, Err: err}
	}
	defer lock.Close()
	storeDir := filepath.Join(dir, storeDirName)
	legacyDir := filepath.Join(dir, legacyDirName)
	keyPath := filepath.Join(dir, secretKeyFile)
	fresh, err := emptyDir(storeDir)
	if err != nil {
		return nil, &StateError{Path: storeDir, Err: err}
	}
	legacyEmpty, err := emptyDir(legacyDir)
	if err != nil {
		return nil, &StateError{Path: legacyDir, Err: err}
	}

	key, err := readStoreKey(keyPath)
	switch {
	case err == nil:
	case errors.Is(err, errKeyMissing) && fresh && legacyEmpty:
		// First run. A key left by a first run that crashed before its
		// store committed is reused above, never replaced: blobs may be
		// sealed with it.
		if key, err = newStoreKey(keyPath); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	defer clear(key)

	if fresh {
		if err := createStore(dir, key, legacyDir, !legacyEmpty, log, init); err != nil {
			return nil, err
		}
	} else if !legacyEmpty {
		// Migrated, but the crash came before the old store was set aside.
		if err := setLegacyAside(dir, log); err != nil {
			return nil, err
		}
	}
	st, err := openEncrypted(storeDir, key, true)
	if err != nil {
		return nil, err
	}
	// Only a store that opened rewrites a previous release's bare key: a
	// refused start writes nothing.
	if err := upgradeStoreKey(keyPath, key); err != nil {
		_ = st.close()
		return nil, err
	}
	return st, nil
}

// stateExists reports whether dir holds a store (this release's or a
// previous release's).
func stateExists(dir string) (bool, error) {
	for _, name := range []string{storeDirName, legacyDirName} {
		empty, err := emptyDir(filepath.Join(dir, name))
		if err != nil || !empty {
			return true, err
		}
	}
	return false, nil
}

// createStore builds a new store in store.tmp — migrated from legacyDir, or
// written by init — and renames it into place.
func createStore(dir string, key []byte, legacyDir string, migrate bool, log *slog.Logger, init func(*store) error) error {
	tmp := filepath.Join(dir, storeTmpName)
	// An uncommitted creation or migration left by a crash: it was never
	// the store, and it is rebuilt from the same inputs.
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("controlplane: remove uncommitted store %s: %w", tmp, err)
	}
	st, err := openEncrypted(tmp, key, false)
	if err != nil {
		return err
	}
	if migrate {
		err = migrateLegacy(legacyDir, st)
	} else {
		err = init(st)
	}
	if cerr := st.close(); err == nil && cerr != nil {
		err = fmt.Errorf("controlplane: close new store: %w", cerr)
	}
	if err != nil {
		return err
	}
	storeDir := filepath.Join(dir, storeDirName)
	// An empty store/ (first run after someone made the directory) is
	// replaced; rename cannot replace a non-empty one.
	if err := os.Remove(storeDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return &StateError{Path: storeDir, Err: err}
	}
	if err := os.Rename(tmp, storeDir); err != nil {
		return fmt.Errorf("controlplane: commit new store: %w", err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return err
	}
	if migrate {
		log.Info("control plane store migrated to the encrypted format", "from", legacyDir, "to", storeDir)
		return setLegacyAside(dir, log)
	}
	return nil
}

// setLegacyAside renames a migrated plaintext store out of the way. It is
// kept, not deleted: the operator decides (it holds the same sealed values
// as the store did when it was migrated).
func setLegacyAside(dir string, log *slog.Logger) error {
	from := filepath.Join(dir, legacyDirName)
	to := filepath.Join(dir, legacyAsideName)
	for i := 1; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, os.ErrNotExist) {
			break
		}
		to = filepath.Join(dir, fmt.Sprintf("%s.%d", legacyAsideName, i))
	}
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("controlplane: set migrated store aside: %w", err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return err
	}
	log.Warn("the previous release's plaintext control plane store was migrated and kept aside; delete it once the new store is known good", "dir", to)
	return nil
}

// migrateLegacy copies every record of a previous release's plaintext
// store into st, unchanged (values are already sealed with the same key).
// The old store is opened read-only and not modified. It must hold the
// organization record: an old store that opens empty (Pebble reads a
// damaged MANIFEST as an empty one) is refused, not migrated into a new
// organization.
func migrateLegacy(legacyDir string, st *store) error {
	db, err := pebble.Open(legacyDir, &pebble.Options{ReadOnly: true, ErrorIfNotExists: true, Logger: quietLogger{}})
	if err != nil {
		return &StateError{Path: legacyDir, Err: err}
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		return &StateError{Path: legacyDir, Err: err}
	}
	defer it.Close()
	b := st.db.NewBatch()
	defer b.Close()
	hasOrg := false
	for it.First(); it.Valid(); it.Next() {
		hasOrg = hasOrg || string(it.Key()) == orgKey
		if err := b.Set(it.Key(), it.Value(), nil); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return &StateError{Path: legacyDir, Err: err}
	}
	if !hasOrg {
		return &StateError{Path: legacyDir, Err: errors.New("the previous release's store has no organization record (damaged MANIFEST?)")}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("controlplane: migrate store: %w", err)
	}
	return nil
}

// openEncrypted opens the Pebble store in dir on encfs. An existing store
// (mustExist) is first verified file by file and then opened with
// ErrorIfNotExists: a store whose MANIFEST marker vanished is an error,
// not a new database.
func openEncrypted(dir string, storeKey []byte, mustExist bool) (*store, error) {
	aead, err := keyAEAD(storeKey)
	if err != nil {
		return nil, err
	}
	fk, err := newStoreFileKeys(storeKey)
	if err != nil {
		return nil, err
	}
	fs := encfs.New(encfs.Private(vfs.Default), storeFilesScope, fk)
	opts := &pebble.Options{FS: fs, ErrorIfNotExists: mustExist, FormatMajorVersion: pebble.FormatNewest, Logger: quietLogger{}}
	if mustExist {
		// Hold the directory lock while verifying: another control plane
		// appending to these files must not be mistaken for damage.
		if opts.Lock, err = pebble.LockDirectory(dir, fs); err != nil {
			clear(fk.key)
			return nil, &StateError{Path: dir, Err: err}
		}
		if err := verifyFiles(fs, dir); err != nil {
			_ = opts.Lock.Close()
			clear(fk.key)
			return nil, err
		}
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		if opts.Lock != nil {
			_ = opts.Lock.Close()
		}
		clear(fk.key)
		return nil, &StateError{Path: dir, Err: err}
	}
	return &store{db: db, aead: aead, fileKeys: fk, lock: opts.Lock}, nil
}

// verifyFiles reads every file in dir through encfs to its end: any chunk
// or header that fails authentication is an error naming the file. The
// store is small (records, not documents), so this costs little at start.
func verifyFiles(fs vfs.FS, dir string) error {
	names, err := fs.List(dir)
	if err != nil {
		return &StateError{Path: dir, Err: err}
	}
	sort.Strings(names)
	for _, name := range names {
		path := fs.PathJoin(dir, name)
		fi, err := fs.Stat(path)
		if err != nil {
			return &StateError{Path: path, Err: err}
		}
		if fi.IsDir() {
			return &StateError{Path: path, Err: errors.New("unexpected directory in the store")}
		}
		if err := readAll(fs, path); err != nil {
			return &StateError{Path: path, Err: err}
		}
	}
	return nil
}

func readAll(fs vfs.FS, path string) error {
	f, err := fs.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// emptyDir reports whether dir is absent or has no entries.
func emptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return len(names) == 0, err
}

// quietLogger keeps Pebble's informational messages out of the control
// plane's output and reports its errors through slog. Fatalf means an
// invariant broke inside Pebble: it must not return.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	slog.Error(fmt.Sprintf(format, args...), "component", "pebble", "db", "controlplane")
}
func (quietLogger) Fatalf(format string, args ...any) {
	slog.Error(fmt.Sprintf(format, args...), "component", "pebble", "db", "controlplane", "fatal", true)
	os.Exit(70)
}

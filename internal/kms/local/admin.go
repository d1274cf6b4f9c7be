package local

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// The admin operations below are what `cmkdb kms local create|show|enable|
// disable|delete|schedule-deletion|restore|rotate|set-validity --key FILE`
// call. Each one rewrites the key file durably and atomically (temporary
// file, fsync, rename, fsync directory) under a lock on the directory, so two
// admin commands cannot lose each other's changes — a lost rotation would
// lose every key wrapped under the lost version.

// Info describes a key file without its material: what the CLI prints.
type Info struct {
	Path string
	// Key is the current version: what Wrap uses.
	Key   kms.KeyRef
	State State
	// NotBefore and ExpiresAt are zero when unset.
	NotBefore time.Time
	ExpiresAt time.Time
	Versions  []VersionInfo
}

// VersionInfo is one key version, without its material.
type VersionInfo struct {
	Version   int
	CreatedAt time.Time
}

// LastRotated is when the current version was created.
func (i Info) LastRotated() time.Time {
	var t time.Time
	for _, v := range i.Versions {
		if v.CreatedAt.After(t) {
			t = v.CreatedAt
		}
	}
	return t
}

// ErrState is returned by an admin operation the key's state forbids (as
// real KMSs forbid enabling a deleted key before restoring it).
var ErrState = errors.New("not allowed in the key's current state")

func (f *keyFile) info(path string) Info {
	in := Info{Path: path, Key: ref(f, f.current().Version), State: f.State}
	if f.NotBefore != nil {
		in.NotBefore = *f.NotBefore
	}
	if f.ExpiresAt != nil {
		in.ExpiresAt = *f.ExpiresAt
	}
	for _, v := range f.Versions {
		in.Versions = append(in.Versions, VersionInfo{Version: v.Version, CreatedAt: v.CreatedAt})
	}
	return in
}

func newKeyID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "local-" + hex.EncodeToString(b)
}

func newMaterial() []byte {
	m := make([]byte, materialSize)
	rand.Read(m)
	return m
}

// Create writes a new key file with one enabled version. It fails if path
// exists: overwriting a key file would destroy the key.
func Create(path string) (Info, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Info{}, fmt.Errorf("local kms: create %s: %w", path, err)
	}
	unlock, err := lockDir(filepath.Dir(abs))
	if err != nil {
		return Info{}, fmt.Errorf("local kms: create %s: %w", abs, err)
	}
	defer unlock()
	removeTemps(abs)
	f := &keyFile{
		Format:   formatVersion,
		KeyID:    newKeyID(),
		State:    StateEnabled,
		Versions: []keyVersion{{Version: 1, CreatedAt: time.Now().UTC(), Material: newMaterial()}},
	}
	defer f.wipe()
	data, err := f.marshal()
	if err != nil {
		return Info{}, fmt.Errorf("local kms: create %s: %w", abs, err)
	}
	defer clear(data)
	if err := writeFile(abs, data, true); err != nil {
		return Info{}, fmt.Errorf("local kms: create %s: %w", abs, err)
	}
	return f.info(abs), nil
}

// Inspect reads a key file and describes it.
func Inspect(path string) (Info, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Info{}, fmt.Errorf("local kms: inspect %s: %w", path, err)
	}
	f, err := loadForAdmin(abs)
	if err != nil {
		return Info{}, fmt.Errorf("local kms: inspect %s: %w", abs, err)
	}
	defer f.wipe()
	return f.info(abs), nil
}

// Enable makes a disabled key usable again.
func Enable(path string) (Info, error) {
	return update("enable", path, func(f *keyFile, _ time.Time) error {
		if f.State != StateEnabled && f.State != StateDisabled {
			return fmt.Errorf("key is %s; restore it first: %w", f.State, ErrState)
		}
		f.State = StateEnabled
		return nil
	})
}

// Disable makes the key refuse every operation until it is enabled; the
// material is kept.
func Disable(path string) (Info, error) {
	return update("disable", path, func(f *keyFile, _ time.Time) error {
		if f.State != StateEnabled && f.State != StateDisabled {
			return fmt.Errorf("key is %s: %w", f.State, ErrState)
		}
		f.State = StateDisabled
		return nil
	})
}

// Delete soft-deletes the key, like Azure Key Vault soft delete: it refuses
// every operation, but the material is kept and Restore brings it back.
func Delete(path string) (Info, error) {
	return update("delete", path, func(f *keyFile, _ time.Time) error {
		f.State = StateDeleted
		return nil
	})
}

// ScheduleDeletion marks the key pending deletion, like AWS KMS's waiting
// period: unusable, and restorable.
func ScheduleDeletion(path string) (Info, error) {
	return update("schedule deletion", path, func(f *keyFile, _ time.Time) error {
		if f.State == StateDeleted {
			return fmt.Errorf("key is already deleted: %w", ErrState)
		}
		f.State = StatePendingDeletion
		return nil
	})
}

// Restore brings a deleted or pending-deletion key back, enabled.
func Restore(path string) (Info, error) {
	return update("restore", path, func(f *keyFile, _ time.Time) error {
		if f.State != StateDeleted && f.State != StatePendingDeletion {
			return fmt.Errorf("key is %s, not deleted: %w", f.State, ErrState)
		}
		f.State = StateEnabled
		return nil
	})
}

// Rotate adds a new key version and makes it current. Old versions stay, so
// everything wrapped under them keeps unwrapping.
func Rotate(path string) (Info, error) {
	return update("rotate", path, func(f *keyFile, now time.Time) error {
		if f.State != StateEnabled && f.State != StateDisabled {
			return fmt.Errorf("key is %s: %w", f.State, ErrState)
		}
		f.Versions = append(f.Versions, keyVersion{Version: f.current().Version + 1, CreatedAt: now, Material: newMaterial()})
		return nil
	})
}

// SetValidity sets the window in which the key may be used; a zero time
// removes that bound.
func SetValidity(path string, notBefore, expiresAt time.Time) (Info, error) {
	for _, t := range []time.Time{notBefore, expiresAt} {
		if !t.IsZero() {
			if err := validTime(t); err != nil {
				return Info{}, fmt.Errorf("local kms: set validity %s: %w", path, err)
			}
		}
	}
	if !notBefore.IsZero() && !expiresAt.IsZero() && !expiresAt.After(notBefore) {
		return Info{}, fmt.Errorf("local kms: set validity %s: expiry %s is not after activation %s", path, expiresAt.Format(time.RFC3339), notBefore.Format(time.RFC3339))
	}
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		u := t.UTC()
		return &u
	}
	return update("set validity", path, func(f *keyFile, _ time.Time) error {
		f.NotBefore, f.ExpiresAt = opt(notBefore), opt(expiresAt)
		return nil
	})
}

func loadForAdmin(abs string) (*keyFile, error) {
	data, err := readKeyFile(abs)
	defer clear(data)
	if err != nil {
		return nil, err
	}
	return parseKeyFile(data)
}

// update is read-modify-write under the directory lock. A file that does not
// parse is never rewritten: the operator must see the corruption, not have
// it papered over.
func update(op, path string, change func(f *keyFile, now time.Time) error) (Info, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Info{}, fmt.Errorf("local kms: %s %s: %w", op, path, err)
	}
	fail := func(err error) (Info, error) {
		return Info{}, fmt.Errorf("local kms: %s %s: %w", op, abs, err)
	}
	unlock, err := lockDir(filepath.Dir(abs))
	if err != nil {
		return fail(err)
	}
	defer unlock()
	removeTemps(abs)
	f, err := loadForAdmin(abs)
	if err != nil {
		return fail(err)
	}
	defer f.wipe()
	if err := change(f, time.Now().UTC()); err != nil {
		return fail(err)
	}
	data, err := f.marshal()
	if err != nil {
		return fail(err)
	}
	defer clear(data)
	if len(data) > maxFileSize {
		return fail(fmt.Errorf("the key file would grow past %d bytes", maxFileSize))
	}
	if err := writeFile(abs, data, false); err != nil {
		return fail(err)
	}
	return f.info(abs), nil
}

func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// removeTemps deletes temporary files a crashed writer left beside path.
// Called under the directory lock, so none belongs to a live writer; they
// never hold the only copy of anything, the rename is the commit point.
func removeTemps(path string) {
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return
	}
	prefix := tempPrefix(path)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			os.Remove(filepath.Join(filepath.Dir(path), e.Name()))
		}
	}
}

// writeFile puts data at path so that a crash at any instant leaves the old
// file or the new one, never a mix and never none. With create it also
// refuses to replace an existing file, atomically (a hard link fails if the
// name exists, where a rename would clobber it).
func writeFile(path string, data []byte, create bool) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer func() {
		tmp.Close()
		// After a rename the temporary name is gone; after a link it is a
		// second name to drop; after a failure it is garbage.
		os.Remove(name)
	}()
	// CreateTemp makes 0600 files today; the key file must never be more
	// open than that whatever CreateTemp does tomorrow.
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if create {
		err = os.Link(name, path)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			// No hard links on this file system: the directory lock still
			// excludes other cmkdb writers.
			if _, serr := os.Lstat(path); serr == nil {
				err = &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
			} else {
				err = os.Rename(name, path)
			}
		}
	} else {
		err = os.Rename(name, path)
	}
	if err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Ensure opens the key file at path, creating it (and its directory, 0700)
// first when it does not exist; created reports that it did. Only an
// absent file is created: a file that exists but does not read is an error
// at its first use, never replaced.
func Ensure(path string) (p *Provider, created bool, err error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, fmt.Errorf("local kms: %w", err)
		}
		if _, err := Create(path); err != nil {
			return nil, false, err
		}
		created = true
	}
	p, err = Open(path)
	return p, created, err
}

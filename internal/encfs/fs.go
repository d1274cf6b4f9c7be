// Package encfs is a Pebble vfs.FS that encrypts every file it writes with
// authenticated encryption (AES-256-GCM) under per-file keys derived from a
// database key, and refuses to return any byte that fails authentication.
//
// The layout and its invariants are described in format.go; the reasoning
// (nonce uniqueness, crash behaviour, limits) in docs/architecture.md.
package encfs

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// KeySource gives encfs the database's keys. It is implemented by the node's
// keystore. Returned slices belong to the source: encfs only derives per-file
// keys from them and does not keep them.
type KeySource interface {
	// CurrentKey is the key version new files are written under.
	CurrentKey() (version uint32, key []byte, err error)
	// Key returns an older or current version, for reading files written
	// under it. A version the source never had must yield an error matching
	// ErrUnknownKeyVersion; other errors (keys unavailable) pass through.
	Key(version uint32) ([]byte, error)
}

// ErrUnknownKeyVersion is returned (wrapped) by KeySource.Key for a version
// that does not exist.
var ErrUnknownKeyVersion = errors.New("encfs: unknown key version")

// FS encrypts the files of one database.
type FS struct {
	base  vfs.FS
	scope string
	keys  KeySource
	bufs  sync.Pool
}

var _ vfs.FS = (*FS)(nil)

// New returns an encrypting FS over base. scope names the database (its
// stable identifier) and is bound into every file key, so files cannot be
// moved between databases.
func New(base vfs.FS, scope string, keys KeySource) *FS {
	return &FS{base: base, scope: scope, keys: keys}
}

func (fs *FS) getBuf(n int) *[]byte {
	if v, ok := fs.bufs.Get().(*[]byte); ok && cap(*v) >= n {
		return v
	}
	b := make([]byte, max(n, 64<<10))
	return &b
}

func (fs *FS) putBuf(b *[]byte) {
	if cap(*b) <= 1<<20 {
		fs.bufs.Put(b)
	}
}

func (fs *FS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	base, err := fs.base.Create(name, category)
	if err != nil {
		return nil, err
	}
	f, err := fs.newWriter(name, base, 0)
	if err != nil {
		base.Close()
		_ = fs.base.Remove(name)
		return nil, err
	}
	return f, nil
}

func (fs *FS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	base, err := fs.base.Open(name, opts...)
	if err != nil {
		return nil, err
	}
	f, err := fs.openExisting(name, base, false)
	if err != nil {
		base.Close()
		return nil, err
	}
	return f, nil
}

func (fs *FS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	base, err := fs.base.OpenReadWrite(name, category, opts...)
	if err != nil {
		return nil, err
	}
	f, err := fs.openExisting(name, base, true)
	if err != nil {
		base.Close()
		return nil, err
	}
	return f, nil
}

// ReuseForWrite recycles an old file (Pebble reuses old WAL files: syncing
// a file whose blocks already exist avoids a metadata sync per commit). The
// new contents get a new salt, so new keys, and the old file's generation
// plus one; the old slots that remain after the new data belong to a lower
// generation and read as the end of the file. A file whose header cannot be
// read is not recycled: it is removed and a new file created, as the vfs
// contract allows.
func (fs *FS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	gen, ok := fs.generationOf(oldname)
	if !ok || gen == math.MaxUint32 {
		if err := fs.base.Remove(oldname); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		return fs.Create(newname, category)
	}
	base, err := fs.base.ReuseForWrite(oldname, newname, category)
	if err != nil {
		return nil, err
	}
	f, err := fs.newWriter(newname, base, gen+1)
	if err != nil {
		base.Close()
		return nil, err
	}
	return f, nil
}

// generationOf reads a file's header generation without keys (structure
// only; the header is authenticated whenever the file is opened).
func (fs *FS) generationOf(name string) (uint32, bool) {
	f, err := fs.base.Open(name)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	raw := make([]byte, HeaderSize)
	if n, _ := f.ReadAt(raw, 0); n < HeaderSize {
		return 0, false
	}
	h, err := parseHeader(raw)
	if err != nil {
		return 0, false
	}
	return h.generation, true
}

func (fs *FS) Stat(name string) (vfs.FileInfo, error) {
	fi, err := fs.base.Stat(name)
	if err != nil || fi.IsDir() {
		return fi, err
	}
	size, err := logicalSize(fi.Size())
	if fi.Size() >= HeaderSize {
		// Only a recycled file needs more than the size: read its header.
		if gen, ok := fs.generationOf(name); ok && gen > 0 {
			size, err = fs.recycledStat(name, fi.Size(), gen)
		}
	}
	if err != nil {
		return nil, &IntegrityError{File: name, Slot: -1, Detail: err.Error()}
	}
	return sizedInfo{FileInfo: fi, size: size}, nil
}

func (fs *FS) recycledStat(name string, phys int64, gen uint32) (int64, error) {
	f, err := fs.base.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return recycledSize(f, phys, gen)
}

// The rest carries no file contents and passes through. Hard links and
// renames keep a file's header, and with it its identity and keys.

func (fs *FS) Link(oldname, newname string) error          { return fs.base.Link(oldname, newname) }
func (fs *FS) OpenDir(name string) (vfs.File, error)       { return fs.base.OpenDir(name) }
func (fs *FS) Remove(name string) error                    { return fs.base.Remove(name) }
func (fs *FS) RemoveAll(name string) error                 { return fs.base.RemoveAll(name) }
func (fs *FS) Rename(oldname, newname string) error        { return fs.base.Rename(oldname, newname) }
func (fs *FS) MkdirAll(dir string, perm os.FileMode) error { return fs.base.MkdirAll(dir, perm) }
func (fs *FS) Lock(name string) (io.Closer, error)         { return fs.base.Lock(name) }
func (fs *FS) List(dir string) ([]string, error)           { return fs.base.List(dir) }
func (fs *FS) PathBase(path string) string                 { return fs.base.PathBase(path) }
func (fs *FS) PathJoin(elem ...string) string              { return fs.base.PathJoin(elem...) }
func (fs *FS) PathDir(path string) string                  { return fs.base.PathDir(path) }
func (fs *FS) GetDiskUsage(path string) (vfs.DiskUsage, error) {
	return fs.base.GetDiskUsage(path)
}

// Unwrap returns nil: encfs transforms contents, so code that unwraps
// filesystems to reach the "real" one must not get past it.
func (fs *FS) Unwrap() vfs.FS { return nil }

func (fs *FS) String() string { return fmt.Sprintf("encfs(%s)", fs.scope) }

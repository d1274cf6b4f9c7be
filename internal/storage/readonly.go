package storage

import (
	"fmt"
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// readOnlyFS is the file system of a read-only engine: reads pass
// through; anything that would change a file or directory is refused, so a
// snapshot served read-only stays byte for byte what its manifest lists.
// Pebble takes a lock file even when it opens a database read-only; here
// the lock is held in memory only (nothing else writes these files).
type readOnlyFS struct{ vfs.FS }

func (fs readOnlyFS) refuse(op, name string) error {
	return fmt.Errorf("%w: %s %s", ErrReadOnly, op, name)
}

func (fs readOnlyFS) Create(name string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, fs.refuse("create", name)
}
func (fs readOnlyFS) Link(_, newname string) error { return fs.refuse("link", newname) }
func (fs readOnlyFS) ReuseForWrite(_, newname string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, fs.refuse("reuse", newname)
}
func (fs readOnlyFS) Remove(name string) error       { return fs.refuse("remove", name) }
func (fs readOnlyFS) RemoveAll(name string) error    { return fs.refuse("remove", name) }
func (fs readOnlyFS) Rename(_, newname string) error { return fs.refuse("rename", newname) }
func (fs readOnlyFS) Lock(string) (io.Closer, error) { return io.NopCloser(nil), nil }
func (fs readOnlyFS) OpenReadWrite(name string, _ vfs.DiskWriteCategory, _ ...vfs.OpenOption) (vfs.File, error) {
	return nil, fs.refuse("open for writing", name)
}

// MkdirAll succeeds for a directory that exists, as it changes nothing.
func (fs readOnlyFS) MkdirAll(dir string, _ os.FileMode) error {
	if st, err := fs.FS.Stat(dir); err == nil && st.IsDir() {
		return nil
	}
	return fs.refuse("create directory", dir)
}

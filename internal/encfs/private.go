package encfs

import (
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// File modes of everything cmkdb's Pebble instances create on disk: files
// readable by the owner only, directories searchable by the owner only.
// Encryption protects contents; the modes keep even ciphertext, file sizes
// and names away from other local users.
const (
	FileMode = 0o600
	DirMode  = 0o700
)

// Private returns base with the modes above enforced on every file and
// directory it creates. vfs.Default creates files 0666 and Pebble asks for
// directories 0755 (both minus the umask); Private narrows them. A created
// file is empty when its mode is narrowed (encfs writes its header with the
// first data), so no byte is ever readable under the wider mode.
func Private(base vfs.FS) vfs.FS { return privateFS{FS: base} }

type privateFS struct{ vfs.FS }

func (p privateFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := p.FS.Create(name, category)
	if err != nil {
		return nil, err
	}
	if err := chmodIfDisk(p.FS, name, FileMode); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (p privateFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := p.FS.ReuseForWrite(oldname, newname, category)
	if err != nil {
		return nil, err
	}
	if err := chmodIfDisk(p.FS, newname, FileMode); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (p privateFS) MkdirAll(dir string, _ os.FileMode) error {
	if err := p.FS.MkdirAll(dir, DirMode); err != nil {
		return err
	}
	return chmodIfDisk(p.FS, dir, DirMode)
}

func (p privateFS) Lock(name string) (io.Closer, error) {
	c, err := p.FS.Lock(name)
	if err != nil {
		return nil, err
	}
	if err := chmodIfDisk(p.FS, name, FileMode); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Unwrap returns the base: Private changes modes, not contents.
func (p privateFS) Unwrap() vfs.FS { return p.FS }

// chmodIfDisk narrows the mode of a path on the real disk; other file
// systems (vfs.NewMem in tests) have no modes to narrow.
func chmodIfDisk(fs vfs.FS, path string, mode os.FileMode) error {
	if fs != vfs.Default {
		return nil
	}
	return os.Chmod(path, mode)
}

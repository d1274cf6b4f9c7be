// Package testfiles handles the directory trees tests make and inspect: a
// digest of a tree (to prove a refused start changed nothing), a copy that
// keeps modes (a data directory moved elsewhere), and the check that every
// file cmkdb created is private (0600 files, 0700 directories).
package testfiles

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// HashTree digests every entry under dir: its relative name, its mode and,
// for files, its contents. Two equal digests mean nothing under dir was
// added, removed, renamed, re-moded or rewritten.
func HashTree(t testing.TB, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		h.Write([]byte(rel + "|" + info.Mode().String() + "|"))
		if !d.IsDir() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CopyTree copies the tree at from to to (created), keeping each entry's
// permission bits. The tree must not be in use.
func CopyTree(t testing.TB, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(dst, info.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// CheckPrivateModes reports (t.Errorf) every entry under dir, dir itself
// excepted, that is not a 0600 file or a 0700 directory, and returns how
// many entries it checked, so a caller can tell an empty walk from a pass.
func CheckPrivateModes(t testing.TB, dir string) int {
	t.Helper()
	checked := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, info.Mode().Perm(), want)
		}
		checked++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return checked
}

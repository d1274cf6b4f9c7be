// Package storagetest builds real encrypted storage for tests of the layers
// above it: a local CMK, a node keystore and an engine in a temporary
// directory, torn down with the test.
package storagetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/storage"
)

// NewEngine returns an encrypted engine with a fresh keystore.
func NewEngine(t testing.TB) *storage.Engine {
	t.Helper()
	dir := t.TempDir()
	cmkPath := filepath.Join(dir, "cmk.json")
	if _, err := local.Create(cmkPath); err != nil {
		t.Fatal(err)
	}
	cmk, err := local.Open(cmkPath)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keys.Create(context.Background(), filepath.Join(dir, "node"), cmk)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := storage.Open(storage.Options{Dir: filepath.Join(dir, "node", "db"), CacheSize: 8 << 20}, ks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		eng.Close()
		ks.Close()
	})
	return eng
}

// NewDB returns a new database on a fresh engine.
func NewDB(t testing.TB, name string) *storage.DB {
	t.Helper()
	db, err := NewEngine(t).CreateDatabase(name)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

package storage

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cmkdb/cmkdb/internal/testfiles"
)

// A read-only engine reads what is there (WAL replayed in memory) and
// changes nothing: the directory hashes the same afterwards, and every
// change is refused with ErrReadOnly.
func TestReadOnlyEngine(t *testing.T) {
	n := newNode(t)
	db, err := n.eng.CreateDatabase("app")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("flushed"), []byte("1"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("in-wal"), []byte("2"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := n.eng.Close(); err != nil {
		t.Fatal(err)
	}
	before := testfiles.HashTree(t, n.dataDir())
	ro, err := Open(Options{Dir: n.dataDir(), CacheSize: 8 << 20, ReadOnly: true}, n.ks)
	if err != nil {
		t.Fatal(err)
	}
	rdb, err := ro.Database("app")
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"flushed": "1", "in-wal": "2"} {
		v, closer, err := rdb.Get([]byte(k))
		if err != nil || string(v) != want {
			t.Fatalf("%s: %q %v", k, v, err)
		}
		closer.Close()
	}
	if err := rdb.Set([]byte("x"), []byte("y"), pebble.Sync); err == nil {
		t.Fatal("a write to a read-only database succeeded")
	}
	if _, err := ro.CreateDatabase("new"); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("create: %v", err)
	}
	if err := ro.DropDatabase("app"); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("drop: %v", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if after := testfiles.HashTree(t, n.dataDir()); after != before {
		t.Fatal("opening read-only changed the database directory")
	}
}

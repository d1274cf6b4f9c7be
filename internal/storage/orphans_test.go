package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cmkdb/cmkdb/internal/testfiles"
)

// copyFile copies one file (a keystore) byte for byte.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOlderKeystoreQuarantinesNotDeletes: with an older copy of the
// keystore put back, the databases created since have no key. Their
// directories are moved to the quarantine directory and reported, never
// deleted; with the newest keystore restored they move back and read
// again, every document there.
func TestOlderKeystoreQuarantinesNotDeletes(t *testing.T) {
	n := newNode(t)
	if _, err := n.eng.CreateDatabase("old"); err != nil {
		t.Fatal(err)
	}
	older := filepath.Join(t.TempDir(), "keystore")
	copyFile(t, filepath.Join(n.ksDir(), "keystore"), older)
	db, err := n.eng.CreateDatabase("newer")
	if err != nil {
		t.Fatal(err)
	}
	writeDocs(t, db, "k", 50, []byte("value"))
	id := db.ID
	newest := filepath.Join(t.TempDir(), "keystore")
	copyFile(t, filepath.Join(n.ksDir(), "keystore"), newest)

	n.close(t)
	copyFile(t, older, filepath.Join(n.ksDir(), "keystore"))
	n.reopen(t)
	if _, err := os.Stat(filepath.Join(n.dataDir(), id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the unkeyed directory is still among the databases: %v", err)
	}
	q := n.eng.Quarantined()
	if len(q) != 1 || q[0].ID != id {
		t.Fatalf("quarantined %+v, want %s", q, id)
	}
	if !hasFiles(t, q[0].Path) {
		t.Fatalf("quarantined directory lost its files")
	}

	n.close(t)
	copyFile(t, newest, filepath.Join(n.ksDir(), "keystore"))
	n.reopen(t)
	if q := n.eng.Quarantined(); len(q) != 0 {
		t.Fatalf("still quarantined after the newest keystore came back: %+v", q)
	}
	db, err = n.eng.Database("newer")
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	for it.First(); it.Valid(); it.Next() {
		count++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if count != 50 {
		t.Fatalf("%d documents after the restore, want 50", count)
	}
}

func hasFiles(t *testing.T, dir string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	return err == nil && len(entries) > 0
}

// TestInterruptedDropDeletes: a drop that destroyed the key but died
// before deleting the files leaves a tombstone; the next open deletes the
// directory and quarantines nothing.
func TestInterruptedDropDeletes(t *testing.T) {
	n := newNode(t)
	db, err := n.eng.CreateDatabase("gone")
	if err != nil {
		t.Fatal(err)
	}
	writeDocs(t, db, "k", 10, []byte("v"))
	id := db.ID
	// The files, as the crash left them.
	saved := t.TempDir()
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	everyFile(t, filepath.Join(n.dataDir(), id), func(path string, data []byte) {
		_ = os.WriteFile(filepath.Join(saved, filepath.Base(path)), data, 0o600)
	})
	if err := n.eng.DropDatabase("gone"); err != nil {
		t.Fatal(err)
	}
	n.close(t)
	if err := os.Rename(saved, filepath.Join(n.dataDir(), id)); err != nil {
		t.Fatal(err)
	}
	n.reopen(t)
	if _, err := os.Stat(filepath.Join(n.dataDir(), id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dropped database's files kept: %v", err)
	}
	if q := n.eng.Quarantined(); len(q) != 0 {
		t.Fatalf("a dropped database was quarantined: %+v", q)
	}
}

// TestFileModes walks a data directory after use: every file is 0600 and
// every directory 0700, plaintext (benchmark) mode included.
func TestFileModes(t *testing.T) {
	for _, plaintext := range []bool{false, true} {
		n := newNode(t)
		if plaintext {
			n.close(t)
			n.reopen(t)
			n.eng.Close()
			var err error
			if n.eng, err = Open(Options{Dir: n.dataDir(), CacheSize: 8 << 20, Plaintext: true}, n.ks); err != nil {
				t.Fatal(err)
			}
		}
		db, err := n.eng.CreateDatabase("modes")
		if err != nil {
			t.Fatal(err)
		}
		writeDocs(t, db, "k", 1000, make([]byte, 100))
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := db.Compact(context.Background(), []byte("a"), []byte("z"), true); err != nil {
			t.Fatal(err)
		}
		n.close(t)
		checked := testfiles.CheckPrivateModes(t, n.dataDir())
		if checked < 5 {
			t.Fatalf("only %d entries checked", checked)
		}
	}
}

package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cmkdb/cmkdb/internal/encfs"
	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/kms/local"
)

// node is a test node: a local CMK, a keystore and an engine.
type node struct {
	dir, cmkPath string
	cmk          *local.Provider
	ks           *keys.Keystore
	eng          *Engine
}

func newNode(t testing.TB) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{dir: dir, cmkPath: filepath.Join(dir, "cmk.json")}
	if _, err := local.Create(n.cmkPath); err != nil {
		t.Fatal(err)
	}
	var err error
	if n.cmk, err = local.Open(n.cmkPath); err != nil {
		t.Fatal(err)
	}
	if n.ks, err = keys.Create(context.Background(), n.ksDir(), n.cmk); err != nil {
		t.Fatal(err)
	}
	n.openEngine(t)
	return n
}

func (n *node) ksDir() string   { return filepath.Join(n.dir, "node") }
func (n *node) dataDir() string { return filepath.Join(n.dir, "node", "db") }

func (n *node) openEngine(t testing.TB) {
	t.Helper()
	var err error
	if n.eng, err = Open(Options{Dir: n.dataDir(), CacheSize: 8 << 20}, n.ks); err != nil {
		t.Fatal(err)
	}
}

func (n *node) reopen(t testing.TB) {
	t.Helper()
	n.close(t)
	var err error
	if n.ks, err = keys.Open(context.Background(), n.ksDir(), n.cmk); err != nil {
		t.Fatal(err)
	}
	n.openEngine(t)
}

func (n *node) close(t testing.TB) {
	t.Helper()
	if n.eng != nil {
		if err := n.eng.Close(); err != nil {
			t.Fatal(err)
		}
		n.eng = nil
	}
	if n.ks != nil {
		n.ks.Close()
		n.ks = nil
	}
}

func writeDocs(t testing.TB, db *DB, prefix string, n int, value []byte) {
	t.Helper()
	b := db.NewBatch()
	for i := 0; i < n; i++ {
		if err := b.Set([]byte(fmt.Sprintf("%s-%06d", prefix, i)), value, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// everyFile calls fn with every regular file under dir.
func everyFile(t testing.TB, dir string, fn func(path string, data []byte)) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fn(path, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCanaryNeverOnDisk(t *testing.T) {
	n := newNode(t)
	canary := []byte("CANARY-b1946ac92492d2347c6235b4d2611184")
	db, err := n.eng.CreateDatabase("app")
	if err != nil {
		t.Fatal(err)
	}
	value := bytes.Repeat(canary, 4)
	// Some in the WAL only, some flushed to sstables, some compacted.
	writeDocs(t, db, "flushed", 2000, value)
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	writeDocs(t, db, "compacted", 2000, value)
	if err := db.Compact(context.Background(), []byte("a"), []byte("z"), true); err != nil {
		t.Fatal(err)
	}
	writeDocs(t, db, "wal-only", 500, value)
	// The key names too are data.
	writeDocs(t, db, string(canary), 10, []byte("v"))
	n.close(t)

	files := 0
	everyFile(t, n.dir, func(path string, data []byte) {
		files++
		for _, needle := range [][]byte{canary, canary[:16], []byte("wal-only-0001")} {
			if bytes.Contains(data, needle) {
				t.Errorf("plaintext %q found in %s", needle, path)
			}
		}
	})
	if files < 5 {
		t.Fatalf("only %d files examined", files)
	}
	// And the data is all there.
	n.reopen(t)
	defer n.close(t)
	db, err = n.eng.Database("app")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"flushed-001999", "compacted-000000", "wal-only-000499"} {
		v, closer, err := db.Get([]byte(k))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if !bytes.Equal(v, value) {
			t.Fatalf("%s: wrong value", k)
		}
		closer.Close()
	}
}

// fileKind names the Pebble file kinds the tamper test covers.
func fileKind(name string) string {
	switch {
	case strings.HasSuffix(name, ".sst"):
		return "sstable"
	case strings.HasSuffix(name, ".log"):
		return "wal"
	case strings.HasPrefix(name, "MANIFEST"):
		return "manifest"
	case strings.HasPrefix(name, "OPTIONS"):
		return "options"
	}
	return ""
}

func TestTamperEachFileKind(t *testing.T) {
	for _, kind := range []string{"sstable", "wal", "manifest", "options"} {
		t.Run(kind, func(t *testing.T) {
			n := newNode(t)
			db, err := n.eng.CreateDatabase("app")
			if err != nil {
				t.Fatal(err)
			}
			writeDocs(t, db, "sst", 3000, bytes.Repeat([]byte("v"), 100))
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
			writeDocs(t, db, "wal", 300, bytes.Repeat([]byte("w"), 100))
			id := db.ID
			// Close without flushing the WAL's contents away.
			n.close(t)

			dbDir := filepath.Join(n.dataDir(), id)
			entries, _ := os.ReadDir(dbDir)
			var target string
			for _, e := range entries {
				if fi, _ := e.Info(); fileKind(e.Name()) == kind && fi.Size() > encfs.HeaderSize {
					target = filepath.Join(dbDir, e.Name())
				}
			}
			if target == "" {
				t.Fatalf("no non-empty %s file in %v", kind, entries)
			}
			data, _ := os.ReadFile(target)
			pos := encfs.HeaderSize + encfs.SlotSize/2
			if pos >= len(data) {
				pos = len(data) - 5
			}
			data[pos] ^= 0x20
			os.WriteFile(target, data, 0o600)

			var err2 error
			n.ks, err2 = keys.Open(context.Background(), n.ksDir(), n.cmk)
			if err2 != nil {
				t.Fatal(err2)
			}
			defer n.close(t)
			n.openEngine(t)
			db, err = n.eng.Database("app")
			if err == nil {
				// Opening may succeed (sstables are read lazily): reading
				// the damaged data must fail and return nothing.
				err = scanAll(db)
			}
			if err == nil {
				t.Fatalf("tampered %s went unnoticed", kind)
			}
			if !errors.Is(err, encfs.ErrIntegrity) {
				t.Fatalf("tampered %s: error %v does not report an integrity failure", kind, err)
			}
			if !strings.Contains(err.Error(), "integrity check failed") {
				t.Fatalf("error message %q does not say integrity", err)
			}
		})
	}
}

func scanAll(db *DB) error {
	it, err := db.NewIter(nil)
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		_ = it.Value()
	}
	if err := it.Error(); err != nil {
		it.Close()
		return err
	}
	return it.Close()
}

func TestDropDatabaseShredsKeyAndFiles(t *testing.T) {
	n := newNode(t)
	db, err := n.eng.CreateDatabase("gone")
	if err != nil {
		t.Fatal(err)
	}
	writeDocs(t, db, "k", 100, []byte("secret"))
	db.Flush()
	id := db.ID
	// Keep a copy of the files, as a forensic attacker would.
	saved := t.TempDir()
	everyFile(t, filepath.Join(n.dataDir(), id), func(path string, data []byte) {
		os.WriteFile(filepath.Join(saved, filepath.Base(path)), data, 0o600)
	})
	if err := n.eng.DropDatabase("gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(n.dataDir(), id)); !os.IsNotExist(err) {
		t.Fatalf("dropped database directory still exists: %v", err)
	}
	if _, err := n.eng.Database("gone"); !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("dropped database opens: %v", err)
	}
	// The surviving copy cannot be read with anything the node holds.
	if _, err := n.ks.KeySource(id).Key(1); err == nil {
		t.Fatal("the dropped database's key is still available")
	}
	_, err = pebble.Open(saved, &pebble.Options{FS: encfs.New(vfs.Default, id, n.ks.KeySource(id)), ReadOnly: true})
	if err == nil {
		t.Fatal("a copy of the dropped database's files opened")
	}
}

func TestDatabaseKeyRotationOldFilesReadable(t *testing.T) {
	n := newNode(t)
	db, _ := n.eng.CreateDatabase("app")
	writeDocs(t, db, "v1", 500, []byte("under-v1"))
	db.Flush()
	if v, err := n.eng.RotateDatabaseKey("app"); err != nil || v != 2 {
		t.Fatalf("rotate: %d %v", v, err)
	}
	writeDocs(t, db, "v2", 500, []byte("under-v2"))
	db.Flush()
	n.reopen(t)
	defer n.close(t)
	db, _ = n.eng.Database("app")
	count := 0
	it, _ := db.NewIter(nil)
	for it.First(); it.Valid(); it.Next() {
		count++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if count != 1000 {
		t.Fatalf("read %d records, want 1000", count)
	}
}

// TestWALRecycled checks that Pebble recycles encrypted WAL files (the
// header generation rises) and that every write survives reopening from
// recycled logs, stale chunks of earlier generations and all.
func TestWALRecycled(t *testing.T) {
	n := newNode(t)
	db, err := n.eng.CreateDatabase("app")
	if err != nil {
		t.Fatal(err)
	}
	value := bytes.Repeat([]byte("w"), 4000)
	for round := 0; round < 12; round++ {
		writeDocs(t, db, fmt.Sprintf("r%02d", round), 200, value)
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	writeDocs(t, db, "tail", 50, value) // in the current (recycled) WAL only
	id := db.ID
	maxGen := uint32(0)
	entries, _ := os.ReadDir(filepath.Join(n.dataDir(), id))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".log") {
			raw, _ := os.ReadFile(filepath.Join(n.dataDir(), id, e.Name()))
			if len(raw) >= encfs.HeaderSize {
				maxGen = max(maxGen, binary.LittleEndian.Uint32(raw[20:24]))
			}
		}
	}
	if maxGen == 0 {
		t.Fatal("no WAL was recycled")
	}
	n.reopen(t)
	defer n.close(t)
	db, _ = n.eng.Database("app")
	count := 0
	it, _ := db.NewIter(nil)
	for it.First(); it.Valid(); it.Next() {
		count++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if count != 12*200+50 {
		t.Fatalf("read %d records after reopening from recycled WALs, want %d", count, 12*200+50)
	}
}

package raftstore

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/internal/encfs"
	"github.com/cmkdb/cmkdb/internal/storage/storagetest"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

var testConf = raft.Configuration{Servers: []raft.Server{
	{Suffrage: raft.Voter, ID: "n1", Address: "a1"},
	{Suffrage: raft.Nonvoter, ID: "n2", Address: "a2"},
}}

func newSnapStore(t testing.TB, fs vfs.FS, dir string, retain int) *SnapshotStore {
	t.Helper()
	s, err := NewSnapshotStore(fs, dir, retain)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeSnap(t testing.TB, s *SnapshotStore, index, term uint64, data []byte) string {
	t.Helper()
	sink, err := s.Create(1, index, term, testConf, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Several writes, as an FSM does.
	for len(data) > 0 {
		n := min(len(data), 1000)
		if _, err := sink.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	return sink.ID()
}

func readSnap(s *SnapshotStore, id string) (*raft.SnapshotMeta, []byte, error) {
	meta, rc, err := s.Open(id)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	return meta, data, err
}

func listIDs(t testing.TB, s *SnapshotStore) []string {
	t.Helper()
	metas, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range metas {
		ids = append(ids, m.ID)
	}
	return ids
}

// fileSystems are the two a snapshot store is tested over: the encrypting
// one members use, and plain files, where only the store's own digest can
// catch damage.
var fileSystems = []struct {
	name string
	fs   func(t testing.TB) vfs.FS
}{
	{"encrypted", encFS},
	{"plaintext", func(testing.TB) vfs.FS { return vfs.Default }},
}

func TestSnapshotCreateListOpen(t *testing.T) {
	for _, fsc := range fileSystems {
		t.Run(fsc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "snaps")
			s := newSnapStore(t, fsc.fs(t), dir, 3)
			if ids := listIDs(t, s); len(ids) != 0 {
				t.Fatalf("new store lists %v", ids)
			}
			data := bytes.Repeat([]byte("snapshot data "), 50000) // several encfs slots
			id := writeSnap(t, s, 10, 2, data)
			metas, err := s.List()
			if err != nil {
				t.Fatal(err)
			}
			if len(metas) != 1 {
				t.Fatalf("listed %d snapshots", len(metas))
			}
			m := metas[0]
			if m.ID != id || m.Index != 10 || m.Term != 2 || m.Size != int64(len(data)) || m.Version != 1 ||
				m.ConfigurationIndex != 3 || len(m.Configuration.Servers) != 2 ||
				m.Configuration.Servers[1] != testConf.Servers[1] {
				t.Fatalf("meta %+v", m)
			}
			meta, got, err := readSnap(s, id)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) || meta.ID != id || meta.Size != int64(len(data)) {
				t.Fatalf("read back %d bytes, meta %+v", len(got), meta)
			}

			// An empty snapshot is a snapshot too.
			empty := writeSnap(t, s, 11, 2, nil)
			if _, got, err := readSnap(s, empty); err != nil || len(got) != 0 {
				t.Fatalf("empty snapshot: %d bytes, %v", len(got), err)
			}

			// A reopened store lists the same.
			s2 := newSnapStore(t, fsc.fs(t), dir, 3)
			if fsc.name == "encrypted" {
				// (a new key: encfs.New with other keys cannot read them)
				if _, err := s2.List(); err == nil {
					t.Fatal("snapshots listed under another key")
				}
			} else if ids := listIDs(t, s2); len(ids) != 2 || ids[0] != empty || ids[1] != id {
				t.Fatalf("reopened store lists %v", ids)
			}

			for _, bad := range []string{"", ".", "..", "../x", "nope", id + ".tmp", "a/b"} {
				if _, _, err := s.Open(bad); err == nil {
					t.Fatalf("Open(%q) succeeded", bad)
				}
			}
			if _, err := s.Create(0, 1, 1, testConf, 1, nil); err == nil {
				t.Fatal("version 0 snapshot created")
			}
		})
	}
}

func TestSnapshotOrderAndRetain(t *testing.T) {
	dir := t.TempDir()
	fs := encFS(t)
	s := newSnapStore(t, fs, dir, 2)
	a := writeSnap(t, s, 100, 1, []byte("a"))
	b := writeSnap(t, s, 50, 2, []byte("b")) // a higher term wins over a higher index
	if ids := listIDs(t, s); len(ids) != 2 || ids[0] != b || ids[1] != a {
		t.Fatalf("listed %v, want [%s %s]", ids, b, a)
	}
	c := writeSnap(t, s, 60, 2, []byte("c"))
	d := writeSnap(t, s, 60, 2, []byte("d")) // same term and index: by ID
	if c == d {
		t.Fatal("two snapshots got the same ID")
	}
	want := []string{max(c, d), min(c, d)}
	if ids := listIDs(t, s); len(ids) != 2 || ids[0] != want[0] || ids[1] != want[1] {
		t.Fatalf("listed %v, want %v", ids, want)
	}
	// Only the retained snapshots are left on disk.
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 {
		t.Fatalf("directory holds %v", names)
	}
	for _, gone := range []string{a, b} {
		if _, _, err := s.Open(gone); err == nil {
			t.Fatalf("reaped snapshot %s opens", gone)
		}
	}
	if _, err := NewSnapshotStore(fs, dir, 0); err == nil {
		t.Fatal("retain 0 accepted")
	}
}

func TestSnapshotCancelAndInterrupted(t *testing.T) {
	dir := t.TempDir()
	fs := encFS(t)
	s := newSnapStore(t, fs, dir, 2)
	good := writeSnap(t, s, 5, 1, []byte("good"))

	// Cancel removes the temporary directory; the snapshot never appears.
	sink, err := s.Create(1, 9, 1, testConf, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	if err := sink.Cancel(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, sink.ID()+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("cancelled snapshot's temp dir: %v", err)
	}
	if ids := listIDs(t, s); len(ids) != 1 || ids[0] != good {
		t.Fatalf("after cancel: %v", ids)
	}
	if _, err := sink.Write([]byte("more")); err == nil {
		t.Fatal("write after cancel accepted")
	}

	// An interrupted snapshot (the process died before Close) is never
	// listed, and the next open removes it.
	sink, err = s.Create(1, 10, 1, testConf, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(bytes.Repeat([]byte("x"), 100000)); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, sink.ID()+".tmp")
	if _, err := os.Stat(tmp); err != nil {
		t.Fatal(err)
	}
	if ids := listIDs(t, s); len(ids) != 1 || ids[0] != good {
		t.Fatalf("while a snapshot is being written: %v", ids)
	}
	// A crash after the meta was written but before the rename, too.
	if err := os.MkdirAll(filepath.Join(dir, "3-99-1.tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "3-99-1.tmp", metaFile), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := newSnapStore(t, fs, dir, 2)
	if ids := listIDs(t, s2); len(ids) != 1 || ids[0] != good {
		t.Fatalf("after reopen: %v", ids)
	}
	for _, name := range []string{tmp, filepath.Join(dir, "3-99-1.tmp")} {
		if _, err := os.Stat(name); !os.IsNotExist(err) {
			t.Fatalf("stale %s left: %v", name, err)
		}
	}
}

// TestSnapshotDamaged flips, cuts or grows the files of a snapshot on disk
// and checks that reading it fails with an error that names it, over both
// file systems (encfs catches a flipped ciphertext byte itself; over plain
// files the SHA-256 does).
func TestSnapshotDamaged(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 20000)
	damages := []struct {
		name   string
		file   string
		damage func(b []byte) []byte
	}{
		{"flip first data byte", dataFile, func(b []byte) []byte { b[0] ^= 1; return b }},
		{"flip middle data byte", dataFile, func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }},
		{"flip last data byte", dataFile, func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }},
		{"truncate data", dataFile, func(b []byte) []byte { return b[:len(b)-100] }},
		{"grow data", dataFile, func(b []byte) []byte { return append(b, make([]byte, 5000)...) }},
		{"flip meta byte", metaFile, func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
		{"empty meta", metaFile, func([]byte) []byte { return nil }},
	}
	for _, fsc := range fileSystems {
		for _, d := range damages {
			t.Run(fsc.name+"/"+d.name, func(t *testing.T) {
				dir := t.TempDir()
				s := newSnapStore(t, fsc.fs(t), dir, 2)
				id := writeSnap(t, s, 7, 1, data)
				path := filepath.Join(dir, id, d.file)
				raw, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, d.damage(raw), 0o600); err != nil {
					t.Fatal(err)
				}
				_, got, err := readSnap(s, id)
				if err == nil {
					t.Fatalf("damaged snapshot read without error (%d bytes, intact: %v)", len(got), bytes.Equal(got, data))
				}
				if !strings.Contains(err.Error(), id) {
					t.Fatalf("error does not name the snapshot: %v", err)
				}
				if fsc.name == "plaintext" && !errors.Is(err, ErrSnapshotDamaged) {
					t.Fatalf("not ErrSnapshotDamaged: %v", err)
				}
				if d.file == metaFile {
					if _, err := s.List(); err == nil || !strings.Contains(err.Error(), id) {
						t.Fatalf("List with a damaged meta: %v", err)
					}
				}
			})
		}
	}
}

// TestSnapshotHashChecked alters the data of a plaintext snapshot without
// changing its size: only the digest can tell, at the end of the data.
func TestSnapshotHashChecked(t *testing.T) {
	dir := t.TempDir()
	s := newSnapStore(t, vfs.Default, dir, 1)
	id := writeSnap(t, s, 1, 1, []byte("the original contents"))
	if err := os.WriteFile(filepath.Join(dir, id, dataFile), []byte("the altered! contents"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, rc, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.ReadAll(rc)
	if !errors.Is(err, ErrSnapshotDamaged) || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("got %v", err)
	}
	if _, err := rc.Read(make([]byte, 10)); !errors.Is(err, ErrSnapshotDamaged) {
		t.Fatalf("error not sticky: %v", err)
	}
}

// TestModes checks the on-disk modes through encfs.Private: 0700
// directories, 0600 files.
func TestModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snaps")
	s := newSnapStore(t, encFS(t), dir, 1)
	writeSnap(t, s, 1, 1, []byte("x"))
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := os.FileMode(encfs.FileMode)
		if d.IsDir() {
			want = encfs.DirMode
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestNoPlaintextOnDisk writes a canary through the log, the stable store
// and a snapshot, in a real encrypted database (storagetest's engine and
// keystore), and looks for it in every file on disk. The plaintext control
// shows the search would find it.
func TestNoPlaintextOnDisk(t *testing.T) {
	const canary = "CANARY-7f3a9c1e-do-not-leak"
	write := func(t *testing.T, st *Store, snaps *SnapshotStore) {
		t.Helper()
		if err := st.StoreLogs([]*raft.Log{
			{Index: 1, Term: 1, Data: []byte("a log entry holding " + canary), Extensions: []byte(canary)},
		}); err != nil {
			t.Fatal(err)
		}
		if err := st.Set([]byte(canary), []byte(canary)); err != nil {
			t.Fatal(err)
		}
		writeSnap(t, snaps, 1, 1, []byte("a snapshot holding "+canary))
	}
	found := func(t *testing.T, root string) []string {
		t.Helper()
		var hits []string
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(canary)) {
				hits = append(hits, path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return hits
	}

	t.Run("encrypted", func(t *testing.T) {
		db := storagetest.NewDB(t, "local")
		st := newStore(t, db.DB, "raft/")
		snaps := newSnapStore(t, db.FS, filepath.Join(db.Dir, "raft-snapshots"), 1)
		write(t, st, snaps)
		if err := db.Flush(); err != nil { // into an sstable as well as the WAL
			t.Fatal(err)
		}
		// Still readable through the stores.
		var l raft.Log
		if err := st.GetLog(1, &l); err != nil || !bytes.Contains(l.Data, []byte(canary)) {
			t.Fatalf("log entry: %v", err)
		}
		if _, data, err := readSnap(snaps, listIDs(t, snaps)[0]); err != nil || !bytes.Contains(data, []byte(canary)) {
			t.Fatalf("snapshot: %v", err)
		}
		// The whole engine directory: the database, the snapshots, the keystore.
		root := filepath.Dir(filepath.Dir(filepath.Dir(db.Dir)))
		if hits := found(t, root); len(hits) > 0 {
			t.Fatalf("canary in plaintext in %v", hits)
		}
	})
	t.Run("plaintext control", func(t *testing.T) {
		root := t.TempDir()
		db := openDB(t, vfs.Default, filepath.Join(root, "db"))
		defer db.Close()
		write(t, newStore(t, db, "raft/"), newSnapStore(t, vfs.Default, filepath.Join(root, "snaps"), 1))
		if hits := found(t, root); len(hits) < 2 {
			t.Fatalf("the search found the plaintext canary only in %v", hits)
		}
	})
}

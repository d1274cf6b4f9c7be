package controlplane

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cmkdb/cmkdb/internal/encfs"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/testfiles"
)

// populatedControlPlane makes a control plane directory whose store has
// every kind of file Pebble writes: an sstable (flushed records), a WAL
// holding unflushed records, a MANIFEST and an OPTIONS file; and a CA blob.
func populatedControlPlane(t *testing.T) (dir string, apiKeyID string) {
	t.Helper()
	dir = t.TempDir()
	s := openService(t, dir, nil)
	ctx := context.Background()
	if _, err := s.CreateGroup(ctx, "test", "P0", ""); err != nil {
		t.Fatal(err)
	}
	k, err := s.CreateAPIKey(ctx, "k", []RoleAssignment{{RoleName: RoleOrgOwner}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.st.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateGroup(ctx, "test", "P1", ""); err != nil { // in the WAL only
		t.Fatal(err)
	}
	if _, err := Blob(dir, "ca", func() ([]byte, error) { return []byte("the CA"), nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, k.ID
}

// openAll opens what a control plane reads at start: the service and the
// CA blob.
func openAll(dir string) error {
	if _, err := Blob(dir, "ca", nil); err != nil {
		return err
	}
	s, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		return err
	}
	defer s.Close()
	if len(s.Groups()) != 2 || len(s.APIKeys()) != 1 {
		return errors.New("state incomplete after reopen")
	}
	return nil
}

// TestDamagedStateRefused flips one byte in each file of the control
// plane's state (the store key, every Pebble file — MANIFEST, WAL,
// sstables, OPTIONS — the internal key and the CA blob), in a file's header
// and in its first chunk. Each time Open refuses with an error naming the
// file, leaves the directory as it was, and never creates a new
// organization; the undamaged copy opens with everything in it.
func TestDamagedStateRefused(t *testing.T) {
	pristine, _ := populatedControlPlane(t)
	if err := openAll(pristine); err != nil {
		t.Fatalf("undamaged state: %v", err)
	}
	var files []string
	kinds := map[string]bool{}
	_ = filepath.WalkDir(pristine, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, _ := d.Info(); info.Size() > 0 {
				rel, _ := filepath.Rel(pristine, path)
				files = append(files, rel)
				for _, kind := range []string{"MANIFEST", ".log", ".sst", "OPTIONS", "store.key", "internal-cmk.json", "ca.sealed"} {
					if strings.Contains(rel, kind) {
						kinds[kind] = true
					}
				}
			}
		}
		return nil
	})
	for _, kind := range []string{"MANIFEST", ".log", ".sst", "OPTIONS", "store.key", "internal-cmk.json", "ca.sealed"} {
		if !kinds[kind] {
			t.Fatalf("the state has no %s file to damage: %v", kind, files)
		}
	}
	sort.Strings(files)
	for _, rel := range files {
		info, err := os.Stat(filepath.Join(pristine, rel))
		if err != nil {
			t.Fatal(err)
		}
		offsets := []int64{info.Size() / 2}
		if info.Size() > encfs.HeaderSize+100 && strings.Contains(rel, string(filepath.Separator)+storeDirName+string(filepath.Separator)) {
			offsets = []int64{100, encfs.HeaderSize + 100}
		}
		for _, off := range offsets {
			t.Run(strings.ReplaceAll(rel, "/", "_")+"@"+itoa(off), func(t *testing.T) {
				dir := t.TempDir()
				testfiles.CopyTree(t, pristine, dir)
				path := filepath.Join(dir, rel)
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				b[off] ^= 0x01
				if err := os.WriteFile(path, b, info.Mode().Perm()); err != nil {
					t.Fatal(err)
				}
				before := testfiles.HashTree(t, dir)
				err = openAll(dir)
				if err == nil {
					t.Fatalf("opened with a flipped byte in %s", rel)
				}
				if !strings.Contains(err.Error(), filepath.Base(rel)) {
					t.Fatalf("error does not name %s: %v", rel, err)
				}
				if after := testfiles.HashTree(t, dir); after != before {
					t.Fatalf("a refused open changed the state directory")
				}
				// Undo the damage: the same directory opens whole.
				b[off] ^= 0x01
				if err := os.WriteFile(path, b, info.Mode().Perm()); err != nil {
					t.Fatal(err)
				}
				if err := openAll(dir); err != nil {
					t.Fatalf("after repair: %v", err)
				}
			})
		}
	}
}

func itoa(n int64) string {
	return strings.TrimLeft(hex.EncodeToString([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), "0")
}

// TestPebbleOnEncfsRefusesDamagedLogs checks what the verification pass at
// open relies on not being the only defence: Pebble itself, reading a
// damaged WAL or MANIFEST through encfs, fails instead of treating the
// damage as the end of the log (as it does for plaintext files).
func TestPebbleOnEncfsRefusesDamagedLogs(t *testing.T) {
	pristine, _ := populatedControlPlane(t)
	for _, kind := range []string{"MANIFEST", ".log"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			testfiles.CopyTree(t, pristine, dir)
			storeDir := filepath.Join(dir, "state", storeDirName)
			names, _ := os.ReadDir(storeDir)
			damaged := ""
			for _, n := range names {
				if info, _ := n.Info(); strings.Contains(n.Name(), kind) && info.Size() > encfs.HeaderSize {
					damaged = filepath.Join(storeDir, n.Name())
					b, _ := os.ReadFile(damaged)
					b[encfs.HeaderSize+20] ^= 0x80
					if err := os.WriteFile(damaged, b, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			if damaged == "" {
				t.Fatalf("no %s file", kind)
			}
			key, err := readStoreKey(filepath.Join(dir, "state", secretKeyFile))
			if err != nil {
				t.Fatal(err)
			}
			fk, _ := newStoreFileKeys(key)
			efs := encfs.New(vfs.Default, storeFilesScope, fk)
			db, err := pebble.Open(storeDir, &pebble.Options{FS: efs, ErrorIfNotExists: true, Logger: quietLogger{}})
			if err == nil {
				db.Close()
				t.Fatalf("pebble opened a store with a damaged %s", damaged)
			}
			if !errors.Is(err, encfs.ErrIntegrity) && !strings.Contains(err.Error(), "integrity check failed") {
				t.Fatalf("error is not an integrity error: %v", err)
			}
		})
	}
}

// TestMissingStateRefused: existing state with a piece missing is refused,
// never re-created around.
func TestMissingStateRefused(t *testing.T) {
	pristine, _ := populatedControlPlane(t)
	for _, tc := range []struct{ remove, want string }{
		{filepath.Join("state", secretKeyFile), secretKeyFile},
		{"internal-cmk.json", "internal-cmk.json"},
		{filepath.Join("blobs", "ca.sealed"), "ca.sealed"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			dir := t.TempDir()
			testfiles.CopyTree(t, pristine, dir)
			if err := os.Remove(filepath.Join(dir, tc.remove)); err != nil {
				t.Fatal(err)
			}
			before := testfiles.HashTree(t, dir)
			err := openAll(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("open without %s: %v", tc.remove, err)
			}
			if testfiles.HashTree(t, dir) != before {
				t.Fatal("a refused open changed the state directory")
			}
		})
	}
	// A MANIFEST marker gone: Pebble would start an empty database.
	t.Run("manifest marker", func(t *testing.T) {
		dir := t.TempDir()
		testfiles.CopyTree(t, pristine, dir)
		storeDir := filepath.Join(dir, "state", storeDirName)
		names, _ := os.ReadDir(storeDir)
		for _, n := range names {
			if strings.HasPrefix(n.Name(), "marker.manifest") {
				if err := os.Remove(filepath.Join(storeDir, n.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := Open(context.Background(), Options{Dir: dir}); !errors.Is(err, ErrUnreadableState) {
			t.Fatalf("open without the MANIFEST marker: %v", err)
		}
	})
	// A store without its organization record.
	t.Run("no org", func(t *testing.T) {
		dir := t.TempDir()
		st, err := openStore(filepath.Join(dir, "state"), slog.Default(), func(*store) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		st.close()
		if _, err := local.Create(filepath.Join(dir, "internal-cmk.json")); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(context.Background(), Options{Dir: dir}); !errors.Is(err, ErrUnreadableState) {
			t.Fatalf("open of a store without an organization: %v", err)
		}
	})
}

// TestFirstRun: an absent or empty store directory is a first run, and a
// store.tmp left by a crash during one is discarded.
func TestFirstRun(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, stateDir string)
	}{
		{"absent", func(*testing.T, string) {}},
		{"empty store dir", func(t *testing.T, d string) {
			if err := os.MkdirAll(filepath.Join(d, storeDirName), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{"crashed creation", func(t *testing.T, d string) {
			if err := os.MkdirAll(filepath.Join(d, storeTmpName), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, storeTmpName, "000001.log"), []byte("half"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, filepath.Join(dir, "state"))
			s := openService(t, dir, nil)
			org := s.Org()
			s.Close()
			if _, err := os.Stat(filepath.Join(dir, "state", storeTmpName)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("store.tmp left behind: %v", err)
			}
			s2 := openService(t, dir, nil)
			if s2.Org().ID != org.ID {
				t.Fatalf("second open has organization %s, first %s", s2.Org().ID, org.ID)
			}
		})
	}
}

// legacyControlPlane writes a control plane directory as the previous
// release did: a bare 32-byte store key and a plaintext Pebble store in
// state/state whose values are sealed with it.
func legacyControlPlane(t *testing.T, withOrg bool) (dir string, org Org, group Group) {
	t.Helper()
	dir = t.TempDir()
	stateDir := filepath.Join(dir, "state")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(stateDir, secretKeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Create(filepath.Join(dir, "internal-cmk.json")); err != nil {
		t.Fatal(err)
	}
	aead, err := keyAEAD(key)
	if err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(filepath.Join(stateDir, legacyDirName), &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	st := &store{db: db, aead: aead}
	org = Org{ID: "0123456789abcdef01234567", Name: "cmkdb"}
	group = Group{ID: "aaaaaaaaaaaaaaaaaaaaaaaa", Name: "Legacy", OrgID: org.ID}
	recs := map[string]any{"group/" + group.ID: group}
	if withOrg {
		recs[orgKey] = org
	}
	if err := st.put(recs); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, org, group
}

// TestLegacyStoreMigrated: a previous release's plaintext store is
// migrated once into the encrypted store, with every record; the old
// directory is kept aside, and the key file gains its checksum.
func TestLegacyStoreMigrated(t *testing.T) {
	dir, org, group := legacyControlPlane(t, true)
	s := openService(t, dir, nil)
	if s.Org().ID != org.ID {
		t.Fatalf("organization %s after migration, want %s", s.Org().ID, org.ID)
	}
	if g, err := s.GetGroup(group.ID); err != nil || g.Name != group.Name {
		t.Fatalf("group after migration: %+v %v", g, err)
	}
	s.Close()
	stateDir := filepath.Join(dir, "state")
	if _, err := os.Stat(filepath.Join(stateDir, legacyDirName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("plaintext store still in place: %v", err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, legacyAsideName)); err != nil {
		t.Fatalf("plaintext store not kept aside: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(stateDir, secretKeyFile)); err != nil || fi.Size() != int64(storeKeyFile) {
		t.Fatalf("store key not upgraded: %v", err)
	}
	// Every file of the new store is encrypted: none holds a record key.
	if leaked := grepDir(t, filepath.Join(stateDir, storeDirName), "group/"+group.ID); leaked != "" {
		t.Fatalf("record key in plaintext in %s", leaked)
	}
	s2 := openService(t, dir, nil)
	if s2.Org().ID != org.ID {
		t.Fatal("organization changed on the second open")
	}
}

// TestRefusedStartKeepsBareKey: a store key in the previous release's bare
// format is rewritten only once the store opened; a start refused over a
// damaged store leaves the whole directory, key file included, as it was.
func TestRefusedStartKeepsBareKey(t *testing.T) {
	dir, _, _ := legacyControlPlane(t, true)
	stateDir := filepath.Join(dir, "state")
	keyPath := filepath.Join(stateDir, secretKeyFile)
	bare, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	openService(t, dir, nil).Close() // migrates; the key gains its checksum
	if err := os.WriteFile(keyPath, bare, 0o600); err != nil {
		t.Fatal(err)
	}
	manifests, _ := filepath.Glob(filepath.Join(stateDir, storeDirName, "MANIFEST-*"))
	if len(manifests) == 0 {
		t.Fatal("no MANIFEST to damage")
	}
	b, err := os.ReadFile(manifests[0])
	if err != nil {
		t.Fatal(err)
	}
	b[encfs.HeaderSize+10] ^= 1
	if err := os.WriteFile(manifests[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	before := testfiles.HashTree(t, dir)
	if _, err := Open(context.Background(), Options{Dir: dir}); err == nil {
		t.Fatal("opened over a damaged MANIFEST")
	}
	if after := testfiles.HashTree(t, dir); after != before {
		t.Fatal("the refused start changed the directory")
	}
	if got, _ := os.ReadFile(keyPath); !bytes.Equal(got, bare) {
		t.Fatal("the refused start rewrote the bare store key")
	}
}

// TestLegacyMigrationCrashSafe: a crash before the migrated store commits
// (store.tmp left) migrates again; a crash after it commits but before the
// old store is set aside opens the migrated store and sets the old aside.
func TestLegacyMigrationCrashSafe(t *testing.T) {
	t.Run("before commit", func(t *testing.T) {
		dir, org, _ := legacyControlPlane(t, true)
		tmp := filepath.Join(dir, "state", storeTmpName)
		// A complete but uncommitted store, holding a record the old store
		// does not: the migration must start over, not adopt it.
		key, err := readStoreKey(filepath.Join(dir, "state", secretKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		partial, err := openEncrypted(tmp, key, false)
		if err != nil {
			t.Fatal(err)
		}
		stray := Group{ID: "bbbbbbbbbbbbbbbbbbbbbbbb", Name: "Stray", OrgID: org.ID}
		if err := partial.put(map[string]any{"group/" + stray.ID: stray}); err != nil {
			t.Fatal(err)
		}
		if err := partial.close(); err != nil {
			t.Fatal(err)
		}
		s := openService(t, dir, nil)
		if s.Org().ID != org.ID {
			t.Fatal("migration after a crash lost the organization")
		}
		if _, err := s.GetGroup(stray.ID); err == nil {
			t.Fatal("the uncommitted store's record survived: it was adopted, not rebuilt")
		}
	})
	t.Run("after commit", func(t *testing.T) {
		dir, org, _ := legacyControlPlane(t, true)
		s := openService(t, dir, nil)
		s.Close()
		stateDir := filepath.Join(dir, "state")
		// Put the old store back where it was, as if the rename aside had
		// not happened.
		if err := os.Rename(filepath.Join(stateDir, legacyAsideName), filepath.Join(stateDir, legacyDirName)); err != nil {
			t.Fatal(err)
		}
		s2 := openService(t, dir, nil)
		if s2.Org().ID != org.ID {
			t.Fatal("organization changed")
		}
		if _, err := os.Stat(filepath.Join(stateDir, legacyDirName)); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("old store not set aside")
		}
	})
}

// TestLegacyStoreWithoutOrgRefused: an old plaintext store that reads as
// having no organization (Pebble reads a damaged plaintext MANIFEST as an
// empty log) is refused, not migrated into a new organization.
func TestLegacyStoreWithoutOrgRefused(t *testing.T) {
	dir, _, _ := legacyControlPlane(t, false)
	before := testfiles.HashTree(t, filepath.Join(dir, "state", legacyDirName))
	_, err := Open(context.Background(), Options{Dir: dir})
	if !errors.Is(err, ErrUnreadableState) || !strings.Contains(err.Error(), legacyDirName) {
		t.Fatalf("open: %v", err)
	}
	if testfiles.HashTree(t, filepath.Join(dir, "state", legacyDirName)) != before {
		t.Fatal("the old store was changed")
	}
	if _, err := os.Stat(filepath.Join(dir, "state", storeDirName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a store was created: %v", err)
	}
}

// TestStateFileModes: every file of the control plane's state is 0600 and
// every directory 0700.
func TestStateFileModes(t *testing.T) {
	dir, _ := populatedControlPlane(t)
	checked := testfiles.CheckPrivateModes(t, dir)
	if checked < 8 {
		t.Fatalf("only %d entries checked", checked)
	}
}

package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/internal/encfs"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/local"
)

func newLocal(t testing.TB, dir, name string) (*local.Provider, string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if _, err := local.Create(path); err != nil {
		t.Fatal(err)
	}
	p, err := local.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return p, path
}

func keyOf(t *testing.T, ks *Keystore, db string) (uint32, []byte) {
	t.Helper()
	info, ok := ks.Database(db)
	if !ok {
		t.Fatalf("no database %q", db)
	}
	v, k, err := ks.KeySource(info.ID).CurrentKey()
	if err != nil {
		t.Fatal(err)
	}
	return v, bytes.Clone(k)
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cmk, _ := newLocal(t, dir, "cmk.json")
	ksDir := filepath.Join(dir, "node")

	ks, err := Create(ctx, ksDir, cmk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(ctx, ksDir, cmk); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	fi, err := os.Stat(Path(ksDir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("keystore mode %v, want 0600", fi.Mode().Perm())
	}
	for _, db := range []string{"app", "audit", "shred-me"} {
		if _, err := ks.AddDatabase(db); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ks.AddDatabase("app"); !errors.Is(err, ErrDatabaseExists) {
		t.Fatalf("duplicate AddDatabase: %v", err)
	}
	v1, appKey1 := keyOf(t, ks, "app")
	if v1 != 1 {
		t.Fatalf("first key version %d", v1)
	}
	v2, err := ks.RotateDatabaseKey("app")
	if err != nil || v2 != 2 {
		t.Fatalf("RotateDatabaseKey: %d, %v", v2, err)
	}
	_, appKey2 := keyOf(t, ks, "app")
	if bytes.Equal(appKey1, appKey2) {
		t.Fatal("rotated database key equals the old one")
	}
	_, auditKey := keyOf(t, ks, "audit")
	masterBefore := ks.Master()
	if err := ks.RotateMasterKey(ctx); err != nil {
		t.Fatal(err)
	}
	if m := ks.Master(); m.Version != masterBefore.Version+1 {
		t.Fatalf("master version %d after rotation, want %d", m.Version, masterBefore.Version+1)
	}
	shredID := mustID(t, ks, "shred-me")
	if err := ks.DropDatabase("shred-me"); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.KeySource(shredID).Key(1); !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("dropped database key still answers: %v", err)
	}
	appID := mustID(t, ks, "app")
	ks.Close()
	if _, _, err := ks.KeySource(appID).CurrentKey(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed keystore still serves keys: %v", err)
	}

	// Reopen: every key survives rotation of the master, both versions of
	// the rotated database key are there, the dropped one is gone.
	ks2, err := Open(ctx, ksDir, cmk)
	if err != nil {
		t.Fatal(err)
	}
	defer ks2.Close()
	if id := mustID(t, ks2, "app"); id != appID {
		t.Fatalf("app id %s after reopen, want %s", id, appID)
	}
	for v, want := range map[uint32][]byte{1: appKey1, 2: appKey2} {
		got, err := ks2.KeySource(appID).Key(v)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("app key v%d after reopen: equal=%v err=%v", v, bytes.Equal(got, want), err)
		}
	}
	if _, got := keyOf(t, ks2, "audit"); !bytes.Equal(got, auditKey) {
		t.Fatal("audit key changed across master rotation")
	}
	if _, ok := ks2.Database("shred-me"); ok {
		t.Fatal("dropped database came back")
	}
	if _, err := ks2.KeySource(appID).Key(9); !errors.Is(err, encfs.ErrUnknownKeyVersion) {
		t.Fatalf("unknown version: %v", err)
	}
	// No key bytes in the file, wrapped keys aside: the raw keys never
	// appear, in any encoding.
	raw, _ := os.ReadFile(Path(ksDir))
	for _, k := range [][]byte{appKey1, appKey2, auditKey} {
		if bytes.Contains(raw, k) || strings.Contains(string(raw), hex.EncodeToString(k)) {
			t.Fatal("a database key appears in the keystore file")
		}
	}
}

func mustID(t *testing.T, ks *Keystore, name string) string {
	t.Helper()
	d, ok := ks.Database(name)
	if !ok {
		t.Fatalf("no database %q", name)
	}
	return d.ID
}

func TestRewrapUnderNewCMKAndVersion(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cmkA, pathA := newLocal(t, dir, "a.json")
	cmkB, _ := newLocal(t, dir, "b.json")
	ksDir := filepath.Join(dir, "node")
	ks, err := Create(ctx, ksDir, cmkA)
	if err != nil {
		t.Fatal(err)
	}
	ks.AddDatabase("app")
	_, appKey := keyOf(t, ks, "app")

	// A new CMK version of the same key.
	if _, err := local.Rotate(pathA); err != nil {
		t.Fatal(err)
	}
	if err := ks.RewrapMaster(ctx, cmkA); err != nil {
		t.Fatal(err)
	}
	if got := ks.Master().CMK.KeyVersion; got != "2" {
		t.Fatalf("master wrapped under CMK version %q, want 2", got)
	}
	// Another CMK altogether.
	if err := ks.RewrapMaster(ctx, cmkB); err != nil {
		t.Fatal(err)
	}
	ks.Close()
	if _, err := Open(ctx, ksDir, cmkA); !errors.Is(err, ErrWrongKey) && !errors.Is(err, kms.ErrInvalid) {
		t.Fatalf("opening with the old CMK: %v, want a wrong-key error", err)
	}
	ks2, err := Open(ctx, ksDir, cmkB)
	if err != nil {
		t.Fatal(err)
	}
	defer ks2.Close()
	if _, got := keyOf(t, ks2, "app"); !bytes.Equal(got, appKey) {
		t.Fatal("database key changed across CMK re-wrap")
	}
}

func TestOpenFailsClearlyAndModifiesNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cmk, cmkPath := newLocal(t, dir, "cmk.json")
	other, _ := newLocal(t, dir, "other.json")
	ksDir := filepath.Join(dir, "node")
	ks, err := Create(ctx, ksDir, cmk)
	if err != nil {
		t.Fatal(err)
	}
	ks.AddDatabase("app")
	ks.Close()
	pristine, _ := os.ReadFile(Path(ksDir))

	cases := []struct {
		name  string
		setup func(t *testing.T)
		open  kms.Provider
		is    []error
	}{
		{"another CMK", func(*testing.T) {}, other, []error{kms.ErrKeyNotFound}},
		{"CMK disabled", func(t *testing.T) { _, err := local.Disable(cmkPath); must(t, err) }, cmk, []error{kms.ErrInvalid, kms.ErrKeyDisabled}},
		{"CMK deleted", func(t *testing.T) { _, err := local.Delete(cmkPath); must(t, err) }, cmk, []error{kms.ErrInvalid, kms.ErrKeyDeleted}},
		{"CMK file missing", func(t *testing.T) {
			if err := os.Rename(cmkPath, cmkPath+".away"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Rename(cmkPath+".away", cmkPath) })
		}, cmk, []error{kms.ErrInvalid, kms.ErrKeyNotFound}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.setup(t)
			t.Cleanup(func() { local.Restore(cmkPath); local.Enable(cmkPath) })
			_, err := Open(ctx, ksDir, c.open)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			for _, want := range c.is {
				if !errors.Is(err, want) {
					t.Fatalf("error %q does not match %v", err, want)
				}
			}
			if now, _ := os.ReadFile(Path(ksDir)); !bytes.Equal(now, pristine) {
				t.Fatal("a failed open modified the keystore")
			}
		})
	}
	ks, err = Open(ctx, ksDir, cmk)
	if err != nil {
		t.Fatalf("restored CMK cannot open: %v", err)
	}
	ks.Close()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestTamperedKeystoreRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cmk, _ := newLocal(t, dir, "cmk.json")
	ksDir := filepath.Join(dir, "node")
	ks, err := Create(ctx, ksDir, cmk)
	if err != nil {
		t.Fatal(err)
	}
	ks.AddDatabase("app")
	ks.AddDatabase("other")
	ks.Close()
	pristine, _ := os.ReadFile(Path(ksDir))
	for pos := 0; pos < len(pristine); pos += 7 {
		b := bytes.Clone(pristine)
		b[pos] ^= 0x01
		if err := os.WriteFile(Path(ksDir), b, 0o600); err != nil {
			t.Fatal(err)
		}
		ks, err := Open(ctx, ksDir, cmk)
		if err == nil {
			ks.Close()
			t.Fatalf("keystore with byte %d flipped opened", pos)
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTampered) && !errors.Is(err, ErrWrongKey) {
			t.Fatalf("flip at %d: unclassified error %v", pos, err)
		}
	}
	// A consistent edit (checksum recomputed) is caught by the MAC: swap the
	// two databases' names.
	b, _, err := parseFile(pristine)
	if err != nil {
		t.Fatal(err)
	}
	b.Databases[0].Name, b.Databases[1].Name = b.Databases[1].Name, b.Databases[0].Name
	forged, _ := encodeFile(b, make([]byte, 32))
	os.WriteFile(Path(ksDir), forged, 0o600)
	if _, err := Open(ctx, ksDir, cmk); !errors.Is(err, ErrTampered) {
		t.Fatalf("forged keystore: %v, want ErrTampered", err)
	}
}

func FuzzParseKeystore(f *testing.F) {
	ctx := context.Background()
	dir := f.TempDir()
	cmk, _ := newLocal(f, dir, "cmk.json")
	ks, err := Create(ctx, filepath.Join(dir, "node"), cmk)
	if err != nil {
		f.Fatal(err)
	}
	ks.AddDatabase("app")
	ks.Close()
	raw, _ := os.ReadFile(Path(filepath.Join(dir, "node")))
	f.Add(raw)
	f.Add([]byte(ksMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, _, err := parseFile(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("unclassified parse error: %v", err)
			}
			return
		}
		// Whatever parses is internally consistent.
		if err := b.validate(); err != nil {
			t.Fatalf("parsed body fails validation: %v", err)
		}
	})
}

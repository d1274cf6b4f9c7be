package keys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/cmkdb/cmkdb/internal/kms/local"
)

// TestV1KeystoreFixture opens a keystore written by the first release
// (format 1, database names in the clear) with its local CMK, both
// committed under testdata/v1, and checks every key it holds against
// testdata/v1/expected.json. This file must stay readable forever: a
// change that breaks it breaks every node created before it.
func TestV1KeystoreFixture(t *testing.T) {
	var want struct {
		NodeID    string `json:"nodeId"`
		Databases map[string]struct {
			ID        string            `json:"id"`
			Current   uint32            `json:"current"`
			KeySha256 map[string]string `json:"keySha256"`
		} `json:"databases"`
	}
	js, err := os.ReadFile("testdata/v1/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &want); err != nil {
		t.Fatal(err)
	}
	// Open reads only, but work on a copy so the fixture can never change.
	dir := t.TempDir()
	for _, f := range []string{"keystore", "cmk.json"} {
		b, err := os.ReadFile(filepath.Join("testdata/v1", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p, err := local.Open(filepath.Join(dir, "cmk.json"))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := Open(context.Background(), dir, p)
	if err != nil {
		t.Fatalf("the v1 keystore fixture does not open: %v", err)
	}
	defer ks.Close()
	if ks.NodeID() != want.NodeID {
		t.Fatalf("node id %s, want %s", ks.NodeID(), want.NodeID)
	}
	got := ks.Databases()
	if len(got) != len(want.Databases) {
		t.Fatalf("%d databases, want %d", len(got), len(want.Databases))
	}
	for _, d := range got {
		w, ok := want.Databases[d.Name]
		if !ok || d.ID != w.ID || d.CurrentVersion != w.Current || len(d.Versions) != len(w.KeySha256) {
			t.Fatalf("database %+v, want %+v", d, w)
		}
		for _, v := range d.Versions {
			k, err := ks.KeySource(d.ID).Key(v.Version)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(k)
			if hex.EncodeToString(sum[:]) != w.KeySha256[strconv.Itoa(int(v.Version))] {
				t.Fatalf("database %s key v%d differs from the fixture's", d.Name, v.Version)
			}
		}
	}
}

// TestV1KeystoreUpgradeSealsNames: the first change to a format 1
// keystore writes format 2: no database name is left in the file (neither
// in the entries nor in the history), inspect shows ids only, and the
// names come back on open.
func TestV1KeystoreUpgradeSealsNames(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"keystore", "cmk.json"} {
		b, err := os.ReadFile(filepath.Join("testdata/v1", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "keystore"))
	if !bytes.Contains(raw, []byte(`"sales"`)) {
		t.Fatal("the v1 fixture should hold its names in the clear")
	}
	p, err := local.Open(filepath.Join(dir, "cmk.json"))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := Open(context.Background(), dir, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.AddDatabase("payroll"); err != nil {
		t.Fatal(err)
	}
	ks.Close()
	raw, _ = os.ReadFile(filepath.Join(dir, "keystore"))
	for _, name := range []string{"sales", "inventory", "payroll"} {
		if bytes.Contains(raw, []byte(name)) {
			t.Fatalf("database name %q in the clear after the upgrade", name)
		}
	}
	r, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Databases) != 3 {
		t.Fatalf("inspect lists %d databases", len(r.Databases))
	}
	ks, err = Open(context.Background(), dir, p)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	ids := ks.DatabaseIDs()
	for _, name := range []string{"sales", "inventory", "payroll"} {
		if ids[name] == "" {
			t.Fatalf("database %q lost in the upgrade: %v", name, ids)
		}
	}
}

// TestSealedNamesNotInClear: names of live and dropped databases never
// appear in the keystore file (entries and history alike).
func TestSealedNamesNotInClear(t *testing.T) {
	dir := t.TempDir()
	cmkPath := filepath.Join(dir, "cmk.json")
	if _, err := local.Create(cmkPath); err != nil {
		t.Fatal(err)
	}
	p, _ := local.Open(cmkPath)
	ks, err := Create(context.Background(), dir, p)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	for _, name := range []string{"customers-eu", "orders-2026"} {
		if _, err := ks.AddDatabase(name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ks.RotateDatabaseKey("customers-eu"); err != nil {
		t.Fatal(err)
	}
	if err := ks.DropDatabase("orders-2026"); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "keystore"))
	for _, name := range []string{"customers-eu", "orders-2026"} {
		if bytes.Contains(raw, []byte(name)) {
			t.Fatalf("database name %q in the clear in the keystore file", name)
		}
	}
}

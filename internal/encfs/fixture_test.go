package encfs

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The v1 fixture: testdata/v1/000001.sst, written by the first release of
// this format under fixtureKey (key version 3) in scope fixtureScope, with
// a write, a sync (the partial last chunk sealed), and more writes: three
// full chunks and a partial one. Its plaintext is fixturePlaintext.
const fixtureScope = "fixture-db-0001"

// fixtureKey is fixed: the key bytes are 0x00, 0x01, ..., 0x1f.
func fixtureKey() []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

// fixturePlaintext is deterministic: numbered lines.
func fixturePlaintext() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 3*SlotPayload+1000; i++ {
		fmt.Fprintf(&b, "cmkdb encfs v1 fixture line %06d\n", i)
	}
	return b.Bytes()
}

type fixtureKeys struct{}

func (fixtureKeys) CurrentKey() (uint32, []byte, error) { return 3, fixtureKey(), nil }
func (fixtureKeys) Key(v uint32) ([]byte, error) {
	if v != 3 {
		return nil, fmt.Errorf("version %d: %w", v, ErrUnknownKeyVersion)
	}
	return fixtureKey(), nil
}

// TestV1FileFixture reads the committed v1 file and must keep reading it:
// a change to the format that breaks this breaks every database on disk.
// CMKDB_WRITE_FIXTURE=1 writes it (only ever for a new format version,
// under a new directory).
func TestV1FileFixture(t *testing.T) {
	path := filepath.Join("testdata", "v1", "000001.sst")
	want := fixturePlaintext()
	if os.Getenv("CMKDB_WRITE_FIXTURE") != "" {
		fs := New(vfs.Default, fixtureScope, fixtureKeys{})
		f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		half := len(want) / 2
		if _, err := f.Write(want[:half]); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(want[half:]); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("fixture line")) {
		t.Fatal("the fixture holds plaintext")
	}
	fs := New(vfs.Default, fixtureScope, fixtureKeys{})
	f, err := fs.Open(path)
	if err != nil {
		t.Fatalf("the v1 fixture does not open: %v", err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("reading the v1 fixture: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the v1 fixture reads %d bytes (sha256 %x), want %d (sha256 %x)", len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
	// Random access too: a range straddling the second chunk boundary.
	buf := make([]byte, 100)
	if _, err := f.ReadAt(buf, 2*SlotPayload-50); err != nil || !bytes.Equal(buf, want[2*SlotPayload-50:2*SlotPayload+50]) {
		t.Fatalf("ReadAt across a chunk boundary: %v", err)
	}
	// Under another scope the same file is refused.
	if _, err := New(vfs.Default, "another-db", fixtureKeys{}).Open(path); err == nil {
		t.Fatal("the fixture opened under another scope")
	}
}

package encfs

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// testKeys is a KeySource with versioned random keys.
type testKeys struct {
	mu      sync.Mutex
	current uint32
	keys    map[uint32][]byte
}

func newTestKeys() *testKeys {
	k := &testKeys{keys: map[uint32][]byte{}}
	k.rotate()
	return k
}

func (k *testKeys) rotate() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.current++
	b := make([]byte, 32)
	rand.Read(b)
	k.keys[k.current] = b
}

func (k *testKeys) CurrentKey() (uint32, []byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current, k.keys[k.current], nil
}

func (k *testKeys) Key(v uint32) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	b, ok := k.keys[v]
	if !ok {
		return nil, fmt.Errorf("version %d: %w", v, ErrUnknownKeyVersion)
	}
	return b, nil
}

func randBytes(r *mrand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func writeFile(t *testing.T, fs vfs.FS, name string, chunks [][]byte, syncEach bool) []byte {
	t.Helper()
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, c := range chunks {
		if _, err := f.Write(bytes.Clone(c)); err != nil {
			t.Fatal(err)
		}
		all = append(all, c...)
		if syncEach {
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return all
}

func readAll(fs vfs.FS, name string) ([]byte, error) {
	f, err := fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	fs := New(vfs.Default, "db-1", newTestKeys())
	r := mrand.New(mrand.NewPCG(1, 2))
	sizes := []int{0, 1, SlotPayload - 1, SlotPayload, SlotPayload + 1, 3*SlotPayload + 17, 1 << 20}
	for _, size := range sizes {
		for _, syncEach := range []bool{false, true} {
			t.Run(fmt.Sprintf("size=%d/sync=%v", size, syncEach), func(t *testing.T) {
				name := filepath.Join(dir, fmt.Sprintf("f-%d-%v", size, syncEach))
				var chunks [][]byte
				for left := size; left > 0; {
					n := min(left, 1+r.IntN(9000))
					chunks = append(chunks, randBytes(r, n))
					left -= n
				}
				want := writeFile(t, fs, name, chunks, syncEach)
				got, err := readAll(fs, name)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("read back %d bytes, want %d (content differs)", len(got), len(want))
				}
				fi, err := fs.Stat(name)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() != int64(size) {
					t.Fatalf("Stat size %d, want %d", fi.Size(), size)
				}
				raw, _ := os.ReadFile(name)
				if int64(len(raw)) != physicalSize(int64(size)) {
					t.Fatalf("physical size %d, want %d", len(raw), physicalSize(int64(size)))
				}
				// Random-access reads agree with the plaintext.
				f, err := fs.Open(name)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				for i := 0; i < 200 && size > 0; i++ {
					off := r.IntN(size)
					n := r.IntN(3*SlotPayload) + 1
					buf := make([]byte, n)
					got, err := f.ReadAt(buf, int64(off))
					wantN := min(n, size-off)
					if got != wantN || (got < n && err != io.EOF) || (got == n && err != nil) {
						t.Fatalf("ReadAt(%d, %d) = %d, %v; want %d", n, off, got, err, wantN)
					}
					if !bytes.Equal(buf[:got], want[off:off+got]) {
						t.Fatalf("ReadAt(%d, %d) returned wrong bytes", n, off)
					}
				}
			})
		}
	}
}

func TestCiphertextHidesPlaintext(t *testing.T) {
	dir := t.TempDir()
	fs := New(vfs.Default, "db-1", newTestKeys())
	canary := []byte("canary-7f3e9b2a-do-not-leak")
	var chunks [][]byte
	for i := 0; i < 1000; i++ {
		chunks = append(chunks, canary)
	}
	name := filepath.Join(dir, "f")
	writeFile(t, fs, name, chunks, true)
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, canary) || bytes.Contains(raw, canary[:8]) {
		t.Fatal("plaintext found in the encrypted file")
	}
}

func TestTamperDetected(t *testing.T) {
	dir := t.TempDir()
	keys := newTestKeys()
	fs := New(vfs.Default, "db-1", keys)
	r := mrand.New(mrand.NewPCG(3, 4))
	name := filepath.Join(dir, "f")
	want := writeFile(t, fs, name, [][]byte{randBytes(r, 3*SlotPayload+100)}, false)
	pristine, _ := os.ReadFile(name)

	check := func(t *testing.T, mutate func([]byte) []byte) {
		t.Helper()
		if err := os.WriteFile(name, mutate(bytes.Clone(pristine)), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readAll(fs, name)
		if err == nil {
			t.Fatalf("tampered file read without error (%d bytes, equal=%v)", len(got), bytes.Equal(got, want))
		}
		if !errors.Is(err, ErrIntegrity) {
			t.Fatalf("error %v does not match ErrIntegrity", err)
		}
	}
	// Flip a byte in every position class: header fields, padding, MAC, and
	// nonce, ciphertext and tag of every slot.
	positions := []int{0, 9, 17, 30, 100, macOffset + 3}
	for s := int64(0); s < 4; s++ {
		base := int(physicalOffset(s))
		positions = append(positions, base, base+nonceSize, base+500, base+SlotOverhead+10)
	}
	for _, pos := range positions {
		if pos >= len(pristine) {
			continue
		}
		t.Run(fmt.Sprintf("flip@%d", pos), func(t *testing.T) {
			check(t, func(b []byte) []byte { b[pos] ^= 0x40; return b })
		})
	}
	t.Run("swap-slots", func(t *testing.T) {
		check(t, func(b []byte) []byte {
			s0 := bytes.Clone(b[physicalOffset(0):physicalOffset(1)])
			copy(b[physicalOffset(0):], b[physicalOffset(1):physicalOffset(2)])
			copy(b[physicalOffset(1):], s0)
			return b
		})
	})
	t.Run("torn-last-slot", func(t *testing.T) {
		check(t, func(b []byte) []byte { return b[:physicalOffset(3)+10] })
	})
	t.Run("torn-header", func(t *testing.T) {
		check(t, func(b []byte) []byte { return b[:100] })
	})
	t.Run("slot-from-other-file", func(t *testing.T) {
		other := filepath.Join(dir, "other")
		writeFile(t, fs, other, [][]byte{randBytes(r, 2*SlotPayload)}, false)
		ob, _ := os.ReadFile(other)
		check(t, func(b []byte) []byte {
			copy(b[physicalOffset(1):physicalOffset(2)], ob[physicalOffset(1):physicalOffset(2)])
			return b
		})
	})
	t.Run("file-from-other-database", func(t *testing.T) {
		otherFS := New(vfs.Default, "db-2", keys) // same key bytes, other database
		other := filepath.Join(dir, "other-db")
		writeFile(t, otherFS, other, [][]byte{randBytes(r, 2*SlotPayload)}, false)
		ob, _ := os.ReadFile(other)
		check(t, func([]byte) []byte { return ob })
	})
}

func TestKeyRotationKeepsOldFilesReadable(t *testing.T) {
	dir := t.TempDir()
	keys := newTestKeys()
	fs := New(vfs.Default, "db", keys)
	old := writeFile(t, fs, filepath.Join(dir, "old"), [][]byte{[]byte("written under v1")}, false)
	keys.rotate()
	newer := writeFile(t, fs, filepath.Join(dir, "new"), [][]byte{[]byte("written under v2")}, false)
	for name, want := range map[string][]byte{"old": old, "new": newer} {
		got, err := readAll(fs, filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %q, %v", name, got, err)
		}
		raw, _ := os.ReadFile(filepath.Join(dir, name))
		h, _ := parseHeader(raw)
		if wantV := map[string]uint32{"old": 1, "new": 2}[name]; h.keyVersion != wantV {
			t.Fatalf("%s written under key version %d, want %d", name, h.keyVersion, wantV)
		}
	}
}

func TestOpenReadWriteWriteAt(t *testing.T) {
	dir := t.TempDir()
	fs := New(vfs.Default, "db", newTestKeys())
	r := mrand.New(mrand.NewPCG(5, 6))
	name := filepath.Join(dir, "rw")
	model := writeFile(t, fs, name, [][]byte{randBytes(r, 2*SlotPayload+50)}, false)
	f, err := fs.OpenReadWrite(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		off := r.IntN(len(model) + 100)
		p := randBytes(r, 1+r.IntN(2*SlotPayload))
		if _, err := f.WriteAt(bytes.Clone(p), int64(off)); err != nil {
			t.Fatal(err)
		}
		if end := off + len(p); end > len(model) {
			model = append(model, make([]byte, end-len(model))...)
		}
		copy(model[off:], p)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(fs, name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, model) {
		t.Fatalf("after WriteAt: %d bytes, want %d, equal=%v", len(got), len(model), bytes.Equal(got, model))
	}
}

func TestEmptyFileNeedsNoKeyAndStaysEmpty(t *testing.T) {
	dir := t.TempDir()
	fs := New(vfs.Default, "db", newTestKeys())
	name := filepath.Join(dir, "marker")
	writeFile(t, fs, name, nil, true)
	raw, _ := os.ReadFile(name)
	if len(raw) != 0 {
		t.Fatalf("empty file has %d bytes on disk", len(raw))
	}
	got, err := readAll(fs, name)
	if err != nil || len(got) != 0 {
		t.Fatalf("read empty file: %q, %v", got, err)
	}
}

// TestRecycledFiles follows a WAL through several recycles: each
// generation reads back exactly its own data, whatever stale slots of
// earlier generations follow it, and Stat reports its logical size.
func TestRecycledFiles(t *testing.T) {
	dir := t.TempDir()
	fs := New(vfs.Default, "db", newTestKeys())
	r := mrand.New(mrand.NewPCG(9, 9))
	name := filepath.Join(dir, "000001.log")
	writeFile(t, fs, name, [][]byte{randBytes(r, 10*SlotPayload+123)}, true)
	// Each generation writes less or more than the last, syncing as a WAL
	// does, so partial tail slots overwrite stale full ones.
	sizes := []int{3*SlotPayload + 50, 2 * SlotPayload, 7*SlotPayload + 1, 100, 12 * SlotPayload}
	for gen, size := range sizes {
		next := filepath.Join(dir, fmt.Sprintf("%06d.log", gen+2))
		f, err := fs.ReuseForWrite(name, next, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		for left := size; left > 0; {
			n := min(left, 1+r.IntN(3000))
			p := randBytes(r, n)
			if _, err := f.Write(bytes.Clone(p)); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			want = append(want, p...)
			left -= n
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(name); !os.IsNotExist(err) {
			t.Fatalf("recycled file still under its old name: %v", err)
		}
		name = next
		got, err := readAll(fs, name)
		if err != nil {
			t.Fatalf("generation %d: %v", gen+1, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("generation %d: read %d bytes, want %d", gen+1, len(got), len(want))
		}
		fi, err := fs.Stat(name)
		if err != nil || fi.Size() != int64(size) {
			t.Fatalf("generation %d: Stat size %v, %v; want %d", gen+1, fi, err, size)
		}
		raw, _ := os.ReadFile(name)
		if h, _ := parseHeader(raw); h.generation != uint32(gen+1) {
			t.Fatalf("header generation %d, want %d", h.generation, gen+1)
		}
	}

	// Tampering still shows: a current slot relabelled with a later
	// generation, or altered, is an integrity failure.
	pristine, _ := os.ReadFile(name)
	for _, mutate := range []func([]byte){
		func(b []byte) { b[physicalOffset(1)] = 0xff },   // generation from the future
		func(b []byte) { b[physicalOffset(1)+100] ^= 1 }, // ciphertext
		func(b []byte) { b[physicalOffset(1)+4] ^= 1 },   // length
	} {
		b := bytes.Clone(pristine)
		mutate(b)
		os.WriteFile(name, b, 0o600)
		if _, err := readAll(fs, name); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("tampered recycled file: %v", err)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	keys := newTestKeys()
	v, k, _ := keys.CurrentKey()
	h, _ := newHeader(v, 0)
	fk, _ := deriveFileKeys(k, "db", v, h.salt[:])
	f.Add(encodeHeader(h, fk))
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		ph, err := parseHeader(b)
		if err != nil {
			return
		}
		if ph.keyVersion == v && ph.salt == h.salt && !bytes.Equal(b[:HeaderSize], encodeHeader(h, fk)) && verifyHeader(b, fk) {
			t.Fatal("a header that differs from the sealed one verified")
		}
	})
}

// FuzzOpenFile feeds arbitrary bytes to the reader: it must return an error
// or data, never panic, and never return data from a file it did not write.
// The files are in memory: every input is a file written and read, which on
// the disk of a busy machine would make the fuzzer measure the disk.
func FuzzOpenFile(f *testing.F) {
	mem := vfs.NewMem()
	fs := New(mem, "db", newTestKeys())
	seed := memWrite(f, fs, mem, "seed", []byte("hello, world"))
	if got, err := readAll(fs, "seed"); err != nil || string(got) != "hello, world" {
		f.Fatalf("the seed file does not read back: %q, %v", got, err)
	}
	f.Add(seed)
	f.Add(seed[:HeaderSize+5])
	f.Fuzz(func(t *testing.T, b []byte) {
		raw, err := mem.Create("x", vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := raw.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := readAll(fs, "x")
		if err == nil && len(got) > 0 && !bytes.Equal(b, seed) {
			t.Fatalf("forged file of %d bytes returned %d bytes of data", len(b), len(got))
		}
	})
}

// memWrite writes data to name through fs and returns the bytes stored in
// the memory file system under it.
func memWrite(tb testing.TB, fs vfs.FS, mem *vfs.MemFS, name string, data []byte) []byte {
	tb.Helper()
	w, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write(bytes.Clone(data)); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	r, err := mem.Open(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	stored, err := io.ReadAll(r)
	if err != nil {
		tb.Fatal(err)
	}
	return stored
}

package logarchive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/testenv"
)

// newKeystore is a member's keystore under a fresh local CMK.
func newKeystore(t testing.TB, dir string) *keys.Keystore {
	t.Helper()
	cmk, _, err := local.Ensure(filepath.Join(dir, "cmk.json"))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keys.Create(context.Background(), filepath.Join(dir, "node"), cmk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ks.Close)
	return ks
}

// openCopy opens the keystore copy a segment names, with the CMK.
func openCopy(t testing.TB, dir, cmkDir string, seg Segment) *keys.Keystore {
	t.Helper()
	cmk, _, err := local.Ensure(filepath.Join(cmkDir, "cmk.json"))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keys.Open(context.Background(), KeysDir(dir, seg.Keys), cmk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ks.Close)
	return ks
}

func records(first, n int, size int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{Index: uint64(first + i), Term: 3, TS: Timestamp{T: 1000, I: uint32(i + 1)},
			Data: bytes.Repeat([]byte{byte('a' + i%26)}, size)}
	}
	return out
}

func readAll(t testing.TB, dir string, seg Segment, ks Opener) ([]Record, error) {
	var got []Record
	err := Read(dir, seg, ks, func(r Record) error { got = append(got, r); return nil })
	return got, err
}

// Segments round-trip, across chunk boundaries, and hold no plaintext.
func TestSegmentRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n, size int
	}{{"empty", 0, 0}, {"small", 5, 100}, {"several chunks", 40, 100 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			ks := newKeystore(t, root)
			dir := filepath.Join(root, "archive")
			recs := records(10, tc.n, tc.size)
			last := uint64(10 + tc.n + 2) // raft's own entries fill the range too
			seg, err := WriteSegment(dir, "m1", ks, 10, last, recs, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			segs, err := List(dir)
			if err != nil || len(segs) != 1 || segs[0].First != 10 || segs[0].Last != last || segs[0].Records != tc.n {
				t.Fatalf("list: %+v %v", segs, err)
			}
			got, err := readAll(t, dir, segs[0], openCopy(t, dir, root, seg))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.n {
				t.Fatalf("%d records, want %d", len(got), tc.n)
			}
			for i := range got {
				if got[i].Index != recs[i].Index || got[i].TS != recs[i].TS || !bytes.Equal(got[i].Data, recs[i].Data) {
					t.Fatalf("record %d differs", i)
				}
			}
			if tc.n > 0 {
				raw, _ := os.ReadFile(filepath.Join(dir, seg.Name))
				if bytes.Contains(raw, recs[0].Data[:min(len(recs[0].Data), 64)]) {
					t.Fatal("the segment holds a record's plaintext")
				}
			}
		})
	}
}

// Any change to a segment — its header, a chunk, its length, the order of
// its chunks — fails to open, naming it; so does another member's key.
func TestSegmentTampering(t *testing.T) {
	root := t.TempDir()
	ks := newKeystore(t, root)
	dir := filepath.Join(root, "archive")
	seg, err := WriteSegment(dir, "m1", ks, 1, 30, records(1, 30, 80<<10), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	opener := openCopy(t, dir, root, seg)
	path := filepath.Join(dir, seg.Name)
	orig, _ := os.ReadFile(path)
	hdrEnd := len(magic) + 4 + int(uint32(orig[len(magic)])<<24|uint32(orig[len(magic)+1])<<16|uint32(orig[len(magic)+2])<<8|uint32(orig[len(magic)+3]))
	flip := func(off int) func([]byte) []byte {
		return func(b []byte) []byte { b = bytes.Clone(b); b[off] ^= 1; return b }
	}
	cases := map[string]func([]byte) []byte{
		"header byte":         flip(hdrEnd - 3),
		"first chunk":         flip(hdrEnd + 100),
		"last byte":           flip(len(orig) - 1),
		"cut short":           func(b []byte) []byte { return b[:len(b)-500] },
		"last chunk dropped":  func(b []byte) []byte { return b[:hdrEnd+4+1<<20+16] },
		"data after the end":  func(b []byte) []byte { return append(bytes.Clone(b), 0) },
		"chunks swapped":      swapChunks(hdrEnd),
		"not a segment":       func([]byte) []byte { return []byte("hello") },
		"empty":               func([]byte) []byte { return nil },
		"header length huge":  func(b []byte) []byte { b = bytes.Clone(b); b[len(magic)] = 0xff; return b },
		"header not JSON":     func(b []byte) []byte { b = bytes.Clone(b); b[len(magic)+4] = 'x'; return b },
		"record count edited": editHeader(`"records":30`, `"records":29`),
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, change(orig), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := readAll(t, dir, seg, opener)
			if err == nil {
				t.Fatal("a changed segment opened")
			}
			if !errors.Is(err, ErrDamaged) && !errors.Is(err, keys.ErrTampered) {
				t.Fatalf("error %v, want ErrDamaged or ErrTampered", err)
			}
		})
	}
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	other := newKeystore(t, filepath.Join(root, "other"))
	if _, err := readAll(t, dir, seg, other); !errors.Is(err, keys.ErrTampered) {
		t.Fatalf("another keystore: %v, want ErrTampered", err)
	}
	if _, err := readAll(t, dir, seg, opener); err != nil {
		t.Fatalf("the original: %v", err)
	}
}

func swapChunks(hdrEnd int) func([]byte) []byte {
	return func(b []byte) []byte {
		first := 4 + int(uint32(b[hdrEnd])<<24|uint32(b[hdrEnd+1])<<16|uint32(b[hdrEnd+2])<<8|uint32(b[hdrEnd+3]))
		c1 := b[hdrEnd : hdrEnd+first]
		c2 := b[hdrEnd+first : hdrEnd+2*first]
		out := append(bytes.Clone(b[:hdrEnd]), c2...)
		out = append(out, c1...)
		return append(out, b[hdrEnd+2*first:]...)
	}
}

func editHeader(from, to string) func([]byte) []byte {
	return func(b []byte) []byte { return bytes.Replace(bytes.Clone(b), []byte(from), []byte(to), 1) }
}

// Plan picks the contiguous segments from a snapshot to a point and
// refuses gaps and points the archive does not reach.
func TestPlan(t *testing.T) {
	seg := func(first, last uint64, lastTS uint32) Segment {
		return Segment{Name: segmentName(first, last), Header: Header{First: first, Last: last, Records: 1, LastTS: Timestamp{T: lastTS}}}
	}
	segs := []Segment{seg(1, 10, 100), seg(11, 20, 200), seg(21, 30, 300), seg(41, 50, 500)}
	pos := Position{LastIndex: 50, LastTS: Timestamp{T: 500}, SafeThrough: Timestamp{T: 600}}
	names := func(p []Segment) string {
		s := ""
		for _, x := range p {
			s += fmt.Sprintf("%d-%d ", x.First, x.Last)
		}
		return s
	}
	for _, tc := range []struct {
		after   uint64
		through uint32
		want    string
		gap     bool
	}{
		{after: 0, through: 150, want: "1-10 11-20 "},
		{after: 5, through: 99, want: "1-10 "},
		{after: 10, through: 250, want: "11-20 21-30 "},
		{after: 12, through: 199, want: "11-20 "},
		{after: 25, through: 300, gap: true}, // needs 31..40
		{after: 45, through: 550, want: "41-50 "},
		{after: 50, through: 590, want: ""},
		{after: 50, through: 700, gap: true}, // beyond the archive
	} {
		p, err := Plan(segs, pos, tc.after, Timestamp{T: tc.through, I: 1})
		var gap *GapError
		if tc.gap != errors.As(err, &gap) || (!tc.gap && (err != nil || names(p) != tc.want)) {
			t.Errorf("after %d through %d: %q %v, want %q gap %v", tc.after, tc.through, names(p), err, tc.want, tc.gap)
		}
	}
}

// FuzzReadSegment feeds arbitrary bytes to the segment reader: it fails
// with ErrDamaged (or ErrTampered) or reads, never panics or allocates
// without bound.
func FuzzReadSegment(f *testing.F) {
	root := f.TempDir()
	ks := newKeystore(f, root)
	dir := filepath.Join(root, "seed")
	seg, err := WriteSegment(dir, "m1", ks, 1, 3, records(1, 3, 40), time.Now())
	if err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(filepath.Join(dir, seg.Name))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := testenv.RAMDir(t)
		if err := os.WriteFile(filepath.Join(d, seg.Name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if segs, err := List(d); err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatalf("list: %v", err)
		} else if err == nil && len(segs) != 1 {
			t.Fatalf("list: %d segments", len(segs))
		}
		err := Read(d, seg, ks, func(Record) error { return nil })
		if err != nil && !errors.Is(err, ErrDamaged) && !errors.Is(err, keys.ErrTampered) {
			t.Fatalf("read: %v", err)
		}
	})
}

// Prune deletes the segments at or before an index and the keystore
// copies only they named; the rest still opens.
func TestPrune(t *testing.T) {
	root := t.TempDir()
	ks := newKeystore(t, root)
	dir := filepath.Join(root, "archive")
	var segs []Segment
	for i := uint64(0); i < 3; i++ {
		seg, err := WriteSegment(dir, "m1", ks, 1+10*i, 10+10*i, records(int(1+10*i), 2, 10), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, seg)
		if i == 0 {
			// A new keystore generation for the later segments.
			if _, err := ks.RotateDatabaseKey("x"); err == nil {
				t.Fatal("rotating an unknown database's key worked")
			}
			if _, err := ks.AddDatabase("x"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if segs[0].Keys == segs[1].Keys {
		t.Fatalf("segments 1 and 2 share keystore copy %s", segs[0].Keys)
	}
	n, err := Prune(dir, 10)
	if err != nil || n != 1 {
		t.Fatalf("pruned %d (%v), want 1", n, err)
	}
	left, err := List(dir)
	if err != nil || len(left) != 2 || left[0].First != 11 {
		t.Fatalf("left %+v (%v)", left, err)
	}
	if _, err := os.Stat(KeysDir(dir, segs[0].Keys)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the keystore copy only segment 1 named is still there (%v)", err)
	}
	if _, err := readAll(t, dir, left[0], openCopy(t, dir, root, left[0])); err != nil {
		t.Fatal(err)
	}
	if n, err := Prune(dir, 5); err != nil || n != 0 {
		t.Fatalf("pruning again: %d %v", n, err)
	}
}

// Package logarchive keeps a replica set's oplog archive: the committed
// log entries after its snapshots, copied out of a member continuously
// into the snapshot store, so that a restore can replay them up to a
// point in time (see repl's pitr.go for what an entry is and how it is
// replayed).
//
// An archive directory (STORE/<group>/<cluster>/oplog) holds:
//
//	<first>-<last>.seg          a segment: the log entries first..last (raft
//	                            indexes, 20 digits each), sealed
//	keys/<member>-<generation>/keystore
//	                            the member's keystore as it was when it
//	                            sealed a segment's key (only wrapped keys)
//	position                    JSON: how far the archive reaches
//
// Segment format:
//
//	magic "cmkdb-oplog-seg\x01" | u32 BE len(header) | header (JSON) | chunks
//	chunk: u32 BE len(sealed) | AES-256-GCM(key, nonce = u64 BE chunk number
//	       | u32 BE 1 if last else 0; aad = SHA-256(header))
//	plaintext, the chunks' concatenation: records
//	record: uvarint index | uvarint term | ts (u32 BE seconds, u32 BE
//	        increment) | uvarint len(data) | data
//
// The key is fresh per segment, sealed by the member's master key for the
// segment's name (keys.Keystore.NewArchiveKey): a segment opens with the
// keystore copy it names and the CMK that wrapped that copy's master key,
// nothing else. The header (indexes, timestamps, member, key names) is in
// the clear but authenticated by every chunk; a segment cut short, chunks
// reordered, or a header edited fails to open. Segments and the position
// are written to a temporary name, synced and renamed: a crash leaves
// whole files only.
package logarchive

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/keys"
)

const (
	magic = "cmkdb-oplog-seg\x01"
	// chunkSize is the plaintext of one chunk.
	chunkSize = 1 << 20
	// maxHeader and maxRecord bound what a reader allocates.
	maxHeader = 64 << 10
	maxRecord = 256 << 20
	segExt    = ".seg"
)

// ErrDamaged is wrapped by every error about an archive file that does
// not parse or authenticate.
var ErrDamaged = errors.New("oplog archive damaged")

// Timestamp is an oplog timestamp.
type Timestamp struct {
	T uint32 `json:"t"`
	I uint32 `json:"i"`
}

// Compare orders timestamps.
func (a Timestamp) Compare(b Timestamp) int {
	switch {
	case a.T != b.T:
		if a.T < b.T {
			return -1
		}
		return 1
	case a.I < b.I:
		return -1
	case a.I > b.I:
		return 1
	}
	return 0
}

func (a Timestamp) String() string { return fmt.Sprintf("Timestamp(%d, %d)", a.T, a.I) }

// Record is one archived log entry.
type Record struct {
	Index, Term uint64
	TS          Timestamp
	Data        []byte
}

// Header describes a segment.
type Header struct {
	Member string `json:"member"`
	NodeID string `json:"nodeId"`
	// Keys names the keystore copy (keys/<Keys>/keystore) that opens Key.
	Keys    string    `json:"keys"`
	First   uint64    `json:"first"`
	Last    uint64    `json:"last"`
	FirstTS Timestamp `json:"firstTs"`
	LastTS  Timestamp `json:"lastTs"`
	Records int       `json:"records"`
	Key     []byte    `json:"sealedKey"`
	Written time.Time `json:"written"`
}

// Segment is a segment file and its header.
type Segment struct {
	Name string
	Header
}

func segmentName(first, last uint64) string {
	return fmt.Sprintf("%020d-%020d%s", first, last, segExt)
}

// Sealer draws a segment's key (keys.Keystore).
type Sealer interface {
	NewArchiveKey(object string) (keys.ArchiveKey, error)
}

// Opener opens a segment's key (a keystore copy the archive holds,
// opened with the CMK).
type Opener interface {
	OpenArchiveKey(object string, sealed []byte) ([]byte, error)
}

// WriteSegment seals recs (the entries first..last; entries of raft's own
// in that range are not among them) as one segment of the archive in dir,
// under a key ks draws, and saves the keystore copy that opens it.
func WriteSegment(dir, member string, ks Sealer, first, last uint64, recs []Record, now time.Time) (Segment, error) {
	if first == 0 || last < first {
		return Segment{}, fmt.Errorf("logarchive: bad range %d..%d", first, last)
	}
	name := segmentName(first, last)
	k, err := ks.NewArchiveKey(name)
	if err != nil {
		return Segment{}, fmt.Errorf("logarchive: segment key: %w", err)
	}
	defer clear(k.Key)
	h := Header{Member: member, NodeID: k.NodeID, Keys: member + "-" + strconv.FormatUint(k.Generation, 10),
		First: first, Last: last, Records: len(recs), Key: k.Sealed, Written: now.UTC()}
	if len(recs) > 0 {
		h.FirstTS, h.LastTS = recs[0].TS, recs[len(recs)-1].TS
	}
	if err := saveKeystore(dir, h.Keys, k.Keystore); err != nil {
		return Segment{}, err
	}
	var pt bytes.Buffer
	var n [binary.MaxVarintLen64]byte
	for _, r := range recs {
		if r.Index < first || r.Index > last {
			return Segment{}, fmt.Errorf("logarchive: record %d outside %d..%d", r.Index, first, last)
		}
		pt.Write(n[:binary.PutUvarint(n[:], r.Index)])
		pt.Write(n[:binary.PutUvarint(n[:], r.Term)])
		var ts [8]byte
		binary.BigEndian.PutUint32(ts[:4], r.TS.T)
		binary.BigEndian.PutUint32(ts[4:], r.TS.I)
		pt.Write(ts[:])
		pt.Write(n[:binary.PutUvarint(n[:], uint64(len(r.Data)))])
		pt.Write(r.Data)
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return Segment{}, err
	}
	aead, err := newAEAD(k.Key)
	if err != nil {
		return Segment{}, err
	}
	aad := sha256.Sum256(hj)
	var out bytes.Buffer
	out.WriteString(magic)
	var l4 [4]byte
	binary.BigEndian.PutUint32(l4[:], uint32(len(hj)))
	out.Write(l4[:])
	out.Write(hj)
	plain := pt.Bytes()
	for i := uint64(0); ; i++ {
		c := plain
		if len(c) > chunkSize {
			c = c[:chunkSize]
		}
		plain = plain[len(c):]
		last := len(plain) == 0
		ct := aead.Seal(nil, chunkNonce(i, last), c, aad[:])
		binary.BigEndian.PutUint32(l4[:], uint32(len(ct)))
		out.Write(l4[:])
		out.Write(ct)
		if last {
			break
		}
	}
	clear(pt.Bytes())
	if err := durable.WriteFile(filepath.Join(dir, name), out.Bytes(), 0o600); err != nil {
		return Segment{}, fmt.Errorf("logarchive: %w", err)
	}
	return Segment{Name: name, Header: h}, nil
}

func chunkNonce(i uint64, last bool) []byte {
	n := make([]byte, 12)
	binary.BigEndian.PutUint64(n[:8], i)
	if last {
		n[11] = 1
	}
	return n
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// KeysDir is where the keystore copy named name lives in an archive.
func KeysDir(dir, name string) string { return filepath.Join(dir, "keys", name) }

func saveKeystore(dir, name string, file []byte) error {
	kd := KeysDir(dir, name)
	if _, err := os.Stat(keys.Path(kd)); err == nil {
		return nil
	}
	if err := os.MkdirAll(kd, 0o700); err != nil {
		return fmt.Errorf("logarchive: %w", err)
	}
	if err := durable.WriteFile(keys.Path(kd), file, 0o600); err != nil {
		return fmt.Errorf("logarchive: %w", err)
	}
	return durable.SyncDir(filepath.Dir(kd))
}

// List returns the archive's segments, by first index.
func List(dir string) ([]Segment, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("logarchive: %w", err)
	}
	var out []Segment
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), segExt) {
			continue
		}
		h, err := readHeader(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if segmentName(h.First, h.Last) != e.Name() {
			return nil, fmt.Errorf("%w: %s holds entries %d..%d", ErrDamaged, e.Name(), h.First, h.Last)
		}
		out = append(out, Segment{Name: e.Name(), Header: h})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].First < out[j].First })
	return out, nil
}

func readHeader(path string) (Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, fmt.Errorf("logarchive: %w", err)
	}
	defer f.Close()
	h, _, err := parseHeader(bufio.NewReader(f), filepath.Base(path))
	return h, err
}

func parseHeader(r io.Reader, name string) (Header, []byte, error) {
	buf := make([]byte, len(magic)+4)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf[:len(magic)]) != magic {
		return Header{}, nil, fmt.Errorf("%w: %s is not an oplog archive segment", ErrDamaged, name)
	}
	n := binary.BigEndian.Uint32(buf[len(magic):])
	if n > maxHeader {
		return Header{}, nil, fmt.Errorf("%w: %s: header of %d bytes", ErrDamaged, name, n)
	}
	hj := make([]byte, n)
	if _, err := io.ReadFull(r, hj); err != nil {
		return Header{}, nil, fmt.Errorf("%w: %s: header cut short", ErrDamaged, name)
	}
	var h Header
	if err := json.Unmarshal(hj, &h); err != nil {
		return Header{}, nil, fmt.Errorf("%w: %s: header: %v", ErrDamaged, name, err)
	}
	if h.First == 0 || h.Last < h.First || strings.ContainsAny(h.Keys, `/\`) || h.Keys == "" || h.Keys == "." || h.Keys == ".." {
		return Header{}, nil, fmt.Errorf("%w: %s: header says entries %d..%d, keys %q", ErrDamaged, name, h.First, h.Last, h.Keys)
	}
	return h, hj, nil
}

// Read opens segment seg of the archive in dir with open (its keystore
// copy, opened) and calls fn with each record, in order. Every chunk is
// authenticated before its records reach fn; a damaged segment is an
// error naming it.
func Read(dir string, seg Segment, open Opener, fn func(Record) error) error {
	f, err := os.Open(filepath.Join(dir, seg.Name))
	if err != nil {
		return fmt.Errorf("logarchive: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	h, hj, err := parseHeader(br, seg.Name)
	if err != nil {
		return err
	}
	key, err := open.OpenArchiveKey(seg.Name, h.Key)
	if err != nil {
		return fmt.Errorf("logarchive: %s: its key does not open: %w", seg.Name, err)
	}
	aead, err := newAEAD(key)
	clear(key)
	if err != nil {
		return err
	}
	aad := sha256.Sum256(hj)
	var plain []byte
	for i := uint64(0); ; i++ {
		var l4 [4]byte
		if _, err := io.ReadFull(br, l4[:]); err != nil {
			return fmt.Errorf("%w: %s: cut short after %d chunks", ErrDamaged, seg.Name, i)
		}
		n := binary.BigEndian.Uint32(l4[:])
		if n > chunkSize+uint32(aead.Overhead()) {
			return fmt.Errorf("%w: %s: chunk %d of %d bytes", ErrDamaged, seg.Name, i, n)
		}
		ct := make([]byte, n)
		if _, err := io.ReadFull(br, ct); err != nil {
			return fmt.Errorf("%w: %s: cut short in chunk %d", ErrDamaged, seg.Name, i)
		}
		// Not in place: a failed Open zeroes its output, and the chunk is
		// tried as the last one next.
		pt, err := aead.Open(nil, chunkNonce(i, false), ct, aad[:])
		last := false
		if err != nil {
			pt, err = aead.Open(nil, chunkNonce(i, true), ct, aad[:])
			last = true
		}
		if err != nil {
			return fmt.Errorf("%w: %s: chunk %d does not authenticate", ErrDamaged, seg.Name, i)
		}
		plain = append(plain, pt...)
		if last {
			break
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return fmt.Errorf("%w: %s: data after its last chunk", ErrDamaged, seg.Name)
	}
	defer clear(plain)
	r := bytes.NewReader(plain)
	count := 0
	prev := uint64(0)
	for r.Len() > 0 {
		var rec Record
		if rec.Index, err = binary.ReadUvarint(r); err != nil {
			break
		}
		if rec.Term, err = binary.ReadUvarint(r); err != nil {
			break
		}
		var ts [8]byte
		if _, err = io.ReadFull(r, ts[:]); err != nil {
			break
		}
		rec.TS = Timestamp{T: binary.BigEndian.Uint32(ts[:4]), I: binary.BigEndian.Uint32(ts[4:])}
		var n uint64
		if n, err = binary.ReadUvarint(r); err != nil || n > maxRecord || n > uint64(r.Len()) {
			err = errors.New("bad length")
			break
		}
		rec.Data = make([]byte, n)
		_, _ = io.ReadFull(r, rec.Data)
		if rec.Index < h.First || rec.Index > h.Last || rec.Index <= prev {
			return fmt.Errorf("%w: %s: record %d out of order", ErrDamaged, seg.Name, rec.Index)
		}
		prev = rec.Index
		count++
		if err := fn(rec); err != nil {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %s: record %d: %v", ErrDamaged, seg.Name, count+1, err)
	}
	if count != h.Records {
		return fmt.Errorf("%w: %s: %d records, its header says %d", ErrDamaged, seg.Name, count, h.Records)
	}
	return nil
}

// Position is how far an archive reaches: every entry up to LastIndex is
// in its segments (LastTS the newest timestamp among them), and nothing
// with a timestamp up to SafeThrough is missing from it.
type Position struct {
	Member      string    `json:"member"`
	LastIndex   uint64    `json:"lastIndex"`
	LastTS      Timestamp `json:"lastTs"`
	SafeThrough Timestamp `json:"safeThrough"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

const positionFile = "position"

// ReadPosition returns the archive's position (ok false when it has none).
func ReadPosition(dir string) (Position, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, positionFile))
	if errors.Is(err, os.ErrNotExist) {
		return Position{}, false, nil
	}
	if err != nil {
		return Position{}, false, fmt.Errorf("logarchive: %w", err)
	}
	var p Position
	if err := json.Unmarshal(b, &p); err != nil {
		return Position{}, false, fmt.Errorf("%w: position: %v", ErrDamaged, err)
	}
	return p, true, nil
}

// WritePosition records p durably.
func WritePosition(dir string, p Position) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(dir, positionFile), b, 0o600); err != nil {
		return fmt.Errorf("logarchive: %w", err)
	}
	return nil
}

// GapError says the archive cannot replay from a snapshot to a point.
type GapError struct{ Detail string }

func (e *GapError) Error() string { return "oplog archive: " + e.Detail }

// Plan returns the segments a restore from a snapshot at log index after
// replays to reach timestamp through: contiguous from after+1, until one
// reaches past through. It fails (GapError) when the archive misses
// entries in that range or does not reach through yet.
func Plan(segs []Segment, pos Position, after uint64, through Timestamp) ([]Segment, error) {
	if pos.SafeThrough.Compare(through) < 0 && pos.LastTS.Compare(through) < 0 {
		return nil, &GapError{Detail: fmt.Sprintf("it reaches %v so far, not %v", maxTS(pos.SafeThrough, pos.LastTS), through)}
	}
	need := after + 1
	var out []Segment
	for _, s := range segs {
		if s.Last < need {
			continue
		}
		if s.First > need {
			return nil, &GapError{Detail: fmt.Sprintf("entries %d..%d are missing (raft compacted them before they were copied)", need, s.First-1)}
		}
		out = append(out, s)
		need = s.Last + 1
		if s.Records > 0 && s.LastTS.Compare(through) > 0 {
			return out, nil
		}
	}
	if need <= pos.LastIndex {
		return nil, &GapError{Detail: fmt.Sprintf("entries %d..%d are missing", need, pos.LastIndex)}
	}
	return out, nil
}

func maxTS(a, b Timestamp) Timestamp {
	if a.Compare(b) >= 0 {
		return a
	}
	return b
}

// Prune deletes the segments that end at or before log index upTo (no
// restore starts before it any more) and the keystore copies no remaining
// segment names. It returns how many segments it deleted.
func Prune(dir string, upTo uint64) (int, error) {
	segs, err := List(dir)
	if err != nil {
		return 0, err
	}
	used := map[string]bool{}
	n := 0
	for _, s := range segs {
		if s.Last > upTo {
			used[s.Keys] = true
			continue
		}
		if err := os.Remove(filepath.Join(dir, s.Name)); err != nil {
			return n, fmt.Errorf("logarchive: %w", err)
		}
		n++
	}
	if n > 0 {
		if err := durable.SyncDir(dir); err != nil {
			return n, err
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, "keys"))
	if errors.Is(err, os.ErrNotExist) {
		return n, nil
	}
	if err != nil {
		return n, fmt.Errorf("logarchive: %w", err)
	}
	for _, e := range ents {
		if !used[e.Name()] {
			if err := os.RemoveAll(KeysDir(dir, e.Name())); err != nil {
				return n, fmt.Errorf("logarchive: %w", err)
			}
		}
	}
	return n, nil
}

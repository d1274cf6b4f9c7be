package encfs

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// On-disk layout of an encrypted file (all integers little-endian):
//
//	+------------------------- header: HeaderSize bytes -------------------------+
//	| magic "CMKDB\x00EF" | version u16 | suite u16 | slot size u32 | key ver u32 |
//	| generation u32 | salt [32]byte | zero padding ... | HMAC-SHA256 [32]byte    |
//	+----------------------------------------------------------------------------+
//	| slot 0: generation u32 | length u16 | nonce [12] |                          |
//	|         AES-256-GCM ciphertext of length (<= SlotPayload) bytes | tag [16]   |
//	| slot 1: ...                                                                 |
//	| slot k (last): same, possibly shorter: 34 + n bytes for n plaintext bytes   |
//	+----------------------------------------------------------------------------+
//
// Invariants:
//   - Every slot starts at HeaderSize + i*SlotSize, so a slot and the header
//     each sit in exactly one 4 KiB page: rewriting a slot is one pwrite that
//     never straddles a page, which a process crash cannot tear.
//   - All slots but the last are full. In a file of generation 0 (never
//     recycled) the logical size therefore follows from the physical size
//     alone (logicalSize).
//   - A recycled file (generation g > 0: an old WAL that Pebble reuses)
//     still holds the slots of earlier generations after its own. Its
//     slots of generation g form a prefix of the file; the first slot of a
//     lower generation ends it (recycledSize). Generation and length are in
//     the clear, so the end can be found without keys, and authenticated
//     (they are in each slot's associated data).
//   - A file of physical size 0 is an empty file. Its header is written with
//     its first byte of data, so files Pebble creates empty (markers) stay
//     empty and need no key.
//   - Each file has its own keys, derived with HKDF from the database key and
//     a random 32-byte salt drawn when the file is created. Nonces are random
//     per slot write under that per-file key: nothing is counted or persisted,
//     so a crash, a copy or a restore can never make a nonce repeat under a
//     key that encrypts new data (see docs/architecture.md for the bounds).
const (
	HeaderSize   = 4096
	SlotSize     = 4096
	slotHdrSize  = 6 // generation u32, length u16
	nonceSize    = 12
	tagSize      = 16
	SlotOverhead = slotHdrSize + nonceSize + tagSize
	SlotPayload  = SlotSize - SlotOverhead
	aadSize      = saltSize + 8 + 4 + 2

	formatVersion = 1
	// suiteAES256GCM names the cipher suite: AES-256-GCM slots, keys derived
	// by HKDF-SHA256, header MAC by HMAC-SHA256.
	suiteAES256GCM = 1

	saltSize   = 32
	macSize    = sha256.Size
	magic      = "CMKDB\x00EF"
	hdrUsedLen = 56 // magic..salt
	macOffset  = HeaderSize - macSize
)

// ErrIntegrity is matched (errors.Is) by every error that reports encrypted
// data failing authentication: the bytes were altered, moved, or written under
// another key. Such data is never returned to the caller.
var ErrIntegrity = errors.New("encfs: integrity check failed")

// IntegrityError says which file and which part of it failed authentication.
type IntegrityError struct {
	File string
	// Slot is the failing chunk, or -1 for the header.
	Slot   int64
	Detail string
}

func (e *IntegrityError) Error() string {
	where := "header"
	if e.Slot >= 0 {
		where = fmt.Sprintf("chunk %d", e.Slot)
	}
	return fmt.Sprintf("encfs: integrity check failed in %s of %s: %s", where, e.File, e.Detail)
}

func (e *IntegrityError) Is(target error) bool { return target == ErrIntegrity }

// header is the decoded, authenticated file header.
type header struct {
	keyVersion uint32
	generation uint32
	salt       [saltSize]byte
}

// fileKeys are the per-file keys derived from the database key.
type fileKeys struct {
	aead cipher.AEAD
	mac  [32]byte
}

func (k *fileKeys) zero() { clear(k.mac[:]) }

// deriveFileKeys derives the per-file encryption and header-MAC keys. The
// scope (the database's identity) and the key version are bound into the
// derivation, so a file copied from another database, or relabelled with
// another key version, fails the header MAC.
func deriveFileKeys(dbKey []byte, scope string, keyVersion uint32, salt []byte) (*fileKeys, error) {
	info := make([]byte, 0, 64+len(scope))
	info = append(info, "cmkdb encfs v1"...)
	info = binary.LittleEndian.AppendUint32(info, uint32(len(scope)))
	info = append(info, scope...)
	info = binary.LittleEndian.AppendUint32(info, keyVersion)
	okm, err := hkdf.Key(sha256.New, dbKey, salt, string(info), 64)
	if err != nil {
		return nil, fmt.Errorf("encfs: derive file key: %w", err)
	}
	defer clear(okm)
	block, err := aes.NewCipher(okm[:32])
	if err != nil {
		return nil, fmt.Errorf("encfs: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("encfs: %w", err)
	}
	k := &fileKeys{aead: aead}
	copy(k.mac[:], okm[32:])
	return k, nil
}

// newHeader draws a fresh salt for a new file.
func newHeader(keyVersion, generation uint32) (header, error) {
	h := header{keyVersion: keyVersion, generation: generation}
	if _, err := rand.Read(h.salt[:]); err != nil {
		return h, fmt.Errorf("encfs: draw file salt: %w", err)
	}
	return h, nil
}

// encodeHeader lays out the header and seals it with the file's MAC key.
func encodeHeader(h header, keys *fileKeys) []byte {
	b := make([]byte, HeaderSize)
	copy(b, magic)
	binary.LittleEndian.PutUint16(b[8:], formatVersion)
	binary.LittleEndian.PutUint16(b[10:], suiteAES256GCM)
	binary.LittleEndian.PutUint32(b[12:], SlotSize)
	binary.LittleEndian.PutUint32(b[16:], h.keyVersion)
	binary.LittleEndian.PutUint32(b[20:], h.generation)
	copy(b[24:], h.salt[:])
	m := hmac.New(sha256.New, keys.mac[:])
	m.Write(b[:macOffset])
	copy(b[macOffset:], m.Sum(nil))
	return b
}

// parseHeader checks the header's structure and returns its fields. It does
// not authenticate: that needs the key named by the header (verifyHeader).
func parseHeader(b []byte) (header, error) {
	var h header
	if len(b) < HeaderSize {
		return h, fmt.Errorf("header is %d bytes, want %d (file truncated)", len(b), HeaderSize)
	}
	if string(b[:8]) != magic {
		return h, errors.New("not an encrypted cmkdb file (bad magic)")
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != formatVersion {
		return h, fmt.Errorf("unsupported format version %d", v)
	}
	if s := binary.LittleEndian.Uint16(b[10:]); s != suiteAES256GCM {
		return h, fmt.Errorf("unsupported cipher suite %d", s)
	}
	if s := binary.LittleEndian.Uint32(b[12:]); s != SlotSize {
		return h, fmt.Errorf("unsupported chunk size %d", s)
	}
	h.keyVersion = binary.LittleEndian.Uint32(b[16:])
	h.generation = binary.LittleEndian.Uint32(b[20:])
	copy(h.salt[:], b[24:24+saltSize])
	return h, nil
}

// verifyHeader authenticates the whole header page, padding included.
func verifyHeader(b []byte, keys *fileKeys) bool {
	m := hmac.New(sha256.New, keys.mac[:])
	m.Write(b[:macOffset])
	return hmac.Equal(m.Sum(nil), b[macOffset:HeaderSize])
}

// slotAAD binds a slot to its file (the salt is unique per file), its
// position, its generation and its length, so swapping, moving,
// transplanting, relabelling or truncating slots fails authentication.
func slotAAD(dst *[aadSize]byte, salt *[saltSize]byte, slot int64, gen uint32, n int) []byte {
	copy(dst[:saltSize], salt[:])
	binary.LittleEndian.PutUint64(dst[saltSize:], uint64(slot))
	binary.LittleEndian.PutUint32(dst[saltSize+8:], gen)
	binary.LittleEndian.PutUint16(dst[saltSize+12:], uint16(n))
	return dst[:]
}

// slotHeader reads a slot's cleartext generation and length.
func slotHeader(b []byte) (gen uint32, n int) {
	return binary.LittleEndian.Uint32(b), int(binary.LittleEndian.Uint16(b[4:]))
}

// physicalOffset is where slot i starts on disk.
func physicalOffset(slot int64) int64 { return HeaderSize + slot*SlotSize }

// logicalSize derives the plaintext size from the on-disk size.
func logicalSize(phys int64) (int64, error) {
	if phys == 0 {
		return 0, nil
	}
	if phys < HeaderSize {
		return 0, fmt.Errorf("file is %d bytes, shorter than its %d-byte header (torn or truncated)", phys, HeaderSize)
	}
	d := phys - HeaderSize
	full, rest := d/SlotSize, d%SlotSize
	if rest == 0 {
		return full * SlotPayload, nil
	}
	if rest <= SlotOverhead {
		return 0, fmt.Errorf("last chunk is %d bytes, too short to hold any data (torn or truncated)", rest)
	}
	return full*SlotPayload + rest - SlotOverhead, nil
}

// recycledSize finds the logical size of a recycled file of generation
// gen: its slots of that generation are a prefix of the file, so a binary
// search over the slots' cleartext generations finds the last one, whose
// length ends the file. A slot claiming a later generation is an integrity
// failure; one that lies about the prefix is caught when it is read.
func recycledSize(r io.ReaderAt, phys int64, gen uint32) (int64, error) {
	if phys <= HeaderSize {
		return 0, nil
	}
	nslots := (phys - HeaderSize + SlotSize - 1) / SlotSize
	var hb [slotHdrSize]byte
	current := func(i int64) (bool, int, error) {
		if n, _ := r.ReadAt(hb[:], physicalOffset(i)); n < slotHdrSize {
			return false, 0, nil // a torn last slot: not data
		}
		g, n := slotHeader(hb[:])
		if g > gen {
			return false, 0, fmt.Errorf("chunk %d claims generation %d, after the file's %d", i, g, gen)
		}
		return g == gen, n, nil
	}
	lo, hi := int64(0), nslots // find the first slot that is not current
	for lo < hi {
		mid := (lo + hi) / 2
		cur, _, err := current(mid)
		if err != nil {
			return 0, err
		}
		if cur {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return 0, nil
	}
	_, n, err := current(lo - 1)
	if err != nil {
		return 0, err
	}
	if n == 0 || n > SlotPayload {
		return 0, fmt.Errorf("chunk %d has impossible length %d", lo-1, n)
	}
	return (lo-1)*SlotPayload + int64(n), nil
}

// physicalSize is the inverse of logicalSize.
func physicalSize(logical int64) int64 {
	if logical == 0 {
		return 0
	}
	full, rest := logical/SlotPayload, logical%SlotPayload
	p := HeaderSize + full*SlotSize
	if rest > 0 {
		p += rest + SlotOverhead
	}
	return p
}

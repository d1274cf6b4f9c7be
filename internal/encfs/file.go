package encfs

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// file is an encrypted vfs.File. A file is either a reader (opened with Open,
// immutable for its lifetime as far as this handle knows) or a writer
// (Create, ReuseForWrite, OpenReadWrite).
//
// Writer invariant: every slot before tailSlot is on disk, full and current;
// the plaintext of slot tailSlot is in tail (len(tail) < SlotPayload) and is
// on disk only as of the last flush (dirty says whether it changed since).
type file struct {
	fs   *FS
	name string
	base vfs.File
	hdr  header
	keys *fileKeys // nil for an empty reader: there is nothing to decrypt

	writable bool

	mu sync.Mutex // guards the writer state and readOff
	// size is the logical size. For readers it is fixed at open.
	size         int64
	headerOnDisk bool
	headerBytes  []byte
	tail         []byte
	tailSlot     int64
	dirty        bool
	readOff      int64
	closed       bool
	writeScratch []byte
	aadScratchW  [aadSize]byte
	// lastSlot keeps the plaintext of the last partly-read chunk of a
	// reader, so consecutive block reads decrypt each chunk once.
	lastSlot slotCache
}

// slotCache holds one decrypted chunk. Only authenticated plaintext is
// ever stored in it.
type slotCache struct {
	mu   sync.Mutex
	slot int64
	n    int
	buf  []byte
}

// read copies what the cache holds of [off, off+len(p)) when off falls in
// the cached chunk, and returns how many bytes it copied.
func (c *slotCache) read(p []byte, off int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil || off/SlotPayload != c.slot {
		return 0
	}
	in := int(off - c.slot*SlotPayload)
	if in >= c.n {
		return 0
	}
	return copy(p, c.buf[in:c.n])
}

func (c *slotCache) store(slot int64, pt []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		c.buf = make([]byte, SlotPayload)
	}
	c.slot, c.n = slot, copy(c.buf, pt)
}

func (c *slotCache) wipe() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.buf)
	c.buf = nil
}

var _ vfs.File = (*file)(nil)

// newWriter starts an empty encrypted file under the source's current key.
// generation is 0 for a new file and one more than the old file's for a
// recycled one.
func (fs *FS) newWriter(name string, base vfs.File, generation uint32) (*file, error) {
	version, dbKey, err := fs.keys.CurrentKey()
	if err != nil {
		return nil, fmt.Errorf("encfs: create %s: %w", name, err)
	}
	h, err := newHeader(version, generation)
	if err != nil {
		return nil, err
	}
	keys, err := deriveFileKeys(dbKey, fs.scope, version, h.salt[:])
	if err != nil {
		return nil, err
	}
	f := &file{fs: fs, name: name, base: base, hdr: h, keys: keys, writable: true,
		tail: make([]byte, 0, SlotPayload)}
	f.headerBytes = encodeHeader(h, keys)
	return f, nil
}

// openExisting reads and authenticates the header of an existing file.
func (fs *FS) openExisting(name string, base vfs.File, writable bool) (*file, error) {
	fi, err := base.Stat()
	if err != nil {
		return nil, err
	}
	f := &file{fs: fs, name: name, base: base, writable: writable, tail: make([]byte, 0, SlotPayload)}
	if fi.Size() == 0 {
		if writable {
			// An empty file opened for writing becomes a new file.
			nf, err := fs.newWriter(name, base, 0)
			if err != nil {
				return nil, err
			}
			return nf, nil
		}
		return f, nil
	}
	if fi.Size() < HeaderSize {
		_, err := logicalSize(fi.Size())
		return nil, &IntegrityError{File: name, Slot: -1, Detail: err.Error()}
	}
	raw := make([]byte, HeaderSize)
	if _, err := base.ReadAt(raw, 0); err != nil {
		return nil, fmt.Errorf("encfs: read header of %s: %w", name, err)
	}
	h, err := parseHeader(raw)
	if err != nil {
		return nil, &IntegrityError{File: name, Slot: -1, Detail: err.Error()}
	}
	if f.size, err = sizeOf(base, fi.Size(), h); err != nil {
		return nil, &IntegrityError{File: name, Slot: -1, Detail: err.Error()}
	}
	dbKey, err := fs.keys.Key(h.keyVersion)
	if errors.Is(err, ErrUnknownKeyVersion) {
		// The header names a version this database never had (or has
		// destroyed): the header was altered or the file is foreign.
		return nil, &IntegrityError{File: name, Slot: -1,
			Detail: fmt.Sprintf("header names key version %d, which this database does not have", h.keyVersion)}
	}
	if err != nil {
		return nil, fmt.Errorf("encfs: open %s (key version %d): %w", name, h.keyVersion, err)
	}
	keys, err := deriveFileKeys(dbKey, fs.scope, h.keyVersion, h.salt[:])
	if err != nil {
		return nil, err
	}
	if !verifyHeader(raw, keys) {
		keys.zero()
		return nil, &IntegrityError{File: name, Slot: -1,
			Detail: "header authentication failed: the file was modified, or was not written under this database's key"}
	}
	f.hdr, f.keys, f.headerOnDisk, f.headerBytes = h, keys, true, raw
	if writable {
		f.tailSlot = f.size / SlotPayload
		if rest := f.size % SlotPayload; rest > 0 {
			f.tail = f.tail[:rest]
			if err := f.readSlots(f.tail, f.tailSlot*SlotPayload); err != nil {
				return nil, err
			}
		}
	}
	return f, nil
}

// seal encrypts one slot's plaintext into dst (which must have room for
// len(pt)+SlotOverhead bytes) under a fresh random nonce.
func (f *file) seal(dst, pt []byte, slot int64, aad *[aadSize]byte) error {
	binary.LittleEndian.PutUint32(dst, f.hdr.generation)
	binary.LittleEndian.PutUint16(dst[4:], uint16(len(pt)))
	nonce := dst[slotHdrSize : slotHdrSize+nonceSize]
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("encfs: draw nonce: %w", err)
	}
	f.keys.aead.Seal(dst[slotHdrSize+nonceSize:slotHdrSize+nonceSize], nonce, pt, slotAAD(aad, &f.hdr.salt, slot, f.hdr.generation, len(pt)))
	return nil
}

// Write appends p. Full slots go to disk at once, in one pwrite per call;
// the partial tail stays in memory until the next Sync or Close.
func (f *file) Write(p []byte) (int, error) {
	if !f.writable {
		return 0, fmt.Errorf("encfs: %s was not opened for writing", f.name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.appendLocked(p)
}

func (f *file) appendLocked(p []byte) (int, error) {
	total := len(p)
	// Slots completed by this write: the current tail's slot and any whole
	// slots after it.
	fill := SlotPayload - len(f.tail)
	if len(p) < fill {
		f.tail = append(f.tail, p...)
		f.size += int64(len(p))
		f.dirty = true
		return total, nil
	}
	nFull := 1 + (len(p)-fill)/SlotPayload
	out := f.scratch(nFull * SlotSize)
	firstSlot := f.tailSlot
	// Complete the tail slot.
	f.tail = append(f.tail, p[:fill]...)
	p = p[fill:]
	if err := f.seal(out[:SlotSize], f.tail, f.tailSlot, &f.aadScratchW); err != nil {
		return 0, err
	}
	off := SlotSize
	slot := f.tailSlot + 1
	for len(p) >= SlotPayload {
		if err := f.seal(out[off:off+SlotSize], p[:SlotPayload], slot, &f.aadScratchW); err != nil {
			return 0, err
		}
		p, off, slot = p[SlotPayload:], off+SlotSize, slot+1
	}
	if err := f.writePhysical(out[:off], physicalOffset(firstSlot)); err != nil {
		// The slots may be partly on disk; the file is beyond repair for
		// this handle, as a plain file would be after a failed write.
		return 0, err
	}
	f.tailSlot = slot
	f.tail = append(f.tail[:0], p...)
	f.dirty = len(p) > 0
	f.size += int64(total)
	return total, nil
}

func (f *file) scratch(n int) []byte {
	if cap(f.writeScratch) < n {
		f.writeScratch = make([]byte, n)
	}
	return f.writeScratch[:n]
}

// writePhysical writes encrypted bytes at off, writing the header first if
// this is the file's first data.
func (f *file) writePhysical(b []byte, off int64) error {
	if !f.headerOnDisk {
		if _, err := f.base.WriteAt(f.headerBytes, 0); err != nil {
			return fmt.Errorf("encfs: write header of %s: %w", f.name, err)
		}
		f.headerOnDisk = true
	}
	if _, err := f.base.WriteAt(b, off); err != nil {
		return fmt.Errorf("encfs: write %s: %w", f.name, err)
	}
	return nil
}

// flushTailLocked puts the partial tail slot on disk (re-sealed under a new
// nonce: the same slot is never sealed twice with one nonce).
func (f *file) flushTailLocked() error {
	if !f.dirty || len(f.tail) == 0 {
		f.dirty = false
		return nil
	}
	out := f.scratch(len(f.tail) + SlotOverhead)
	if err := f.seal(out, f.tail, f.tailSlot, &f.aadScratchW); err != nil {
		return err
	}
	if err := f.writePhysical(out, physicalOffset(f.tailSlot)); err != nil {
		return err
	}
	f.dirty = false
	return nil
}

// WriteAt rewrites a range of a file opened with OpenReadWrite. Each
// affected slot is decrypted, patched and sealed again under a new nonce.
func (f *file) WriteAt(p []byte, off int64) (int, error) {
	if !f.writable {
		return 0, fmt.Errorf("encfs: %s was not opened for writing", f.name)
	}
	if off < 0 {
		return 0, fmt.Errorf("encfs: negative offset %d", off)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if off == f.size {
		return f.appendLocked(p)
	}
	if err := f.flushTailLocked(); err != nil {
		return 0, err
	}
	if off > f.size {
		// Fill the hole with zeros, as a sparse plain file reads.
		if _, err := f.appendLocked(make([]byte, off-f.size)); err != nil {
			return 0, err
		}
		if err := f.flushTailLocked(); err != nil {
			return 0, err
		}
	}
	written := 0
	for written < len(p) {
		pos := off + int64(written)
		if pos >= f.size {
			n, err := f.appendLocked(p[written:])
			return written + n, err
		}
		slot := pos / SlotPayload
		slotStart := slot * SlotPayload
		slotLen := min(int64(SlotPayload), f.size-slotStart)
		pt := make([]byte, slotLen, SlotPayload)
		if slot == f.tailSlot {
			copy(pt, f.tail)
		} else if err := f.readSlots(pt, slotStart); err != nil {
			return written, err
		}
		n := copy(pt[pos-slotStart:cap(pt)], p[written:])
		if end := pos - slotStart + int64(n); end > int64(len(pt)) {
			pt = pt[:end]
		}
		if slot == f.tailSlot {
			f.size += int64(len(pt)) - int64(len(f.tail))
			f.tail = append(f.tail[:0], pt...)
			f.dirty = true
			if len(f.tail) == SlotPayload {
				// The tail became full: it is an ordinary slot now.
				if err := f.flushTailLocked(); err != nil {
					return written, err
				}
				f.tailSlot++
				f.tail = f.tail[:0]
			}
		} else {
			out := make([]byte, len(pt)+SlotOverhead)
			if err := f.seal(out, pt, slot, &f.aadScratchW); err != nil {
				return written, err
			}
			if err := f.writePhysical(out, physicalOffset(slot)); err != nil {
				return written, err
			}
		}
		written += n
	}
	return written, nil
}

// ReadAt reads plaintext at a logical offset, decrypting each slot the range
// touches. Parallel calls are safe for readers.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("encfs: negative offset %d", off)
	}
	size := f.size
	if f.writable {
		// Reads of a file being written see what was written, tail
		// included: put the tail on disk first.
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.flushTailLocked(); err != nil {
			return 0, err
		}
		size = f.size
	}
	if off >= size {
		return 0, io.EOF
	}
	n := len(p)
	if rem := size - off; int64(n) > rem {
		n = int(rem)
	}
	if err := f.readSlots(p[:n], off); err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readSlots fills p with the plaintext at logical offset off; the whole
// range must lie within the file's on-disk slots.
func (f *file) readSlots(p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	if f.keys == nil {
		return &IntegrityError{File: f.name, Slot: 0, Detail: "no data expected in an empty file"}
	}
	if !f.writable {
		// A read that starts where the previous one ended (sequential
		// scans, compactions) finds its first chunk already decrypted.
		if n := f.lastSlot.read(p, off); n > 0 {
			p, off = p[n:], off+int64(n)
			if len(p) == 0 {
				return nil
			}
		}
	}
	first := off / SlotPayload
	end := off + int64(len(p))
	last := (end - 1) / SlotPayload
	// The last slot may be the file's short tail slot.
	lastLen := int64(SlotSize)
	if fileEnd := f.size; (last+1)*SlotPayload > fileEnd {
		lastLen = fileEnd - last*SlotPayload + SlotOverhead
	}
	physStart := physicalOffset(first)
	physLen := (last-first)*SlotSize + lastLen
	bufp := f.fs.getBuf(int(physLen))
	defer f.fs.putBuf(bufp)
	buf := (*bufp)[:physLen]
	if _, err := f.base.ReadAt(buf, physStart); err != nil {
		if errors.Is(err, io.EOF) {
			return &IntegrityError{File: f.name, Slot: first, Detail: "file is shorter than its recorded size"}
		}
		return fmt.Errorf("encfs: read %s: %w", f.name, err)
	}
	var aad [aadSize]byte
	pos := off
	out := p
	for slot := first; slot <= last; slot++ {
		s := buf[(slot-first)*SlotSize:]
		if slot == last {
			s = s[:lastLen]
		} else {
			s = s[:SlotSize]
		}
		slotStart := slot * SlotPayload
		inSlot := int(pos - slotStart)
		ptLen := len(s) - SlotOverhead
		want := min(ptLen-inSlot, len(out))
		if gen, n := slotHeader(s); slot == last && !f.writable && gen == f.hdr.generation && n > ptLen && n <= SlotPayload {
			// Another handle appended to the file since this one measured
			// it (a checkpoint copying a live WAL): the tail chunk was
			// rewritten longer. Its header length is authenticated, so
			// read the whole chunk as it is now and use the prefix this
			// handle knows of.
			pt, err := f.readGrownTail(slot, n, &aad)
			if err != nil {
				clear(p)
				return err
			}
			copy(out, pt[inSlot:inSlot+want])
			clear(pt)
			out = out[want:]
			pos += int64(want)
			continue
		} else if gen != f.hdr.generation || n != ptLen {
			clear(p)
			return &IntegrityError{File: f.name, Slot: slot,
				Detail: fmt.Sprintf("chunk header says generation %d and %d bytes where the file has generation %d and %d bytes", gen, n, f.hdr.generation, ptLen)}
		}
		nonce, ct := s[slotHdrSize:slotHdrSize+nonceSize], s[slotHdrSize+nonceSize:]
		ad := slotAAD(&aad, &f.hdr.salt, slot, f.hdr.generation, ptLen)
		var err error
		if inSlot == 0 && want == ptLen {
			// The caller wants the whole slot: decrypt straight into p.
			_, err = f.keys.aead.Open(out[:0], nonce, ct, ad)
		} else {
			var pt []byte
			pt, err = f.keys.aead.Open(ct[:0], nonce, ct, ad)
			if err == nil {
				copy(out, pt[inSlot:inSlot+want])
				if slot == last && !f.writable {
					f.lastSlot.store(slot, pt)
				}
			}
		}
		if err != nil {
			// Open may have written garbage into out: wipe it so nothing
			// unauthenticated reaches the caller even by accident.
			clear(p)
			return &IntegrityError{File: f.name, Slot: slot,
				Detail: "chunk authentication failed: the data was modified, moved, or written under another key"}
		}
		out = out[want:]
		pos += int64(want)
	}
	return nil
}

// growRetries bounds how often a reader re-reads a tail chunk that a
// concurrent appender keeps rewriting.
const growRetries = 16

// readGrownTail reads tail chunk slot, which another handle rewrote
// longer (n bytes, by its header) since this handle measured the file. The
// appender may rewrite it again meanwhile, and a read racing a rewrite
// can see a torn chunk, so it is read until its header is stable and it
// authenticates — never returning anything unauthenticated.
func (f *file) readGrownTail(slot int64, n int, aad *[aadSize]byte) ([]byte, error) {
	for try := 0; try < growRetries; try++ {
		buf := make([]byte, n+SlotOverhead)
		if _, err := f.base.ReadAt(buf, physicalOffset(slot)); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("encfs: read %s: %w", f.name, err)
		}
		gen, n2 := slotHeader(buf)
		if gen != f.hdr.generation || n2 < n || n2 > SlotPayload {
			return nil, &IntegrityError{File: f.name, Slot: slot, Detail: "the tail chunk shrank or changed generation while it was read"}
		}
		if n2 != n {
			n = n2 // rewritten longer again: read it at its new length
			continue
		}
		ct := buf[slotHdrSize+nonceSize:]
		pt, err := f.keys.aead.Open(ct[:0], buf[slotHdrSize:slotHdrSize+nonceSize], ct, slotAAD(aad, &f.hdr.salt, slot, f.hdr.generation, n))
		if err == nil {
			return pt, nil
		}
		clear(buf)
	}
	return nil, &IntegrityError{File: f.name, Slot: slot,
		Detail: "chunk authentication failed: the data was modified, moved, or written under another key"}
}

// Read reads sequentially from the handle's own offset.
func (f *file) Read(p []byte) (int, error) {
	f.mu.Lock()
	off := f.readOff
	f.mu.Unlock()
	n, err := f.ReadAt(p, off)
	f.mu.Lock()
	f.readOff += int64(n)
	f.mu.Unlock()
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *file) Sync() error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.base.Sync()
}

func (f *file) SyncData() error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.base.SyncData()
}

// SyncTo syncs the full slots covering the first length bytes. It never
// reports a full sync: the tail lives in memory until Sync.
func (f *file) SyncTo(length int64) (bool, error) {
	if !f.writable {
		return false, nil
	}
	full := length / SlotPayload
	if full == 0 {
		return false, nil
	}
	_, err := f.base.SyncTo(physicalOffset(full))
	return false, err
}

func (f *file) flush() error {
	if !f.writable {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flushTailLocked()
}

func (f *file) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return fmt.Errorf("encfs: %s: %w", f.name, os.ErrClosed)
	}
	f.closed = true
	var err error
	if f.writable {
		err = f.flushTailLocked()
	}
	if f.keys != nil {
		f.keys.zero()
	}
	clear(f.tail)
	f.lastSlot.wipe()
	f.mu.Unlock()
	if cerr := f.base.Close(); err == nil {
		err = cerr
	}
	return err
}

func (f *file) Preallocate(offset, length int64) error {
	start := physicalOffset(offset / SlotPayload)
	return f.base.Preallocate(start, physicalSize(length)+SlotSize)
}

func (f *file) Stat() (vfs.FileInfo, error) {
	fi, err := f.base.Stat()
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return sizedInfo{FileInfo: fi, size: f.size}, nil
}

// Prefetch forwards the hint for the physical range holding the slots.
func (f *file) Prefetch(offset, length int64) error {
	first := offset / SlotPayload
	last := (offset + length) / SlotPayload
	return f.base.Prefetch(physicalOffset(first), (last-first+1)*SlotSize)
}

// Fd returns the underlying descriptor. Pebble uses it only to decide
// between sync_file_range and fsync (vfs.syncingFile: with no descriptor it
// would fsync the whole file every BytesPerSync) and for fadvise hints;
// nothing in Pebble reads or writes data through it, which would bypass the
// encryption.
func (f *file) Fd() uintptr { return f.base.Fd() }

// sizedInfo reports the logical size of an encrypted file.
type sizedInfo struct {
	vfs.FileInfo
	size int64
}

func (s sizedInfo) Size() int64 { return s.size }

// sizeOf is the logical size of a file with header h and physical size
// phys: derived from phys for a file that was never recycled, found by
// recycledSize for one that was.
func sizeOf(r io.ReaderAt, phys int64, h header) (int64, error) {
	if h.generation == 0 {
		return logicalSize(phys)
	}
	return recycledSize(r, phys, h.generation)
}

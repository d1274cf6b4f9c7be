package oplog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Keys in the member's local database (raft's own keys start with 0xF0,
// documents a user keeps in local with 0x00–0x04):
//
//	0xF1 + ts (8 bytes BE)  -> uvarint(raft index) | entry BSON
//	0xF2                    -> meta: bytes u64 | count u64 | floor ts (8 bytes)
//
// meta is written in the same batch as the entries it counts, so the two
// never disagree after a crash. floor is the newest timestamp the oplog
// no longer holds (removed by the cap, or covered by a snapshot this
// member installed): the next timestamp follows it when no entry is left.
const (
	prefixEntry = 0xF1
	keyMeta     = 0xF2
)

// Limits caps the oplog: entries beyond MaxBytes (oldest first) or older
// than Retention are removed, whichever removes more. Zero fields take the
// defaults (1 GiB, 24 h).
type Limits struct {
	MaxBytes  int64
	Retention time.Duration
}

// Defaults of Limits.
const (
	DefaultMaxBytes  = 1 << 30
	DefaultRetention = 24 * time.Hour
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.Retention <= 0 {
		l.Retention = DefaultRetention
	}
	return l
}

// Log is a member's oplog. Appends come from one goroutine (the raft
// FSM); reads run concurrently on Pebble iterators.
type Log struct {
	db     *pebble.DB
	limits Limits

	mu    sync.Mutex // appends, trims and meta
	bytes int64
	count int64
	floor Timestamp
	last  Timestamp // newest entry, or floor
	// lastCheck is when the retention cap last ran: at most once a second.
	lastCheck time.Time

	nmu    sync.Mutex
	notify chan struct{}
}

// Open opens the oplog kept in db.
func Open(db *pebble.DB, limits Limits) (*Log, error) {
	l := &Log{db: db, limits: limits.withDefaults()}
	v, closer, err := db.Get([]byte{keyMeta})
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("oplog: %w", err)
	default:
		if len(v) != 24 {
			closer.Close()
			return nil, fmt.Errorf("%w: meta record of %d bytes", errBadEntry, len(v))
		}
		l.bytes = int64(binary.BigEndian.Uint64(v[:8]))
		l.count = int64(binary.BigEndian.Uint64(v[8:16]))
		l.floor = timestampFromKey(v[16:24])
		closer.Close()
	}
	last, ok, err := l.newest()
	if err != nil {
		return nil, err
	}
	l.last = l.floor
	if ok && last.Compare(l.floor) > 0 {
		l.last = last
	}
	return l, nil
}

func entryKey(ts Timestamp) []byte {
	k := ts.key()
	return append([]byte{prefixEntry}, k[:]...)
}

var (
	entryLower = []byte{prefixEntry}
	entryUpper = []byte{prefixEntry + 1}
)

func (l *Log) newest() (Timestamp, bool, error) {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: entryLower, UpperBound: entryUpper})
	if err != nil {
		return Timestamp{}, false, err
	}
	defer it.Close()
	if !it.Last() {
		return Timestamp{}, false, it.Error()
	}
	return timestampFromKey(it.Key()[1:]), true, nil
}

func putMeta(b *pebble.Batch, bytes, count int64, floor Timestamp) error {
	var v [24]byte
	binary.BigEndian.PutUint64(v[:8], uint64(bytes))
	binary.BigEndian.PutUint64(v[8:16], uint64(count))
	k := floor.key()
	copy(v[16:], k[:])
	return b.Set([]byte{keyMeta}, v[:], nil)
}

// Last is the newest timestamp the oplog has given: its newest entry's, or
// the floor when it holds none.
func (l *Log) Last() Timestamp {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// Floor is the newest timestamp the oplog no longer holds: a reader
// positioned before it has missed entries (zero while nothing was ever
// removed).
func (l *Log) Floor() Timestamp {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.floor
}

// Stats are the oplog's size, entry count and oldest entry's timestamp
// (zero if it holds none).
func (l *Log) Stats() (bytes, count int64, first Timestamp, err error) {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: entryLower, UpperBound: entryUpper})
	if err != nil {
		return 0, 0, Timestamp{}, err
	}
	defer it.Close()
	if it.First() {
		first = timestampFromKey(it.Key()[1:])
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes, l.count, first, it.Error()
}

// DiskUsage is Pebble's estimate of the bytes the entries take in its
// sstables (collStats' storageSize).
func (l *Log) DiskUsage() (int64, error) {
	n, err := l.db.EstimateDiskUsage(entryLower, entryUpper)
	return int64(n), err
}

// Append writes entries (the changes of log entry index, in order, their
// timestamps increasing and after Last) in one batch. It does not sync:
// the raft log is the durable record, and a restarted member regrows the
// oplog from it (TrimFrom).
func (l *Log) Append(index uint64, entries []Entry, now time.Time) error {
	if len(entries) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.db.NewBatch()
	defer b.Close()
	last := l.last
	bytes, count := l.bytes, l.count
	for _, e := range entries {
		if e.TS.Compare(last) <= 0 {
			return fmt.Errorf("oplog: entry %v does not follow %v", e.TS, last)
		}
		doc, err := e.Doc()
		if err != nil {
			return fmt.Errorf("oplog: %w", err)
		}
		v := encodeValue(index, doc)
		if err := b.Set(entryKey(e.TS), v, nil); err != nil {
			return err
		}
		bytes += int64(len(v))
		count++
		last = e.TS
	}
	if err := putMeta(b, bytes, count, l.floor); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("oplog: append: %w", err)
	}
	l.bytes, l.count, l.last = bytes, count, last
	if err := l.capLocked(now); err != nil {
		return err
	}
	l.wake()
	return nil
}

// capLocked removes the oldest entries beyond the size cap, and (at most
// once a second) those older than the retention. It never removes the
// newest entry: one entry larger than the cap, or a member replaying log
// entries older than the retention, still leaves the oplog its latest
// change (MongoDB's oplog, too, is never emptied by its cap), so a
// reader's last position stays in it.
func (l *Log) capLocked(now time.Time) error {
	overSize := l.bytes > l.limits.MaxBytes
	checkAge := now.Sub(l.lastCheck) >= time.Second
	if !overSize && !checkAge {
		return nil
	}
	if checkAge {
		l.lastCheck = now
	}
	cutoff := now.Add(-l.limits.Retention).Unix()
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: entryLower, UpperBound: entryUpper})
	if err != nil {
		return err
	}
	defer it.Close()
	bytes, count := l.bytes, l.count
	var end []byte
	var removed Timestamp
	for it.First(); it.Valid(); it.Next() {
		ts := timestampFromKey(it.Key()[1:])
		if ts == l.last || (bytes <= l.limits.MaxBytes && int64(ts.T) >= cutoff) {
			break
		}
		bytes -= int64(len(it.Value()))
		count--
		removed = ts
		end = append(end[:0], it.Key()...)
	}
	if err := it.Error(); err != nil {
		return err
	}
	if end == nil {
		return nil
	}
	b := l.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(entryLower, append(end, 0), nil); err != nil {
		return err
	}
	floor := l.floor
	if removed.Compare(floor) > 0 {
		floor = removed
	}
	if err := putMeta(b, bytes, count, floor); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("oplog: cap: %w", err)
	}
	l.bytes, l.count, l.floor = bytes, count, floor
	return nil
}

// TrimFrom removes the entries that came from raft index index or later
// and returns the timestamp the next entry follows. A member that
// restarts replays the log from after its last snapshot; entries it
// applied past that point before the restart may or may not have reached
// disk (appends do not sync), and are cut here so that the replay
// recreates them — with the same timestamps, as Next is a function of
// the entry before.
func (l *Log) TrimFrom(index uint64) (Timestamp, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: entryLower, UpperBound: entryUpper})
	if err != nil {
		return Timestamp{}, err
	}
	defer it.Close()
	bytes, count := l.bytes, l.count
	var start []byte
	prev := l.floor
	for it.Last(); it.Valid(); it.Prev() {
		idx, _, err := decodeValue(it.Value())
		if err != nil {
			return Timestamp{}, fmt.Errorf("oplog entry %v: %w", timestampFromKey(it.Key()[1:]), err)
		}
		if idx < index {
			if ts := timestampFromKey(it.Key()[1:]); ts.Compare(prev) > 0 {
				prev = ts
			}
			break
		}
		bytes -= int64(len(it.Value()))
		count--
		start = append(start[:0], it.Key()...)
	}
	if err := it.Error(); err != nil {
		return Timestamp{}, err
	}
	if start != nil {
		b := l.db.NewBatch()
		defer b.Close()
		if err := b.DeleteRange(start, entryUpper, nil); err != nil {
			return Timestamp{}, err
		}
		bytes, count = max(bytes, 0), max(count, 0)
		if err := putMeta(b, bytes, count, l.floor); err != nil {
			return Timestamp{}, err
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return Timestamp{}, fmt.Errorf("oplog: trim: %w", err)
		}
		l.bytes, l.count = bytes, count
	}
	l.last = prev
	return prev, nil
}

// Reset empties the oplog and sets its floor: after this member installed
// a snapshot of the set's data at floor, it cannot vouch for the changes
// its oplog held before (a change stream resuming from one of them is
// told its history is lost, not shown a gap).
func (l *Log) Reset(floor Timestamp) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(entryLower, entryUpper, nil); err != nil {
		return err
	}
	if err := putMeta(b, 0, 0, floor); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("oplog: reset: %w", err)
	}
	l.bytes, l.count, l.floor, l.last = 0, 0, floor, floor
	l.wake()
	return nil
}

// Scan calls fn with the entries after ts (all of them if ts is zero), in
// order, until fn returns false or the entries end. Entries appended
// while it runs may or may not be seen.
func (l *Log) Scan(ctx context.Context, after Timestamp, fn func(Stored) (bool, error)) error {
	lower := entryLower
	if !after.IsZero() {
		lower = append(entryKey(after), 0)
	}
	return l.iterate(ctx, lower, fn)
}

// ScanBackward calls fn with the entries before ts (from the newest if ts
// is zero), newest first.
func (l *Log) ScanBackward(ctx context.Context, before Timestamp, fn func(Stored) (bool, error)) error {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: entryLower, UpperBound: entryUpper})
	if err != nil {
		return err
	}
	defer it.Close()
	var valid bool
	if before.IsZero() {
		valid = it.Last()
	} else {
		valid = it.SeekLT(entryKey(before))
	}
	for ; valid; valid = it.Prev() {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		s, err := stored(it.Key(), it.Value())
		if err != nil {
			return err
		}
		if more, err := fn(s); err != nil || !more {
			return err
		}
	}
	return it.Error()
}

func (l *Log) iterate(ctx context.Context, lower []byte, fn func(Stored) (bool, error)) error {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: entryUpper})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		s, err := stored(it.Key(), it.Value())
		if err != nil {
			return err
		}
		if more, err := fn(s); err != nil || !more {
			return err
		}
	}
	return it.Error()
}

// stored reads back an entry. A damaged one is an error naming it, never
// skipped: a reader that skipped it would show a gap as a complete
// history.
func stored(key, value []byte) (Stored, error) {
	ts := timestampFromKey(key[1:])
	idx, raw, err := decodeValue(value)
	if err != nil {
		return Stored{}, fmt.Errorf("oplog entry %v: %w", ts, err)
	}
	raw = bytes.Clone(raw)
	e, err := parseDoc(raw)
	if err != nil {
		return Stored{}, fmt.Errorf("oplog entry %v: %w", ts, err)
	}
	if ts != e.TS {
		return Stored{}, fmt.Errorf("%w: stored under %v, says %v", errBadEntry, ts, e.TS)
	}
	return Stored{Entry: e, Index: idx, Raw: raw}, nil
}

// Changed returns a channel closed by the next append (or reset): what
// awaitData cursors and change streams wait on.
func (l *Log) Changed() <-chan struct{} {
	l.nmu.Lock()
	defer l.nmu.Unlock()
	if l.notify == nil {
		l.notify = make(chan struct{})
	}
	return l.notify
}

func (l *Log) wake() {
	l.nmu.Lock()
	defer l.nmu.Unlock()
	if l.notify != nil {
		close(l.notify)
		l.notify = nil
	}
}

// SetLimits changes the caps of a running oplog (replSetResizeOplog) and
// applies them at once: an oplog over its new size shrinks now, not with
// the next write. Zero fields take the defaults, as in Open.
func (l *Log) SetLimits(limits Limits, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limits = limits.withDefaults()
	l.lastCheck = time.Time{} // check the age now too
	return l.capLocked(now)
}

// Limits are the caps in force.
func (l *Log) Limits() Limits {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limits
}

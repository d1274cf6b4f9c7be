package repl

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/storage"
)

// A raft snapshot of a member is every replicated database's keys and
// values at one log index, as a stream:
//
//	magic "cmkdb-rs-snap\x01"
//	per database:  'D' uvarint len(name) name
//	               'K' uvarint len(key) key uvarint len(value) value   (repeated)
//	               'E'
//	oplog position: 'O' ts (8 bytes: seconds, increment, BE)   (optional)
//	end:           'Z'
//
// The oplog position is the timestamp of the last change the snapshot
// covers: a member that installs it continues its oplog from there, so
// that it gives the next changes the timestamps every member gives them.
//
// It carries logical contents, never a member's encrypted files: the
// snapshot store encrypts it under the sender's keys, the transport
// carries it over mutual TLS, and the receiver writes what it restores
// under its own keys.
const snapMagic = "cmkdb-rs-snap\x01"

const (
	maxSnapKey   = 64 << 10
	maxSnapValue = 64 << 20
	// restoreBatch bounds the memory a restore holds in one batch.
	restoreBatch = 4 << 20
)

var errBadSnapshot = errors.New("repl: malformed snapshot")

// Snapshot pins every replicated database at the current index. It runs
// between two applies, so the databases agree on one log position. The
// WALs are synced first: with NoSnapshotRestoreOnStart, a restart replays
// only the entries after the snapshot, so what it covers must be durable.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.stopSnapshot()
	if err := f.dropCommittedStaging(); err != nil {
		return nil, fmt.Errorf("repl: snapshot: %w", err)
	}
	s := &fsmSnapshot{oplogTS: f.prev, index: f.m.applied.Load().Index, persisted: &f.persisted}
	defer func() { f.snap = s }()
	if local, err := f.eng.Database(localDB); err == nil {
		// The oplog's entries up to here must survive a restart, which
		// replays only what follows the snapshot (oplog.Log.TrimFrom).
		if err := local.LogData(nil, pebble.Sync); err != nil {
			return nil, fmt.Errorf("repl: snapshot: sync the oplog: %w", err)
		}
	}
	for _, name := range f.eng.Databases() {
		if name == localDB {
			continue
		}
		db, err := f.eng.Database(name)
		if err != nil {
			s.Release()
			return nil, fmt.Errorf("repl: snapshot of %s: %w", name, err)
		}
		if err := db.LogData(nil, pebble.Sync); err != nil {
			s.Release()
			return nil, fmt.Errorf("repl: snapshot of %s: sync: %w", name, err)
		}
		s.dbs = append(s.dbs, dbSnapshot{name: name, snap: db.NewSnapshot()})
	}
	return s, nil
}

type dbSnapshot struct {
	name string
	snap *pebble.Snapshot
}

// fsmSnapshot is persisted by raft on its own goroutine while the log is
// applied on. A database it pins may be dropped by an entry meanwhile:
// the fsm first stops it (stopSnapshot), so that no pebble snapshot is
// left on a closed database; the persist then fails and raft takes
// another snapshot later.
type fsmSnapshot struct {
	// mu is held while the snapshot is written or stopped.
	mu      sync.Mutex
	dbs     []dbSnapshot
	oplogTS oplog.Timestamp
	stopped atomic.Bool
	// index is the log index it holds; persisted hears it once raft
	// persisted it.
	index     uint64
	persisted *atomic.Uint64
}

var errSnapshotStopped = errors.New("repl: snapshot stopped: a database it holds was dropped")

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	if err := sink.Close(); err != nil {
		return err
	}
	if s.persisted != nil && s.index > s.persisted.Load() {
		s.persisted.Store(s.index)
	}
	return nil
}

func (s *fsmSnapshot) write(w io.Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped.Load() {
		return errSnapshotStopped
	}
	parts := make([]streamPart, len(s.dbs))
	for i, d := range s.dbs {
		parts[i] = streamPart{name: d.name, r: d.snap}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if s.stopped.Load() {
					cancel(errSnapshotStopped)
					return
				}
			}
		}
	}()
	err := writeStream(ctx, w, parts, s.oplogTS)
	if s.stopped.Load() {
		return errSnapshotStopped
	}
	return err
}

// stopSnapshot stops the snapshot last taken, if raft may still be
// persisting it, and closes its pebble snapshots: called before a
// database is dropped (and before the next snapshot).
func (f *fsm) stopSnapshot() {
	s := f.snap
	if s == nil {
		return
	}
	f.snap = nil
	s.stopped.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeSnapshots()
}

// streamPart is one database of a snapshot stream and what reads it.
type streamPart struct {
	name string
	r    interface {
		NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
	}
}

// writeStream writes parts as a snapshot stream ending at oplog position
// ts (none if zero).
func writeStream(ctx context.Context, w io.Writer, parts []streamPart, ts oplog.Timestamp) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	bw.WriteString(snapMagic)
	var n [binary.MaxVarintLen64]byte
	putBytes := func(b []byte) {
		bw.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
		bw.Write(b)
	}
	for _, d := range parts {
		bw.WriteByte('D')
		putBytes([]byte(d.name))
		it, err := d.r.NewIter(nil)
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				it.Close()
				return err
			}
			v, err := it.ValueAndErr()
			if err != nil {
				it.Close()
				return err
			}
			bw.WriteByte('K')
			putBytes(it.Key())
			putBytes(v)
		}
		if err := it.Close(); err != nil {
			return fmt.Errorf("repl: snapshot of %s: %w", d.name, err)
		}
		bw.WriteByte('E')
	}
	if !ts.IsZero() {
		bw.WriteByte('O')
		var b [8]byte
		binary.BigEndian.PutUint32(b[:4], ts.T)
		binary.BigEndian.PutUint32(b[4:], ts.I)
		bw.Write(b[:])
	}
	bw.WriteByte('Z')
	return bw.Flush()
}

func (s *fsmSnapshot) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeSnapshots()
}

func (s *fsmSnapshot) closeSnapshots() {
	for _, d := range s.dbs {
		_ = d.snap.Close()
	}
	s.dbs = nil
}

// Restore replaces every replicated database with the snapshot's
// contents: databases it lists are cleared and refilled, databases it
// does not list are dropped. Each is synced before Restore returns.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.m.applyMu.Lock()
	defer f.m.applyMu.Unlock()
	f.stopSnapshot()
	if err := setRestoreMarker(f.eng, true); err != nil {
		return fmt.Errorf("repl: restore: %w", err)
	}
	seen, ts, err := restoreStream(bufio.NewReaderSize(rc, 1<<20), f.eng, f.m.sync.document)
	defer f.m.sync.finished()
	if err != nil {
		return err
	}
	if err := f.resetOplog(ts); err != nil {
		return err
	}
	for _, name := range f.eng.Databases() {
		if name != localDB && !seen[name] {
			if _, err := f.dbs.DropReplicated(name); err != nil {
				return fmt.Errorf("repl: restore: drop %s: %w", name, err)
			}
		}
	}
	for name := range seen {
		if err := f.dbs.Reload(name); err != nil {
			return fmt.Errorf("repl: restore: %s: %w", name, err)
		}
	}
	if err := setRestoreMarker(f.eng, false); err != nil {
		return fmt.Errorf("repl: restore: %w", err)
	}
	f.m.restores.Add(1)
	f.m.log.Info("caught up from a snapshot", "databases", len(seen))
	return nil
}

// restoreStream loads a snapshot stream into eng's databases and returns
// the databases it held.
func restoreStream(r *bufio.Reader, eng *storage.Engine, onKey func()) (map[string]bool, oplog.Timestamp, error) {
	var cur *dbRestore
	var ts oplog.Timestamp
	seen, err := readSnapshot(r, snapshotVisitor{
		oplogTS: func(t oplog.Timestamp) { ts = t },
		db: func(name string) error {
			var err error
			cur, err = startRestore(eng, name)
			return err
		},
		kv: func(k, v []byte) error {
			if onKey != nil {
				onKey()
			}
			return cur.set(k, v)
		},
		end: func() error {
			err := cur.finish()
			cur = nil
			return err
		},
	})
	if cur != nil {
		cur.b.Close()
	}
	return seen, ts, err
}

// snapshotVisitor receives a snapshot stream's records, in order.
type snapshotVisitor struct {
	db  func(name string) error // a database begins
	kv  func(k, v []byte) error // one of its keys
	end func() error            // it ends
	// oplogTS receives the oplog position, if the stream has one.
	oplogTS func(oplog.Timestamp)
}

// readSnapshot parses a snapshot stream, validating every record before
// it reaches v, and returns the databases it held. It never applies
// anything itself.
func readSnapshot(r *bufio.Reader, v snapshotVisitor) (map[string]bool, error) {
	magic := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != snapMagic {
		return nil, fmt.Errorf("%w: not a cmkdb replica set snapshot", errBadSnapshot)
	}
	seen := map[string]bool{}
	for {
		tag, err := r.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("%w: truncated", errBadSnapshot)
		}
		switch tag {
		case 'Z':
			return seen, nil
		case 'O':
			var ts [8]byte
			if _, err := io.ReadFull(r, ts[:]); err != nil {
				return nil, fmt.Errorf("%w: truncated oplog position", errBadSnapshot)
			}
			if v.oplogTS != nil {
				v.oplogTS(oplog.Timestamp{T: binary.BigEndian.Uint32(ts[:4]), I: binary.BigEndian.Uint32(ts[4:])})
			}
		case 'D':
			name, err := readBytes(r, 255)
			if err != nil || len(name) == 0 || string(name) == localDB || seen[string(name)] {
				return nil, fmt.Errorf("%w: database name", errBadSnapshot)
			}
			seen[string(name)] = true
			if err := v.db(string(name)); err != nil {
				return nil, err
			}
			if err := readRecords(r, string(name), v); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: record %q", errBadSnapshot, tag)
		}
	}
}

// readRecords reads one database's records, up to its 'E'.
func readRecords(r *bufio.Reader, name string, v snapshotVisitor) error {
	for {
		tag, err := r.ReadByte()
		if err != nil {
			return fmt.Errorf("%w: truncated in %s", errBadSnapshot, name)
		}
		if tag == 'E' {
			return v.end()
		}
		if tag != 'K' {
			return fmt.Errorf("%w: record %q in %s", errBadSnapshot, tag, name)
		}
		k, err := readBytes(r, maxSnapKey)
		if err != nil || len(k) == 0 || k[0] == 0xff {
			return fmt.Errorf("%w: key in %s", errBadSnapshot, name)
		}
		val, err := readBytes(r, maxSnapValue)
		if err != nil {
			return fmt.Errorf("%w: value in %s", errBadSnapshot, name)
		}
		if err := v.kv(k, val); err != nil {
			return err
		}
	}
}

// dbRestore refills one database: cleared first, then loaded in batches
// of bounded size, synced at the end.
type dbRestore struct {
	db   *storage.DB
	name string
	b    *pebble.Batch
}

func startRestore(eng *storage.Engine, name string) (*dbRestore, error) {
	db, err := eng.Database(name)
	if errors.Is(err, storage.ErrNoDatabase) {
		db, err = eng.CreateDatabase(name)
	}
	if err != nil {
		return nil, fmt.Errorf("repl: restore %s: %w", name, err)
	}
	d := &dbRestore{db: db, name: name, b: db.NewBatch()}
	if err := d.b.DeleteRange([]byte{}, []byte{0xff}, nil); err != nil {
		d.b.Close()
		return nil, err
	}
	return d, nil
}

func (d *dbRestore) set(k, v []byte) error {
	if err := d.b.Set(k, v, nil); err != nil {
		return err
	}
	if d.b.Len() < restoreBatch {
		return nil
	}
	if err := d.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("repl: restore %s: %w", d.name, err)
	}
	d.b.Close()
	d.b = d.db.NewBatch()
	return nil
}

func (d *dbRestore) finish() error {
	defer d.b.Close()
	if err := d.b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("repl: restore %s: %w", d.name, err)
	}
	return nil
}

func readBytes(r *bufio.Reader, max uint64) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", errBadSnapshot, n, max)
	}
	b := make([]byte, n)
	_, err = io.ReadFull(r, b)
	return b, err
}

// restoreMarker is set (synced) in the local database while a snapshot is
// being installed, and removed once every database holds it. A member
// that finds it at start crashed mid-install, with some databases
// replaced and others not: it installs its newest raft snapshot again
// (the one it was installing) before it applies anything, since raft
// itself does not restore snapshots at start (NoSnapshotRestoreOnStart).
var restoreMarker = []byte{0xF3}

func setRestoreMarker(eng *storage.Engine, on bool) error {
	local, err := eng.Database(localDB)
	if err != nil {
		return err
	}
	if on {
		return local.Set(restoreMarker, []byte{1}, pebble.Sync)
	}
	return local.Delete(restoreMarker, pebble.Sync)
}

// finishInterruptedRestore installs snaps' newest snapshot again if a
// crash interrupted its install.
func (f *fsm) finishInterruptedRestore(local *storage.DB, snaps raft.SnapshotStore) error {
	_, closer, err := local.Get(restoreMarker)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("repl: restore marker: %w", err)
	}
	closer.Close()
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("repl: raft snapshots: %w", err)
	}
	if len(list) == 0 {
		return errors.New("repl: a snapshot install was interrupted and no raft snapshot is left to install again")
	}
	f.m.log.Warn("a snapshot install was interrupted by a crash: installing it again", "snapshot", list[0].ID)
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("repl: raft snapshot %s: %w", list[0].ID, err)
	}
	return f.Restore(rc)
}

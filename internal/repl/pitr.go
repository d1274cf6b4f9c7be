package repl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/storage"
)

// Backups of a replica set (the control plane drives them; see
// docs/architecture.md, "Backups"):
//
//   - a snapshot is a checkpoint of one member's databases taken while
//     the log's application is paused there (WithAppliesPaused), so it
//     holds exactly the entries up to one index, whose oplog timestamp it
//     records;
//   - the oplog archive is the log's committed entries after that,
//     copied out continuously (ReadLog), each with the oplog timestamp of
//     its last change;
//   - a restore replaces every replicated database on every member
//     through the log (RestoreBackup; restore.go: staged parts, then one
//     commit entry), then, for a point in time, proposes the archived
//     entries again in order up to it.
//
// Entries are blind writes of absolute keys, so proposing an archived
// entry again on top of the snapshot it follows reproduces its change
// exactly; its oplog entries get new timestamps, after every timestamp
// the set gave before (a restore never moves the oplog backwards).

// WithAppliesPaused runs fn while no log entry is applied on this member,
// with the position of the last one applied.
func (m *Member) WithAppliesPaused(ctx context.Context, fn func(OpTime) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	return fn(*m.applied.Load())
}

// LogRecord is one committed log entry, as the oplog archive keeps it.
type LogRecord struct {
	Index, Term uint64
	// TS is the oplog timestamp of the entry's last change (of the
	// previous entry's when it changed nothing visible).
	TS   oplog.Timestamp
	Data []byte
}

// LogGapError says entries the archive needs are no longer in the log
// (raft compacted them before they were copied).
type LogGapError struct{ Want, First uint64 }

func (e *LogGapError) Error() string {
	return fmt.Sprintf("repl: log entry %d is no longer kept (the log starts at %d)", e.Want, e.First)
}

// ReadLog returns the entries applied here after index after (whose last
// change had timestamp afterTS), in order, up to about maxBytes of data,
// and the index it read through. Entries of raft's own (configuration,
// no-op) are read through but not returned.
func (m *Member) ReadLog(ctx context.Context, after uint64, afterTS oplog.Timestamp, maxBytes int) ([]LogRecord, uint64, error) {
	m.mu.Lock()
	logs, ol := m.logs, m.oplog
	m.mu.Unlock()
	if logs == nil || ol == nil {
		return nil, after, errors.New("repl: raft is not running")
	}
	applied := m.applied.Load().Index
	if applied <= after {
		return nil, after, nil
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return nil, after, err
	}
	if first > after+1 {
		return nil, after, &LogGapError{Want: after + 1, First: first}
	}
	// The timestamps of the entries' changes, from the oplog (it records
	// each change's log index).
	last := map[uint64]oplog.Timestamp{}
	err = ol.Scan(ctx, afterTS, func(s oplog.Stored) (bool, error) {
		if s.Index > applied {
			return false, nil
		}
		if s.Index > after {
			last[s.Index] = s.Entry.TS
		}
		return true, nil
	})
	if err != nil {
		return nil, after, err
	}
	var out []LogRecord
	size := 0
	prev := afterTS
	idx := after
	for idx < applied && size < maxBytes {
		if err := ctx.Err(); err != nil {
			return nil, after, err
		}
		var l raft.Log
		if err := logs.GetLog(idx+1, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				return nil, after, &LogGapError{Want: idx + 1, First: first}
			}
			return nil, after, err
		}
		idx++
		if l.Type != raft.LogCommand {
			continue
		}
		if ts, ok := last[l.Index]; ok {
			prev = ts
		}
		out = append(out, LogRecord{Index: l.Index, Term: l.Term, TS: prev, Data: l.Data})
		size += len(l.Data)
	}
	return out, idx, nil
}

func errRestoring() error {
	return mongoerr.New(mongoerr.NotWritablePrimary, "not primary: a backup is being restored into this replica set")
}

// BackupSource is what a restore reads: the snapshot's databases (its
// local database and any staging database, if listed, are never read).
type BackupSource interface {
	Databases() []string
	Database(name string) (*storage.DB, error)
}

// RestoreBackup replaces the set's replicated databases with src's on
// every member, through the log (restore.go: staged parts, then one
// commit entry), then proposes replay's entries (each the data of an
// archived log entry, in order). Client writes are refused on this
// member from the start to the end. It runs on the primary only; if the
// primary changes before the commit entry commits, the set keeps its old
// data and the restore fails.
func (m *Member) RestoreBackup(ctx context.Context, src BackupSource, replay func(apply func(data []byte) error) error) (replayed int, err error) {
	r := m.current()
	if r == nil || !m.writable.Load() {
		return 0, errNotPrimary()
	}
	if !m.restoring.CompareAndSwap(false, true) {
		return 0, mongoerr.New(mongoerr.ConflictingOperationInProgress, "a restore is already running on this replica set")
	}
	defer m.restoring.Store(false)
	// Writes proposed before the flag was set finish first.
	if err := r.Barrier(0).Error(); err != nil {
		return 0, fmt.Errorf("repl: restore: %w", err)
	}
	propose := func(e entry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		e.wallMs = time.Now().UnixMilli()
		return m.apply(r, e.encode())
	}
	// What an abandoned restore staged (no commit marker) goes first;
	// committed ones are dropped by each member when safe (restore.go).
	m.mu.Lock()
	eng := m.eng
	m.mu.Unlock()
	if eng != nil {
		for _, name := range eng.Databases() {
			if !IsStaging(name) {
				continue
			}
			db, err := eng.Database(name)
			if err != nil {
				return 0, err
			}
			if at, err := stagingCommit(db); err != nil || at > 0 {
				continue
			}
			if err := propose(entry{op: opDrop, db: name}); err != nil {
				return 0, fmt.Errorf("repl: restore: drop %s: %w", name, err)
			}
		}
	}
	id := newRestoreID()
	var names []string
	var bytesCopied int64
	for _, name := range src.Databases() {
		if name == localDB || IsStaging(name) {
			continue
		}
		db, err := src.Database(name)
		if err != nil {
			return 0, fmt.Errorf("repl: restore: database %s: %w", name, err)
		}
		names = append(names, name)
		n, err := proposeParts(ctx, db, stagingName(id, name), propose)
		if err != nil {
			return 0, fmt.Errorf("repl: restore: database %s: %w", name, err)
		}
		bytesCopied += n
	}
	if err := propose(entry{op: opRestoreCommit, db: id, repr: encodeNames(names)}); err != nil {
		return 0, fmt.Errorf("repl: restore: commit: %w", err)
	}
	m.log.Info("backup restored into the replica set", "restore", id, "databases", len(names), "bytes", bytesCopied)
	if replay == nil {
		return 0, nil
	}
	err = replay(func(data []byte) error {
		e, err := decodeEntry(data)
		if err != nil {
			return fmt.Errorf("repl: archived entry: %w", err)
		}
		if e.db == localDB || e.op == opRestorePart || e.op == opRestoreCommit {
			return fmt.Errorf("%w: an archived entry of operation %d on %q", errBadEntry, e.op, e.db)
		}
		if err := propose(e); err != nil {
			return err
		}
		replayed++
		return nil
	})
	if err != nil {
		return replayed, fmt.Errorf("repl: replaying the oplog archive (entry %d): %w", replayed+1, err)
	}
	return replayed, nil
}

// proposeParts proposes db's keys as restore parts into staging (at
// least one part, so that an empty database is staged too) and returns
// the bytes proposed.
func proposeParts(ctx context.Context, db *storage.DB, staging string, propose func(entry) error) (int64, error) {
	it, err := db.NewIter(nil)
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var total int64
	var part []byte
	sent := false
	flush := func() error {
		total += int64(len(part))
		err := propose(entry{op: opRestorePart, db: staging, repr: part})
		part, sent = nil, true
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return total, err
		}
		part = appendKV(part, it.Key(), v)
		if len(part) >= restorePartBytes {
			if err := flush(); err != nil {
				return total, err
			}
		}
	}
	if err := it.Error(); err != nil {
		return total, err
	}
	if len(part) > 0 || !sent {
		return total, flush()
	}
	return total, nil
}

package repl

import (
	"context"
	"errors"
	"fmt"
	"io"
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
//     through raft (RestoreBackup: a user snapshot the leader installs
//     and the followers receive as an initial sync), then, for a point in
//     time, proposes the archived entries again in order up to it.
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
// local database, if listed, is never read).
type BackupSource interface {
	Databases() []string
	Database(name string) (*storage.DB, error)
}

// RestoreBackup replaces the set's replicated databases with src's (every
// database but local), on every member, then proposes replay's entries
// (each the data of an archived log entry, in order). Client writes are
// refused from the start to the end. It runs on the primary only.
//
// The databases are replaced by a raft user snapshot: the leader installs
// it (fsm.Restore) and raft sends it to every follower as an initial
// sync; a member that crashes while installing it installs it again when
// it restarts (fsm.Restore's marker, restoreMarker).
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
	// The oplog continues after everything it gave before.
	ts := m.applied.Load().TS
	var parts []streamPart
	for _, name := range src.Databases() {
		if name == localDB {
			continue
		}
		db, err := src.Database(name)
		if err != nil {
			return 0, fmt.Errorf("repl: restore: database %s: %w", name, err)
		}
		parts = append(parts, streamPart{name: name, r: db})
	}
	// raft needs the stream's size first: one pass counts it (the source
	// is a read-only snapshot: both passes read the same).
	var cw countWriter
	if err := writeStream(ctx, &cw, parts, ts); err != nil {
		return 0, fmt.Errorf("repl: restore: %w", err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeStream(ctx, pw, parts, ts)) }()
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: cw.n}
	err = r.Restore(meta, pr, 0)
	pr.CloseWithError(errors.New("restore ended"))
	if err != nil {
		return 0, fmt.Errorf("repl: restore: %w", err)
	}
	m.log.Info("backup restored into the replica set", "databases", len(parts), "bytes", cw.n)
	if replay == nil {
		return 0, nil
	}
	err = replay(func(data []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := decodeEntry(data)
		if err != nil {
			return fmt.Errorf("repl: archived entry: %w", err)
		}
		if e.db == localDB {
			return fmt.Errorf("%w: the local database is never replicated", errBadEntry)
		}
		e.wallMs = time.Now().UnixMilli()
		if err := m.apply(r, e.encode()); err != nil {
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

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

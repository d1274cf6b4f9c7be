package repl

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/storage"
)

// Databases is what the log is applied to: the member's databases,
// through the same stores its commands read, so that a replicated catalog
// change and a change-notification reach them. The handlers implement it.
type Databases interface {
	// ApplyBatch applies a committed batch to database db, creating the
	// database (and its key, on this member) if it does not exist yet,
	// and returns the changes it made, in order, for the oplog.
	ApplyBatch(db string, repr []byte, catalog bool) ([]oplog.Op, error)
	// DropReplicated drops database db on this member (its key is
	// destroyed); a database that does not exist is not an error. It
	// returns the oplog's record of the drop (its collections' drops,
	// then the database's).
	DropReplicated(db string) ([]oplog.Op, error)
	// Reload rereads db's catalog after a snapshot replaced its contents.
	Reload(db string) error
}

// fsm applies the log to this member. It is small and deterministic:
// every entry is a blind write (absolute keys set, deleted or
// range-deleted), so applying the same entries again from an earlier
// point ends in the same state.
type fsm struct {
	m   *Member
	eng *storage.Engine
	dbs Databases
	// failed receives the first error that leaves this member unable to
	// follow the log; the member stops raft (runEpoch) rather than serve
	// state that diverged from the set's.
	failed chan error

	// oplog receives every applied entry's changes; prev is the timestamp
	// of the last one, once primed (oplog.go).
	oplog  *oplog.Log
	prev   oplog.Timestamp
	primed bool
	// snap is the last snapshot taken, which raft may be persisting: an
	// entry that drops a database stops it first (snapshot.go).
	snap *fsmSnapshot
	// persisted is the index of the newest raft snapshot persisted: a
	// restart replays the log from there (restore.go relies on it).
	persisted atomic.Uint64
}

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.m.applyMu.Lock()
	defer f.m.applyMu.Unlock()
	err := f.apply(l)
	if err != nil {
		err = fmt.Errorf("repl: applying log index %d: %w", l.Index, err)
		select {
		case f.failed <- err:
		default:
		}
		return err
	}
	wall := l.AppendedAt
	if wall.IsZero() {
		wall = time.Now()
	}
	f.m.applied.Store(&OpTime{Index: l.Index, Term: l.Term, Wall: wall, TS: f.prev})
	return nil
}

func (f *fsm) apply(l *raft.Log) error {
	e, err := decodeEntry(l.Data)
	if err != nil {
		return err
	}
	if e.db == localDB {
		return fmt.Errorf("%w: the local database is never replicated", errBadEntry)
	}
	if e.op == opDrop || e.op == opRestoreCommit {
		f.stopSnapshot()
	}
	var ops []oplog.Op
	switch e.op {
	case opBatch:
		ops, err = f.dbs.ApplyBatch(e.db, e.repr, e.catalog)
		ops = oplog.WithoutMarkers(ops)
	case opDrop:
		if IsStaging(e.db) {
			err = f.dropStaging(e.db)
		} else {
			ops, err = f.dbs.DropReplicated(e.db)
		}
	case opTxn:
		ops, err = f.applyTxn(e)
	case opRestorePart:
		err = f.applyRestorePart(e)
	case opRestoreCommit:
		err = f.applyRestoreCommit(l.Index, e)
	default:
		err = fmt.Errorf("%w: operation %d", errBadEntry, e.op)
	}
	if err != nil {
		return err
	}
	return f.record(l, e, ops)
}

package repl

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cmkdb/cmkdb/internal/storage"
)

// Databases is what the log is applied to: the member's databases,
// through the same stores its commands read, so that a replicated catalog
// change and a change-notification reach them. The handlers implement it.
type Databases interface {
	// ApplyBatch applies a committed batch to database db, creating the
	// database (and its key, on this member) if it does not exist yet.
	ApplyBatch(db string, repr []byte, catalog bool) error
	// DropReplicated drops database db on this member (its key is
	// destroyed); a database that does not exist is not an error.
	DropReplicated(db string) error
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
}

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
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
	f.m.applied.Store(&OpTime{Index: l.Index, Term: l.Term, Wall: wall})
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
	switch e.op {
	case opBatch:
		return f.dbs.ApplyBatch(e.db, e.repr, e.catalog)
	case opDrop:
		return f.dbs.DropReplicated(e.db)
	case opTxn:
		return f.applyTxn(e)
	}
	return fmt.Errorf("%w: operation %d", errBadEntry, e.op)
}

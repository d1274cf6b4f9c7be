package repl

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cmkdb/cmkdb/internal/oplog"
)

// The FSM writes each applied entry's changes to this member's oplog
// (internal/oplog), giving them timestamps that are a function of the
// log alone: the entry's wall time (stamped by the primary that proposed
// it) and the timestamp of the change before (f.prev). So every member
// gives every change the same timestamp, and a resume token or an
// operationTime means the same position on all of them.
//
// f.prev is primed on the first entry an FSM applies: the oplog is cut
// back to what precedes that entry (a restarted member replays entries it
// may already have recorded; oplog appends are not synced) and prev is
// the newest timestamp left. A snapshot carries prev (fsmSnapshot); a
// member that installs one starts its oplog over from it.

// Oplog is this member's oplog, nil while raft is not running.
func (m *Member) Oplog() *oplog.Log {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.oplog
}

// record appends the changes of log entry l to the oplog.
func (f *fsm) record(l *raft.Log, e entry, ops []oplog.Op) error {
	if err := f.prime(l.Index); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	wall := time.UnixMilli(e.wallMs)
	if e.wallMs == 0 {
		wall = l.AppendedAt
	}
	entries := make([]oplog.Entry, len(ops))
	prev := f.prev
	for i, op := range ops {
		prev = oplog.Next(prev, wall)
		entries[i] = oplog.Entry{Op: op, TS: prev, Term: int64(l.Term), Wall: wall.UTC()}
	}
	if err := f.oplog.Append(l.Index, entries, time.Now()); err != nil {
		return fmt.Errorf("repl: oplog: %w", err)
	}
	f.prev = prev
	return nil
}

func (f *fsm) prime(index uint64) error {
	if f.primed {
		return nil
	}
	prev, err := f.oplog.TrimFrom(index)
	if err != nil {
		return fmt.Errorf("repl: oplog: %w", err)
	}
	f.prev, f.primed = prev, true
	return nil
}

// resetOplog starts the oplog over after a snapshot install at ts.
func (f *fsm) resetOplog(ts oplog.Timestamp) error {
	if err := f.oplog.Reset(ts); err != nil {
		return fmt.Errorf("repl: oplog: %w", err)
	}
	f.prev, f.primed = ts, true
	return nil
}

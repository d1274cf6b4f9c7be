package repl

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Commit implements docstore.Log: it proposes a database's batch and
// returns once a majority of the set holds it and this member applied it.
// Only the primary (the raft leader, caught up) accepts writes.
func (m *Member) Commit(ctx context.Context, db string, repr []byte, catalog bool) error {
	return m.propose(ctx, entry{op: opBatch, db: db, catalog: catalog, repr: repr})
}

// DropDatabase drops db on every member: each destroys its own key for it.
func (m *Member) DropDatabase(ctx context.Context, db string) error {
	return m.propose(ctx, entry{op: opDrop, db: db})
}

// CheckWritable returns NotWritablePrimary unless this member is the
// primary now: what a write command checks before it does anything.
func (m *Member) CheckWritable() error {
	if m.current() == nil || !m.writable.Load() {
		return errNotPrimary()
	}
	if m.restoring.Load() {
		return errRestoring()
	}
	return nil
}

func errNotPrimary() error {
	return mongoerr.New(mongoerr.NotWritablePrimary, "not primary")
}

// propose appends e to the log and waits for it to be applied here. An
// error other than NotWritablePrimary leaves the outcome unknown: the
// entry may still be committed by the next leader, as a MongoDB write
// interrupted by a stepdown may be.
func (m *Member) propose(ctx context.Context, e entry) error {
	r := m.current()
	if r == nil || !m.writable.Load() {
		return errNotPrimary()
	}
	if m.restoring.Load() {
		return errRestoring()
	}
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	e.wallMs = time.Now().UnixMilli()
	return m.apply(r, e.encode())
}

// apply appends an encoded entry and waits for its application here.
func (m *Member) apply(r *raft.Raft, data []byte) error {
	f := r.Apply(data, 0)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			return errNotPrimary()
		case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown),
			errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrAbortedByRestore),
			errors.Is(err, raft.ErrEnqueueTimeout):
			return mongoerr.New(mongoerr.InterruptedDueToReplStateChange,
				"operation was interrupted because the member stopped being primary (%v); the write may or may not have been committed", err)
		}
		return err
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return err
	}
	return nil
}

// StepDown hands the primary's role to the most caught-up member (a raft
// leadership transfer). Writes are refused from the moment it starts.
func (m *Member) StepDown(ctx context.Context) error {
	r := m.current()
	if r == nil || !m.writable.Load() {
		return errNotPrimary()
	}
	term := r.CurrentTerm()
	m.writable.Store(false)
	m.bump()
	if err := r.LeadershipTransfer().Error(); err != nil {
		if r.State() == raft.Leader && r.CurrentTerm() == term {
			m.writable.Store(true)
			m.bump()
		}
		return mongoerr.New(mongoerr.ExceededTimeLimit, "No electable secondaries caught up: %v", err)
	}
	return nil
}

// Linearize returns once a read started now on this member would see
// every write acknowledged before: this member is the primary, a majority
// still follows it, and it applied everything committed (a barrier).
func (m *Member) Linearize(ctx context.Context) error {
	r := m.current()
	if r == nil || !m.writable.Load() {
		return mongoerr.New(mongoerr.NotWritablePrimary, "cannot satisfy linearizable read concern on non-primary node")
	}
	if err := r.Barrier(0).Error(); err != nil {
		return mongoerr.New(mongoerr.InterruptedDueToReplStateChange, "linearizable read interrupted: %v", err)
	}
	if !m.writable.Load() {
		return mongoerr.New(mongoerr.NotWritablePrimary, "cannot satisfy linearizable read concern on non-primary node")
	}
	return nil
}

package handlers

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// fsync flushes every open database's memtable to sstables and syncs them
// (every acknowledged write is already synced in the write-ahead log; this
// makes it part of the tables too). lock: true — blocking writes until
// fsyncUnlock — is refused: cmkdb has no write lock to hold.
func (h *Handler) fsync(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	if err := checkFields(a, "fsync"); err != nil {
		return nil, err
	}
	lock, err := a.bool("lock", false)
	if err != nil {
		return nil, err
	}
	if lock {
		return nil, mongoerr.New(mongoerr.NotImplemented, "fsync with { lock: true } is not supported: cmkdb cannot block writes; take a consistent copy with a Cloud Backup snapshot instead")
	}
	if _, err := a.int64("fsyncLockAcquisitionTimeoutMillis", 0); err != nil {
		return nil, err
	}
	eng, _, release, err := h.node.Acquire()
	if err != nil {
		return nil, acquireError(err)
	}
	defer release()
	n, err := eng.Flush()
	if err != nil {
		return nil, err
	}
	return marshal(bson.D{{Key: "numFiles", Value: int32(n)}, {Key: "ok", Value: 1.0}})
}

// fsyncUnlock answers as mongod does when no fsync lock is held (cmkdb
// never takes one).
func (h *Handler) fsyncUnlock(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	return nil, mongoerr.New(mongoerr.IllegalOperation, "fsyncUnlock called when not locked")
}

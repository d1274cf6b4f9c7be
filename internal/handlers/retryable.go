package handlers

import (
	"context"
	"hash/fnv"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// Retryable writes on a replica set: insert, update, delete and
// findAndModify sent with lsid and txnNumber (and no autocommit: not a
// transaction) run at most once per (session, txnNumber). The reply is
// recorded in the command's own batch (docstore.PutRetryRecord), so it is
// committed and replicated atomically with the writes; a retry — on this
// member or on the primary elected after a failover — is answered from it.
//
// A driver retries only writes whose statements each touch at most one
// document (updateMany and deleteMany are not retryable), and every write
// command here commits in one batch, so the record covers the whole
// command.

// retryableCommands are the commands a retryable write may be.
var retryableCommands = map[string]bool{"insert": true, "update": true, "delete": true, "findAndModify": true, "findandmodify": true}

// retryable is one retryable write in flight.
type retryable struct {
	lsid []byte
	txn  int64
}

type retryableKey struct{}

// sessionLocks serialize the commands of one session, so that a retry
// racing its original cannot both run (mongod checks a session out).
type sessionLocks struct{ stripes [64]sync.Mutex }

func (l *sessionLocks) lock(lsid []byte) func() {
	h := fnv.New32a()
	h.Write(lsid)
	m := &l.stripes[h.Sum32()%uint32(len(l.stripes))]
	m.Lock()
	return m.Unlock
}

// parseRetryable reads a retryable write's session id and transaction
// number. ok is false when the command is not one.
func parseRetryable(cmd bson.Raw) (retryable, bool, error) {
	tv, err := cmd.LookupErr("txnNumber")
	if err != nil {
		return retryable{}, false, nil
	}
	txn, ok := tv.AsInt64OK()
	if !ok || tv.Type != bson.TypeInt64 {
		return retryable{}, false, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'txnNumber' is the wrong type '%s', expected type 'long'", typeName(tv.Type))
	}
	if txn < 0 {
		return retryable{}, false, mongoerr.New(mongoerr.BadValue, "txnNumber may not be negative")
	}
	lv, err := cmd.LookupErr("lsid")
	if err != nil {
		return retryable{}, false, mongoerr.New(mongoerr.InvalidOptions, "Transaction number requires a session ID to also be specified")
	}
	ld, ok := lv.DocumentOK()
	if !ok {
		return retryable{}, false, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'lsid' is the wrong type '%s', expected type 'object'", typeName(lv.Type))
	}
	idv, err := ld.LookupErr("id")
	if err != nil {
		return retryable{}, false, mongoerr.New(mongoerr.BadValue, "lsid has no id")
	}
	sub, id, ok := idv.BinaryOK()
	if !ok || sub != bson.TypeBinaryUUID || len(id) != 16 {
		return retryable{}, false, mongoerr.New(mongoerr.BadValue, "lsid.id must be a UUID")
	}
	lsid := append([]byte(nil), id...)
	// Sessions of different users are different sessions.
	if uv, err := ld.LookupErr("uid"); err == nil {
		if _, uid, ok := uv.BinaryOK(); ok {
			lsid = append(lsid, uid...)
		}
	}
	return retryable{lsid: lsid, txn: txn}, true, nil
}

// runRetryable runs a retryable write at most once: a txnNumber already
// answered gets its recorded reply, an older one is refused.
func (h *Handler) runRetryable(ctx context.Context, rw retryable, c *wire.ConnState, req *wire.Request, run func(context.Context) (bson.Raw, error)) (bson.Raw, error) {
	unlock := h.sessions.lock(rw.lsid)
	defer unlock()
	st, release, err := h.store(req.DB, false)
	if err != nil {
		return nil, err
	}
	if st != nil {
		txn, reply, ok, err := st.RetryRecord(rw.lsid)
		release()
		if err != nil {
			return nil, err
		}
		switch {
		case ok && txn > rw.txn:
			return nil, mongoerr.New(mongoerr.TransactionTooOld,
				"Retryable write with txnNumber %d is prohibited on session because a newer retryable write with txnNumber %d has already started on this session.", rw.txn, txn)
		case ok && txn == rw.txn:
			return reply, nil
		}
	} else {
		release()
	}
	return run(context.WithValue(ctx, retryableKey{}, rw))
}

// recordRetryable stages, in w's batch, the reply of the retryable write
// ctx carries (none: an ordinary write).
func recordRetryable(ctx context.Context, w *docstore.Writer, reply bson.Raw) error {
	rw, ok := ctx.Value(retryableKey{}).(retryable)
	if !ok {
		return nil
	}
	return w.PutRetryRecord(rw.lsid, rw.txn, reply)
}

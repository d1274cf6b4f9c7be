package handlers

import (
	"context"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// Multi-document transactions on a replica set member (MongoDB 7.0's
// protocol; the storage side is docstore/txn.go).
//
// A session (lsid) has at most one transaction, numbered by txnNumber:
//
//	(none) --statement{startTransaction:true, autocommit:false, txnNumber:n}--> active(n)
//	active(n) --statement{autocommit:false, txnNumber:n}--> active(n)
//	active(n) --commitTransaction(n)--> committed(n)   (a retry of it: ok again)
//	active(n) --abortTransaction(n) | a failed statement | lifetime limit--> aborted(n)
//	any(n) --startTransaction with txnNumber m > n--> active(m), n aborted if active
//
// A statement for a number other than the session's current one, or for an
// aborted transaction, fails with NoSuchTransaction (label
// TransientTransactionError: drivers rerun the whole transaction); an
// older number with TransactionTooOld. Only the first statement may carry
// a readConcern (local, majority or snapshot: all read the transaction's
// snapshot), only commit and abort a writeConcern. A statement that fails
// (an error, a write error, a write conflict) aborts the transaction,
// as mongod's do.
//
// The state lives in the primary's memory; a commit also leaves a record
// in the admin database, replicated with the transaction's writes, so a
// commitTransaction retried on the next primary after a failover answers
// ok. Any other statement of a transaction open on a primary that stepped
// down fails with NoSuchTransaction on the next one.
//
// Standalone nodes refuse transactions as before (session.go).

// defaultTxnLifetime is transactionLifetimeLimitSeconds' default: an
// active transaction older than this is aborted.
const defaultTxnLifetime = 60 * time.Second

type txnState uint8

const (
	txnActive txnState = iota
	txnCommitted
	txnAborted
)

// sessionTxn is a session's current transaction.
type sessionTxn struct {
	lsid  []byte
	num   int64
	state txnState
	txn   *docstore.Txn
	timer *time.Timer
	// expired: aborted by the lifetime limit.
	expired bool
	// cursors opened by its statements: closed when it ends.
	cursors []int64
}

// txnTable is the member's transactions, by session. Its fields are
// guarded by mu; a session's transitions also hold the session's lock
// (h.sessions), so a session's statements run one at a time.
type txnTable struct {
	mu       sync.Mutex
	sessions map[string]*sessionTxn
	// cursorOwner maps a cursor a transaction opened to it.
	cursorOwner map[int64]*sessionTxn
	// lifetime overrides defaultTxnLifetime (SetTransactionLifetime).
	lifetime time.Duration
}

// SetTransactionLifetime sets transactionLifetimeLimitSeconds: a
// transaction started afterwards is aborted once it is older than d
// (d <= 0: the default, 60 s).
func (h *Handler) SetTransactionLifetime(d time.Duration) {
	h.txns.mu.Lock()
	defer h.txns.mu.Unlock()
	h.txns.lifetime = d
}

func (t *txnTable) lifetimeLimit() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lifetime <= 0 {
		return defaultTxnLifetime
	}
	return t.lifetime
}

func (t *txnTable) get(lsid []byte) *sessionTxn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sessions[string(lsid)]
}

func (t *txnTable) put(s *sessionTxn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sessions == nil {
		t.sessions = map[string]*sessionTxn{}
	}
	t.sessions[string(s.lsid)] = s
}

// txnStatement is a transaction statement's session fields.
type txnStatement struct {
	lsid  []byte
	num   int64
	start bool
}

// parseTxnStatement reads the transaction fields of a command that has
// autocommit (checkSessionFields let it through on a replica set).
func parseTxnStatement(cmd bson.Raw) (txnStatement, error) {
	rw, ok, err := parseRetryable(cmd)
	if err != nil {
		return txnStatement{}, err
	}
	if !ok {
		return txnStatement{}, mongoerr.New(mongoerr.InvalidOptions, "'autocommit' field requires a transaction number to also be specified")
	}
	ac := cmd.Lookup("autocommit")
	if b, ok := ac.BooleanOK(); !ok {
		return txnStatement{}, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'autocommit' is the wrong type '%s', expected type 'bool'", typeName(ac.Type))
	} else if b {
		return txnStatement{}, mongoerr.New(mongoerr.InvalidOptions, "Specifying autocommit=true is not allowed.")
	}
	st := txnStatement{lsid: rw.lsid, num: rw.txn}
	if v, err := cmd.LookupErr("startTransaction"); err == nil {
		b, ok := v.BooleanOK()
		if !ok {
			return txnStatement{}, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'startTransaction' is the wrong type '%s', expected type 'bool'", typeName(v.Type))
		}
		if !b {
			return txnStatement{}, mongoerr.New(mongoerr.InvalidOptions, "Specifying startTransaction=false is not allowed.")
		}
		st.start = true
	}
	return st, nil
}

// txnCommands are the commands a transaction may run (mongod 7.0's list,
// less the ones cmkdb cannot run inside one: create and createIndexes).
var txnCommands = map[string]bool{
	"find": true, "getMore": true, "killCursors": true, "insert": true, "update": true, "delete": true,
	"findAndModify": true, "findandmodify": true, "aggregate": true, "distinct": true,
	"commitTransaction": true, "abortTransaction": true,
}

// txnRefusedStages are aggregation stages a transaction may not run.
var txnRefusedStages = map[string]bool{
	"$out": true, "$merge": true, "$changeStream": true, "$collStats": true, "$indexStats": true,
	"$currentOp": true, "$listSessions": true, "$listLocalSessions": true,
}

func notInTxn(format string, args ...any) error {
	return mongoerr.New(mongoerr.OperationNotSupportedInTransaction, format, args...)
}

func noSuchTxn(format string, args ...any) error {
	return mongoerr.New(mongoerr.NoSuchTransaction, format, args...).WithLabels(mongoerr.TransientTransactionError)
}

// checkTxnCommand refuses, before anything runs, what a transaction
// statement may not be or carry.
func checkTxnCommand(req *wire.Request) error {
	if !txnCommands[req.Name] {
		return notInTxn("Cannot run '%s' in a multi-document transaction.", req.Name)
	}
	ending := req.Name == "commitTransaction" || req.Name == "abortTransaction"
	if !ending {
		switch req.DB {
		case "admin", "config", "local":
			return notInTxn("Cannot run command against the '%s' database in a transaction.", req.DB)
		}
		if _, err := req.Command.LookupErr("writeConcern"); err == nil {
			return mongoerr.New(mongoerr.InvalidOptions, "Cannot set write concern after starting a transaction.")
		}
	}
	if req.Name == "aggregate" {
		if p, err := req.Command.LookupErr("pipeline"); err == nil {
			if arr, ok := p.ArrayOK(); ok {
				vals, _ := arr.Values()
				for _, v := range vals {
					d, ok := v.DocumentOK()
					if !ok {
						continue
					}
					if e, err := d.IndexErr(0); err == nil && txnRefusedStages[e.Key()] {
						return notInTxn("%s cannot be used in a transaction", e.Key())
					}
				}
			}
		}
	}
	return nil
}

// txnReadConcern checks a transaction's readConcern, which only its first
// statement may carry.
func txnReadConcern(cmd bson.Raw, first bool) error {
	rc, err := cmd.LookupErr("readConcern")
	if err != nil {
		return nil
	}
	if !first {
		return mongoerr.New(mongoerr.InvalidOptions, "Only the first command in a transaction may specify a readConcern")
	}
	d, ok := rc.DocumentOK()
	if !ok {
		return mongoerr.New(mongoerr.TypeMismatch, "BSON field 'readConcern' is the wrong type '%s', expected type 'object'", typeName(rc.Type))
	}
	elems, _ := d.Elements()
	for _, e := range elems {
		switch e.Key() {
		case "level":
			switch e.Value().StringValue() {
			case "local", "majority", "snapshot":
			default:
				return mongoerr.New(mongoerr.InvalidOptions, "The readConcern level must be either 'local' (default), 'majority' or 'snapshot' in order to run in a transaction")
			}
		case "provenance":
		default:
			return mongoerr.New(mongoerr.CommandNotSupported, "readConcern.%s is not supported by cmkdb transactions", e.Key())
		}
	}
	return nil
}

// withoutField returns cmd less its top-level field key.
func withoutField(cmd bson.Raw, key string) (bson.Raw, error) {
	elems, err := cmd.Elements()
	if err != nil {
		return nil, err
	}
	d := bson.D{}
	for _, e := range elems {
		if e.Key() != key {
			d = append(d, bson.E{Key: e.Key(), Value: e.Value()})
		}
	}
	return bson.Marshal(d)
}

// runTxnStatement runs one statement of a transaction (commit and abort
// included), holding the session's lock.
func (h *Handler) runTxnStatement(ctx context.Context, ts txnStatement, cmd *command, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	unlock := h.sessions.lock(ts.lsid)
	defer unlock()
	switch req.Name {
	case "commitTransaction":
		return h.commitTxn(ctx, ts)
	case "abortTransaction":
		return h.abortTxn(ts)
	}
	s, err := h.txnFor(ts, req.Command)
	if err != nil {
		return nil, err
	}
	if req.Name == "getMore" {
		if err := h.txns.checkCursor(req.Command, s); err != nil {
			return nil, err
		}
	}
	r := *req
	if _, err := req.Command.LookupErr("readConcern"); err == nil {
		// Checked above; every level reads the transaction's snapshot.
		if r.Command, err = withoutField(req.Command, "readConcern"); err != nil {
			return nil, err
		}
	}
	reply, err := cmd.handler(docstore.WithTxn(ctx, s.txn), c, &r)
	if err == nil {
		if d := s.txn.Doomed(); d != nil {
			err = d
		} else if _, werr := reply.LookupErr("writeErrors"); werr == nil {
			h.endTxn(s, txnAborted)
			return reply, nil
		}
	}
	if err != nil {
		h.endTxn(s, txnAborted)
		if errors.Is(err, docstore.ErrTxnDone) {
			return nil, noSuchTxn("Transaction %d has been aborted.", ts.num)
		}
		return nil, err
	}
	h.txns.adoptCursor(reply, s)
	return reply, nil
}

// txnFor moves the session's state machine for a statement and returns
// the active transaction it runs in.
func (h *Handler) txnFor(ts txnStatement, cmd bson.Raw) (*sessionTxn, error) {
	cur := h.txns.get(ts.lsid)
	if cur != nil && ts.num < cur.num {
		return nil, mongoerr.New(mongoerr.TransactionTooOld,
			"Cannot start transaction %d on session because a newer transaction %d has already started.", ts.num, cur.num)
	}
	if ts.start {
		if cur != nil && ts.num == cur.num {
			return nil, mongoerr.New(mongoerr.ConflictingOperationInProgress,
				"Cannot start a transaction at given transaction number %d a transaction with the same number is in state %s", ts.num, cur.stateName())
		}
		if err := txnReadConcern(cmd, true); err != nil {
			return nil, err
		}
		if cur != nil && cur.state == txnActive {
			h.endTxn(cur, txnAborted)
		}
		s := &sessionTxn{lsid: ts.lsid, num: ts.num, txn: docstore.NewTxn()}
		lifetime := h.txns.lifetimeLimit()
		s.timer = time.AfterFunc(lifetime, func() { h.expireTxn(s) })
		h.txns.put(s)
		return s, nil
	}
	if cur == nil || ts.num > cur.num {
		return nil, noSuchTxn("Given transaction number %d does not match any in-progress transactions.", ts.num)
	}
	switch cur.state {
	case txnAborted:
		if cur.expired {
			return nil, noSuchTxn("Transaction %d has been aborted because it exceeded transactionLifetimeLimitSeconds.", ts.num)
		}
		return nil, noSuchTxn("Transaction %d has been aborted.", ts.num)
	case txnCommitted:
		return nil, mongoerr.New(mongoerr.TransactionCommitted, "Transaction %d has been committed.", ts.num)
	}
	if err := txnReadConcern(cmd, false); err != nil {
		return nil, err
	}
	return cur, nil
}

func (s *sessionTxn) stateName() string {
	switch s.state {
	case txnActive:
		return "in progress"
	case txnCommitted:
		return "committed"
	}
	return "aborted"
}

// endTxn ends s (committed or aborted), closing its cursors. The caller
// holds the session's lock.
func (h *Handler) endTxn(s *sessionTxn, state txnState) {
	if s.state != txnActive {
		return
	}
	s.state = state
	s.timer.Stop()
	if state == txnAborted {
		s.txn.Abort()
	}
	h.txns.mu.Lock()
	for _, id := range s.cursors {
		delete(h.txns.cursorOwner, id)
	}
	h.txns.mu.Unlock()
	for _, id := range s.cursors {
		h.cursors.remove(id)
	}
	s.cursors = nil
}

// expireTxn aborts s if it is still active: the lifetime limit.
func (h *Handler) expireTxn(s *sessionTxn) {
	unlock := h.sessions.lock(s.lsid)
	defer unlock()
	if s.state == txnActive {
		h.log.Info("transaction exceeded its lifetime limit; aborted", "lsid", hex.EncodeToString(s.lsid), "txnNumber", s.num)
		h.endTxn(s, txnAborted)
		s.expired = true
	}
}

// commitTxn is commitTransaction.
func (h *Handler) commitTxn(ctx context.Context, ts txnStatement) (bson.Raw, error) {
	ok := bson.D{{Key: "ok", Value: 1.0}}
	cur := h.txns.get(ts.lsid)
	if cur != nil && ts.num < cur.num {
		return nil, mongoerr.New(mongoerr.TransactionTooOld, "Cannot commit transaction %d on session because a newer transaction %d has already started.", ts.num, cur.num)
	}
	if cur == nil || ts.num > cur.num || cur.state == txnAborted {
		// Unknown here: it may have committed on the primary before a
		// failover (the admin database has the record), or never.
		if committed, err := h.committedEarlier(ts); err != nil {
			return nil, err
		} else if committed {
			return marshal(ok)
		}
		if cur != nil && ts.num == cur.num {
			return nil, noSuchTxn("Transaction %d has been aborted.", ts.num)
		}
		return nil, noSuchTxn("Given transaction number %d does not match any in-progress transactions.", ts.num)
	}
	if cur.state == txnCommitted {
		return marshal(ok) // a retried commit
	}
	reply, err := marshal(ok)
	if err != nil {
		return nil, err
	}
	admin, release, err := h.store(usersDB, true)
	if err != nil {
		return nil, err
	}
	defer release()
	err = cur.txn.Commit(ctx, &docstore.CommitRecord{Store: admin, LSID: ts.lsid, Txn: ts.num, Reply: reply})
	if err != nil {
		h.endTxn(cur, txnAborted)
		if errors.Is(err, docstore.ErrTxnDone) {
			return nil, noSuchTxn("Transaction %d has been aborted.", ts.num)
		}
		return nil, err
	}
	h.endTxn(cur, txnCommitted)
	return reply, nil
}

// committedEarlier reports whether the admin database records that the
// session's transaction ts.num committed.
func (h *Handler) committedEarlier(ts txnStatement) (bool, error) {
	admin, release, err := h.store(usersDB, false)
	if err != nil {
		return false, err
	}
	defer release()
	if admin == nil {
		return false, nil
	}
	num, _, ok, err := admin.RetryRecord(ts.lsid)
	if err != nil {
		return false, err
	}
	return ok && num == ts.num, nil
}

// abortTxn is abortTransaction.
func (h *Handler) abortTxn(ts txnStatement) (bson.Raw, error) {
	cur := h.txns.get(ts.lsid)
	switch {
	case cur != nil && ts.num < cur.num:
		return nil, mongoerr.New(mongoerr.TransactionTooOld, "Cannot abort transaction %d on session because a newer transaction %d has already started.", ts.num, cur.num)
	case cur == nil || ts.num > cur.num:
		return nil, noSuchTxn("Given transaction number %d does not match any in-progress transactions.", ts.num)
	case cur.state == txnCommitted:
		return nil, mongoerr.New(mongoerr.TransactionCommitted, "Transaction %d has been committed.", ts.num)
	case cur.state == txnAborted:
		return nil, noSuchTxn("Transaction %d has been aborted.", ts.num)
	}
	h.endTxn(cur, txnAborted)
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}

// adoptCursor ties the cursor a statement's reply opened to s.
func (t *txnTable) adoptCursor(reply bson.Raw, s *sessionTxn) {
	cv, err := reply.LookupErr("cursor", "id")
	if err != nil {
		return
	}
	id, ok := cv.AsInt64OK()
	if !ok || id == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cursorOwner == nil {
		t.cursorOwner = map[int64]*sessionTxn{}
	}
	t.cursorOwner[id] = s
	s.cursors = append(s.cursors, id)
}

// checkCursor refuses a getMore on a cursor of another transaction (s
// non-nil) or, outside any transaction (s nil), on a transaction's cursor.
func (t *txnTable) checkCursor(cmd bson.Raw, s *sessionTxn) error {
	v, err := cmd.LookupErr("getMore")
	if err != nil {
		return nil // the handler reports it
	}
	id, ok := v.AsInt64OK()
	if !ok {
		return nil
	}
	t.mu.Lock()
	owner, owned := t.cursorOwner[id]
	t.mu.Unlock()
	switch {
	case s == nil && owned:
		return mongoerr.New(50740, "Cannot run getMore on cursor %d, which was created in transaction %d, without a txnNumber", id, owner.num)
	case s != nil && !owned:
		return mongoerr.New(50741, "Cannot run getMore on cursor %d, which was not created in this transaction, in a transaction", id)
	case s != nil && owner != s:
		return mongoerr.New(mongoerr.CursorNotFound, "cursor id %d was created in another transaction", id)
	}
	return nil
}

// ensureCollection is st.EnsureCollection, except inside a transaction:
// creating a collection is a catalog change a transaction cannot stage
// (it would be visible before the commit and survive an abort), so a
// transaction's write to a missing collection is refused.
func ensureCollection(ctx context.Context, st *docstore.Store, name string) (*docstore.Collection, error) {
	if docstore.TxnFrom(ctx) != nil {
		if c := st.Collection(name); c != nil {
			return c, nil
		}
		return nil, notInTxn("Cannot create namespace %s.%s in multi-document transaction: cmkdb creates collections only outside transactions; create it first.", st.Name(), name)
	}
	return st.EnsureCollection(name)
}

// txnStatement reads a command's transaction fields. inTxn is false for a
// command that is not a transaction statement (no autocommit, or a
// standalone node, where checkSessionFields refused it already).
func (h *Handler) txnStatement(req *wire.Request) (ts txnStatement, inTxn bool, err error) {
	if h.opts.Repl == nil {
		return txnStatement{}, false, nil
	}
	if _, err := req.Command.LookupErr("autocommit"); err != nil {
		return txnStatement{}, false, nil
	}
	if ts, err = parseTxnStatement(req.Command); err != nil {
		return txnStatement{}, false, err
	}
	if err := checkTxnCommand(req); err != nil {
		return txnStatement{}, false, err
	}
	// Transactions run on the primary only, reads included (a driver
	// sends them there whatever the read preference).
	if err := h.opts.Repl.CheckWritable(); err != nil {
		return txnStatement{}, false, err
	}
	return ts, true, nil
}

// endSessionTxns forgets the transactions of the sessions an endSessions
// names, aborting any still active (mongod does the same).
func (h *Handler) endSessionTxns(cmd bson.Raw) {
	v, err := cmd.LookupErr("endSessions")
	if err != nil {
		return
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return
	}
	vals, _ := arr.Values()
	for _, sv := range vals {
		d, ok := sv.DocumentOK()
		if !ok {
			continue
		}
		_, id, ok := d.Lookup("id").BinaryOK()
		if !ok {
			continue
		}
		h.endSessionTxn(id)
	}
}

func (h *Handler) endSessionTxn(lsid []byte) {
	unlock := h.sessions.lock(lsid)
	defer unlock()
	s := h.txns.get(lsid)
	if s == nil {
		return
	}
	h.endTxn(s, txnAborted)
	h.txns.mu.Lock()
	delete(h.txns.sessions, string(lsid))
	h.txns.mu.Unlock()
}

package docstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Multi-document transactions.
//
// A Txn spans the databases its statements touch. On its first read or
// write of a database it takes a Pebble snapshot of that database and
// starts a part: a plain batch recording its staged operations in order
// (the commit's payload) and an overlay, a sorted map of the keys it
// wrote to their new values or tombstones. Its statements read the
// snapshot with the overlay on top, so they see their own writes and
// nothing committed by others since; nobody else sees the overlay.
//
// Conflict rule (first writer wins, snapshot isolation): a transaction may
// write a key (a document, a unique-index entry, any index entry) only if
//   - no other open transaction wrote it (txnLocks: the writer holds the
//     key until it commits or aborts), and
//   - its committed value is still the one in the transaction's snapshot.
//
// Both are checked at each write, and the second again at commit under
// the stores' write locks, which also catches an ordinary (non-transaction)
// write that committed to a key after the transaction wrote it: such a
// write is never lost nor overwritten by the transaction, the transaction
// fails instead. A failed check dooms the transaction with WriteConflict
// (112, label TransientTransactionError); it can then only abort, and
// nothing it staged was ever visible.
//
// Because the check runs again at commit, under the write lock of every
// database the transaction wrote, unique indexes stay correct: a unique
// entry the transaction adds was absent from its snapshot and still is.
type Txn struct {
	mu    sync.Mutex
	parts map[*Store]*txnPart
	// doomed is the error that ended the transaction early (a write
	// conflict); done is set once it committed or aborted. Guarded by mu.
	doomed error
	done   bool
	// killed is set by AbortTransactions when it could not take mu (a
	// statement or the commit is in flight): t ends at its next use.
	killed atomic.Bool
}

// NewTxn starts an empty transaction.
func NewTxn() *Txn { return &Txn{parts: map[*Store]*txnPart{}} }

type txnKey struct{}

// WithTxn returns ctx carrying t: Store.Write stages into t and Store.Scan
// reads t's view.
func WithTxn(ctx context.Context, t *Txn) context.Context {
	return context.WithValue(ctx, txnKey{}, t)
}

// TxnFrom returns the transaction ctx carries, or nil.
func TxnFrom(ctx context.Context) *Txn {
	t, _ := ctx.Value(txnKey{}).(*Txn)
	return t
}

// ErrTxnDone is returned by a statement of a transaction that already
// committed or aborted.
var ErrTxnDone = errors.New("docstore: transaction already ended")

// WriteConflictError is the error a transaction fails with on a conflict.
func WriteConflictError() error {
	return mongoerr.New(mongoerr.WriteConflict,
		"Write conflict during plan execution and yielding is disabled. :: Please retry your operation or multi-document transaction.").
		WithLabels(mongoerr.TransientTransactionError)
}

// Doomed returns the error that doomed t (a write conflict), or nil.
func (t *Txn) Doomed() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.doomed
}

// txnPart is a transaction's state in one database.
type txnPart struct {
	t    *Txn
	s    *Store
	snap *pebble.Snapshot
	// b records the staged operations in order; its repr is what commits.
	b *pebble.Batch
	// ov maps every key written to its latest staged value; keys is ov's
	// keys, sorted.
	ov   map[string]ovEntry
	keys []string
	// colls are the collections written, with their metadata (encoded)
	// when first written: a catalog change to one of them (an index
	// built, the collection dropped) conflicts the transaction, since its
	// staged index entries follow the old metadata.
	colls map[string][]byte
	// locked are the keys this part holds in s.txnLocks.
	locked []string
}

type ovEntry struct {
	val []byte
	del bool
}

// part returns t's part for s, starting it (taking the snapshot) on
// first use. t.mu is held.
func (t *Txn) part(s *Store) (*txnPart, error) {
	if !t.done && t.killed.Load() {
		t.endLocked()
	}
	if t.done {
		return nil, ErrTxnDone
	}
	if t.doomed != nil {
		return nil, t.doomed
	}
	if p, ok := t.parts[s]; ok {
		return p, nil
	}
	p := &txnPart{t: t, s: s, snap: s.db.NewSnapshot(), b: s.db.NewBatch(),
		ov: map[string]ovEntry{}, colls: map[string][]byte{}}
	t.parts[s] = p
	s.txnLocks.register(p)
	return p, nil
}

// view is what a read of s inside t sees.
func (t *Txn) view(s *Store) (reader, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.part(s)
}

// write runs fn with a Writer staging into t's part for s.
func (t *Txn) write(ctx context.Context, s *Store, fn func(w *Writer) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, err := t.part(s)
	if err != nil {
		return err
	}
	return fn(&Writer{ctx: ctx, s: s, b: p})
}

// txnCheck is what a Writer checks before staging a document write inside
// a transaction (nothing outside one).
func (w *Writer) txnCheck(coll *Collection) error {
	p, ok := w.b.(*txnPart)
	if !ok {
		return nil
	}
	if p.t.doomed != nil {
		return p.t.doomed
	}
	if coll.Capped() {
		return mongoerr.New(mongoerr.OperationNotSupportedInTransaction,
			"Collection '%s.%s' is a capped collection. Writes in transactions are not allowed on capped collections.", w.s.db.Name, coll.Name)
	}
	if _, ok := p.colls[coll.Name]; !ok {
		meta, err := bson.Marshal(coll)
		if err != nil {
			return fmt.Errorf("docstore: encode collection: %w", err)
		}
		p.colls[coll.Name] = meta
	}
	return nil
}

// Get reads key in the transaction's view.
func (p *txnPart) Get(key []byte) ([]byte, io.Closer, error) {
	if e, ok := p.ov[string(key)]; ok {
		if e.del {
			return nil, nil, pebble.ErrNotFound
		}
		return e.val, io.NopCloser(nil), nil
	}
	return p.snap.Get(key)
}

// NewIter iterates the snapshot with the overlay on top, as the overlay
// is now (later writes are not seen by this iterator).
func (p *txnPart) NewIter(o *pebble.IterOptions) (iterator, error) {
	a, err := p.snap.NewIter(o)
	if err != nil {
		return nil, err
	}
	lo := sort.SearchStrings(p.keys, string(o.LowerBound))
	hi := len(p.keys)
	if o.UpperBound != nil {
		hi = sort.SearchStrings(p.keys, string(o.UpperBound))
	}
	ov := make([]ovKV, 0, max(hi-lo, 0))
	for _, k := range p.keys[lo:max(hi, lo)] {
		e := p.ov[k]
		ov = append(ov, ovKV{key: []byte(k), ovEntry: e})
	}
	return &txnIter{a: a, ov: ov}, nil
}

// Set stages key = value after the conflict checks.
func (p *txnPart) Set(key, value []byte, _ *pebble.WriteOptions) error {
	if err := p.claim(key); err != nil {
		return err
	}
	if err := p.b.Set(key, value, nil); err != nil {
		return err
	}
	p.stage(key, ovEntry{val: bytes.Clone(value)})
	return nil
}

// LogData stages a hint for the oplog (changes.go) in the part's batch.
func (p *txnPart) LogData(data []byte, _ *pebble.WriteOptions) error {
	return p.b.LogData(data, nil)
}

// Delete stages the removal of key after the conflict checks.
func (p *txnPart) Delete(key []byte, _ *pebble.WriteOptions) error {
	if err := p.claim(key); err != nil {
		return err
	}
	if err := p.b.Delete(key, nil); err != nil {
		return err
	}
	p.stage(key, ovEntry{del: true})
	return nil
}

func (p *txnPart) stage(key []byte, e ovEntry) {
	k := string(key)
	if _, ok := p.ov[k]; !ok {
		i := sort.SearchStrings(p.keys, k)
		p.keys = append(p.keys, "")
		copy(p.keys[i+1:], p.keys[i:])
		p.keys[i] = k
	}
	p.ov[k] = e
}

// claim applies the conflict rule to a key about to be written, dooming
// the transaction when it fails.
func (p *txnPart) claim(key []byte) error {
	if p.t.doomed != nil {
		return p.t.doomed
	}
	k := string(key)
	if _, ok := p.ov[k]; ok {
		return nil // claimed before; commit checks it again
	}
	if !p.s.txnLocks.acquire(k, p.t) {
		return p.doom()
	}
	p.locked = append(p.locked, k)
	changed, err := p.changed(key)
	if err != nil {
		return err
	}
	if changed {
		return p.doom()
	}
	return nil
}

func (p *txnPart) doom() error {
	p.t.doomed = WriteConflictError()
	return p.t.doomed
}

// changed reports whether key's committed value differs from the one in
// the snapshot (someone committed a write to it since).
func (p *txnPart) changed(key []byte) (bool, error) {
	a, aok, err := getCopy(p.snap, key)
	if err != nil {
		return false, err
	}
	b, bok, err := getCopy(p.s.db, key)
	if err != nil {
		return false, err
	}
	return aok != bok || !bytes.Equal(a, b), nil
}

func getCopy(r interface {
	Get([]byte) ([]byte, io.Closer, error)
}, key []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("docstore: %w", err)
	}
	defer closer.Close()
	return bytes.Clone(v), true, nil
}

// validate re-checks, under s.mu, everything the transaction wrote in s.
func (p *txnPart) validate() error {
	for name, meta := range p.colls {
		c := p.s.catalog().colls[name]
		if c == nil {
			return WriteConflictError()
		}
		now, err := bson.Marshal(c)
		if err != nil {
			return fmt.Errorf("docstore: encode collection: %w", err)
		}
		if !bytes.Equal(now, meta) {
			return WriteConflictError()
		}
	}
	for _, k := range p.keys {
		changed, err := p.changed([]byte(k))
		if err != nil {
			return err
		}
		if changed {
			return WriteConflictError()
		}
	}
	return nil
}

// close releases the part's snapshot, batch and keys.
func (p *txnPart) close() {
	p.s.txnLocks.release(p.locked, p.t)
	p.s.txnLocks.unregister(p)
	p.snap.Close()
	p.b.Close()
}

// TxnPart is one database's share of a committed transaction.
type TxnPart struct {
	DB   string
	Repr []byte
}

// TxnLog commits a transaction's parts as one record of the replica set's
// log, so that every member applies all of them or none. Package repl
// implements it; the Log a Store was opened with must implement it for
// transactions to commit.
type TxnLog interface {
	// CommitTxn returns once the parts are committed by a majority and
	// applied here (each through ApplyReplicated). The error contract is
	// Log.Commit's.
	CommitTxn(ctx context.Context, parts []TxnPart) error
}

// CommitRecord is what a committed transaction leaves in a database
// besides its writes: the session's retry record (retry.go), so that a
// commitTransaction retried on another member after a failover learns the
// transaction committed.
type CommitRecord struct {
	Store *Store
	LSID  []byte
	Txn   int64
	Reply bson.Raw
}

// Commit commits everything t wrote, atomically, and ends t. A transaction
// that wrote nothing commits nothing. An error ends t too: WriteConflict
// when a check failed (nothing was committed); any other error leaves the
// outcome unknown as Log.Commit's does. rec, if not nil, is staged with
// the writes.
func (t *Txn) Commit(ctx context.Context, rec *CommitRecord) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return ErrTxnDone
	}
	defer t.endLocked()
	if t.killed.Load() {
		return ErrTxnDone
	}
	if t.doomed != nil {
		return t.doomed
	}
	var parts []*txnPart
	for _, p := range t.parts {
		if !p.b.Empty() {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	if rec != nil {
		p, err := t.part(rec.Store)
		if err != nil {
			return err
		}
		if p.b.Empty() {
			parts = append(parts, p)
		}
		v, err := bson.Marshal(retryRecord{TxnNumber: rec.Txn, Reply: rec.Reply})
		if err != nil {
			return err
		}
		// Not claimed: the record is the session's, and the session's
		// statements are serialized.
		if err := p.b.Set(retryKey(rec.LSID), v, nil); err != nil {
			return err
		}
	}
	// Lock order: database name, so two commits never deadlock.
	sort.Slice(parts, func(i, j int) bool { return parts[i].s.db.Name < parts[j].s.db.Name })
	for _, p := range parts {
		p.s.mu.Lock()
		defer p.s.mu.Unlock()
	}
	for _, p := range parts {
		if err := p.validate(); err != nil {
			return err
		}
	}
	log := parts[0].s.log
	if log == nil {
		// A standalone store (tests): one database commits atomically.
		if len(parts) != 1 {
			return mongoerr.New(mongoerr.IllegalOperation, "a transaction across databases needs a replica set")
		}
		if err := parts[0].b.Commit(parts[0].s.sync); err != nil {
			return fmt.Errorf("docstore: commit transaction: %w", err)
		}
		parts[0].s.db.AfterCommit(parts[0].b.Repr())
		parts[0].s.notify()
		return nil
	}
	tl, ok := log.(TxnLog)
	if !ok {
		return mongoerr.New(mongoerr.CommandNotSupported, "this replica set log cannot commit transactions")
	}
	out := make([]TxnPart, len(parts))
	for i, p := range parts {
		if p.s.log != log {
			return mongoerr.New(mongoerr.IllegalOperation, "transaction spans databases that are not replicated together")
		}
		out[i] = TxnPart{DB: p.s.db.Name, Repr: p.b.Repr()}
	}
	if err := tl.CommitTxn(ctx, out); err != nil {
		return fmt.Errorf("docstore: commit transaction: %w", err)
	}
	return nil
}

// Abort discards everything t staged and ends it. Aborting an ended
// transaction does nothing.
func (t *Txn) Abort() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.done {
		t.endLocked()
	}
}

func (t *Txn) endLocked() {
	for _, p := range t.parts {
		p.close()
	}
	t.parts = map[*Store]*txnPart{}
	t.done = true
}

// txnLocks maps each key an open transaction wrote to that transaction,
// and knows the open transactions' parts in this database.
type txnLocks struct {
	mu    sync.Mutex
	owner map[string]*Txn
	parts map[*txnPart]struct{}
}

func (l *txnLocks) register(p *txnPart) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.parts == nil {
		l.parts = map[*txnPart]struct{}{}
	}
	l.parts[p] = struct{}{}
}

func (l *txnLocks) unregister(p *txnPart) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.parts, p)
}

// AbortTransactions aborts every open transaction that read or wrote this
// database. Its owner calls it before the database closes (a drop, the
// node disabled): a transaction must not read a snapshot of a closed
// database; its next statement gets ErrTxnDone instead.
func (s *Store) AbortTransactions() {
	s.txnLocks.mu.Lock()
	var txns []*Txn
	for p := range s.txnLocks.parts {
		txns = append(txns, p.t)
	}
	s.txnLocks.mu.Unlock()
	for _, t := range txns {
		// Never wait for t: its commit may be waiting for the log, whose
		// apply may be what is closing this database.
		if t.mu.TryLock() {
			if !t.done {
				t.endLocked()
			}
			t.mu.Unlock()
		} else {
			t.killed.Store(true)
		}
	}
}

// acquire gives k to t unless another transaction holds it.
func (l *txnLocks) acquire(k string, t *Txn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if o, ok := l.owner[k]; ok {
		return o == t
	}
	if l.owner == nil {
		l.owner = map[string]*Txn{}
	}
	l.owner[k] = t
	return true
}

func (l *txnLocks) release(keys []string, t *Txn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if l.owner[k] == t {
			delete(l.owner, k)
		}
	}
}

type ovKV struct {
	key []byte
	ovEntry
}

// txnIter merges a snapshot iterator with the overlay entries inside its
// bounds: an overlay entry shadows the snapshot's value for its key, and a
// tombstone hides it. It moves in one direction (First/Next or
// Last/Prev); a change of direction ends it.
type txnIter struct {
	a   *pebble.Iterator
	ov  []ovKV
	j   int
	dir int
	cur int // 0: exhausted, curSnap or curOv
}

const (
	curSnap = 1
	curOv   = 2
)

func (it *txnIter) First() bool {
	it.dir, it.j = 1, 0
	it.a.First()
	return it.settle()
}

func (it *txnIter) Last() bool {
	it.dir, it.j = -1, len(it.ov)-1
	it.a.Last()
	return it.settle()
}

func (it *txnIter) Next() bool { return it.step(1) }
func (it *txnIter) Prev() bool { return it.step(-1) }

func (it *txnIter) step(dir int) bool {
	if it.dir != dir || it.cur == 0 {
		it.cur = 0
		return false
	}
	if it.cur == curOv {
		if it.a.Valid() && bytes.Equal(it.a.Key(), it.ov[it.j].key) {
			it.moveSnap()
		}
		it.j += dir
	} else {
		it.moveSnap()
	}
	return it.settle()
}

func (it *txnIter) moveSnap() {
	if it.dir > 0 {
		it.a.Next()
	} else {
		it.a.Prev()
	}
}

// settle positions on the next visible entry in the iterator's direction.
func (it *txnIter) settle() bool {
	for {
		aok := it.a.Valid()
		ook := it.j >= 0 && it.j < len(it.ov)
		var c int
		switch {
		case !aok && !ook:
			it.cur = 0
			return false
		case !ook:
			c = -1
		case !aok:
			c = 1
		default:
			c = bytes.Compare(it.a.Key(), it.ov[it.j].key) * it.dir
		}
		if c < 0 {
			it.cur = curSnap
			return true
		}
		if it.ov[it.j].del {
			if c == 0 {
				it.moveSnap()
			}
			it.j += it.dir
			continue
		}
		it.cur = curOv
		return true
	}
}

func (it *txnIter) Valid() bool { return it.cur != 0 }

func (it *txnIter) Key() []byte {
	if it.cur == curOv {
		return it.ov[it.j].key
	}
	return it.a.Key()
}

func (it *txnIter) Value() []byte {
	if it.cur == curOv {
		return it.ov[it.j].val
	}
	return it.a.Value()
}

func (it *txnIter) Close() error { return it.a.Close() }

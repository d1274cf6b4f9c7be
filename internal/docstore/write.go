package docstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
)

// Writer stages document writes in one batch. A Writer exists only inside
// Store.Write, which holds the store's write lock.
type Writer struct {
	ctx context.Context
	s   *Store
	// b is the write's indexed batch (batchStaging), or, inside a
	// transaction, the transaction's part for this database (txn.go).
	b staging
	// SkipValidation bypasses collection validators for this write
	// (bypassDocumentValidation: true).
	SkipValidation bool
}

// Write runs fn with a Writer and commits, with sync, whatever fn staged —
// also when fn returns an error, so that the writes of an ordered insert
// before its first failure persist, as MongoDB's do. Each Writer method
// checks everything before staging anything, so a failed call stages
// nothing.
//
// Once ctx is done (the node disabled, maxTimeMS expired) every Writer
// method and scan fails with the reason and stages nothing more: a batch
// stops between two statements, and what was staged before commits, as an
// interrupted mongod write keeps the statements it applied.
//
// The write lock covers staging and applying the batch (so checks and the
// writes they guard are atomic) but not the WAL fsync: Write returns, and
// the write is acknowledged, only once the sync is done, while the next
// writer is already applying its batch and joins the same group commit.
// Applying before syncing adds no visibility Pebble does not already give:
// a committed batch is readable before its WAL sync either way.
//
// On a replica set member the batch is committed through the log instead:
// Write returns once a majority of the members hold it and this member
// applied it, with the write lock held throughout, so the next writer
// checks against it.
//
// Inside a transaction (ctx from WithTxn) nothing is committed here: fn
// stages into the transaction, which Txn.Commit commits (txn.go).
func (s *Store) Write(ctx context.Context, fn func(w *Writer) error) error {
	if t := TxnFrom(ctx); t != nil {
		return t.write(ctx, s, fn)
	}
	s.mu.Lock()
	b := s.db.NewIndexedBatch()
	defer b.Close()
	ferr := fn(&Writer{ctx: ctx, s: s, b: batchStaging{b}})
	if b.Empty() {
		s.mu.Unlock()
		return ferr
	}
	if s.log != nil || !s.sync.Sync {
		err := s.commitLocked(ctx, b, nil)
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("docstore: commit: %w", err)
		}
		return ferr
	}
	err := s.db.ApplyNoSyncWait(b, s.sync)
	if err == nil {
		s.db.AfterCommit(b.Repr())
		s.notify()
	}
	s.mu.Unlock()
	if err == nil {
		err = b.SyncWait()
	}
	if err != nil {
		return fmt.Errorf("docstore: commit: %w", err)
	}
	return ferr
}

// staging is where a Writer stages its writes and reads them back.
type staging interface {
	reader
	Set(key, value []byte, o *pebble.WriteOptions) error
	Delete(key []byte, o *pebble.WriteOptions) error
	// LogData stages a record the batch carries without writing it
	// (docstore's hints to the oplog, changes.go).
	LogData(data []byte, o *pebble.WriteOptions) error
}

// batchStaging stages into an indexed batch (an ordinary write).
type batchStaging struct{ *pebble.Batch }

func (b batchStaging) NewIter(o *pebble.IterOptions) (iterator, error) {
	it, err := b.Batch.NewIter(o)
	if err != nil {
		return nil, err
	}
	return it, nil
}

// Changed returns a channel closed by the next committed write (tailable
// cursors with awaitData wait on it).
func (s *Store) Changed() <-chan struct{} {
	s.nmu.Lock()
	defer s.nmu.Unlock()
	if s.notifyCh == nil {
		s.notifyCh = make(chan struct{})
	}
	return s.notifyCh
}

// DocKey is the storage key of a document id in a collection.
func DocKey(coll *Collection, id bson.RawValue) []byte {
	return append(docPrefix(coll.ID), query.EncodeIndexKey([]bson.RawValue{id}, []int{1})...)
}

// IDOf returns a document's _id.
func IDOf(doc bson.Raw) (bson.RawValue, error) {
	v, err := doc.LookupErr("_id")
	if err != nil {
		return bson.RawValue{}, mongoerr.New(mongoerr.InvalidIdField, "document has no _id")
	}
	if v.Type == bson.TypeArray {
		return bson.RawValue{}, mongoerr.New(mongoerr.InvalidIdField, "The '_id' value cannot be of type array")
	}
	return v, nil
}

// Get reads a document by id, seeing this writer's staged writes.
func (w *Writer) Get(coll *Collection, id bson.RawValue) (bson.Raw, bool, error) {
	if err := Interrupted(w.ctx, "write", ""); err != nil {
		return nil, false, err
	}
	v, closer, err := w.b.Get(DocKey(coll, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("docstore: %w", err)
	}
	defer closer.Close()
	return bytes.Clone(v), true, nil
}

// Insert stages a new document; doc must carry its _id. A duplicate _id or
// unique-index key fails with DuplicateKey (11000) and stages nothing.
func (w *Writer) Insert(coll *Collection, doc bson.Raw) error {
	if err := Interrupted(w.ctx, "write", ""); err != nil {
		return err
	}
	if err := w.txnCheck(coll); err != nil {
		return err
	}
	id, err := IDOf(doc)
	if err != nil {
		return err
	}
	key := DocKey(coll, id)
	if _, closer, err := w.b.Get(key); err == nil {
		closer.Close()
		return dupKeyError(w.s.db.Name, coll, &coll.Indexes[0], []bson.RawValue{id})
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("docstore: %w", err)
	}
	if err := w.validate(coll, nil, doc); err != nil {
		return err
	}
	if err := cappedCheckInsert(coll, doc); err != nil {
		return err
	}
	if coll.Capped() {
		// Read the totals before staging anything: a damaged record fails
		// the insert without leaving a document outside the order.
		if _, err := w.cappedState(coll); err != nil {
			return err
		}
	}
	entries, err := w.checkIndexes(coll, nil, doc, id)
	if err != nil {
		return err
	}
	if err := w.b.Set(key, doc, nil); err != nil {
		return err
	}
	if err := w.applyEntries(entries); err != nil {
		return err
	}
	if coll.Capped() {
		return w.cappedInserted(coll, id, doc)
	}
	return nil
}

// Replace stages old -> new for one document (same _id).
func (w *Writer) Replace(coll *Collection, old, new bson.Raw) error {
	if err := Interrupted(w.ctx, "write", ""); err != nil {
		return err
	}
	if err := w.txnCheck(coll); err != nil {
		return err
	}
	id, err := IDOf(old)
	if err != nil {
		return err
	}
	nid, err := IDOf(new)
	if err != nil {
		return err
	}
	if query.Compare(id, nid) != 0 || id.Type != nid.Type {
		return mongoerr.New(mongoerr.ImmutableField, "Performing an update on the path '_id' would modify the immutable field '_id'")
	}
	if err := w.validate(coll, old, new); err != nil {
		return err
	}
	entries, err := w.checkIndexes(coll, old, new, id)
	if err != nil {
		return err
	}
	if err := w.b.Set(DocKey(coll, id), new, nil); err != nil {
		return err
	}
	if err := w.applyEntries(entries); err != nil {
		return err
	}
	if coll.Capped() && len(old) != len(new) {
		return w.cappedResized(coll, id, len(old), len(new), false)
	}
	return nil
}

// Delete stages the removal of a document and its index entries.
func (w *Writer) Delete(coll *Collection, doc bson.Raw) error {
	if err := Interrupted(w.ctx, "write", ""); err != nil {
		return err
	}
	if err := w.txnCheck(coll); err != nil {
		return err
	}
	id, err := IDOf(doc)
	if err != nil {
		return err
	}
	entries, err := w.checkIndexes(coll, doc, nil, id)
	if err != nil {
		return err
	}
	if err := w.b.Delete(DocKey(coll, id), nil); err != nil {
		return err
	}
	if err := w.applyEntries(entries); err != nil {
		return err
	}
	if coll.Capped() {
		return w.cappedRemoved(coll, id, doc)
	}
	return nil
}

type entryOp struct {
	del   bool
	key   []byte
	value []byte
}

// checkIndexes computes the index entries to remove (old) and add (new),
// checking unique indexes against stored and staged entries.
func (w *Writer) checkIndexes(coll *Collection, old, new bson.Raw, id bson.RawValue) ([]entryOp, error) {
	idKey := query.EncodeIndexKey([]bson.RawValue{id}, []int{1})
	var ops []entryOp
	for i := range coll.Indexes {
		ix := &coll.Indexes[i]
		if ix.ID == 0 {
			continue
		}
		p := indexPrefix(coll.ID, ix.ID)
		oldKeys := map[string]bool{}
		if old != nil {
			ks, _, err := indexEntries(old, ix)
			if err != nil {
				return nil, err
			}
			for _, k := range ks {
				oldKeys[string(k)] = true
			}
		}
		newKeys := map[string]bool{}
		if new != nil {
			ks, tuples, err := indexEntries(new, ix)
			if err != nil {
				return nil, err
			}
			for j, k := range ks {
				newKeys[string(k)] = true
				if oldKeys[string(k)] {
					continue
				}
				full := entryKey(p, k, idKey, ix.Unique)
				if ix.Unique {
					if v, closer, err := w.b.Get(full); err == nil {
						other := bytes.Clone(v)
						closer.Close()
						if !bytes.Equal(other, idKey) {
							return nil, dupKeyError(w.s.db.Name, coll, ix, tuples[j])
						}
					} else if !errors.Is(err, pebble.ErrNotFound) {
						return nil, fmt.Errorf("docstore: %w", err)
					}
				}
				ops = append(ops, entryOp{key: full, value: idKey})
			}
		}
		for k := range oldKeys {
			if !newKeys[k] {
				ops = append(ops, entryOp{del: true, key: entryKey(p, []byte(k), idKey, ix.Unique)})
			}
		}
	}
	return ops, nil
}

func entryKey(prefix, values, idKey []byte, unique bool) []byte {
	k := append(append([]byte(nil), prefix...), values...)
	if !unique {
		k = append(k, idKey...)
	}
	return k
}

func (w *Writer) applyEntries(ops []entryOp) error {
	for _, op := range ops {
		var err error
		if op.del {
			err = w.b.Delete(op.key, nil)
		} else {
			err = w.b.Set(op.key, op.value, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// DuplicateKeyError is a unique index's refusal, with what mongod's reply
// carries beside the message: the index's key pattern and the values
// that collided (keyPattern, keyValue).
type DuplicateKeyError struct {
	Err                  *mongoerr.Error
	KeyPattern, KeyValue bson.D
}

func (e *DuplicateKeyError) Error() string { return e.Err.Error() }
func (e *DuplicateKeyError) Unwrap() error { return e.Err }

func dupKeyError(db string, coll *Collection, ix *Index, vals []bson.RawValue) error {
	paths, _ := ix.Fields()
	var buf bytes.Buffer
	var keyValue bson.D
	buf.WriteString("{ ")
	for i, p := range paths {
		if i > 0 {
			buf.WriteString(", ")
		}
		fmt.Fprintf(&buf, "%s: ", p)
		if i < len(vals) {
			formatKeyValue(&buf, vals[i])
			keyValue = append(keyValue, bson.E{Key: p, Value: vals[i]})
		} else {
			buf.WriteString("null")
			keyValue = append(keyValue, bson.E{Key: p, Value: nil})
		}
	}
	buf.WriteString(" }")
	return &DuplicateKeyError{
		Err: mongoerr.New(mongoerr.DuplicateKey, "E11000 duplicate key error collection: %s.%s index: %s dup key: %s",
			db, coll.Name, ix.Name, buf.String()),
		KeyPattern: ix.Key, KeyValue: keyValue,
	}
}

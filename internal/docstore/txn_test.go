package docstore

import (
	"context"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/storage/storagetest"
)

// scanIDs returns the _ids a plan yields under ctx, in plan order.
func scanIDs(t *testing.T, ctx context.Context, s *Store, coll string, plan Plan) string {
	t.Helper()
	var ids []string
	var pos Position
	err := s.Scan(ctx, s.Collection(coll), plan, &pos, func(doc bson.Raw) (bool, error) {
		ids = append(ids, idStr(doc))
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(ids)
}

func txnWrite(ctx context.Context, s *Store, fn func(w *Writer, c *Collection) error) error {
	return s.Write(ctx, func(w *Writer) error { return fn(w, w.Collection("c")) })
}

func TestTxnSnapshotOwnWritesAndCommit(t *testing.T) {
	s, _ := Open(storagetest.NewDB(t, "app"), nil)
	insert(t, s, "c", bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "_id", Value: 5}})
	tx := NewTxn()
	ctx := WithTxn(context.Background(), tx)
	if err := txnWrite(ctx, s, func(w *Writer, c *Collection) error {
		if err := w.Insert(c, mustRaw(t, bson.D{{Key: "_id", Value: 3}})); err != nil {
			return err
		}
		old, _, err := w.Get(c, bson.RawValue{Type: bson.TypeInt32, Value: bsonInt32(2)})
		if err != nil || old == nil {
			return fmt.Errorf("get 2: %v", err)
		}
		return w.Delete(c, old)
	}); err != nil {
		t.Fatal(err)
	}
	// Committed outside the transaction after its snapshot.
	insert(t, s, "c", bson.D{{Key: "_id", Value: 4}})
	bg := context.Background()
	if got := scanIDs(t, ctx, s, "c", Plan{}); got != "[1 3 5]" {
		t.Fatalf("inside: %s", got)
	}
	if got := scanIDs(t, ctx, s, "c", Plan{Natural: -1}); got != "[5 3 1]" {
		t.Fatalf("inside, reverse: %s", got)
	}
	if got := scanIDs(t, bg, s, "c", Plan{}); got != "[1 2 4 5]" {
		t.Fatalf("outside before commit: %s", got)
	}
	if err := tx.Commit(bg, nil); err != nil {
		t.Fatal(err)
	}
	if got := scanIDs(t, bg, s, "c", Plan{}); got != "[1 3 4 5]" {
		t.Fatalf("outside after commit: %s", got)
	}
	if err := s.Write(ctx, func(*Writer) error { return nil }); err == nil {
		t.Fatal("a statement after commit ran")
	}
}

func bsonInt32(v int32) []byte {
	return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}
}

func TestTxnWriteConflictBetweenTransactions(t *testing.T) {
	s, _ := Open(storagetest.NewDB(t, "app"), nil)
	insert(t, s, "c", bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 0}})
	one := bson.RawValue{Type: bson.TypeInt32, Value: bsonInt32(1)}
	set := func(tx *Txn, n int) error {
		return txnWrite(WithTxn(context.Background(), tx), s, func(w *Writer, c *Collection) error {
			old, _, err := w.Get(c, one)
			if err != nil {
				return err
			}
			return w.Replace(c, old, mustRaw(t, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: n}}))
		})
	}
	t1, t2 := NewTxn(), NewTxn()
	if err := set(t1, 1); err != nil {
		t.Fatal(err)
	}
	err := set(t2, 2)
	if mongoerr.CodeOf(err) != mongoerr.WriteConflict || !hasLabel(err, mongoerr.TransientTransactionError) {
		t.Fatalf("second writer: %v", err)
	}
	if mongoerr.CodeOf(t2.Commit(context.Background(), nil)) != mongoerr.WriteConflict {
		t.Fatal("a doomed transaction committed")
	}
	if err := t1.Commit(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	doc, _, _ := s.Get(s.Collection("c"), one)
	if n := doc.Lookup("n").AsInt64(); n != 1 {
		t.Fatalf("n = %d, want 1", n)
	}
	// A transaction whose snapshot predates t1's commit conflicts too.
	t3 := NewTxn()
	scanIDs(t, WithTxn(context.Background(), t3), s, "c", Plan{}) // takes the snapshot
	insert(t, s, "c", bson.D{{Key: "_id", Value: 9}})
	if err := set(t3, 3); err != nil {
		t.Fatalf("unrelated key committed since: %v", err)
	}
	t3.Abort()
	t4 := NewTxn()
	scanIDs(t, WithTxn(context.Background(), t4), s, "c", Plan{})
	t5 := NewTxn()
	if err := set(t5, 7); err != nil {
		t.Fatal(err)
	}
	if err := t5.Commit(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := set(t4, 4); mongoerr.CodeOf(err) != mongoerr.WriteConflict {
		t.Fatalf("write to a key committed after the snapshot: %v", err)
	}
}

func hasLabel(err error, label string) bool {
	me, ok := err.(*mongoerr.Error)
	if !ok {
		return false
	}
	for _, l := range me.Labels {
		if l == label {
			return true
		}
	}
	return false
}

func TestTxnOutsideWriteWinsAndUniqueIndex(t *testing.T) {
	s, _ := Open(storagetest.NewDB(t, "app"), nil)
	insert(t, s, "c", bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 0}})
	if _, err := s.CreateIndex(context.Background(), "c", IndexSpec{Key: bson.D{{Key: "email", Value: 1}}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	tx := NewTxn()
	ctx := WithTxn(context.Background(), tx)
	if err := txnWrite(ctx, s, func(w *Writer, c *Collection) error {
		return w.Insert(c, mustRaw(t, bson.D{{Key: "_id", Value: 2}, {Key: "email", Value: "a@x"}}))
	}); err != nil {
		t.Fatal(err)
	}
	// An ordinary insert of the same unique key commits first: the
	// transaction must not commit a duplicate.
	if err := insert(t, s, "c", bson.D{{Key: "_id", Value: 3}, {Key: "email", Value: "a@x"}}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(context.Background(), nil); mongoerr.CodeOf(err) != mongoerr.WriteConflict {
		t.Fatalf("commit after a conflicting outside write: %v", err)
	}
	if got := scanIDs(t, context.Background(), s, "c", Plan{}); got != "[1 3]" {
		t.Fatalf("after failed commit: %s", got)
	}
	// The index has the outside write's entry only.
	f := mustRaw(t, bson.D{{Key: "email", Value: "a@x"}})
	plan, _ := PlanFor(s.Collection("c"), f)
	if plan.Index == nil || plan.Index.ID == 0 {
		t.Fatalf("plan %v", plan)
	}
	if got := scanIDs(t, context.Background(), s, "c", plan); got != "[3]" {
		t.Fatalf("index scan: %s", got)
	}
}

func TestTxnAbortLeavesNothing(t *testing.T) {
	s, _ := Open(storagetest.NewDB(t, "app"), nil)
	insert(t, s, "c", bson.D{{Key: "_id", Value: 1}})
	tx := NewTxn()
	ctx := WithTxn(context.Background(), tx)
	if err := txnWrite(ctx, s, func(w *Writer, c *Collection) error {
		return w.Insert(c, mustRaw(t, bson.D{{Key: "_id", Value: 2}}))
	}); err != nil {
		t.Fatal(err)
	}
	tx.Abort()
	if got := scanIDs(t, context.Background(), s, "c", Plan{}); got != "[1]" {
		t.Fatalf("after abort: %s", got)
	}
	// Its keys are free again.
	t2 := NewTxn()
	if err := txnWrite(WithTxn(context.Background(), t2), s, func(w *Writer, c *Collection) error {
		return w.Insert(c, mustRaw(t, bson.D{{Key: "_id", Value: 2}}))
	}); err != nil {
		t.Fatal(err)
	}
	if err := t2.Commit(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if got := scanIDs(t, context.Background(), s, "c", Plan{}); got != "[1 2]" {
		t.Fatalf("after second commit: %s", got)
	}
}

func TestAbortTransactions(t *testing.T) {
	s, _ := Open(storagetest.NewDB(t, "app"), nil)
	insert(t, s, "c", bson.D{{Key: "_id", Value: 1}})
	idle, busy := NewTxn(), NewTxn()
	for _, tx := range []*Txn{idle, busy} {
		scanIDs(t, WithTxn(context.Background(), tx), s, "c", Plan{})
	}
	busy.mu.Lock() // a statement in flight
	s.AbortTransactions()
	busy.mu.Unlock()
	for name, tx := range map[string]*Txn{"idle": idle, "busy": busy} {
		err := s.Scan(WithTxn(context.Background(), tx), s.Collection("c"), Plan{}, &Position{}, func(bson.Raw) (bool, error) { return true, nil })
		if err != ErrTxnDone {
			t.Fatalf("%s: scan after AbortTransactions: %v", name, err)
		}
	}
	if len(s.txnLocks.parts) != 0 {
		t.Fatalf("%d parts left open", len(s.txnLocks.parts))
	}
}

package docstore

import (
	"context"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/storage/storagetest"
)

func TestCountAndWriterScan(t *testing.T) {
	s, err := Open(storagetest.NewDB(t, "app"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := insert(t, s, "c", bson.D{{Key: "_id", Value: 1}, {Key: "k", Value: 1}}, bson.D{{Key: "_id", Value: 2}, {Key: "k", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateIndex(context.Background(), "c", IndexSpec{Key: bson.D{{Key: "k", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	c := s.Collection("c")
	if n, err := s.Count(context.Background(), c); err != nil || n != 2 {
		t.Fatalf("Count = %d, %v", n, err)
	}
	filter := mustRaw(t, bson.D{{Key: "k", Value: bson.D{{Key: "$gte", Value: 0}}}})
	plan, err := PlanFor(c, filter)
	if err != nil || plan.Index == nil || plan.Index.Name != "k_1" {
		t.Fatalf("plan %v, %v", plan, err)
	}
	storeScan := func(c *Collection, p Plan, pos *Position, fn func(bson.Raw) (bool, error)) error {
		return s.Scan(context.Background(), c, p, pos, fn)
	}
	ids := func(scan func(*Collection, Plan, *Position, func(bson.Raw) (bool, error)) error) string {
		var out []string
		var pos Position
		if err := scan(c, plan, &pos, func(d bson.Raw) (bool, error) {
			out = append(out, idStr(d))
			return true, nil
		}); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(out)
	}
	err = s.Write(context.Background(), func(w *Writer) error {
		if w.Collection("c") != c {
			t.Error("Writer.Collection differs from Store.Collection")
		}
		if err := w.Insert(c, mustRaw(t, bson.D{{Key: "_id", Value: 3}, {Key: "k", Value: 0}})); err != nil {
			return err
		}
		old, _, _ := w.Get(c, mustRaw(t, bson.D{{Key: "_id", Value: 1}}).Lookup("_id"))
		if err := w.Delete(c, old); err != nil {
			return err
		}
		// The writer sees its staged writes, through the index too; the
		// store sees only what is committed.
		if got := ids(w.Scan); got != "[3 2]" {
			t.Errorf("Writer.Scan = %s, want [3 2]", got)
		}
		if got := ids(storeScan); got != "[1 2]" {
			t.Errorf("Store.Scan during Write = %s, want [1 2]", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(storeScan); got != "[3 2]" {
		t.Errorf("Store.Scan after Write = %s", got)
	}
	if n, err := s.Count(context.Background(), c); err != nil || n != 2 {
		t.Fatalf("Count after = %d, %v", n, err)
	}
}

package docstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/storage/storagetest"
)

// natural lists a collection's ids in natural order (dir 1) or reverse,
// resuming after every document to exercise positions.
func natural(t *testing.T, s *Store, coll string, dir int8) string {
	t.Helper()
	c := s.Collection(coll)
	var ids []string
	var pos Position
	for !pos.Done() {
		err := s.Scan(context.Background(), c, Plan{Natural: dir}, &pos, func(doc bson.Raw) (bool, error) {
			ids = append(ids, idStr(doc))
			return false, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return strings.Join(ids, ",")
}

func TestCappedEviction(t *testing.T) {
	// Documents {_id: n, p: <pad bytes>}: the size of one is fixed, so
	// byte bounds translate to document counts.
	doc := func(id int, pad int) bson.D {
		return bson.D{{Key: "_id", Value: id}, {Key: "p", Value: strings.Repeat("x", pad)}}
	}
	one := int64(len(mustRaw(t, doc(0, 10))))
	tests := []struct {
		name     string
		opts     CollOptions
		ids      []int // inserted in this order
		want     string
		wantBack string
	}{
		{"max", CollOptions{Capped: true, Size: 1 << 20, Max: 3}, []int{5, 1, 9, 2, 7}, "9,2,7", "7,2,9"},
		{"size", CollOptions{Capped: true, Size: 2*one + one/2}, []int{3, 2, 1, 4}, "1,4", "4,1"},
		{"both, size binds", CollOptions{Capped: true, Size: 2 * one, Max: 5}, []int{1, 2, 3}, "2,3", "3,2"},
		{"within bounds", CollOptions{Capped: true, Size: 1 << 20, Max: 10}, []int{3, 1, 2}, "3,1,2", "2,1,3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eng := storagetest.NewEngine(t)
			db, _ := eng.CreateDatabase("app")
			s, _ := Open(db, nil)
			if _, err := s.CreateCollectionWithOptions("c", tt.opts); err != nil {
				t.Fatal(err)
			}
			for _, id := range tt.ids {
				// One insert per batch and, for the first case, all in one
				// batch below: both must evict.
				if err := insert(t, s, "c", doc(id, 10)); err != nil {
					t.Fatal(err)
				}
			}
			if got := natural(t, s, "c", 1); got != tt.want {
				t.Errorf("natural order = %s, want %s", got, tt.want)
			}
			if got := natural(t, s, "c", -1); got != tt.wantBack {
				t.Errorf("reverse natural order = %s, want %s", got, tt.wantBack)
			}
			// The same after reopening: totals and order are stored.
			s2, err := Open(db, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := natural(t, s2, "c", 1); got != tt.want {
				t.Errorf("after reopen = %s, want %s", got, tt.want)
			}
			if n, _ := s2.Count(context.Background(), s2.Collection("c")); fmt.Sprint(n) != fmt.Sprint(len(strings.Split(tt.want, ","))) {
				t.Errorf("count = %d", n)
			}
		})
	}
}

func TestCappedOneBatchDeleteUpdate(t *testing.T) {
	s, _ := Open(storagetest.NewDB(t, "app"), nil)
	if _, err := s.CreateCollectionWithOptions("c", CollOptions{Capped: true, Size: 1 << 20, Max: 2}); err != nil {
		t.Fatal(err)
	}
	// Many inserts in one batch: eviction sees the batch's own inserts.
	var docs []bson.D
	for i := 1; i <= 6; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: i}})
	}
	if err := insert(t, s, "c", docs...); err != nil {
		t.Fatal(err)
	}
	if got := natural(t, s, "c", 1); got != "5,6" {
		t.Fatalf("after one batch = %s, want 5,6", got)
	}
	// A delete frees a slot: the next insert evicts nothing.
	c := s.Collection("c")
	if err := s.Write(context.Background(), func(w *Writer) error { return w.Delete(c, mustRaw(t, bson.D{{Key: "_id", Value: 5}})) }); err != nil {
		t.Fatal(err)
	}
	insert(t, s, "c", bson.D{{Key: "_id", Value: 7}})
	if got := natural(t, s, "c", 1); got != "6,7" {
		t.Fatalf("after delete and insert = %s, want 6,7", got)
	}
	// An update may change a document's size (MongoDB 7.0) and keeps its
	// place in natural order.
	err := s.Write(context.Background(), func(w *Writer) error {
		return w.Replace(c, mustRaw(t, bson.D{{Key: "_id", Value: 6}}), mustRaw(t, bson.D{{Key: "_id", Value: 6}, {Key: "grown", Value: "yes"}}))
	})
	if err != nil {
		t.Fatal(err)
	}
	insert(t, s, "c", bson.D{{Key: "_id", Value: 8}})
	if got := natural(t, s, "c", 1); got != "7,8" {
		t.Fatalf("after update and insert = %s, want 7,8", got)
	}
	// A document larger than the whole collection is refused.
	s.CreateCollectionWithOptions("tiny", CollOptions{Capped: true, Size: 20})
	err = insert(t, s, "tiny", bson.D{{Key: "_id", Value: 1}, {Key: "p", Value: strings.Repeat("x", 40)}})
	if mongoerr.CodeOf(err) != mongoerr.BadValue {
		t.Fatalf("oversized insert: %v, want BadValue", err)
	}
	// Dropping removes the order records too: a new collection reusing
	// nothing starts empty.
	if err := s.DropCollection("c"); err != nil {
		t.Fatal(err)
	}
	s.CreateCollectionWithOptions("c", CollOptions{Capped: true, Size: 1 << 20})
	if got := natural(t, s, "c", 1); got != "" {
		t.Fatalf("recreated = %q, want empty", got)
	}
}

func TestValidatorLevelsAndActions(t *testing.T) {
	validator := mustRaw(t, bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 0}}}})
	tests := []struct {
		level, action string
		insertBad     bool // an invalid insert is accepted
		updateBadOld  bool // updating an already-invalid document to another invalid one is accepted
	}{
		{"", "", false, false},
		{"strict", "error", false, false},
		{"moderate", "error", false, true},
		{"off", "error", true, true},
		{"strict", "warn", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.action, func(t *testing.T) {
			s, _ := Open(storagetest.NewDB(t, "app"), nil)
			// An invalid document stored before the validator exists.
			insert(t, s, "c", bson.D{{Key: "_id", Value: 0}, {Key: "a", Value: -5}})
			lv, ac := tt.level, tt.action
			if _, _, err := s.ChangeValidation("c", ValidationChange{Validator: &validator, ValidationLevel: &lv, ValidationAction: &ac}); err != nil {
				t.Fatal(err)
			}
			if err := insert(t, s, "c", bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}}); err != nil {
				t.Fatalf("valid insert: %v", err)
			}
			err := insert(t, s, "c", bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: -1}})
			if (err == nil) != tt.insertBad {
				t.Errorf("invalid insert: err = %v, want accepted=%v", err, tt.insertBad)
			}
			var ve *ValidationError
			if err != nil && (!errors.As(err, &ve) || mongoerr.CodeOf(err) != DocumentValidationFailure || ve.Info == nil) {
				t.Errorf("invalid insert error = %#v, want a ValidationError with errInfo", err)
			}
			c := s.Collection("c")
			err = s.Write(context.Background(), func(w *Writer) error {
				return w.Replace(c, mustRaw(t, bson.D{{Key: "_id", Value: 0}, {Key: "a", Value: -5}}), mustRaw(t, bson.D{{Key: "_id", Value: 0}, {Key: "a", Value: -6}}))
			})
			if (err == nil) != tt.updateBadOld {
				t.Errorf("update of invalid doc: err = %v, want accepted=%v", err, tt.updateBadOld)
			}
			// Bypass always writes.
			err = s.Write(context.Background(), func(w *Writer) error {
				w.SkipValidation = true
				return w.Insert(c, mustRaw(t, bson.D{{Key: "_id", Value: 3}, {Key: "a", Value: -1}}))
			})
			if err != nil {
				t.Errorf("bypassed insert: %v", err)
			}
		})
	}
}

package docstore

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sort"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/storage/storagetest"
)

func mustRaw(t testing.TB, v any) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func insert(t testing.TB, s *Store, coll string, docs ...bson.D) error {
	t.Helper()
	c, err := s.EnsureCollection(coll)
	if err != nil {
		t.Fatal(err)
	}
	return s.Write(context.Background(), func(w *Writer) error {
		for _, d := range docs {
			if err := w.Insert(c, mustRaw(t, d)); err != nil {
				return err
			}
		}
		return nil
	})
}

// find runs filter through PlanFor + Scan + Matcher and returns sorted ids.
func find(t testing.TB, s *Store, coll string, filter bson.D) ([]string, Plan) {
	t.Helper()
	c := s.Collection(coll)
	f := mustRaw(t, filter)
	m, err := query.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanFor(c, f)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	var pos Position
	for !pos.Done() {
		// Small batches exercise resumption.
		n := 0
		err := s.Scan(context.Background(), c, plan, &pos, func(doc bson.Raw) (bool, error) {
			if m.Match(doc) {
				ids = append(ids, idStr(doc))
			}
			n++
			return n < 3, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(ids)
	return ids, plan
}

func TestInsertGetDuplicate(t *testing.T) {
	s, err := Open(storagetest.NewDB(t, "app"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := insert(t, s, "users", bson.D{{Key: "_id", Value: 1}, {Key: "name", Value: "ada"}}, bson.D{{Key: "_id", Value: 2}, {Key: "name", Value: "bob"}}); err != nil {
		t.Fatal(err)
	}
	err = insert(t, s, "users", bson.D{{Key: "_id", Value: 3}}, bson.D{{Key: "_id", Value: 1.0}}, bson.D{{Key: "_id", Value: 4}})
	if mongoerr.CodeOf(err) != mongoerr.DuplicateKey {
		t.Fatalf("duplicate _id (1 vs 1.0): %v", err)
	}
	// Ordered semantics: the write before the failure persisted, the one
	// after it was never attempted.
	ids, _ := find(t, s, "users", bson.D{})
	if fmt.Sprint(ids) != "[1 2 3]" {
		t.Fatalf("ids after failed ordered insert: %v", ids)
	}
}

func TestUniqueIndex(t *testing.T) {
	s, _ := Open(storagetest.NewDB(t, "app"), nil)
	insert(t, s, "users", bson.D{{Key: "_id", Value: 1}, {Key: "email", Value: "a@x"}}, bson.D{{Key: "_id", Value: 2}, {Key: "email", Value: "b@x"}})
	if _, err := s.CreateIndex(context.Background(), "users", IndexSpec{Key: bson.D{{Key: "email", Value: 1}}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	err := insert(t, s, "users", bson.D{{Key: "_id", Value: 3}, {Key: "email", Value: "a@x"}})
	var me *mongoerr.Error
	if !errors.As(err, &me) || me.Code != mongoerr.DuplicateKey {
		t.Fatalf("unique violation: %v", err)
	}
	if want := "index: email_1 dup key: { email: \"a@x\" }"; !contains(me.Msg, want) {
		t.Fatalf("message %q lacks %q", me.Msg, want)
	}
	// Update a document's key: the old entry goes, the new one is checked.
	c := s.Collection("users")
	err = s.Write(context.Background(), func(w *Writer) error {
		old, _, _ := w.Get(c, bson.RawValue{Type: bson.TypeInt32, Value: []byte{2, 0, 0, 0}})
		return w.Replace(c, old, mustRaw(t, bson.D{{Key: "_id", Value: 2}, {Key: "email", Value: "c@x"}}))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := insert(t, s, "users", bson.D{{Key: "_id", Value: 4}, {Key: "email", Value: "b@x"}}); err != nil {
		t.Fatalf("b@x should be free after the update: %v", err)
	}
	// Creating a unique index over duplicates fails and changes nothing.
	insert(t, s, "users", bson.D{{Key: "_id", Value: 5}, {Key: "team", Value: "x"}}, bson.D{{Key: "_id", Value: 6}, {Key: "team", Value: "x"}})
	if _, err := s.CreateIndex(context.Background(), "users", IndexSpec{Key: bson.D{{Key: "team", Value: 1}}, Unique: true}); mongoerr.CodeOf(err) != mongoerr.DuplicateKey {
		t.Fatalf("unique index over duplicates: %v", err)
	}
	if n := len(s.Collection("users").Indexes); n != 2 {
		t.Fatalf("%d indexes after failed build", n)
	}
}

func contains(s, sub string) bool {
	return len(s) >= len(sub) && (s == sub || len(sub) == 0 || indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestPlansAgreeWithCollectionScan is the planner's correctness property:
// whatever index a query uses, it returns exactly what a collection scan
// with the same filter returns.
func TestPlansAgreeWithCollectionScan(t *testing.T) {
	s, _ := Open(storagetest.NewDB(t, "app"), nil)
	r := mrand.New(mrand.NewPCG(1, 2))
	var docs []bson.D
	for i := 0; i < 400; i++ {
		d := bson.D{{Key: "_id", Value: i}}
		switch r.IntN(5) {
		case 0:
			d = append(d, bson.E{Key: "a", Value: r.IntN(20)})
		case 1:
			d = append(d, bson.E{Key: "a", Value: float64(r.IntN(20)) + 0.5})
		case 2:
			d = append(d, bson.E{Key: "a", Value: bson.A{r.IntN(20), r.IntN(20)}})
		case 3:
			d = append(d, bson.E{Key: "a", Value: fmt.Sprintf("s%d", r.IntN(20))})
		}
		if r.IntN(2) == 0 {
			d = append(d, bson.E{Key: "b", Value: r.IntN(5)})
		}
		docs = append(docs, d)
	}
	if err := insert(t, s, "c", docs...); err != nil {
		t.Fatal(err)
	}
	scanOnly := func(filter bson.D) []string {
		c := s.Collection("c")
		m, _ := query.Compile(mustRaw(t, filter))
		var ids []string
		var pos Position
		s.Scan(context.Background(), c, Plan{}, &pos, func(doc bson.Raw) (bool, error) {
			if m.Match(doc) {
				ids = append(ids, idStr(doc))
			}
			return true, nil
		})
		sort.Strings(ids)
		return ids
	}
	for _, spec := range []bson.D{{{Key: "a", Value: 1}}, {{Key: "a", Value: -1}}, {{Key: "a", Value: 1}, {Key: "b", Value: 1}}, {{Key: "b", Value: 1}, {Key: "a", Value: -1}}} {
		if _, err := s.CreateIndex(context.Background(), "c", IndexSpec{Key: spec}); err != nil {
			t.Fatal(err)
		}
	}
	filters := []bson.D{
		{{Key: "a", Value: 5}},
		{{Key: "a", Value: bson.D{{Key: "$gt", Value: 5}, {Key: "$lt", Value: 9}}}},
		{{Key: "a", Value: bson.D{{Key: "$gte", Value: 18}}}},
		{{Key: "a", Value: bson.D{{Key: "$lt", Value: 3}}}},
		{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{1, 2, "s3", 4.5}}}}},
		{{Key: "a", Value: bson.D{{Key: "$gt", Value: 15}, {Key: "$lt", Value: 3}}}}, // matches arrays only
		{{Key: "a", Value: "s7"}},
		{{Key: "a", Value: bson.D{{Key: "$gte", Value: "s1"}}}},
		{{Key: "a", Value: 7}, {Key: "b", Value: bson.D{{Key: "$gte", Value: 2}}}},
		{{Key: "b", Value: 3}, {Key: "a", Value: bson.D{{Key: "$lte", Value: 10}}}},
		{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{3, 99, 250}}}}},
		{{Key: "_id", Value: bson.D{{Key: "$gte", Value: 390}}}},
		{{Key: "$and", Value: bson.A{bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 2}}}}, bson.D{{Key: "b", Value: 1}}}}},
	}
	for _, f := range filters {
		got, plan := find(t, s, "c", f)
		want := scanOnly(f)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("filter %v with %s: got %d docs, collection scan %d\n got %v\nwant %v", f, plan, len(got), len(want), got, want)
		}
		if plan.Index == nil {
			t.Errorf("filter %v used no index", f)
		}
	}
	// Filters on null, missing and empty arrays may or may not use an
	// index; either way the results must be a collection scan's.
	insert(t, s, "c", bson.D{{Key: "_id", Value: 1000}, {Key: "a", Value: bson.A{}}}, bson.D{{Key: "_id", Value: 1001}, {Key: "a", Value: nil}})
	for _, f := range []bson.D{
		{{Key: "a", Value: nil}},
		{{Key: "a", Value: bson.A{}}},
		{{Key: "a", Value: bson.D{{Key: "$exists", Value: false}}}},
		{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{nil, 3}}}}},
		{{Key: "a", Value: bson.D{{Key: "$ne", Value: 3}}}},
	} {
		got, plan := find(t, s, "c", f)
		if want := scanOnly(f); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("filter %v with %s: got %d docs, collection scan %d", f, plan, len(got), len(want))
		}
	}
}

func TestCatalogPersistsAndRename(t *testing.T) {
	eng := storagetest.NewEngine(t)
	db, _ := eng.CreateDatabase("app")
	s, _ := Open(db, nil)
	insert(t, s, "a", bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 1}})
	s.CreateIndex(context.Background(), "a", IndexSpec{Key: bson.D{{Key: "x", Value: 1}}})
	if err := s.RenameCollection("a", "b", false); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Collection("a") != nil || s2.Collection("b") == nil || len(s2.Collection("b").Indexes) != 2 {
		t.Fatalf("catalog after reopen: a=%v b=%+v", s2.Collection("a"), s2.Collection("b"))
	}
	ids, plan := find(t, s2, "b", bson.D{{Key: "x", Value: 1}})
	if fmt.Sprint(ids) != "[1]" || plan.Index == nil {
		t.Fatalf("renamed collection query: %v %s", ids, plan)
	}
	if err := s2.DropCollection("b"); err != nil {
		t.Fatal(err)
	}
	if err := s2.DropCollection("b"); mongoerr.CodeOf(err) != mongoerr.NamespaceNotFound {
		t.Fatalf("second drop: %v", err)
	}
}

func idStr(doc bson.Raw) string {
	v := doc.Lookup("_id")
	if n, ok := v.AsInt64OK(); ok {
		return fmt.Sprint(n)
	}
	return v.String()
}

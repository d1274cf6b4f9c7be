package handlers_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func listIndexes(t *testing.T, e *dataEnv, c *mongo.Collection) string {
	t.Helper()
	cur, err := c.Indexes().List(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.Raw
	if err := cur.All(e.ctx, &docs); err != nil {
		t.Fatal(err)
	}
	return jsDocs(t, docs)
}

func TestIndexes(t *testing.T) {
	e := newDataEnv(t)
	c := e.db.Collection("ix")

	// CreateOne on a missing collection creates it.
	name, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "a", Value: 1}}})
	if err != nil || name != "a_1" {
		t.Fatalf("CreateOne = %q, %v", name, err)
	}
	if names := collNames(t, e.ctx, e.db); fmt.Sprint(names) != "[ix]" {
		t.Errorf("collections %v", names)
	}
	names, err := c.Indexes().CreateMany(e.ctx, []mongo.IndexModel{
		{Keys: bson.D{{Key: "b", Value: -1}, {Key: "c", Value: 1}}},
		{Keys: bson.D{{Key: "u", Value: 1}}, Options: options.Index().SetUnique(true).SetName("uniq")},
	})
	if err != nil || fmt.Sprint(names) != "[b_-1_c_1 uniq]" {
		t.Fatalf("CreateMany = %v, %v", names, err)
	}
	want := `[{"v":2,"key":{"_id":1},"name":"_id_"},{"v":2,"key":{"a":1},"name":"a_1"},{"v":2,"key":{"b":-1,"c":1},"name":"b_-1_c_1"},{"v":2,"key":{"u":1},"name":"uniq","unique":true}]`
	if got := listIndexes(t, e, c); got != want {
		t.Errorf("List:\n got %s\nwant %s", got, want)
	}
	specs, err := c.Indexes().ListSpecifications(e.ctx)
	if err != nil || len(specs) != 4 || specs[3].Unique == nil || !*specs[3].Unique {
		t.Errorf("ListSpecifications = %+v, %v", specs, err)
	}

	// createIndexes' reply, raw.
	var reply bson.Raw
	reply, err = e.db.RunCommand(e.ctx, bson.D{{Key: "createIndexes", Value: "ix"}, {Key: "indexes", Value: bson.A{
		bson.D{{Key: "key", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "name", Value: "a_1"}},
	}}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	if got := js(t, reply); got != `{"createdCollectionAutomatically":false,"numIndexesBefore":4,"numIndexesAfter":4,"note":"all indexes already exist","ok":1.0}` {
		t.Errorf("existing index reply %s", got)
	}
	reply, err = e.db.RunCommand(e.ctx, bson.D{{Key: "createIndexes", Value: "fresh"}, {Key: "indexes", Value: bson.A{
		bson.D{{Key: "key", Value: bson.D{{Key: "z", Value: 1}}}, {Key: "name", Value: "z_1"}},
	}}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	if got := js(t, reply); got != `{"createdCollectionAutomatically":true,"numIndexesBefore":1,"numIndexesAfter":2,"ok":1.0}` {
		t.Errorf("new collection reply %s", got)
	}

	// Unique index enforcement.
	if _, err := c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 1}, {Key: "u", Value: 5}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 2}, {Key: "u", Value: 5}})
	if !mongo.IsDuplicateKeyError(err) {
		t.Errorf("duplicate insert: %v", err)
	}

	// Drop by name, by key, all.
	if err := c.Indexes().DropOne(e.ctx, "uniq"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 2}, {Key: "u", Value: 5}}); err != nil {
		t.Errorf("insert after dropping the unique index: %v", err)
	}
	if err := c.Indexes().DropWithKey(e.ctx, bson.D{{Key: "b", Value: -1}, {Key: "c", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if got, want := listIndexes(t, e, c), `[{"v":2,"key":{"_id":1},"name":"_id_"},{"v":2,"key":{"a":1},"name":"a_1"}]`; got != want {
		t.Errorf("after drops:\n got %s\nwant %s", got, want)
	}
	if err := c.Indexes().DropAll(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := listIndexes(t, e, c), `[{"v":2,"key":{"_id":1},"name":"_id_"}]`; got != want {
		t.Errorf("after DropAll:\n got %s\nwant %s", got, want)
	}

	// A unique index over duplicate data fails and leaves nothing behind.
	_, err = c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "u", Value: 1}}, Options: options.Index().SetUnique(true)})
	if !mongo.IsDuplicateKeyError(err) {
		t.Errorf("unique index over duplicates: %v", err)
	}
	if got, want := listIndexes(t, e, c), `[{"v":2,"key":{"_id":1},"name":"_id_"}]`; got != want {
		t.Errorf("after failed build:\n got %s\nwant %s", got, want)
	}
}

func TestIndexErrors(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, bson.D{{Key: "_id", Value: 1}})
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "a", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	ci := func(spec bson.D) bson.D {
		return bson.D{{Key: "createIndexes", Value: c.Name()}, {Key: "indexes", Value: bson.A{spec}}}
	}
	for _, tc := range []struct {
		name string
		cmd  bson.D
		code int
	}{
		{"drop missing index", bson.D{{Key: "dropIndexes", Value: c.Name()}, {Key: "index", Value: "nope"}}, 27},
		{"drop _id index", bson.D{{Key: "dropIndexes", Value: c.Name()}, {Key: "index", Value: "_id_"}}, 72},
		{"drop missing key", bson.D{{Key: "dropIndexes", Value: c.Name()}, {Key: "index", Value: bson.D{{Key: "q", Value: 1}}}}, 27},
		{"drop on missing collection", bson.D{{Key: "dropIndexes", Value: "nothere"}, {Key: "index", Value: "*"}}, 26},
		{"list on missing collection", bson.D{{Key: "listIndexes", Value: "nothere"}}, 26},
		{"same name, other key", ci(bson.D{{Key: "key", Value: bson.D{{Key: "b", Value: 1}}}, {Key: "name", Value: "a_1"}}), 86},
		{"same key, other name", ci(bson.D{{Key: "key", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "name", Value: "other"}}), 85},
		{"empty key", ci(bson.D{{Key: "key", Value: bson.D{}}, {Key: "name", Value: "x"}}), 67},
		{"zero direction", ci(bson.D{{Key: "key", Value: bson.D{{Key: "a", Value: 0}}}, {Key: "name", Value: "x"}}), 67},
		{"TTL on two fields", ci(bson.D{{Key: "key", Value: bson.D{{Key: "d", Value: 1}, {Key: "e", Value: 1}}}, {Key: "name", Value: "x"}, {Key: "expireAfterSeconds", Value: 5}}), 67},
		{"2dsphere index", ci(bson.D{{Key: "key", Value: bson.D{{Key: "a", Value: "2dsphere"}}}, {Key: "name", Value: "x"}}), 238},
		{"unknown option", ci(bson.D{{Key: "key", Value: bson.D{{Key: "d", Value: 1}}}, {Key: "name", Value: "x"}, {Key: "frob", Value: 5}}), 197},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, e.db.RunCommand(e.ctx, tc.cmd).Err(), tc.code)
		})
	}
	// Dropping a list of names checks them all first.
	err := e.db.RunCommand(e.ctx, bson.D{{Key: "dropIndexes", Value: c.Name()}, {Key: "index", Value: bson.A{"a_1", "nope"}}}).Err()
	wantCode(t, err, 27)
	if got := listIndexes(t, e, c); got != `[{"v":2,"key":{"_id":1},"name":"_id_"},{"v":2,"key":{"a":1},"name":"a_1"}]` {
		t.Errorf("a failed list drop dropped something: %s", got)
	}
}

// TestIndexedQueriesAgree runs the same filters before and after creating
// secondary indexes (single-field, compound, multikey, unique) and checks
// that find, count, distinct, update and delete give the same answers, and
// that the planner does use an index for them.
func TestIndexedQueriesAgree(t *testing.T) {
	e := newDataEnv(t)
	plain := e.db.Collection("plain")
	indexed := e.db.Collection("indexed")
	rng := rand.New(rand.NewPCG(1, 2))
	values := []any{nil, 0, 1, 2, 2.5, -1, "a", "b", "", bson.A{1, 2}, bson.A{"a", 3}, bson.D{{Key: "x", Value: 1}}, true, int64(3)}
	var docs []any
	for i := range 400 {
		d := bson.D{{Key: "_id", Value: i}, {Key: "u", Value: i * 7}}
		for _, f := range []string{"a", "b"} {
			if rng.IntN(8) > 0 { // sometimes missing
				v := values[rng.IntN(len(values))]
				if _, isArray := v.(bson.A); isArray && f == "b" {
					v = "b" // a compound index cannot hold two arrays
				}
				d = append(d, bson.E{Key: f, Value: v})
			}
		}
		d = append(d, bson.E{Key: "n", Value: bson.D{{Key: "c", Value: rng.IntN(5)}}})
		docs = append(docs, d)
	}
	for _, c := range []*mongo.Collection{plain, indexed} {
		if _, err := c.InsertMany(e.ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := indexed.Indexes().CreateMany(e.ctx, []mongo.IndexModel{
		{Keys: bson.D{{Key: "a", Value: 1}}},
		{Keys: bson.D{{Key: "b", Value: -1}, {Key: "a", Value: 1}}},
		{Keys: bson.D{{Key: "n.c", Value: 1}}},
		{Keys: bson.D{{Key: "u", Value: 1}}, Options: options.Index().SetUnique(true)},
	}); err != nil {
		t.Fatal(err)
	}
	filters := []bson.D{
		{{Key: "a", Value: 1}},
		{{Key: "a", Value: 2}},
		{{Key: "a", Value: "a"}},
		{{Key: "a", Value: nil}},
		{{Key: "a", Value: bson.A{1, 2}}},
		{{Key: "a", Value: bson.D{{Key: "$gt", Value: 0}}}},
		{{Key: "a", Value: bson.D{{Key: "$gte", Value: 1}, {Key: "$lt", Value: 3}}}},
		{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{0, "b", nil}}}}},
		{{Key: "a", Value: bson.D{{Key: "$exists", Value: false}}}},
		{{Key: "a", Value: bson.D{{Key: "$lte", Value: "z"}}}},
		{{Key: "b", Value: 2}, {Key: "a", Value: bson.D{{Key: "$gt", Value: 0}}}},
		{{Key: "b", Value: bson.D{{Key: "$in", Value: bson.A{1, 2}}}}, {Key: "a", Value: 1}},
		{{Key: "n.c", Value: 3}},
		{{Key: "n.c", Value: bson.D{{Key: "$lt", Value: 2}}}},
		{{Key: "u", Value: 70}},
		{{Key: "u", Value: bson.D{{Key: "$gt", Value: 2000}}}},
		{{Key: "$or", Value: bson.A{bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "b", Value: 1}}}}},
		{{Key: "a", Value: bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "$gt", Value: 1}}}}}},
	}
	for i, f := range filters {
		t.Run(fmt.Sprintf("%d_%s", i, js(t, f)), func(t *testing.T) {
			if p, i := query(t, e.ctx, plain, f, true), query(t, e.ctx, indexed, f, true); p != i {
				t.Errorf("find differs:\n plain   %s\n indexed %s", p, i)
			}
			np, err1 := plain.CountDocuments(e.ctx, f)
			ni, err2 := indexed.CountDocuments(e.ctx, f)
			if err1 != nil || err2 != nil || np != ni {
				t.Errorf("count: plain %d (%v), indexed %d (%v)", np, err1, ni, err2)
			}
			dp, err1 := plain.Distinct(e.ctx, "_id", f).Raw()
			di, err2 := indexed.Distinct(e.ctx, "_id", f).Raw()
			if err1 != nil || err2 != nil || arrJS(t, dp) != arrJS(t, di) {
				t.Errorf("distinct differs: %v %v", err1, err2)
			}
		})
	}
	// The planner uses the indexes (explain).
	for _, tc := range []struct {
		filter bson.D
		index  string
	}{
		{bson.D{{Key: "a", Value: 1}}, "a_1"},
		{bson.D{{Key: "b", Value: 2}, {Key: "a", Value: 1}}, "b_-1_a_1"},
		{bson.D{{Key: "n.c", Value: 2}}, "n.c_1"},
		{bson.D{{Key: "u", Value: 7}}, "u_1"},
	} {
		var out struct {
			QueryPlanner struct {
				WinningPlan struct {
					Stage      string
					InputStage struct {
						Stage     string
						IndexName string
					}
				}
			}
		}
		err := e.db.RunCommand(e.ctx, bson.D{{Key: "explain", Value: bson.D{{Key: "find", Value: "indexed"}, {Key: "filter", Value: tc.filter}}}}).Decode(&out)
		if err != nil {
			t.Fatal(err)
		}
		if wp := out.QueryPlanner.WinningPlan; wp.InputStage.Stage != "IXSCAN" || wp.InputStage.IndexName != tc.index {
			t.Errorf("explain %s: %+v, want IXSCAN %s", js(t, tc.filter), wp, tc.index)
		}
	}

	// Writes through the indexes agree too.
	for _, c := range []*mongo.Collection{plain, indexed} {
		if _, err := c.UpdateMany(e.ctx, bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 1}}}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: "moved"}}}, {Key: "$inc", Value: bson.D{{Key: "n.c", Value: 10}}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeleteMany(e.ctx, bson.D{{Key: "b", Value: "a"}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range append(filters, bson.D{{Key: "a", Value: "moved"}}, bson.D{{Key: "n.c", Value: bson.D{{Key: "$gte", Value: 10}}}}) {
		if p, i := query(t, e.ctx, plain, f, true), query(t, e.ctx, indexed, f, true); p != i {
			t.Errorf("after writes, find %s differs:\n plain   %s\n indexed %s", js(t, f), p, i)
		}
	}
}

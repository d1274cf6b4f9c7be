package handlers_test

import (
	"context"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// jd parses relaxed extended JSON (small integers stay int32).
func jd(t testing.TB, s string) bson.Raw {
	t.Helper()
	var r bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(s), false, &r); err != nil {
		t.Fatalf("bad JSON %s: %v", s, err)
	}
	return r
}

// filtersOf parses a JSON array of array filters.
func filtersOf(t testing.TB, s string) []any {
	t.Helper()
	vals, err := jd(t, `{"v": `+s+`}`).Lookup("v").Array().Values()
	if err != nil {
		t.Fatal(err)
	}
	var out []any
	for _, v := range vals {
		out = append(out, v.Document())
	}
	return out
}

// TestArrayUpdates drives positional ($), all-positional ($[]) and
// filtered ($[<id>]) updates through the wire protocol and the real
// handlers: update (one and many), findAndModify and bulk writes.
func TestArrayUpdates(t *testing.T) {
	e := newDataEnv(t)
	seed := []string{
		`{"_id": 1, "items": [{"sku": "a", "q": 1}, {"sku": "b", "q": 5}], "grades": [80, 95, 102]}`,
		`{"_id": 2, "items": [{"sku": "b", "q": 2}, {"sku": "c", "q": 7}], "grades": [101, 60]}`,
	}
	for _, tc := range []struct {
		name              string
		run               func(ctx context.Context, c *mongo.Collection) (matched, modified int64, err error)
		matched, modified int64
		docs              string // the collection afterwards
	}{
		{"updateOne positional", func(ctx context.Context, c *mongo.Collection) (int64, int64, error) {
			r, err := c.UpdateOne(ctx, jd(t, `{"_id": 1, "items.sku": "b"}`), jd(t, `{"$inc": {"items.$.q": 10}}`))
			return counts(r, err)
		}, 1, 1,
			`[{"_id":1,"items":[{"sku":"a","q":1},{"sku":"b","q":15}],"grades":[80,95,102]},{"_id":2,"items":[{"sku":"b","q":2},{"sku":"c","q":7}],"grades":[101,60]}]`},
		{"updateMany positional: each document its own position", func(ctx context.Context, c *mongo.Collection) (int64, int64, error) {
			r, err := c.UpdateMany(ctx, jd(t, `{"items.sku": "b"}`), jd(t, `{"$set": {"items.$.hit": true}}`))
			return counts(r, err)
		}, 2, 2,
			`[{"_id":1,"items":[{"sku":"a","q":1},{"sku":"b","q":5,"hit":true}],"grades":[80,95,102]},{"_id":2,"items":[{"sku":"b","q":2,"hit":true},{"sku":"c","q":7}],"grades":[101,60]}]`},
		{"updateOne positional on a scalar array", func(ctx context.Context, c *mongo.Collection) (int64, int64, error) {
			r, err := c.UpdateOne(ctx, jd(t, `{"grades": {"$gt": 90}}`), jd(t, `{"$set": {"grades.$": 90}}`))
			return counts(r, err)
		}, 1, 1,
			`[{"_id":1,"items":[{"sku":"a","q":1},{"sku":"b","q":5}],"grades":[80,90,102]},{"_id":2,"items":[{"sku":"b","q":2},{"sku":"c","q":7}],"grades":[101,60]}]`},
		{"updateMany all positional", func(ctx context.Context, c *mongo.Collection) (int64, int64, error) {
			r, err := c.UpdateMany(ctx, bson.D{}, jd(t, `{"$inc": {"grades.$[]": 1}}`))
			return counts(r, err)
		}, 2, 2,
			`[{"_id":1,"items":[{"sku":"a","q":1},{"sku":"b","q":5}],"grades":[81,96,103]},{"_id":2,"items":[{"sku":"b","q":2},{"sku":"c","q":7}],"grades":[102,61]}]`},
		{"updateMany arrayFilters", func(ctx context.Context, c *mongo.Collection) (int64, int64, error) {
			r, err := c.UpdateMany(ctx, bson.D{}, jd(t, `{"$set": {"grades.$[g]": 100}}`),
				options.UpdateMany().SetArrayFilters(filtersOf(t, `[{"g": {"$gte": 100}}]`)))
			return counts(r, err)
		}, 2, 2,
			`[{"_id":1,"items":[{"sku":"a","q":1},{"sku":"b","q":5}],"grades":[80,95,100]},{"_id":2,"items":[{"sku":"b","q":2},{"sku":"c","q":7}],"grades":[100,60]}]`},
		{"updateOne arrayFilters on document elements", func(ctx context.Context, c *mongo.Collection) (int64, int64, error) {
			r, err := c.UpdateOne(ctx, jd(t, `{"_id": 2}`), jd(t, `{"$mul": {"items.$[it].q": 3}}`),
				options.UpdateOne().SetArrayFilters(filtersOf(t, `[{"it.q": {"$lt": 5}}]`)))
			return counts(r, err)
		}, 1, 1,
			`[{"_id":1,"items":[{"sku":"a","q":1},{"sku":"b","q":5}],"grades":[80,95,102]},{"_id":2,"items":[{"sku":"b","q":6},{"sku":"c","q":7}],"grades":[101,60]}]`},
		{"arrayFilters selecting nothing modify nothing", func(ctx context.Context, c *mongo.Collection) (int64, int64, error) {
			r, err := c.UpdateMany(ctx, bson.D{}, jd(t, `{"$set": {"grades.$[g]": 0}}`),
				options.UpdateMany().SetArrayFilters(filtersOf(t, `[{"g": 1000}]`)))
			return counts(r, err)
		}, 2, 0,
			`[{"_id":1,"items":[{"sku":"a","q":1},{"sku":"b","q":5}],"grades":[80,95,102]},{"_id":2,"items":[{"sku":"b","q":2},{"sku":"c","q":7}],"grades":[101,60]}]`},
		{"bulk write with arrayFilters and positional", func(ctx context.Context, c *mongo.Collection) (int64, int64, error) {
			r, err := c.BulkWrite(ctx, []mongo.WriteModel{
				mongo.NewUpdateManyModel().SetFilter(bson.D{}).SetUpdate(jd(t, `{"$pull": {"items.$[x].tags": 1}, "$set": {"items.$[x].seen": 1}}`)).
					SetArrayFilters(filtersOf(t, `[{"x.sku": "c"}]`)),
				mongo.NewUpdateOneModel().SetFilter(jd(t, `{"items.sku": "a"}`)).SetUpdate(jd(t, `{"$unset": {"items.$.q": ""}}`)),
			})
			if err != nil {
				return 0, 0, err
			}
			return r.MatchedCount, r.ModifiedCount, nil
		}, 3, 2,
			`[{"_id":1,"items":[{"sku":"a"},{"sku":"b","q":5}],"grades":[80,95,102]},{"_id":2,"items":[{"sku":"b","q":2},{"sku":"c","q":7,"seen":1}],"grades":[101,60]}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.fresh(t, seedDocs(t, seed)...)
			matched, modified, err := tc.run(e.ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if matched != tc.matched || modified != tc.modified {
				t.Errorf("matched %d modified %d, want %d %d", matched, modified, tc.matched, tc.modified)
			}
			if got := all(t, e.ctx, c); got != tc.docs {
				t.Errorf("collection\n got  %s\n want %s", got, tc.docs)
			}
		})
	}
}

func seedDocs(t testing.TB, docs []string) []any {
	out := make([]any, len(docs))
	for i, d := range docs {
		out[i] = jd(t, d)
	}
	return out
}

func counts(r *mongo.UpdateResult, err error) (int64, int64, error) {
	if err != nil {
		return 0, 0, err
	}
	return r.MatchedCount, r.ModifiedCount, nil
}

// TestArrayUpdatesFindAndModify: findAndModify resolves "$" from its query
// and applies arrayFilters, returning the new document when asked.
func TestArrayUpdatesFindAndModify(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, jd(t, `{"_id": 1, "items": [{"sku": "a", "q": 1}, {"sku": "b", "q": 5}]}`))
	var got bson.Raw
	err := c.FindOneAndUpdate(e.ctx, jd(t, `{"items.sku": "b"}`), jd(t, `{"$set": {"items.$.q": 6}}`),
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&got)
	if err != nil {
		t.Fatal(err)
	}
	if s := js(t, got); s != `{"_id":1,"items":[{"sku":"a","q":1},{"sku":"b","q":6}]}` {
		t.Errorf("positional findAndModify returned %s", s)
	}
	err = c.FindOneAndUpdate(e.ctx, bson.D{}, jd(t, `{"$inc": {"items.$[i].q": 100}}`),
		options.FindOneAndUpdate().SetArrayFilters(filtersOf(t, `[{"i.sku": "a"}]`)).SetReturnDocument(options.After)).Decode(&got)
	if err != nil {
		t.Fatal(err)
	}
	if s := js(t, got); s != `{"_id":1,"items":[{"sku":"a","q":101},{"sku":"b","q":6}]}` {
		t.Errorf("arrayFilters findAndModify returned %s", s)
	}
	// Errors leave the document alone.
	before := all(t, e.ctx, c)
	for _, tc := range []struct {
		name string
		run  func() error
		code int
	}{
		{"unused filter", func() error {
			return c.FindOneAndUpdate(e.ctx, bson.D{}, jd(t, `{"$set": {"x": 1}}`),
				options.FindOneAndUpdate().SetArrayFilters(filtersOf(t, `[{"i": 1}]`))).Err()
		}, 9},
		{"positional without an array match", func() error {
			return c.FindOneAndUpdate(e.ctx, jd(t, `{"_id": 1}`), jd(t, `{"$set": {"items.$.q": 0}}`)).Err()
		}, 2},
		{"upsert with positional", func() error {
			return c.FindOneAndUpdate(e.ctx, jd(t, `{"_id": 5, "items.sku": "z"}`), jd(t, `{"$set": {"items.$.q": 0}}`),
				options.FindOneAndUpdate().SetUpsert(true)).Err()
		}, 2},
		{"arrayFilters not an array", func() error {
			return e.db.RunCommand(e.ctx, bson.D{{Key: "findAndModify", Value: c.Name()}, {Key: "query", Value: bson.D{}},
				{Key: "update", Value: jd(t, `{"$set": {"x": 1}}`)}, {Key: "arrayFilters", Value: jd(t, `{"i": 1}`)}}).Err()
		}, 14},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.run(), tc.code)
			if after := all(t, e.ctx, c); after != before {
				t.Errorf("a failed findAndModify changed the collection:\n before %s\n after  %s", before, after)
			}
		})
	}
}

// TestArrayUpdateErrors: MongoDB's errors for misused array operators,
// with the collection unchanged.
func TestArrayUpdateErrors(t *testing.T) {
	e := newDataEnv(t)
	for _, tc := range []struct {
		name, filter, update, filters string
		upsert                        bool
		code                          int
	}{
		{"positional without an array match", `{"_id": 1}`, `{"$set": {"items.$.q": 0}}`, ``, false, 2},
		{"two positionals", `{"items.sku": "a"}`, `{"$set": {"items.$.q.$": 0}}`, ``, false, 2},
		{"positional upsert without a match", `{"_id": 9, "items.sku": "z"}`, `{"$set": {"items.$.q": 0}}`, ``, true, 2},
		{"identifier without a filter", `{}`, `{"$set": {"items.$[x].q": 0}}`, ``, false, 2},
		{"filter not used", `{}`, `{"$set": {"items.$[x].q": 0}}`, `[{"x.q": 1}, {"y": 2}]`, false, 9},
		{"two identifiers in one filter", `{}`, `{"$set": {"items.$[x].q": 0}}`, `[{"x.q": 1, "y": 2}]`, false, 9},
		{"identifier not lowercase", `{}`, `{"$set": {"items.$[X].q": 0}}`, `[{"X.q": 1}]`, false, 2},
		{"all positional on a non-array", `{}`, `{"$set": {"items.0.sku.$[]": 0}}`, ``, false, 2},
		{"all positional on a missing path", `{}`, `{"$set": {"nothere.$[]": 0}}`, ``, false, 2},
		{"two identifiers reach one element", `{}`, `{"$set": {"items.$[x].q": 0, "items.$[y].q": 1}}`, `[{"x.sku": "a"}, {"y.q": 1}]`, false, 40},
		{"array filters with $expr", `{}`, `{"$set": {"items.$[x].q": 0}}`, `[{"$expr": {"$eq": ["$x", 1]}}]`, false, 224},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.fresh(t, jd(t, `{"_id": 1, "items": [{"sku": "a", "q": 1}, {"sku": "b", "q": 5}]}`))
			before := all(t, e.ctx, c)
			opts := options.UpdateOne().SetUpsert(tc.upsert)
			if tc.filters != "" {
				opts.SetArrayFilters(filtersOf(t, tc.filters))
			}
			_, err := c.UpdateOne(e.ctx, jd(t, tc.filter), jd(t, tc.update), opts)
			wantCode(t, err, tc.code)
			if after := all(t, e.ctx, c); after != before {
				t.Errorf("a failed update changed the collection:\n before %s\n after  %s", before, after)
			}
		})
	}
	// The statement's shape is checked before anything runs.
	c := e.fresh(t, jd(t, `{"_id": 1}`))
	err := e.db.RunCommand(e.ctx, bson.D{{Key: "update", Value: c.Name()}, {Key: "updates", Value: bson.A{
		bson.D{{Key: "q", Value: bson.D{}}, {Key: "u", Value: jd(t, `{"$set": {"a": 1}}`)}, {Key: "arrayFilters", Value: bson.A{1}}},
	}}}).Err()
	wantCode(t, err, 14)
}

// TestHostilePathsOverTheWire: a 2 MB request with a million-component
// path is refused with MongoDB's code by every command that parses paths.
func TestHostilePathsOverTheWire(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, jd(t, `{"_id": 1, "a": 1}`))
	path := strings.TrimSuffix(strings.Repeat("a.", 1<<20), ".")
	one := bson.D{{Key: path, Value: 1}}
	for _, tc := range []struct {
		name string
		run  func() error
		code int
	}{
		{"find filter", func() error { _, err := c.Find(e.ctx, one); return err }, 5729100},
		{"find projection", func() error {
			_, err := c.Find(e.ctx, bson.D{}, options.Find().SetProjection(one))
			return err
		}, 15},
		{"find sort", func() error { _, err := c.Find(e.ctx, bson.D{}, options.Find().SetSort(one)); return err }, 15},
		{"update path", func() error {
			_, err := c.UpdateOne(e.ctx, bson.D{}, bson.D{{Key: "$set", Value: one}})
			return err
		}, 15},
		{"distinct key", func() error { return c.Distinct(e.ctx, path, bson.D{}).Err() }, 15},
		{"aggregate field path", func() error {
			_, err := c.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$" + path}}}}})
			return err
		}, 15},
	} {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.run(), tc.code) })
	}
	if got := all(t, e.ctx, c); got != `[{"_id":1,"a":1}]` {
		t.Errorf("collection changed: %s", got)
	}
}

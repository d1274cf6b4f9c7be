package handlers_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestUpdate(t *testing.T) {
	e := newDataEnv(t)
	seed := []any{
		bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}, {Key: "tags", Value: bson.A{"x"}}},
		bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: 2}, {Key: "tags", Value: bson.A{}}},
		bson.D{{Key: "_id", Value: 3}, {Key: "a", Value: 2}},
	}
	type result struct {
		matched, modified, upserted int64
		upsertedID                  any
	}
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context, c *mongo.Collection) (*mongo.UpdateResult, error)
		want result
		docs string // the collection afterwards
	}{
		{
			name: "UpdateOne $set",
			run: func(ctx context.Context, c *mongo.Collection) (*mongo.UpdateResult, error) {
				return c.UpdateOne(ctx, bson.D{{Key: "a", Value: 2}}, bson.D{{Key: "$set", Value: bson.D{{Key: "b", Value: "x"}}}})
			},
			want: result{matched: 1, modified: 1},
			docs: `[{"_id":1,"a":1,"tags":["x"]},{"_id":2,"a":2,"tags":[],"b":"x"},{"_id":3,"a":2}]`,
		},
		{
			name: "UpdateMany $inc",
			run: func(ctx context.Context, c *mongo.Collection) (*mongo.UpdateResult, error) {
				return c.UpdateMany(ctx, bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 2}}}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "a", Value: 10}}}})
			},
			want: result{matched: 2, modified: 2},
			docs: `[{"_id":1,"a":1,"tags":["x"]},{"_id":2,"a":12,"tags":[]},{"_id":3,"a":12}]`,
		},
		{
			name: "UpdateMany no match",
			run: func(ctx context.Context, c *mongo.Collection) (*mongo.UpdateResult, error) {
				return c.UpdateMany(ctx, bson.D{{Key: "a", Value: 99}}, bson.D{{Key: "$set", Value: bson.D{{Key: "b", Value: 1}}}})
			},
			want: result{},
			docs: `[{"_id":1,"a":1,"tags":["x"]},{"_id":2,"a":2,"tags":[]},{"_id":3,"a":2}]`,
		},
		{
			name: "no-op update matches but does not modify",
			run: func(ctx context.Context, c *mongo.Collection) (*mongo.UpdateResult, error) {
				return c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}})
			},
			want: result{matched: 1, modified: 0},
			docs: `[{"_id":1,"a":1,"tags":["x"]},{"_id":2,"a":2,"tags":[]},{"_id":3,"a":2}]`,
		},
		{
			name: "$push $each, $addToSet, $unset, $rename",
			run: func(ctx context.Context, c *mongo.Collection) (*mongo.UpdateResult, error) {
				return c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{
					{Key: "$push", Value: bson.D{{Key: "tags", Value: bson.D{{Key: "$each", Value: bson.A{"y", "z"}}}}}},
					{Key: "$addToSet", Value: bson.D{{Key: "set", Value: "s"}}},
					{Key: "$rename", Value: bson.D{{Key: "a", Value: "aa"}}},
				})
			},
			want: result{matched: 1, modified: 1},
			docs: `[{"_id":1,"tags":["x","y","z"],"aa":1,"set":["s"]},{"_id":2,"a":2,"tags":[]},{"_id":3,"a":2}]`,
		},
		{
			name: "$unset on many",
			run: func(ctx context.Context, c *mongo.Collection) (*mongo.UpdateResult, error) {
				return c.UpdateMany(ctx, bson.D{}, bson.D{{Key: "$unset", Value: bson.D{{Key: "tags", Value: ""}}}})
			},
			want: result{matched: 3, modified: 2},
			docs: `[{"_id":1,"a":1},{"_id":2,"a":2},{"_id":3,"a":2}]`,
		},
		{
			name: "UpdateOne upsert inserts from the filter's equalities",
			run: func(ctx context.Context, c *mongo.Collection) (*mongo.UpdateResult, error) {
				return c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 10}, {Key: "k", Value: "v"}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "b", Value: 2}}}, {Key: "$setOnInsert", Value: bson.D{{Key: "new", Value: true}}}},
					options.UpdateOne().SetUpsert(true))
			},
			want: result{upserted: 1, upsertedID: int32(10)},
			docs: `[{"_id":1,"a":1,"tags":["x"]},{"_id":2,"a":2,"tags":[]},{"_id":3,"a":2},{"_id":10,"k":"v","b":2,"new":true}]`,
		},
		{
			name: "upsert that matches updates, $setOnInsert ignored",
			run: func(ctx context.Context, c *mongo.Collection) (*mongo.UpdateResult, error) {
				return c.UpdateMany(ctx, bson.D{{Key: "a", Value: 2}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "b", Value: 2}}}, {Key: "$setOnInsert", Value: bson.D{{Key: "new", Value: true}}}},
					options.UpdateMany().SetUpsert(true))
			},
			want: result{matched: 2, modified: 2},
			docs: `[{"_id":1,"a":1,"tags":["x"]},{"_id":2,"a":2,"tags":[],"b":2},{"_id":3,"a":2,"b":2}]`,
		},
		{
			name: "ReplaceOne keeps _id",
			run: func(ctx context.Context, c *mongo.Collection) (*mongo.UpdateResult, error) {
				return c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "z", Value: 1}})
			},
			want: result{matched: 1, modified: 1},
			docs: `[{"_id":1,"a":1,"tags":["x"]},{"_id":2,"z":1},{"_id":3,"a":2}]`,
		},
		{
			name: "ReplaceOne upsert takes _id from the filter",
			run: func(ctx context.Context, c *mongo.Collection) (*mongo.UpdateResult, error) {
				return c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 7}, {Key: "ignored", Value: 1}}, bson.D{{Key: "z", Value: 1}}, options.Replace().SetUpsert(true))
			},
			want: result{upserted: 1, upsertedID: int32(7)},
			docs: `[{"_id":1,"a":1,"tags":["x"]},{"_id":2,"a":2,"tags":[]},{"_id":3,"a":2},{"_id":7,"z":1}]`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.fresh(t, seed...)
			res, err := tc.run(e.ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			got := result{matched: res.MatchedCount, modified: res.ModifiedCount, upserted: res.UpsertedCount, upsertedID: res.UpsertedID}
			if js(t, got.upsertedID) != js(t, tc.want.upsertedID) || got.matched != tc.want.matched ||
				got.modified != tc.want.modified || got.upserted != tc.want.upserted {
				t.Errorf("result = %+v, want %+v", got, tc.want)
			}
			if docs := all(t, e.ctx, c); docs != tc.docs {
				t.Errorf("documents:\n got %s\nwant %s", docs, tc.docs)
			}
		})
	}
}

func TestUpdateUpsertGeneratesObjectID(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t)
	res, err := c.UpdateOne(e.ctx, bson.D{{Key: "name", Value: "n"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "hits", Value: 1}}}}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		t.Fatal(err)
	}
	id, ok := res.UpsertedID.(bson.ObjectID)
	if !ok || res.UpsertedCount != 1 {
		t.Fatalf("UpsertedID = %#v (count %d), want an ObjectID", res.UpsertedID, res.UpsertedCount)
	}
	var got bson.M
	if err := c.FindOne(e.ctx, bson.D{{Key: "_id", Value: id}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got["name"] != "n" || got["hits"] != int32(1) {
		t.Errorf("upserted %v", got)
	}
}

func TestUpdateErrors(t *testing.T) {
	e := newDataEnv(t)
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context, c *mongo.Collection) error
		code int
	}{
		{"$set _id", func(ctx context.Context, c *mongo.Collection) error {
			_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "_id", Value: 5}}}})
			return err
		}, 66},
		{"replacement changes _id", func(ctx context.Context, c *mongo.Collection) error {
			_, err := c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 5}, {Key: "a", Value: 1}})
			return err
		}, 66},
		{"unknown operator", func(ctx context.Context, c *mongo.Collection) error {
			_, err := c.UpdateOne(ctx, bson.D{}, bson.D{{Key: "$frob", Value: bson.D{{Key: "a", Value: 1}}}})
			return err
		}, 9},
		{"pipeline update with a $match stage", func(ctx context.Context, c *mongo.Collection) error {
			_, err := c.UpdateOne(ctx, bson.D{}, mongo.Pipeline{{{Key: "$match", Value: bson.D{}}}})
			return err
		}, 72},
		{"arrayFilters on a missing array", func(ctx context.Context, c *mongo.Collection) error {
			_, err := c.UpdateOne(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "arr.$[x]", Value: 1}}}},
				options.UpdateOne().SetArrayFilters([]any{bson.D{{Key: "x", Value: 1}}}))
			return err
		}, 2},
		{"$inc on a string", func(ctx context.Context, c *mongo.Collection) error {
			_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "s", Value: 1}}}})
			return err
		}, 14},
		{"unique index", func(ctx context.Context, c *mongo.Collection) error {
			if _, err := c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "u", Value: 1}}, Options: options.Index().SetUnique(true)}); err != nil {
				return err
			}
			_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "$set", Value: bson.D{{Key: "u", Value: "one"}}}})
			if !mongo.IsDuplicateKeyError(err) {
				t.Errorf("IsDuplicateKeyError(%v) = false", err)
			}
			return err
		}, 11000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.fresh(t,
				bson.D{{Key: "_id", Value: 1}, {Key: "s", Value: "str"}, {Key: "u", Value: "one"}},
				bson.D{{Key: "_id", Value: 2}, {Key: "u", Value: "two"}})
			before := all(t, e.ctx, c)
			wantCode(t, tc.run(e.ctx, c), tc.code)
			if after := all(t, e.ctx, c); after != before {
				t.Errorf("a failed update changed the collection:\n before %s\n after  %s", before, after)
			}
		})
	}
}

func TestUpdateNonexistentCollection(t *testing.T) {
	e := newDataEnv(t)
	c := e.db.Collection("nothere")
	res, err := c.UpdateMany(e.ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.MatchedCount != 0 || res.ModifiedCount != 0 {
		t.Errorf("result %+v", res)
	}
	if names := collNames(t, e.ctx, e.db); len(names) != 0 {
		t.Errorf("update without upsert created %v", names)
	}
	// In a database that does not exist either.
	if _, err := e.client.Database("nodb").Collection("c").UpdateOne(e.ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}); err != nil {
		t.Fatal(err)
	}
	// An upsert creates it.
	if _, err := c.UpdateOne(e.ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}, options.UpdateOne().SetUpsert(true)); err != nil {
		t.Fatal(err)
	}
	if got := all(t, e.ctx, c); got != `[{"_id":1,"a":1}]` {
		t.Errorf("after upsert: %s", got)
	}
}

// TestUpdateBulkStatements checks that statements of one update command
// run in order and each sees the ones before it, and how ordered and
// unordered batches continue after an error.
func TestUpdateBulkStatements(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}}, bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: 1}})
	models := []mongo.WriteModel{
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: 1}}).SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 2}}}}),
		mongo.NewUpdateManyModel().SetFilter(bson.D{{Key: "a", Value: 2}}).SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "seen", Value: true}}}}),
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: 3}}).SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 3}}}}).SetUpsert(true),
	}
	res, err := c.BulkWrite(e.ctx, models)
	if err != nil {
		t.Fatal(err)
	}
	if res.MatchedCount != 2 || res.ModifiedCount != 2 || res.UpsertedCount != 1 || js(t, res.UpsertedIDs[2]) != "3" {
		t.Errorf("bulk result %+v", res)
	}
	if got, want := all(t, e.ctx, c), `[{"_id":1,"a":2,"seen":true},{"_id":2,"a":1},{"_id":3,"a":3}]`; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}

	bad := []mongo.WriteModel{
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: 1}}).SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "b", Value: 1}}}}),
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: 1}}).SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "_id", Value: 9}}}}),
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: 2}}).SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "b", Value: 1}}}}),
	}
	_, err = c.BulkWrite(e.ctx, bad) // ordered: stops at the error
	var bwe mongo.BulkWriteException
	if !asBulk(err, &bwe) || len(bwe.WriteErrors) != 1 || bwe.WriteErrors[0].Index != 1 || bwe.WriteErrors[0].Code != 66 {
		t.Fatalf("ordered bulk error = %v", err)
	}
	if got, want := all(t, e.ctx, c), `[{"_id":1,"a":2,"seen":true,"b":1},{"_id":2,"a":1},{"_id":3,"a":3}]`; got != want {
		t.Errorf("ordered: got %s\nwant %s", got, want)
	}
	_, err = c.BulkWrite(e.ctx, bad, options.BulkWrite().SetOrdered(false))
	if !asBulk(err, &bwe) || len(bwe.WriteErrors) != 1 || bwe.WriteErrors[0].Index != 1 {
		t.Fatalf("unordered bulk error = %v", err)
	}
	if got, want := all(t, e.ctx, c), `[{"_id":1,"a":2,"seen":true,"b":1},{"_id":2,"a":1,"b":1},{"_id":3,"a":3}]`; got != want {
		t.Errorf("unordered: got %s\nwant %s", got, want)
	}
}

func asBulk(err error, target *mongo.BulkWriteException) bool {
	if e, ok := err.(mongo.BulkWriteException); ok {
		*target = e
		return true
	}
	return false
}

// TestUpdateHalloween: a multi-update that moves documents forward in the
// very index its query scans must update each document exactly once (and
// terminate).
func TestUpdateHalloween(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t)
	const n = 300
	docs := make([]any, n)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}, {Key: "n", Value: i}}
	}
	if _, err := c.InsertMany(e.ctx, docs); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "n", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	res, err := c.UpdateMany(ctx, bson.D{{Key: "n", Value: bson.D{{Key: "$gte", Value: 0}}}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1000}}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.MatchedCount != n || res.ModifiedCount != n {
		t.Errorf("matched %d modified %d, want %d", res.MatchedCount, res.ModifiedCount, n)
	}
	cur, err := c.Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var got []struct {
		ID int `bson:"_id"`
		N  int `bson:"n"`
	}
	if err := cur.All(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d documents", len(got))
	}
	for _, d := range got {
		if d.N != d.ID+1000 {
			t.Fatalf("document %d has n=%d, want %d", d.ID, d.N, d.ID+1000)
		}
	}
	// The index still answers: nothing is left below 1000.
	if cnt, err := c.CountDocuments(ctx, bson.D{{Key: "n", Value: bson.D{{Key: "$lt", Value: 1000}}}}); err != nil || cnt != 0 {
		t.Errorf("count below 1000 = %d, %v", cnt, err)
	}
	if cnt, err := c.CountDocuments(ctx, bson.D{{Key: "n", Value: bson.D{{Key: "$gte", Value: 1000}}}}); err != nil || cnt != n {
		t.Errorf("count from 1000 = %d, %v", cnt, err)
	}
}

// TestUpdateConcurrentIncrements: read-modify-write updates from many
// clients at once lose nothing ($inc and findAndModify are atomic per
// document).
func TestUpdateConcurrentIncrements(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 0}, {Key: "m", Value: 0}})
	const workers, each = 8, 25
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for range each {
				if _, err := c.UpdateOne(e.ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}); err != nil {
					errs <- err
					return
				}
				if err := c.FindOneAndUpdate(e.ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "m", Value: 1}}}}).Err(); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got, want := all(t, e.ctx, c), `[{"_id":1,"n":200,"m":200}]`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

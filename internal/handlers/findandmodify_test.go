package handlers_test

import (
	"context"
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestFindAndModify(t *testing.T) {
	e := newDataEnv(t)
	seed := []any{
		bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}, {Key: "n", Value: 10}},
		bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: 2}, {Key: "n", Value: 30}},
		bson.D{{Key: "_id", Value: 3}, {Key: "a", Value: 2}, {Key: "n", Value: 20}},
	}
	inc := bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}
	for _, tc := range []struct {
		name  string
		run   func(ctx context.Context, c *mongo.Collection) *mongo.SingleResult
		value string // the returned document, or "none" for ErrNoDocuments
		docs  string
	}{
		{"update returns before", func(ctx context.Context, c *mongo.Collection) *mongo.SingleResult {
			return c.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 1}}, inc)
		}, `{"_id":1,"a":1,"n":10}`, `[{"_id":1,"a":1,"n":11},{"_id":2,"a":2,"n":30},{"_id":3,"a":2,"n":20}]`},
		{"update returns after", func(ctx context.Context, c *mongo.Collection) *mongo.SingleResult {
			return c.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 1}}, inc, options.FindOneAndUpdate().SetReturnDocument(options.After))
		}, `{"_id":1,"a":1,"n":11}`, `[{"_id":1,"a":1,"n":11},{"_id":2,"a":2,"n":30},{"_id":3,"a":2,"n":20}]`},
		{"sort picks the first in order", func(ctx context.Context, c *mongo.Collection) *mongo.SingleResult {
			return c.FindOneAndUpdate(ctx, bson.D{{Key: "a", Value: 2}}, inc,
				options.FindOneAndUpdate().SetSort(bson.D{{Key: "n", Value: 1}}).SetReturnDocument(options.After))
		}, `{"_id":3,"a":2,"n":21}`, `[{"_id":1,"a":1,"n":10},{"_id":2,"a":2,"n":30},{"_id":3,"a":2,"n":21}]`},
		{"descending sort", func(ctx context.Context, c *mongo.Collection) *mongo.SingleResult {
			return c.FindOneAndUpdate(ctx, bson.D{}, inc, options.FindOneAndUpdate().SetSort(bson.D{{Key: "n", Value: -1}}))
		}, `{"_id":2,"a":2,"n":30}`, `[{"_id":1,"a":1,"n":10},{"_id":2,"a":2,"n":31},{"_id":3,"a":2,"n":20}]`},
		{"projection", func(ctx context.Context, c *mongo.Collection) *mongo.SingleResult {
			return c.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 2}}, inc,
				options.FindOneAndUpdate().SetProjection(bson.D{{Key: "n", Value: 1}, {Key: "_id", Value: 0}}).SetReturnDocument(options.After))
		}, `{"n":31}`, `[{"_id":1,"a":1,"n":10},{"_id":2,"a":2,"n":31},{"_id":3,"a":2,"n":20}]`},
		{"no match", func(ctx context.Context, c *mongo.Collection) *mongo.SingleResult {
			return c.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 9}}, inc)
		}, "none", `[{"_id":1,"a":1,"n":10},{"_id":2,"a":2,"n":30},{"_id":3,"a":2,"n":20}]`},
		{"upsert returns after", func(ctx context.Context, c *mongo.Collection) *mongo.SingleResult {
			return c.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 9}}, inc, options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After))
		}, `{"_id":9,"n":1}`, `[{"_id":1,"a":1,"n":10},{"_id":2,"a":2,"n":30},{"_id":3,"a":2,"n":20},{"_id":9,"n":1}]`},
		{"upsert returns before: nothing", func(ctx context.Context, c *mongo.Collection) *mongo.SingleResult {
			return c.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 9}}, inc, options.FindOneAndUpdate().SetUpsert(true))
		}, "none", `[{"_id":1,"a":1,"n":10},{"_id":2,"a":2,"n":30},{"_id":3,"a":2,"n":20},{"_id":9,"n":1}]`},
		{"replace", func(ctx context.Context, c *mongo.Collection) *mongo.SingleResult {
			return c.FindOneAndReplace(ctx, bson.D{{Key: "_id", Value: 3}}, bson.D{{Key: "r", Value: true}}, options.FindOneAndReplace().SetReturnDocument(options.After))
		}, `{"_id":3,"r":true}`, `[{"_id":1,"a":1,"n":10},{"_id":2,"a":2,"n":30},{"_id":3,"r":true}]`},
		{"delete with sort", func(ctx context.Context, c *mongo.Collection) *mongo.SingleResult {
			return c.FindOneAndDelete(ctx, bson.D{{Key: "a", Value: 2}}, options.FindOneAndDelete().SetSort(bson.D{{Key: "n", Value: -1}}))
		}, `{"_id":2,"a":2,"n":30}`, `[{"_id":1,"a":1,"n":10},{"_id":3,"a":2,"n":20}]`},
		{"delete no match", func(ctx context.Context, c *mongo.Collection) *mongo.SingleResult {
			return c.FindOneAndDelete(ctx, bson.D{{Key: "a", Value: 7}})
		}, "none", `[{"_id":1,"a":1,"n":10},{"_id":2,"a":2,"n":30},{"_id":3,"a":2,"n":20}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.fresh(t, seed...)
			raw, err := tc.run(e.ctx, c).Raw()
			switch {
			case tc.value == "none":
				if !errors.Is(err, mongo.ErrNoDocuments) {
					t.Errorf("got %v, %v; want ErrNoDocuments", raw, err)
				}
			case err != nil:
				t.Fatal(err)
			case js(t, raw) != tc.value:
				t.Errorf("value %s, want %s", js(t, raw), tc.value)
			}
			if got := all(t, e.ctx, c); got != tc.docs {
				t.Errorf("got %s\nwant %s", got, tc.docs)
			}
		})
	}
}

func TestFindAndModifyRaw(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, bson.D{{Key: "_id", Value: 1}, {Key: "u", Value: "a"}}, bson.D{{Key: "_id", Value: 2}, {Key: "u", Value: "b"}})
	run := func(cmd bson.D) (bson.Raw, error) {
		return e.db.RunCommand(e.ctx, cmd).Raw()
	}
	// lastErrorObject as mongod reports it.
	got, err := run(bson.D{{Key: "findAndModify", Value: c.Name()}, {Key: "query", Value: bson.D{{Key: "_id", Value: 5}}},
		{Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}}, {Key: "upsert", Value: true}, {Key: "new", Value: true}})
	if err != nil {
		t.Fatal(err)
	}
	if s := js(t, got.Lookup("lastErrorObject")); s != `{"n":1,"updatedExisting":false,"upserted":5}` {
		t.Errorf("lastErrorObject %s", s)
	}
	got, err = run(bson.D{{Key: "findAndModify", Value: c.Name()}, {Key: "query", Value: bson.D{{Key: "_id", Value: 5}}},
		{Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 2}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if s := js(t, got.Lookup("lastErrorObject")); s != `{"n":1,"updatedExisting":true}` {
		t.Errorf("lastErrorObject %s", s)
	}
	for _, tc := range []struct {
		name string
		cmd  bson.D
		code int
	}{
		{"remove and update", bson.D{{Key: "findAndModify", Value: c.Name()}, {Key: "remove", Value: true}, {Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}}}, 9},
		{"neither", bson.D{{Key: "findAndModify", Value: c.Name()}, {Key: "query", Value: bson.D{}}}, 9},
		{"remove and new", bson.D{{Key: "findAndModify", Value: c.Name()}, {Key: "remove", Value: true}, {Key: "new", Value: true}}, 9},
		{"pipeline update with a $match stage", bson.D{{Key: "findAndModify", Value: c.Name()}, {Key: "update", Value: bson.A{bson.D{{Key: "$match", Value: bson.D{}}}}}}, 72},
		{"pipeline update with arrayFilters", bson.D{{Key: "findAndModify", Value: c.Name()}, {Key: "update", Value: bson.A{bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}}}, {Key: "arrayFilters", Value: bson.A{bson.D{{Key: "e", Value: 1}}}}}, 9},
		{"duplicate key", bson.D{{Key: "findAndModify", Value: c.Name()}, {Key: "query", Value: bson.D{{Key: "_id", Value: 2}}}, {Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "u", Value: "a"}}}}}}, 11000},
		{"modify _id", bson.D{{Key: "findAndModify", Value: c.Name()}, {Key: "query", Value: bson.D{{Key: "_id", Value: 2}}}, {Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "_id", Value: 3}}}}}}, 66},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.code == 11000 {
				if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "u", Value: 1}}, Options: uniqueOpt()}); err != nil {
					t.Fatal(err)
				}
			}
			_, err := run(tc.cmd)
			wantCode(t, err, tc.code)
			if tc.code == 11000 && !mongo.IsDuplicateKeyError(err) {
				t.Errorf("IsDuplicateKeyError(%v) = false", err)
			}
		})
	}
	// Through the driver a duplicate key is a DuplicateKeyError too.
	err = c.FindOneAndUpdate(e.ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "u", Value: "b"}}}}).Err()
	if !mongo.IsDuplicateKeyError(err) {
		t.Errorf("FindOneAndUpdate duplicate: %v", err)
	}
	// A nonexistent collection: no document, no collection.
	if err := e.db.Collection("nothere").FindOneAndDelete(e.ctx, bson.D{}).Err(); !errors.Is(err, mongo.ErrNoDocuments) {
		t.Errorf("FindOneAndDelete on missing collection: %v", err)
	}
}

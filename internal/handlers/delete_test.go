package handlers_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestDelete(t *testing.T) {
	e := newDataEnv(t)
	seed := []any{
		bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}},
		bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: 2}},
		bson.D{{Key: "_id", Value: 3}, {Key: "a", Value: 2}},
		bson.D{{Key: "_id", Value: 4}, {Key: "a", Value: bson.A{2, 5}}},
	}
	for _, tc := range []struct {
		name    string
		index   bool // with an index on a
		run     func(ctx context.Context, c *mongo.Collection) (*mongo.DeleteResult, error)
		deleted int64
		docs    string
	}{
		{"DeleteOne", false, func(ctx context.Context, c *mongo.Collection) (*mongo.DeleteResult, error) {
			return c.DeleteOne(ctx, bson.D{{Key: "a", Value: 2}})
		}, 1, `[{"_id":1,"a":1},{"_id":3,"a":2},{"_id":4,"a":[2,5]}]`},
		{"DeleteMany", false, func(ctx context.Context, c *mongo.Collection) (*mongo.DeleteResult, error) {
			return c.DeleteMany(ctx, bson.D{{Key: "a", Value: 2}})
		}, 3, `[{"_id":1,"a":1}]`},
		{"DeleteMany through an index", true, func(ctx context.Context, c *mongo.Collection) (*mongo.DeleteResult, error) {
			return c.DeleteMany(ctx, bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 2}}}})
		}, 3, `[{"_id":1,"a":1}]`},
		{"DeleteMany all", false, func(ctx context.Context, c *mongo.Collection) (*mongo.DeleteResult, error) {
			return c.DeleteMany(ctx, bson.D{})
		}, 4, `[]`},
		{"no match", true, func(ctx context.Context, c *mongo.Collection) (*mongo.DeleteResult, error) {
			return c.DeleteMany(ctx, bson.D{{Key: "a", Value: 42}})
		}, 0, `[{"_id":1,"a":1},{"_id":2,"a":2},{"_id":3,"a":2},{"_id":4,"a":[2,5]}]`},
		{"DeleteOne by _id", false, func(ctx context.Context, c *mongo.Collection) (*mongo.DeleteResult, error) {
			return c.DeleteOne(ctx, bson.D{{Key: "_id", Value: 4}})
		}, 1, `[{"_id":1,"a":1},{"_id":2,"a":2},{"_id":3,"a":2}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.fresh(t, seed...)
			if tc.index {
				if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "a", Value: 1}}}); err != nil {
					t.Fatal(err)
				}
			}
			res, err := tc.run(e.ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if res.DeletedCount != tc.deleted {
				t.Errorf("deleted %d, want %d", res.DeletedCount, tc.deleted)
			}
			if got := all(t, e.ctx, c); got != tc.docs {
				t.Errorf("got %s\nwant %s", got, tc.docs)
			}
			if tc.index { // the index agrees with the documents
				if got := query(t, e.ctx, c, bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 0}}}}, true); got != tc.docs {
					t.Errorf("through the index: got %s\nwant %s", got, tc.docs)
				}
			}
		})
	}
}

func TestDeleteEdgeCases(t *testing.T) {
	e := newDataEnv(t)
	// Nonexistent collection and database: nothing deleted, nothing created.
	for _, c := range []*mongo.Collection{e.db.Collection("nothere"), e.client.Database("nodb2").Collection("c")} {
		res, err := c.DeleteMany(e.ctx, bson.D{})
		if err != nil || res.DeletedCount != 0 {
			t.Errorf("delete on missing %s: %v, %v", c.Name(), res, err)
		}
	}
	if names := collNames(t, e.ctx, e.db); len(names) != 0 {
		t.Errorf("delete created %v", names)
	}
	// A bad filter is a write error with BadValue.
	c := e.fresh(t, bson.D{{Key: "_id", Value: 1}})
	_, err := c.DeleteOne(e.ctx, bson.D{{Key: "a", Value: bson.D{{Key: "$bogus", Value: 1}}}})
	wantCode(t, err, 2)
}

func TestDeleteReleasesUniqueKeys(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t)
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "u", Value: 1}}, Options: uniqueOpt()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 1}, {Key: "u", Value: "x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 2}, {Key: "u", Value: "x"}}); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("second insert: %v", err)
	}
	if _, err := c.DeleteOne(e.ctx, bson.D{{Key: "u", Value: "x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 2}, {Key: "u", Value: "x"}}); err != nil {
		t.Fatalf("insert after delete: %v", err)
	}
}

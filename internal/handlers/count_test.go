package handlers_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestCount(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t)
	var docs []any
	for i := range 25 {
		docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "g", Value: i % 3}})
	}
	if _, err := c.InsertMany(e.ctx, docs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		filter bson.D
		opts   *options.CountOptionsBuilder
		want   int64
	}{
		{"all", bson.D{}, nil, 25},
		{"filter", bson.D{{Key: "g", Value: 0}}, nil, 9},
		{"filter with skip", bson.D{{Key: "g", Value: 0}}, options.Count().SetSkip(4), 5},
		{"limit", bson.D{}, options.Count().SetLimit(10), 10},
		{"skip past the end", bson.D{}, options.Count().SetSkip(30), 0},
		{"skip and limit", bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: 20}}}}, options.Count().SetSkip(1).SetLimit(2), 2},
		{"no match", bson.D{{Key: "g", Value: 7}}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []options.Lister[options.CountOptions]
			if tc.opts != nil {
				opts = append(opts, tc.opts)
			}
			n, err := c.CountDocuments(e.ctx, tc.filter, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.want {
				t.Errorf("CountDocuments = %d, want %d", n, tc.want)
			}
		})
	}
	if n, err := c.EstimatedDocumentCount(e.ctx); err != nil || n != 25 {
		t.Errorf("EstimatedDocumentCount = %d, %v", n, err)
	}
	if n, err := e.db.Collection("nothere").EstimatedDocumentCount(e.ctx); err != nil || n != 0 {
		t.Errorf("EstimatedDocumentCount(missing) = %d, %v", n, err)
	}
	if n, err := e.db.Collection("nothere").CountDocuments(e.ctx, bson.D{}); err != nil || n != 0 {
		t.Errorf("CountDocuments(missing) = %d, %v", n, err)
	}
	// The count command's query, skip and limit (the legacy count()).
	for _, tc := range []struct {
		cmd  bson.D
		want int32
	}{
		{bson.D{{Key: "count", Value: c.Name()}, {Key: "query", Value: bson.D{{Key: "g", Value: 1}}}}, 8},
		{bson.D{{Key: "count", Value: c.Name()}, {Key: "query", Value: bson.D{{Key: "g", Value: 1}}}, {Key: "limit", Value: -3}}, 3},
		{bson.D{{Key: "count", Value: c.Name()}, {Key: "skip", Value: 20}}, 5},
	} {
		var got struct{ N int32 }
		if err := e.db.RunCommand(e.ctx, tc.cmd).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if got.N != tc.want {
			t.Errorf("%s: n = %d, want %d", js(t, tc.cmd), got.N, tc.want)
		}
	}
	err := e.db.RunCommand(e.ctx, bson.D{{Key: "count", Value: c.Name()}, {Key: "skip", Value: -1}}).Err()
	wantCode(t, err, 2)
	// Counts agree with and without an index.
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "g", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	if n, err := c.CountDocuments(e.ctx, bson.D{{Key: "g", Value: bson.D{{Key: "$in", Value: bson.A{0, 2}}}}}); err != nil || n != 17 {
		t.Errorf("indexed count = %d, %v", n, err)
	}
}

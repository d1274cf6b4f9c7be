package handlers_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// batchSize on every command that opens a cursor: integral doubles are
// accepted, negative values refused with 51024 (mongod's IDL validator),
// non-integral values with 2, and 0 opens a cursor whose first batch is
// empty; getMore's batchSize must be positive.
func TestBatchSize(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "_id", Value: 3}})
	if err := e.db.RunCommand(e.ctx, bson.D{{Key: "create", Value: c.Name() + "_2"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "x", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	commands := map[string]func(bs any) bson.D{
		"find": func(bs any) bson.D {
			return bson.D{{Key: "find", Value: c.Name()}, {Key: "batchSize", Value: bs}}
		},
		"aggregate": func(bs any) bson.D {
			return bson.D{{Key: "aggregate", Value: c.Name()}, {Key: "pipeline", Value: bson.A{}}, {Key: "cursor", Value: bson.D{{Key: "batchSize", Value: bs}}}}
		},
		"listCollections": func(bs any) bson.D {
			return bson.D{{Key: "listCollections", Value: 1}, {Key: "cursor", Value: bson.D{{Key: "batchSize", Value: bs}}}}
		},
		"listIndexes": func(bs any) bson.D {
			return bson.D{{Key: "listIndexes", Value: c.Name()}, {Key: "cursor", Value: bson.D{{Key: "batchSize", Value: bs}}}}
		},
	}
	type reply struct {
		Cursor struct {
			ID         int64 `bson:"id"`
			FirstBatch []bson.Raw
		}
	}
	for name, cmd := range commands {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				bs   any
				want int // documents in the first batch; -1: an error
				code int
			}{
				{int32(1), 1, 0},
				{1.0, 1, 0},
				{int64(1), 1, 0},
				{int32(0), 0, 0},
				{int32(-1), -1, 51024},
				{-5.0, -1, 51024},
				{1.5, -1, 2},
				{"1", -1, 14},
			} {
				var r reply
				err := e.db.RunCommand(e.ctx, cmd(tc.bs)).Decode(&r)
				if tc.want < 0 {
					wantCode(t, err, tc.code)
					continue
				}
				if err != nil {
					t.Fatalf("batchSize %v: %v", tc.bs, err)
				}
				if len(r.Cursor.FirstBatch) != tc.want || r.Cursor.ID == 0 {
					t.Errorf("batchSize %v: %d documents, cursor %d; want %d and an open cursor", tc.bs, len(r.Cursor.FirstBatch), r.Cursor.ID, tc.want)
				}
			}
		})
	}

	// batchSize 0, then getMores: everything arrives; getMore's batchSize
	// must be positive.
	var r reply
	if err := e.db.RunCommand(e.ctx, commands["find"](0)).Decode(&r); err != nil {
		t.Fatal(err)
	}
	getMore := func(bs any) bson.D {
		return bson.D{{Key: "getMore", Value: r.Cursor.ID}, {Key: "collection", Value: c.Name()}, {Key: "batchSize", Value: bs}}
	}
	// No deadline on the context: the driver would send it as maxTimeMS,
	// which a getMore of a non-awaitData cursor refuses.
	bg := context.Background()
	wantCode(t, e.db.RunCommand(bg, getMore(0)).Err(), 2)
	wantCode(t, e.db.RunCommand(bg, getMore(-1)).Err(), 2)
	var more struct {
		Cursor struct {
			ID        int64 `bson:"id"`
			NextBatch []bson.Raw
		}
	}
	if err := e.db.RunCommand(bg, getMore(2.0)).Decode(&more); err != nil {
		t.Fatal(err)
	}
	if len(more.Cursor.NextBatch) != 2 || more.Cursor.ID == 0 {
		t.Fatalf("getMore batchSize 2: %d documents, cursor %d", len(more.Cursor.NextBatch), more.Cursor.ID)
	}
}

// maxTimeMS is validated the same way on every command that takes one
// (Handle reads it before the command runs): a non-negative integer no
// larger than 2^31-1, else 2 BadValue.
func TestMaxTimeMSValidatedEverywhere(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}})
	var cur struct {
		Cursor struct {
			ID int64 `bson:"id"`
		}
	}
	if err := e.db.RunCommand(e.ctx, bson.D{{Key: "find", Value: c.Name()}, {Key: "batchSize", Value: 0}}).Decode(&cur); err != nil {
		t.Fatal(err)
	}
	commands := map[string]bson.D{
		"find":          {{Key: "find", Value: c.Name()}},
		"aggregate":     {{Key: "aggregate", Value: c.Name()}, {Key: "pipeline", Value: bson.A{}}, {Key: "cursor", Value: bson.D{}}},
		"count":         {{Key: "count", Value: c.Name()}},
		"distinct":      {{Key: "distinct", Value: c.Name()}, {Key: "key", Value: "a"}},
		"findAndModify": {{Key: "findAndModify", Value: c.Name()}, {Key: "update", Value: bson.D{{Key: "$inc", Value: bson.D{{Key: "a", Value: 1}}}}}},
		"getMore":       {{Key: "getMore", Value: cur.Cursor.ID}, {Key: "collection", Value: c.Name()}},
	}
	bg := context.Background() // no deadline: the driver would send its own maxTimeMS
	for name, cmd := range commands {
		t.Run(name, func(t *testing.T) {
			for _, bad := range []any{int32(-1), 1.5, "100", int64(1) << 31, bson.D{}} {
				wantCode(t, e.db.RunCommand(bg, append(cmd, bson.E{Key: "maxTimeMS", Value: bad})).Err(), 2)
			}
			if name == "getMore" {
				return // a valid maxTimeMS is refused on a non-awaitData cursor (exec_test.go)
			}
			for _, good := range []any{int32(0), 5000.0, int64(1<<31 - 1)} {
				if err := e.db.RunCommand(bg, append(cmd, bson.E{Key: "maxTimeMS", Value: good})).Err(); err != nil {
					t.Errorf("maxTimeMS %v: %v", good, err)
				}
			}
		})
	}
}

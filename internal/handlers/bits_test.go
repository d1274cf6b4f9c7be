package handlers_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// The bitwise query operators through find, with and without an index on
// the field (the planner must not bound a bitwise predicate), and their
// errors as command errors. Their semantics are tested case by case in
// internal/query/testdata/semantics/bits.txt.
func TestBitwiseQueryOperators(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t,
		bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 54}},
		bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: 20}},
		bson.D{{Key: "_id", Value: 3}, {Key: "a", Value: 20.0}},
		bson.D{{Key: "_id", Value: 4}, {Key: "a", Value: bson.Binary{Data: []byte{0x66}}}},
		bson.D{{Key: "_id", Value: 5}, {Key: "a", Value: -1}})
	cases := []struct {
		filter bson.D
		want   string
	}{
		{bson.D{{Key: "a", Value: bson.D{{Key: "$bitsAllSet", Value: bson.A{1, 5}}}}}, `[1,4,5]`},
		{bson.D{{Key: "a", Value: bson.D{{Key: "$bitsAllClear", Value: 35}}}}, `[2,3]`},
		{bson.D{{Key: "a", Value: bson.D{{Key: "$bitsAnySet", Value: bson.Binary{Data: []byte{0x01}}}}}}, `[5]`},
		{bson.D{{Key: "a", Value: bson.D{{Key: "$bitsAnyClear", Value: bson.A{1, 5}}}}}, `[2,3]`},
	}
	ids := func(filter bson.D) string {
		cur, err := c.Find(e.ctx, filter)
		if err != nil {
			t.Fatalf("find %s: %v", js(t, filter), err)
		}
		var docs []struct {
			ID int32 `bson:"_id"`
		}
		if err := cur.All(e.ctx, &docs); err != nil {
			t.Fatal(err)
		}
		out := "["
		for i, d := range docs {
			if i > 0 {
				out += ","
			}
			out += js(t, d.ID)
		}
		return out + "]"
	}
	for _, indexed := range []bool{false, true} {
		if indexed {
			if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "a", Value: 1}}}); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range cases {
			if got := ids(tc.filter); got != tc.want {
				t.Errorf("indexed=%v %s = %s, want %s", indexed, js(t, tc.filter), got, tc.want)
			}
		}
	}
	_, err := c.Find(e.ctx, bson.D{{Key: "a", Value: bson.D{{Key: "$bitsAllSet", Value: -1}}}})
	wantCode(t, err, 9)
	_, err = c.Find(e.ctx, bson.D{{Key: "a", Value: bson.D{{Key: "$bitsAnyClear", Value: bson.A{-1}}}}})
	wantCode(t, err, 2)
}

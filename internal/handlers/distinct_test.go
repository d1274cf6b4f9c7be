package handlers_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestDistinct(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t,
		bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}, {Key: "tags", Value: bson.A{"x", "y"}}, {Key: "s", Value: bson.D{{Key: "b", Value: "p"}}}},
		bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: 1.0}, {Key: "tags", Value: bson.A{"y", bson.A{"z"}}}, {Key: "s", Value: bson.A{bson.D{{Key: "b", Value: "q"}}, bson.D{{Key: "b", Value: "p"}}}}},
		bson.D{{Key: "_id", Value: 3}, {Key: "a", Value: "one"}, {Key: "tags", Value: "x"}},
		bson.D{{Key: "_id", Value: 4}, {Key: "a", Value: nil}},
		bson.D{{Key: "_id", Value: 5}},
	)
	for _, tc := range []struct {
		key    string
		filter bson.D
		want   string
	}{
		{"a", bson.D{}, `[null,1,"one"]`},
		{"tags", bson.D{}, `["x","y",["z"]]`},
		{"s.b", bson.D{}, `["p","q"]`},
		{"a", bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: 3}}}}, `[null,"one"]`},
		{"missing", bson.D{}, `[]`},
		{"_id", bson.D{{Key: "tags", Value: "y"}}, `[1,2]`},
	} {
		t.Run(tc.key, func(t *testing.T) {
			raw, err := c.Distinct(e.ctx, tc.key, tc.filter).Raw()
			if err != nil {
				t.Fatal(err)
			}
			if got := arrJS(t, raw); got != tc.want {
				t.Errorf("Distinct(%s, %s) = %s, want %s", tc.key, js(t, tc.filter), got, tc.want)
			}
		})
	}
	raw, err := e.db.Collection("nothere").Distinct(e.ctx, "a", bson.D{}).Raw()
	if err != nil || len(raw) != 5 {
		t.Errorf("Distinct on a missing collection: %v, %v", raw, err)
	}
	err = e.db.RunCommand(e.ctx, bson.D{{Key: "distinct", Value: c.Name()}, {Key: "key", Value: 1}}).Err()
	wantCode(t, err, 14)
	// With an index, the same values.
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "tags", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	raw, err = c.Distinct(e.ctx, "_id", bson.D{{Key: "tags", Value: "y"}}).Raw()
	if err != nil || arrJS(t, raw) != `[1,2]` {
		t.Errorf("indexed distinct = %s, %v", arrJS(t, raw), err)
	}
}

// arrJS renders a BSON array as JSON.
func arrJS(t testing.TB, a bson.RawArray) string {
	t.Helper()
	vals, err := a.Values()
	if err != nil {
		t.Fatal(err)
	}
	out := bson.A{}
	for _, v := range vals {
		out = append(out, v)
	}
	return js(t, out)
}

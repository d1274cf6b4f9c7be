package handlers_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestExplain(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}})
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "a", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		inner bson.D
		plan  string
	}{
		{"find collscan", bson.D{{Key: "find", Value: c.Name()}, {Key: "filter", Value: bson.D{{Key: "b", Value: 1}}}}, `{"stage":"COLLSCAN","direction":"forward"}`},
		{"find _id", bson.D{{Key: "find", Value: c.Name()}, {Key: "filter", Value: bson.D{{Key: "_id", Value: 1}}}}, `{"stage":"IDHACK"}`},
		{"count", bson.D{{Key: "count", Value: c.Name()}, {Key: "query", Value: bson.D{{Key: "a", Value: 1}}}}, "a_1"},
		{"aggregate", bson.D{{Key: "aggregate", Value: c.Name()}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$match", Value: bson.D{{Key: "a", Value: 1}}}}}}}, "a_1"},
		{"update", bson.D{{Key: "update", Value: c.Name()}, {Key: "updates", Value: bson.A{bson.D{{Key: "q", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "u", Value: bson.D{}}}}}}, "a_1"},
		{"delete", bson.D{{Key: "delete", Value: c.Name()}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "limit", Value: 0}}}}}, "a_1"},
		{"missing collection", bson.D{{Key: "find", Value: "nothere"}}, `{"stage":"EOF"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := e.db.RunCommand(e.ctx, bson.D{{Key: "explain", Value: tc.inner}, {Key: "verbosity", Value: "queryPlanner"}}).Raw()
			if err != nil {
				t.Fatal(err)
			}
			wp := raw.Lookup("queryPlanner", "winningPlan")
			if name, ok := wp.Document().Lookup("inputStage", "indexName").StringValueOK(); ok {
				if name != tc.plan {
					t.Errorf("index %s, want %s", name, tc.plan)
				}
			} else if got := js(t, wp.Document()); got != tc.plan {
				t.Errorf("plan %s, want %s", got, tc.plan)
			}
		})
	}
	err := e.db.RunCommand(e.ctx, bson.D{{Key: "explain", Value: bson.D{{Key: "insert", Value: c.Name()}}}}).Err()
	wantCode(t, err, 238)
}

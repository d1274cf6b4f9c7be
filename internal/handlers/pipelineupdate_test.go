package handlers_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Pipeline-style updates (an array of $set/$addFields/$project/$unset/
// $replaceRoot/$replaceWith stages) through update and findAndModify.
func TestPipelineUpdate(t *testing.T) {
	e := newDataEnv(t)
	seed := []any{
		bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 2}, {Key: "b", Value: 3}, {Key: "old", Value: true}},
		bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: 10}, {Key: "b", Value: 1}},
	}
	for _, tc := range []struct {
		name   string
		filter bson.D
		update any
		many   bool
		want   string
	}{
		{"$set from other fields", bson.D{{Key: "_id", Value: 1}},
			mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "sum", Value: bson.D{{Key: "$add", Value: bson.A{"$a", "$b"}}}}}}}},
			false, `[{"_id":1,"a":2,"b":3,"old":true,"sum":5},{"_id":2,"a":10,"b":1}]`},
		{"stages see the previous stage", bson.D{},
			mongo.Pipeline{
				{{Key: "$addFields", Value: bson.D{{Key: "c", Value: bson.D{{Key: "$multiply", Value: bson.A{"$a", 2}}}}}}},
				{{Key: "$set", Value: bson.D{{Key: "d", Value: bson.D{{Key: "$add", Value: bson.A{"$c", 1}}}}}}},
				{{Key: "$unset", Value: bson.A{"old", "b"}}},
			},
			true, `[{"_id":1,"a":2,"c":4,"d":5},{"_id":2,"a":10,"c":20,"d":21}]`},
		{"$replaceWith keeps _id", bson.D{{Key: "_id", Value: 1}},
			mongo.Pipeline{{{Key: "$replaceWith", Value: bson.D{{Key: "total", Value: bson.D{{Key: "$add", Value: bson.A{"$a", "$b"}}}}}}}},
			false, `[{"_id":1,"total":5},{"_id":2,"a":10,"b":1}]`},
		{"$project keeps _id", bson.D{{Key: "_id", Value: 2}},
			mongo.Pipeline{{{Key: "$project", Value: bson.D{{Key: "_id", Value: 0}, {Key: "a", Value: 1}}}}},
			false, `[{"_id":1,"a":2,"b":3,"old":true},{"_id":2,"a":10}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.fresh(t, seed...)
			var err error
			if tc.many {
				_, err = c.UpdateMany(e.ctx, tc.filter, tc.update)
			} else {
				_, err = c.UpdateOne(e.ctx, tc.filter, tc.update)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := all(t, e.ctx, c); got != tc.want {
				t.Errorf("got %s\nwant %s", got, tc.want)
			}
		})
	}

	t.Run("upsert", func(t *testing.T) {
		c := e.fresh(t)
		res, err := c.UpdateOne(e.ctx, bson.D{{Key: "_id", Value: 7}, {Key: "k", Value: "x"}},
			mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "n", Value: bson.D{{Key: "$concat", Value: bson.A{"$k", "y"}}}}}}}},
			options.UpdateOne().SetUpsert(true))
		if err != nil || res.UpsertedCount != 1 {
			t.Fatalf("%+v, %v", res, err)
		}
		if got := all(t, e.ctx, c); got != `[{"_id":7,"k":"x","n":"xy"}]` {
			t.Errorf("got %s", got)
		}
	})

	t.Run("let and c constants", func(t *testing.T) {
		c := e.fresh(t, seed...)
		cmd := bson.D{{Key: "update", Value: c.Name()},
			{Key: "updates", Value: bson.A{bson.D{
				{Key: "q", Value: bson.D{{Key: "_id", Value: 1}}},
				{Key: "u", Value: bson.A{bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: "$$x"}, {Key: "y", Value: "$$y"}}}}}},
				{Key: "c", Value: bson.D{{Key: "y", Value: "from c"}}},
			}}},
			{Key: "let", Value: bson.D{{Key: "x", Value: "from let"}}}}
		if err := e.db.RunCommand(e.ctx, cmd).Err(); err != nil {
			t.Fatal(err)
		}
		if got := query(t, e.ctx, c, bson.D{{Key: "_id", Value: 1}}, false); got != `[{"_id":1,"a":2,"b":3,"old":true,"x":"from let","y":"from c"}]` {
			t.Errorf("got %s", got)
		}
	})

	t.Run("findAndModify", func(t *testing.T) {
		c := e.fresh(t, seed...)
		var got bson.Raw
		err := c.FindOneAndUpdate(e.ctx, bson.D{{Key: "_id", Value: 2}},
			mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "a", Value: bson.D{{Key: "$add", Value: bson.A{"$a", "$b"}}}}}}}},
			options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&got)
		if err != nil {
			t.Fatal(err)
		}
		if js(t, got) != `{"_id":2,"a":11,"b":1}` {
			t.Errorf("got %s", js(t, got))
		}
	})

	t.Run("errors", func(t *testing.T) {
		c := e.fresh(t, seed...)
		for _, tc := range []struct {
			name string
			stmt bson.D
			code int
		}{
			{"$match is not an update stage", bson.D{{Key: "q", Value: bson.D{}}, {Key: "u", Value: bson.A{bson.D{{Key: "$match", Value: bson.D{}}}}}}, 72},
			{"$group is not an update stage", bson.D{{Key: "q", Value: bson.D{}}, {Key: "u", Value: bson.A{bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}}}}}}}, 72},
			{"unknown stage", bson.D{{Key: "q", Value: bson.D{}}, {Key: "u", Value: bson.A{bson.D{{Key: "$nope", Value: 1}}}}}, 40324},
			{"stage not a document", bson.D{{Key: "q", Value: bson.D{}}, {Key: "u", Value: bson.A{1}}}, 14},
			{"arrayFilters", bson.D{{Key: "q", Value: bson.D{}}, {Key: "u", Value: bson.A{bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}}},
				{Key: "arrayFilters", Value: bson.A{bson.D{{Key: "x", Value: 1}}}}}, 9},
			{"c without a pipeline", bson.D{{Key: "q", Value: bson.D{}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}},
				{Key: "c", Value: bson.D{{Key: "x", Value: 1}}}}, 51198},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := e.db.RunCommand(e.ctx, bson.D{{Key: "update", Value: c.Name()}, {Key: "updates", Value: bson.A{tc.stmt}}}).Err()
				wantCode(t, err, tc.code)
			})
		}
		// Changing _id is a write error, as in mongod.
		_, err := c.UpdateOne(e.ctx, bson.D{{Key: "_id", Value: 1}}, mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "_id", Value: 5}}}}})
		wantCode(t, err, 66)
		if got := all(t, e.ctx, c); got != `[{"_id":1,"a":2,"b":3,"old":true},{"_id":2,"a":10,"b":1}]` {
			t.Errorf("after refused updates: %s", got)
		}
	})
}

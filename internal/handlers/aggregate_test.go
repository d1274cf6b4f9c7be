package handlers_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestAggregate(t *testing.T) {
	e := newDataEnv(t)
	orders := e.db.Collection("orders")
	items := e.db.Collection("items")
	if _, err := orders.InsertMany(e.ctx, []any{
		bson.D{{Key: "_id", Value: 1}, {Key: "cust", Value: "ann"}, {Key: "item", Value: "pen"}, {Key: "qty", Value: 2}, {Key: "tags", Value: bson.A{"a", "b"}}},
		bson.D{{Key: "_id", Value: 2}, {Key: "cust", Value: "bob"}, {Key: "item", Value: "ink"}, {Key: "qty", Value: 5}, {Key: "tags", Value: bson.A{"b"}}},
		bson.D{{Key: "_id", Value: 3}, {Key: "cust", Value: "ann"}, {Key: "item", Value: "ink"}, {Key: "qty", Value: 1}, {Key: "tags", Value: bson.A{}}},
		bson.D{{Key: "_id", Value: 4}, {Key: "cust", Value: "cy"}, {Key: "item", Value: "cap"}, {Key: "qty", Value: 7}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := items.InsertMany(e.ctx, []any{
		bson.D{{Key: "_id", Value: "pen"}, {Key: "price", Value: 3}},
		bson.D{{Key: "_id", Value: "ink"}, {Key: "price", Value: 10}},
	}); err != nil {
		t.Fatal(err)
	}
	type stage = bson.D
	for _, tc := range []struct {
		name     string
		pipeline mongo.Pipeline
		want     string
	}{
		{"$match", mongo.Pipeline{
			stage{{Key: "$match", Value: bson.D{{Key: "cust", Value: "ann"}}}},
		}, `[{"_id":1,"cust":"ann","item":"pen","qty":2,"tags":["a","b"]},{"_id":3,"cust":"ann","item":"ink","qty":1,"tags":[]}]`},
		{"$group $sort", mongo.Pipeline{
			stage{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$cust"}, {Key: "total", Value: bson.D{{Key: "$sum", Value: "$qty"}}}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
			stage{{Key: "$sort", Value: bson.D{{Key: "total", Value: -1}}}},
		}, `[{"_id":"cy","total":7,"n":1},{"_id":"bob","total":5,"n":1},{"_id":"ann","total":3,"n":2}]`},
		{"$match $project $sort", mongo.Pipeline{
			stage{{Key: "$match", Value: bson.D{{Key: "qty", Value: bson.D{{Key: "$gte", Value: 2}}}}}},
			stage{{Key: "$project", Value: bson.D{{Key: "_id", Value: 0}, {Key: "cust", Value: 1}, {Key: "double", Value: bson.D{{Key: "$multiply", Value: bson.A{"$qty", 2}}}}}}},
			stage{{Key: "$sort", Value: bson.D{{Key: "double", Value: 1}}}},
		}, `[{"cust":"ann","double":4},{"cust":"bob","double":10},{"cust":"cy","double":14}]`},
		{"$unwind", mongo.Pipeline{
			stage{{Key: "$unwind", Value: "$tags"}},
			stage{{Key: "$project", Value: bson.D{{Key: "tags", Value: 1}}}},
		}, `[{"_id":1,"tags":"a"},{"_id":1,"tags":"b"},{"_id":2,"tags":"b"}]`},
		{"$lookup", mongo.Pipeline{
			stage{{Key: "$match", Value: bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{1, 4}}}}}}},
			stage{{Key: "$lookup", Value: bson.D{{Key: "from", Value: "items"}, {Key: "localField", Value: "item"}, {Key: "foreignField", Value: "_id"}, {Key: "as", Value: "it"}}}},
			stage{{Key: "$project", Value: bson.D{{Key: "it", Value: 1}}}},
		}, `[{"_id":1,"it":[{"_id":"pen","price":3}]},{"_id":4,"it":[]}]`},
		{"$count", mongo.Pipeline{
			stage{{Key: "$match", Value: bson.D{{Key: "item", Value: "ink"}}}},
			stage{{Key: "$count", Value: "inks"}},
		}, `[{"inks":2}]`},
		{"$skip $limit $addFields", mongo.Pipeline{
			stage{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
			stage{{Key: "$skip", Value: 1}},
			stage{{Key: "$limit", Value: 2}},
			stage{{Key: "$addFields", Value: bson.D{{Key: "x", Value: "$cust"}}}},
			stage{{Key: "$project", Value: bson.D{{Key: "x", Value: 1}}}},
		}, `[{"_id":2,"x":"bob"},{"_id":3,"x":"ann"}]`},
		{"$group $push $addToSet", mongo.Pipeline{
			stage{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
			stage{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$item"}, {Key: "custs", Value: bson.D{{Key: "$push", Value: "$cust"}}}, {Key: "max", Value: bson.D{{Key: "$max", Value: "$qty"}}}}}},
			stage{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
		}, `[{"_id":"cap","custs":["cy"],"max":7},{"_id":"ink","custs":["bob","ann"],"max":5},{"_id":"pen","custs":["ann"],"max":2}]`},
		{"empty pipeline", mongo.Pipeline{}, `[{"_id":1,"cust":"ann","item":"pen","qty":2,"tags":["a","b"]},{"_id":2,"cust":"bob","item":"ink","qty":5,"tags":["b"]},{"_id":3,"cust":"ann","item":"ink","qty":1,"tags":[]},{"_id":4,"cust":"cy","item":"cap","qty":7}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Small batches make the driver page through getMore.
			cur, err := orders.Aggregate(e.ctx, tc.pipeline, options.Aggregate().SetBatchSize(1))
			if err != nil {
				t.Fatal(err)
			}
			var docs []bson.Raw
			if err := cur.All(e.ctx, &docs); err != nil {
				t.Fatal(err)
			}
			if got := jsDocs(t, docs); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}

	// The same results with an index serving the leading $match.
	if _, err := orders.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "cust", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	cur, err := orders.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "cust", Value: "ann"}}}}, {{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.Raw
	if err := cur.All(e.ctx, &docs); err != nil {
		t.Fatal(err)
	}
	if got, want := jsDocs(t, docs), `[{"_id":1,"cust":"ann","item":"pen","qty":2,"tags":["a","b"]},{"_id":3,"cust":"ann","item":"ink","qty":1,"tags":[]}]`; got != want {
		t.Errorf("indexed $match: got %s\nwant %s", got, want)
	}

	// A collection that does not exist aggregates to nothing.
	cur, err = e.db.Collection("nothere").Aggregate(e.ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	if cur.Next(e.ctx) {
		t.Error("documents from a missing collection")
	}
	cur.Close(e.ctx)
}

func TestAggregateErrors(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, bson.D{{Key: "_id", Value: 1}})
	for _, tc := range []struct {
		name string
		cmd  bson.D
		code int
	}{
		{"collectionless", bson.D{{Key: "aggregate", Value: 1}, {Key: "pipeline", Value: bson.A{}}, {Key: "cursor", Value: bson.D{}}}, 238},
		{"no cursor", bson.D{{Key: "aggregate", Value: c.Name()}, {Key: "pipeline", Value: bson.A{}}}, 9},
		{"no pipeline", bson.D{{Key: "aggregate", Value: c.Name()}, {Key: "cursor", Value: bson.D{}}}, 40414},
		{"unknown stage", bson.D{{Key: "aggregate", Value: c.Name()}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$frob", Value: 1}}}}, {Key: "cursor", Value: bson.D{}}}, 40324},
		{"bad $match", bson.D{{Key: "aggregate", Value: c.Name()}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$match", Value: bson.D{{Key: "a", Value: bson.D{{Key: "$bad", Value: 1}}}}}}}}, {Key: "cursor", Value: bson.D{}}}, 2},
		{"stage not an object", bson.D{{Key: "aggregate", Value: c.Name()}, {Key: "pipeline", Value: bson.A{1}}, {Key: "cursor", Value: bson.D{}}}, 14},
		{"explain with $out", bson.D{{Key: "aggregate", Value: c.Name()}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$out", Value: "x"}}}}, {Key: "explain", Value: true}}, 238},
		// A standalone node has no oplog, as a standalone mongod.
		{"$changeStream standalone", bson.D{{Key: "aggregate", Value: c.Name()}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{}}}}}, {Key: "cursor", Value: bson.D{}}}, 40573},
		{"$changeStream not first", bson.D{{Key: "aggregate", Value: c.Name()}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$match", Value: bson.D{}}}, bson.D{{Key: "$changeStream", Value: bson.D{}}}}}, {Key: "cursor", Value: bson.D{}}}, 40602},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, e.db.RunCommand(e.ctx, tc.cmd).Err(), tc.code)
		})
	}
}

func aggAll(t *testing.T, e *dataEnv, coll *mongo.Collection, p mongo.Pipeline) string {
	t.Helper()
	cur, err := coll.Aggregate(e.ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.Raw
	if err := cur.All(e.ctx, &docs); err != nil {
		t.Fatal(err)
	}
	return jsDocs(t, docs)
}

func findAll(t *testing.T, e *dataEnv, coll *mongo.Collection) string {
	t.Helper()
	cur, err := coll.Find(e.ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.Raw
	if err := cur.All(e.ctx, &docs); err != nil {
		t.Fatal(err)
	}
	return jsDocs(t, docs)
}

// TestAggregateWrites runs $out and $merge, the stages that read another
// collection, and collectionless $documents through a real node.
func TestAggregateWrites(t *testing.T) {
	e := newDataEnv(t)
	src := e.db.Collection("src")
	if _, err := src.InsertMany(e.ctx, []any{
		bson.D{{Key: "_id", Value: 1}, {Key: "k", Value: "a"}, {Key: "n", Value: 1}},
		bson.D{{Key: "_id", Value: 2}, {Key: "k", Value: "b"}, {Key: "n", Value: 2}},
		bson.D{{Key: "_id", Value: 3}, {Key: "k", Value: "a"}, {Key: "n", Value: 3}},
	}); err != nil {
		t.Fatal(err)
	}
	type D = bson.D
	out := e.db.Collection("out")
	if _, err := out.InsertOne(e.ctx, D{{Key: "_id", Value: "stale"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := out.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: D{{Key: "total", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	// $out replaces the target's contents and keeps its indexes.
	if got := aggAll(t, e, src, mongo.Pipeline{
		{{Key: "$group", Value: D{{Key: "_id", Value: "$k"}, {Key: "total", Value: D{{Key: "$sum", Value: "$n"}}}}}},
		{{Key: "$out", Value: "out"}},
	}); got != "[]" {
		t.Errorf("$out returned %s", got)
	}
	if got, want := findAll(t, e, out), `[{"_id":"a","total":4},{"_id":"b","total":2}]`; got != want {
		t.Errorf("after $out: %s, want %s", got, want)
	}
	specs, err := out.Indexes().ListSpecifications(e.ctx)
	if err != nil || len(specs) != 2 {
		t.Errorf("indexes after $out: %v %v", specs, err)
	}
	// A failing $out (duplicate _id) leaves the target as it was.
	_, err = src.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$project", Value: D{{Key: "_id", Value: "$k"}}}}, {{Key: "$out", Value: "out"}}})
	wantCode(t, err, 11000)
	if got, want := findAll(t, e, out), `[{"_id":"a","total":4},{"_id":"b","total":2}]`; got != want {
		t.Errorf("after a failed $out: %s, want %s", got, want)
	}

	// $merge: the default (merge / insert), then the other modes.
	m := e.db.Collection("merged")
	if _, err := m.InsertOne(e.ctx, D{{Key: "_id", Value: 1}, {Key: "keep", Value: true}, {Key: "n", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	aggAll(t, e, src, mongo.Pipeline{{{Key: "$match", Value: D{{Key: "_id", Value: D{{Key: "$lte", Value: 2}}}}}}, {{Key: "$merge", Value: "merged"}}})
	if got, want := findAll(t, e, m), `[{"_id":1,"keep":true,"n":1,"k":"a"},{"_id":2,"k":"b","n":2}]`; got != want {
		t.Errorf("$merge default: %s, want %s", got, want)
	}
	aggAll(t, e, src, mongo.Pipeline{{{Key: "$merge", Value: D{{Key: "into", Value: "merged"}, {Key: "whenMatched", Value: "replace"}, {Key: "whenNotMatched", Value: "discard"}}}}})
	if got, want := findAll(t, e, m), `[{"_id":1,"k":"a","n":1},{"_id":2,"k":"b","n":2}]`; got != want {
		t.Errorf("$merge replace/discard: %s, want %s", got, want)
	}
	aggAll(t, e, src, mongo.Pipeline{{{Key: "$merge", Value: D{{Key: "into", Value: "merged"},
		{Key: "whenMatched", Value: bson.A{D{{Key: "$set", Value: D{{Key: "n", Value: D{{Key: "$add", Value: bson.A{"$n", "$$new.n", "$$inc"}}}}}}}}},
		{Key: "let", Value: D{{Key: "inc", Value: 100}}}}}}})
	if got, want := findAll(t, e, m), `[{"_id":1,"k":"a","n":102},{"_id":2,"k":"b","n":104},{"_id":3,"k":"a","n":3}]`; got != want {
		t.Errorf("$merge pipeline: %s, want %s", got, want)
	}
	_, err = src.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$merge", Value: D{{Key: "into", Value: "merged"}, {Key: "whenMatched", Value: "fail"}}}}})
	wantCode(t, err, 11000)
	_, err = src.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$set", Value: D{{Key: "_id", Value: 99}}}}, {{Key: "$merge", Value: D{{Key: "into", Value: "merged"}, {Key: "whenNotMatched", Value: "fail"}}}}})
	wantCode(t, err, 13113)
	_, err = src.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$merge", Value: D{{Key: "into", Value: "merged"}, {Key: "on", Value: "k"}}}}})
	wantCode(t, err, 51183)
	_, err = src.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$out", Value: "x"}}, {{Key: "$match", Value: D{}}}})
	wantCode(t, err, 40601)
	_, err = src.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$out", Value: D{{Key: "db", Value: "other"}, {Key: "coll", Value: "x"}}}}})
	wantCode(t, err, 238)

	// $unionWith and $lookup with a pipeline read the other collections.
	if got, want := aggAll(t, e, src, mongo.Pipeline{
		{{Key: "$match", Value: D{{Key: "_id", Value: 1}}}},
		{{Key: "$unionWith", Value: D{{Key: "coll", Value: "out"}, {Key: "pipeline", Value: bson.A{D{{Key: "$match", Value: D{{Key: "_id", Value: "b"}}}}}}}}},
		{{Key: "$lookup", Value: D{{Key: "from", Value: "merged"}, {Key: "let", Value: D{{Key: "id", Value: "$_id"}}},
			{Key: "pipeline", Value: bson.A{D{{Key: "$match", Value: D{{Key: "$expr", Value: D{{Key: "$eq", Value: bson.A{"$_id", "$$id"}}}}}}}, D{{Key: "$project", Value: D{{Key: "n", Value: 1}}}}}},
			{Key: "as", Value: "m"}}}},
	}), `[{"_id":1,"k":"a","n":1,"m":[{"_id":1,"n":102}]},{"_id":"b","total":2,"m":[]}]`; got != want {
		t.Errorf("$unionWith/$lookup: %s, want %s", got, want)
	}

	// {aggregate: 1} with $documents.
	cur, err := e.db.Aggregate(e.ctx, mongo.Pipeline{
		{{Key: "$documents", Value: bson.A{D{{Key: "x", Value: 1}}, D{{Key: "x", Value: 2}}}}},
		{{Key: "$match", Value: D{{Key: "x", Value: 2}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.Raw
	if err := cur.All(e.ctx, &docs); err != nil {
		t.Fatal(err)
	}
	if got := jsDocs(t, docs); got != `[{"x":2}]` {
		t.Errorf("$documents: %s", got)
	}
	_, err = src.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$documents", Value: bson.A{}}}})
	wantCode(t, err, 73)
}

// $graphLookup reads another collection of the database through the
// handler; $setWindowFields runs over the collection's documents.
func TestAggregateGraphAndWindows(t *testing.T) {
	e := newDataEnv(t)
	type D = bson.D
	emp := e.db.Collection("emp")
	if _, err := emp.InsertMany(e.ctx, []any{
		D{{Key: "_id", Value: 1}, {Key: "name", Value: "Dev"}, {Key: "boss", Value: "Eliot"}, {Key: "dept", Value: "eng"}, {Key: "pay", Value: 10}},
		D{{Key: "_id", Value: 2}, {Key: "name", Value: "Eliot"}, {Key: "boss", Value: "Ron"}, {Key: "dept", Value: "eng"}, {Key: "pay", Value: 30}},
		D{{Key: "_id", Value: 3}, {Key: "name", Value: "Ron"}, {Key: "boss", Value: "Andrew"}, {Key: "dept", Value: "exec"}, {Key: "pay", Value: 50}},
		D{{Key: "_id", Value: 4}, {Key: "name", Value: "Andrew"}, {Key: "dept", Value: "exec"}, {Key: "pay", Value: 70}},
	}); err != nil {
		t.Fatal(err)
	}
	people := e.db.Collection("people")
	if _, err := people.InsertOne(e.ctx, D{{Key: "_id", Value: "p"}, {Key: "manager", Value: "Eliot"}}); err != nil {
		t.Fatal(err)
	}
	if got, want := aggAll(t, e, people, mongo.Pipeline{
		{{Key: "$graphLookup", Value: D{{Key: "from", Value: "emp"}, {Key: "startWith", Value: "$manager"}, {Key: "connectFromField", Value: "boss"},
			{Key: "connectToField", Value: "name"}, {Key: "as", Value: "up"}, {Key: "depthField", Value: "lvl"}, {Key: "maxDepth", Value: 1}}}},
		{{Key: "$project", Value: D{{Key: "up.name", Value: 1}, {Key: "up.lvl", Value: 1}}}},
	}), `[{"_id":"p","up":[{"name":"Eliot","lvl":0},{"name":"Ron","lvl":1}]}]`; got != want {
		t.Errorf("$graphLookup: %s, want %s", got, want)
	}
	_, err := people.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$graphLookup", Value: D{{Key: "from", Value: "emp"}, {Key: "startWith", Value: "$manager"}}}}})
	wantCode(t, err, 40105)

	if got, want := aggAll(t, e, emp, mongo.Pipeline{
		{{Key: "$setWindowFields", Value: D{{Key: "partitionBy", Value: "$dept"}, {Key: "sortBy", Value: D{{Key: "pay", Value: -1}}},
			{Key: "output", Value: D{{Key: "rank", Value: D{{Key: "$rank", Value: D{}}}},
				{Key: "deptPay", Value: D{{Key: "$sum", Value: "$pay"}}},
				{Key: "cum", Value: D{{Key: "$sum", Value: "$pay"}, {Key: "window", Value: D{{Key: "documents", Value: bson.A{"unbounded", "current"}}}}}}}}}}},
		{{Key: "$project", Value: D{{Key: "name", Value: 1}, {Key: "rank", Value: 1}, {Key: "deptPay", Value: 1}, {Key: "cum", Value: 1}}}},
	}), `[{"_id":2,"name":"Eliot","rank":1,"deptPay":40,"cum":30},{"_id":1,"name":"Dev","rank":2,"deptPay":40,"cum":40},`+
		`{"_id":4,"name":"Andrew","rank":1,"deptPay":120,"cum":70},{"_id":3,"name":"Ron","rank":2,"deptPay":120,"cum":120}]`; got != want {
		t.Errorf("$setWindowFields: %s, want %s", got, want)
	}
	_, err = emp.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$setWindowFields", Value: D{{Key: "output", Value: D{{Key: "r", Value: D{{Key: "$rank", Value: D{}}}}}}}}}})
	wantCode(t, err, 5371602)

	// The command's let reaches startWith and window function inputs; a
	// restrictSearchWithMatch filter is a query ("$$x" outside $expr is a
	// string).
	cur, err := people.Aggregate(e.ctx, mongo.Pipeline{
		{{Key: "$graphLookup", Value: D{{Key: "from", Value: "emp"}, {Key: "startWith", Value: "$$who"}, {Key: "connectFromField", Value: "boss"},
			{Key: "connectToField", Value: "name"}, {Key: "as", Value: "up"}, {Key: "restrictSearchWithMatch", Value: D{{Key: "name", Value: D{{Key: "$ne", Value: "$$who"}}}}}}}},
		{{Key: "$setWindowFields", Value: D{{Key: "output", Value: D{{Key: "k", Value: D{{Key: "$max", Value: "$$k"}}}}}}}},
		{{Key: "$project", Value: D{{Key: "n", Value: D{{Key: "$size", Value: "$up"}}}, {Key: "k", Value: 1}}}},
	}, options.Aggregate().SetLet(D{{Key: "who", Value: "Ron"}, {Key: "k", Value: 7}}))
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.Raw
	if err := cur.All(e.ctx, &docs); err != nil {
		t.Fatal(err)
	}
	if got, want := jsDocs(t, docs), `[{"_id":"p","k":7,"n":2}]`; got != want {
		t.Errorf("let: %s, want %s", got, want)
	}
}

// $indexStats reports real usage: operations whose scan was planned on
// the index.
func TestAggregateIndexStats(t *testing.T) {
	e := newDataEnv(t)
	type D = bson.D
	coll := e.db.Collection("ix")
	if _, err := coll.InsertMany(e.ctx, []any{D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}}, D{{Key: "_id", Value: 2}, {Key: "a", Value: 2}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: D{{Key: "a", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	stats := func() map[string]int64 {
		t.Helper()
		cur, err := coll.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$indexStats", Value: D{}}}, {{Key: "$sort", Value: D{{Key: "name", Value: 1}}}}})
		if err != nil {
			t.Fatal(err)
		}
		var docs []bson.Raw
		if err := cur.All(e.ctx, &docs); err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, d := range docs {
			name := d.Lookup("name").StringValue()
			out[name] = d.Lookup("accesses", "ops").Int64()
			if _, ok := d.Lookup("accesses", "since").DateTimeOK(); !ok {
				t.Errorf("%s: no accesses.since: %s", name, d)
			}
			if h := d.Lookup("host").StringValue(); h == "" {
				t.Errorf("%s: no host", name)
			}
			if k, ok := d.Lookup("spec", "key").DocumentOK(); !ok || len(k) == 0 {
				t.Errorf("%s: no spec.key: %s", name, d)
			}
		}
		return out
	}
	before := stats()
	if before["a_1"] != 0 {
		t.Errorf("a_1 before use: %d ops", before["a_1"])
	}
	for _, f := range []D{{{Key: "a", Value: 1}}, {{Key: "a", Value: D{{Key: "$gt", Value: 0}}}}} {
		if err := coll.FindOne(e.ctx, f).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := coll.DeleteOne(e.ctx, D{{Key: "a", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	if err := coll.FindOne(e.ctx, D{{Key: "_id", Value: 1}}).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.Find(e.ctx, D{{Key: "b", Value: 1}}); err != nil { // no index: a collection scan
		t.Fatal(err)
	}
	after := stats()
	if got := after["a_1"] - before["a_1"]; got != 3 {
		t.Errorf("a_1: %d ops, want 3 (two finds, one delete)", got)
	}
	if got := after["_id_"] - before["_id_"]; got != 1 {
		t.Errorf("_id_: %d ops, want 1", got)
	}
	_, err := coll.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$indexStats", Value: D{{Key: "x", Value: 1}}}}})
	wantCode(t, err, 28803)
	_, err = coll.Aggregate(e.ctx, mongo.Pipeline{{{Key: "$match", Value: D{}}}, {{Key: "$indexStats", Value: D{}}}})
	wantCode(t, err, 40602)
	// A collection that does not exist has no indexes.
	if got := aggAll(t, e, e.db.Collection("nope"), mongo.Pipeline{{{Key: "$indexStats", Value: D{}}}}); got != `[]` {
		t.Errorf("missing collection: %s", got)
	}
}

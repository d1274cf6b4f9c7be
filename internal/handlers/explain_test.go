package handlers_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// planIndex returns the index name of the first IXSCAN in a plan tree, or
// the tree's leaf stage name when it has none.
func planIndex(d bson.Raw) string {
	if n, ok := d.Lookup("indexName").StringValueOK(); ok {
		return n
	}
	if in, ok := d.Lookup("inputStage").DocumentOK(); ok {
		return planIndex(in)
	}
	return d.Lookup("stage").StringValue()
}

func explainCmd(t *testing.T, e *dataEnv, inner bson.D, verbosity string) bson.Raw {
	t.Helper()
	cmd := bson.D{{Key: "explain", Value: inner}}
	if verbosity != "" {
		cmd = append(cmd, bson.E{Key: "verbosity", Value: verbosity})
	}
	raw, err := e.db.RunCommand(e.ctx, cmd).Raw()
	if err != nil {
		t.Fatalf("explain %s: %v", js(t, inner), err)
	}
	return raw
}

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
		{"find collscan", bson.D{{Key: "find", Value: c.Name()}, {Key: "filter", Value: bson.D{{Key: "b", Value: 1}}}}, "COLLSCAN"},
		{"find _id", bson.D{{Key: "find", Value: c.Name()}, {Key: "filter", Value: bson.D{{Key: "_id", Value: 1}}}}, "IDHACK"},
		{"count", bson.D{{Key: "count", Value: c.Name()}, {Key: "query", Value: bson.D{{Key: "a", Value: 1}}}}, "a_1"},
		{"count all", bson.D{{Key: "count", Value: c.Name()}}, "RECORD_STORE_FAST_COUNT"},
		{"distinct", bson.D{{Key: "distinct", Value: c.Name()}, {Key: "key", Value: "a"}, {Key: "query", Value: bson.D{{Key: "a", Value: 1}}}}, "a_1"},
		{"aggregate", bson.D{{Key: "aggregate", Value: c.Name()}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$match", Value: bson.D{{Key: "a", Value: 1}}}}}}, {Key: "cursor", Value: bson.D{}}}, "a_1"},
		{"update", bson.D{{Key: "update", Value: c.Name()}, {Key: "updates", Value: bson.A{bson.D{{Key: "q", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "u", Value: bson.D{}}}}}}, "a_1"},
		{"delete", bson.D{{Key: "delete", Value: c.Name()}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "limit", Value: 0}}}}}, "a_1"},
		{"findAndModify", bson.D{{Key: "findAndModify", Value: c.Name()}, {Key: "query", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "remove", Value: true}}, "a_1"},
		{"missing collection", bson.D{{Key: "find", Value: "nothere"}}, "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := explainCmd(t, e, tc.inner, "queryPlanner")
			if got := planIndex(raw.Lookup("queryPlanner", "winningPlan").Document()); got != tc.plan {
				t.Errorf("plan %s, want %s: %s", got, tc.plan, raw.Lookup("queryPlanner", "winningPlan"))
			}
			if _, err := raw.LookupErr("executionStats"); err == nil {
				t.Errorf("queryPlanner verbosity has executionStats")
			}
			if v := raw.Lookup("explainVersion").StringValue(); v != "1" {
				t.Errorf("explainVersion %q", v)
			}
		})
	}
	err := e.db.RunCommand(e.ctx, bson.D{{Key: "explain", Value: bson.D{{Key: "insert", Value: c.Name()}}}}).Err()
	wantCode(t, err, 238)
	err = e.db.RunCommand(e.ctx, bson.D{{Key: "explain", Value: bson.D{{Key: "find", Value: c.Name()}}}, {Key: "verbosity", Value: "loud"}}).Err()
	wantCode(t, err, 9)
	err = e.db.RunCommand(e.ctx, bson.D{{Key: "explain", Value: bson.D{{Key: "find", Value: c.Name()}, {Key: "bogus", Value: 1}}}}).Err()
	wantCode(t, err, 40415)
	err = e.db.RunCommand(e.ctx, bson.D{{Key: "explain", Value: bson.D{{Key: "delete", Value: c.Name()}, {Key: "deletes", Value: bson.A{
		bson.D{{Key: "q", Value: bson.D{}}, {Key: "limit", Value: 0}}, bson.D{{Key: "q", Value: bson.D{}}, {Key: "limit", Value: 0}}}}}}}).Err()
	wantCode(t, err, 16)
}

// TestExplainExecutionStats checks that the counters are the scan's: they
// change with the plan, the filter, limits and the data.
func TestExplainExecutionStats(t *testing.T) {
	e := newDataEnv(t)
	var docs []any
	for i := 0; i < 10; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "a", Value: i}, {Key: "b", Value: i % 2}})
	}
	c := e.fresh(t, docs...)
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "a", Value: -1}}}); err != nil {
		t.Fatal(err)
	}
	stats := func(raw bson.Raw) (n, keys, docs int64) {
		es := raw.Lookup("executionStats")
		n, _ = es.Document().Lookup("nReturned").AsInt64OK()
		keys, _ = es.Document().Lookup("totalKeysExamined").AsInt64OK()
		docs, _ = es.Document().Lookup("totalDocsExamined").AsInt64OK()
		return
	}
	find := func(kv ...bson.E) bson.D { return append(bson.D{{Key: "find", Value: c.Name()}}, kv...) }
	for _, tc := range []struct {
		name             string
		inner            bson.D
		n, keys, docs    int64
		plan, wantBounds string
		verbosity        string
	}{
		{"range on the index", find(bson.E{Key: "filter", Value: bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 5}}}}}), 5, 5, 5, "a_-1", `{"a":["[inf.0, 5]"]}`, "executionStats"},
		{"range and residual", find(bson.E{Key: "filter", Value: bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 5}}}, {Key: "b", Value: 1}}}), 3, 5, 5, "a_-1", "", "executionStats"},
		{"collection scan", find(bson.E{Key: "filter", Value: bson.D{{Key: "b", Value: 1}}}), 5, 0, 10, "COLLSCAN", "", "allPlansExecution"},
		{"limit stops the scan", find(bson.E{Key: "filter", Value: bson.D{{Key: "b", Value: 0}}}, bson.E{Key: "limit", Value: 2}), 2, 0, 3, "COLLSCAN", "", "executionStats"},
		{"sort, skip, limit", find(bson.E{Key: "sort", Value: bson.D{{Key: "b", Value: 1}}}, bson.E{Key: "skip", Value: 3}, bson.E{Key: "limit", Value: 4}), 4, 0, 10, "COLLSCAN", "", "executionStats"},
		{"in list", find(bson.E{Key: "filter", Value: bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{1, 3, 42}}}}}}), 2, 2, 2, "a_-1", `{"a":["[42, 42]","[3, 3]","[1, 1]"]}`, "executionStats"},
		{"_id", find(bson.E{Key: "filter", Value: bson.D{{Key: "_id", Value: 4}}}), 1, 1, 1, "IDHACK", "", "executionStats"},
		{"no match", find(bson.E{Key: "filter", Value: bson.D{{Key: "a", Value: 100}}}), 0, 0, 0, "a_-1", "", "executionStats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := explainCmd(t, e, tc.inner, tc.verbosity)
			n, keys, docs := stats(raw)
			if n != tc.n || keys != tc.keys || docs != tc.docs {
				t.Errorf("nReturned %d, keys %d, docs %d; want %d, %d, %d\n%s", n, keys, docs, tc.n, tc.keys, tc.docs, raw.Lookup("executionStats"))
			}
			if got := planIndex(raw.Lookup("executionStats", "executionStages").Document()); got != tc.plan {
				t.Errorf("plan %s, want %s", got, tc.plan)
			}
			if tc.wantBounds != "" {
				ws := raw.Lookup("queryPlanner", "winningPlan").Document()
				for ws.Lookup("stage").StringValue() != "IXSCAN" {
					ws = ws.Lookup("inputStage").Document()
				}
				if got := js(t, ws.Lookup("indexBounds").Document()); got != tc.wantBounds {
					t.Errorf("bounds %s, want %s", got, tc.wantBounds)
				}
			}
			_, all := raw.Lookup("executionStats").Document().LookupErr("allPlansExecution")
			if (all == nil) != (tc.verbosity == "allPlansExecution") {
				t.Errorf("allPlansExecution present: %v", all == nil)
			}
		})
	}

	// The reply's frame: the command echoed with $db, serverInfo,
	// serverParameters; the default verbosity is allPlansExecution.
	raw := explainCmd(t, e, find(bson.E{Key: "filter", Value: bson.D{{Key: "a", Value: 1}}}), "")
	if got := js(t, raw.Lookup("command").Document()); got != `{"find":"`+c.Name()+`","filter":{"a":1},"$db":"test"}` {
		t.Errorf("command %s", got)
	}
	if _, err := raw.LookupErr("executionStats", "allPlansExecution"); err != nil {
		t.Errorf("default verbosity: %s", raw)
	}
	if p, ok := raw.Lookup("serverInfo", "port").AsInt64OK(); !ok || p == 0 {
		t.Errorf("serverInfo %s", raw.Lookup("serverInfo"))
	}
	if _, err := raw.LookupErr("serverParameters", "internalQueryMaxBlockingSortMemoryUsageBytes"); err != nil {
		t.Errorf("serverParameters %s", raw.Lookup("serverParameters"))
	}
	if got := js(t, raw.Lookup("queryPlanner", "parsedQuery").Document()); got != `{"a":{"$eq":1}}` {
		t.Errorf("parsedQuery %s", got)
	}

	// Writes: what they would do, and nothing done.
	raw = explainCmd(t, e, bson.D{{Key: "update", Value: c.Name()}, {Key: "updates", Value: bson.A{bson.D{
		{Key: "q", Value: bson.D{{Key: "b", Value: 1}}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 3}}}}}, {Key: "multi", Value: true}}}}}, "executionStats")
	up := raw.Lookup("executionStats", "executionStages").Document()
	if up.Lookup("stage").StringValue() != "UPDATE" || up.Lookup("nMatched").Int64() != 5 || up.Lookup("nWouldModify").Int64() != 4 {
		t.Errorf("update: %s", up)
	}
	raw = explainCmd(t, e, bson.D{{Key: "delete", Value: c.Name()}, {Key: "deletes", Value: bson.A{bson.D{
		{Key: "q", Value: bson.D{{Key: "a", Value: bson.D{{Key: "$lt", Value: 4}}}}}, {Key: "limit", Value: 0}}}}}, "executionStats")
	del := raw.Lookup("executionStats", "executionStages").Document()
	if del.Lookup("stage").StringValue() != "DELETE" || del.Lookup("nWouldDelete").Int64() != 4 {
		t.Errorf("delete: %s", del)
	}
	raw = explainCmd(t, e, bson.D{{Key: "findAndModify", Value: c.Name()}, {Key: "query", Value: bson.D{{Key: "a", Value: 100}}},
		{Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "z", Value: 1}}}}}, {Key: "upsert", Value: true}}, "executionStats")
	fam := raw.Lookup("executionStats", "executionStages").Document()
	if fam.Lookup("nMatched").Int64() != 0 || fam.Lookup("nWouldUpsert").Int64() != 1 {
		t.Errorf("findAndModify: %s", fam)
	}
	if got := all(t, e.ctx, c); got != jsDocs(t, mustRaws(t, docs)) {
		t.Errorf("explain wrote: %s", got)
	}

	// Aggregate past its scan: $cursor, then each stage's nReturned.
	raw = explainCmd(t, e, bson.D{{Key: "aggregate", Value: c.Name()}, {Key: "pipeline", Value: bson.A{
		bson.D{{Key: "$match", Value: bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 2}}}}}},
		bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$b"}}}},
		bson.D{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
		bson.D{{Key: "$limit", Value: 1}},
	}}, {Key: "cursor", Value: bson.D{}}}, "executionStats")
	stages, _ := raw.Lookup("stages").Array().Values()
	if len(stages) != 4 {
		t.Fatalf("stages %s", raw)
	}
	cur := stages[0].Document()
	if n := cur.Lookup("nReturned").Int64(); n != 7 || planIndex(cur.Lookup("$cursor", "queryPlanner", "winningPlan").Document()) != "a_-1" {
		t.Errorf("$cursor: %s", cur)
	}
	if n := stages[1].Document().Lookup("nReturned").Int64(); n != 2 {
		t.Errorf("$group: %s", stages[1])
	}
	if n := stages[3].Document().Lookup("nReturned").Int64(); n != 1 {
		t.Errorf("$limit: %s", stages[3])
	}
}

func mustRaws(t *testing.T, docs []any) []bson.Raw {
	out := make([]bson.Raw, len(docs))
	for i, d := range docs {
		b, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

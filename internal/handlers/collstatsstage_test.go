package handlers_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func aggDocs(t *testing.T, e *dataEnv, c *mongo.Collection, pipeline bson.A) []bson.Raw {
	t.Helper()
	cur, err := c.Aggregate(e.ctx, pipeline)
	if err != nil {
		t.Fatalf("aggregate %s: %v", js(t, pipeline), err)
	}
	var out []bson.Raw
	if err := cur.All(e.ctx, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// $collStats reports the collStats command's numbers under storageStats,
// the count, and the namespace's latencies; mongosh's coll.stats(),
// dataSize(), storageSize(), totalSize() and totalIndexSize() read it.
func TestCollStatsStage(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t)
	size := statsDocs(t, e, c, 30)
	runCmd(t, e, e.client.Database("admin"), bson.D{{Key: "fsync", Value: 1}})
	cmd := runCmd(t, e, e.db, bson.D{{Key: "collStats", Value: c.Name()}})

	docs := aggDocs(t, e, c, bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "storageStats", Value: bson.D{}}, {Key: "count", Value: bson.D{}}}}}})
	if len(docs) != 1 {
		t.Fatalf("$collStats: %d documents", len(docs))
	}
	d := docs[0]
	if d.Lookup("ns").StringValue() != "test."+c.Name() || d.Lookup("host").StringValue() == "" || d.Lookup("localTime").Type != bson.TypeDateTime {
		t.Errorf("$collStats header = %s", d)
	}
	if num(t, d, "count") != 30 || num(t, d, "storageStats.count") != 30 || num(t, d, "storageStats.size") != size {
		t.Errorf("$collStats = %s, want count 30, size %d", d, size)
	}
	for _, f := range []string{"size", "count", "avgObjSize", "storageSize", "nindexes", "totalIndexSize", "totalSize", "indexSizes.a_1", "scaleFactor"} {
		if num(t, d, "storageStats."+f) != num(t, cmd, f) {
			t.Errorf("$collStats storageStats.%s = %d, collStats says %d", f, num(t, d, "storageStats."+f), num(t, cmd, f))
		}
	}
	if _, err := d.LookupErr("ns", "storageStats", "ns"); err == nil {
		t.Errorf("storageStats carries ns: %s", d)
	}
	// scale, and mongosh's _getSingleStorageStatValue pipeline.
	k := aggDocs(t, e, c, bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "storageStats", Value: bson.D{{Key: "scale", Value: 1024}}}}}}})[0]
	if num(t, k, "storageStats.size") != size/1024 || num(t, k, "storageStats.scaleFactor") != 1024 || num(t, k, "storageStats.avgObjSize") != size/30 {
		t.Errorf("scale 1024: %s", k)
	}
	g := aggDocs(t, e, c, bson.A{
		bson.D{{Key: "$collStats", Value: bson.D{{Key: "storageStats", Value: bson.D{}}}}},
		bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "value", Value: bson.D{{Key: "$sum", Value: "$storageStats.totalIndexSize"}}}}}},
	})
	if len(g) != 1 || num(t, g[0], "value") != num(t, cmd, "totalIndexSize") {
		t.Errorf("totalIndexSize pipeline = %s, want %d", jsDocs(t, g), num(t, cmd, "totalIndexSize"))
	}
	// An empty spec: the header only.
	h := aggDocs(t, e, c, bson.A{bson.D{{Key: "$collStats", Value: bson.D{}}}})[0]
	if _, err := h.LookupErr("storageStats"); err == nil {
		t.Errorf("$collStats {} = %s", h)
	}

	// latencyStats counts the commands that ran on the namespace.
	lc := e.fresh(t)
	if _, err := lc.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := lc.FindOne(e.ctx, bson.D{}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	l := aggDocs(t, e, lc, bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "latencyStats", Value: bson.D{{Key: "histograms", Value: true}}}}}}})[0]
	if num(t, l, "latencyStats.writes.ops") != 1 || num(t, l, "latencyStats.reads.ops") != 3 || num(t, l, "latencyStats.transactions.ops") != 0 {
		t.Errorf("latencyStats = %s, want 1 write, 3 reads", l)
	}
	hist, _ := l.Lookup("latencyStats", "reads", "histogram").ArrayOK()
	vals, _ := hist.Values()
	var inBuckets int64
	for _, v := range vals {
		inBuckets += num(t, v.Document(), "count")
	}
	if inBuckets != 3 || num(t, l, "latencyStats.reads.latency") <= 0 {
		t.Errorf("reads histogram = %s", l)
	}
	// The $collStats aggregate itself counts as a read once it ended.
	l2 := aggDocs(t, e, lc, bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "latencyStats", Value: bson.D{}}}}}})[0]
	if num(t, l2, "latencyStats.reads.ops") != 4 {
		t.Errorf("latencyStats after one more aggregate = %s", l2)
	}
	if _, err := l2.LookupErr("latencyStats", "reads", "histogram"); err == nil {
		t.Errorf("histogram without histograms: true: %s", l2)
	}
	// A dropped collection forgets its latencies.
	if err := lc.Drop(e.ctx); err != nil {
		t.Fatal(err)
	}
	l3 := aggDocs(t, e, lc, bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "latencyStats", Value: bson.D{}}}}}})[0]
	if num(t, l3, "latencyStats.reads.ops") != 0 || num(t, l3, "latencyStats.writes.ops") != 0 {
		t.Errorf("latencyStats after drop = %s", l3)
	}

	// Errors, as mongod.
	missing := e.db.Collection("nothere")
	for _, tc := range []struct {
		coll     *mongo.Collection
		pipeline bson.A
		code     int
	}{
		{missing, bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "storageStats", Value: bson.D{}}}}}}, 26},
		{missing, bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "count", Value: bson.D{}}}}}}, 26},
		{c, bson.A{bson.D{{Key: "$collStats", Value: 1}}}, 40166},
		{c, bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "foo", Value: 1}}}}}, 40415},
		{c, bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "latencyStats", Value: bson.D{{Key: "foo", Value: 1}}}}}}}, 40415},
		{c, bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "storageStats", Value: 1}}}}}, 14},
		{c, bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "storageStats", Value: bson.D{{Key: "scale", Value: 0}}}}}}}, 51024},
		{c, bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "count", Value: bson.D{{Key: "a", Value: 1}}}}}}}, 31170},
		{c, bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "queryExecStats", Value: bson.D{}}}}}}, 238},
		{c, bson.A{bson.D{{Key: "$match", Value: bson.D{}}}, bson.D{{Key: "$collStats", Value: bson.D{}}}}, 40602},
	} {
		_, err := tc.coll.Aggregate(e.ctx, tc.pipeline)
		wantCode(t, err, tc.code)
	}
	err := e.db.RunCommand(e.ctx, bson.D{{Key: "aggregate", Value: 1}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$collStats", Value: bson.D{}}}}}, {Key: "cursor", Value: bson.D{}}}).Err()
	wantCode(t, err, 73)
}

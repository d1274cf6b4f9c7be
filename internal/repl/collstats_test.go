package repl_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/repl/repltest"
)

// collStats of local.oplog.rs reports the member's oplog: its entries'
// count and size, and its size cap as maxSize (what mongosh's replication
// helpers read).
func TestCollStatsOplog(t *testing.T) {
	set := repltest.Start(t, 1)
	p := set.Members[set.Primary(t, time.Minute)]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + p.Host + "/?directConnection=true"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	if _, err := client.Database("app").Collection("c").InsertMany(ctx, []any{bson.D{{Key: "x", Value: 1}}, bson.D{{Key: "x", Value: 2}}}); err != nil {
		t.Fatal(err)
	}
	var st struct {
		NS      string `bson:"ns"`
		Count   int64  `bson:"count"`
		Size    int64  `bson:"size"`
		Capped  bool   `bson:"capped"`
		MaxSize int64  `bson:"maxSize"`
	}
	if err := client.Database("local").RunCommand(ctx, bson.D{{Key: "collStats", Value: "oplog.rs"}}).Decode(&st); err != nil {
		t.Fatal(err)
	}
	bytes, count, _, err := p.Repl.Oplog().Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.NS != "local.oplog.rs" || !st.Capped || st.Count < 2 || st.Count > count || st.Size <= 0 || st.Size > bytes ||
		st.MaxSize != oplog.DefaultMaxBytes {
		t.Fatalf("collStats(local.oplog.rs) = %+v; the oplog holds %d entries, %d bytes", st, count, bytes)
	}
	// mongosh's db.getReplicationInfo() reads the same through $collStats
	// (ol.stats()): maxSize and size.
	cur, err := client.Database("local").Collection("oplog.rs").Aggregate(ctx, bson.A{
		bson.D{{Key: "$collStats", Value: bson.D{{Key: "storageStats", Value: bson.D{{Key: "scale", Value: 1}}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	var docs []struct {
		NS           string `bson:"ns"`
		StorageStats struct {
			Count   int64 `bson:"count"`
			Size    int64 `bson:"size"`
			Capped  bool  `bson:"capped"`
			MaxSize int64 `bson:"maxSize"`
		} `bson:"storageStats"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 || docs[0].NS != "local.oplog.rs" || !docs[0].StorageStats.Capped || docs[0].StorageStats.Count < 2 ||
		docs[0].StorageStats.Size <= 0 || docs[0].StorageStats.MaxSize != oplog.DefaultMaxBytes {
		t.Fatalf("$collStats(local.oplog.rs) = %+v", docs)
	}
}

// count and aggregate on local.oplog.rs read the member's oplog (as find
// does); distinct is refused rather than answered from an empty
// collection.
func TestCountAndAggregateOplog(t *testing.T) {
	set := repltest.Start(t, 1)
	p := set.Members[set.Primary(t, time.Minute)]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + p.Host + "/?directConnection=true"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	for i := 0; i < 3; i++ {
		if _, err := client.Database("app").Collection("c").InsertOne(ctx, bson.D{{Key: "i", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	ol := client.Database("local").Collection("oplog.rs")
	filter := bson.D{{Key: "op", Value: "i"}, {Key: "ns", Value: "app.c"}}
	if n, err := ol.CountDocuments(ctx, filter); err != nil || n != 3 { // an aggregation
		t.Fatalf("CountDocuments: %d %v, want 3", n, err)
	}
	var all int64
	_, count, _, err := p.Repl.Oplog().Stats()
	if err != nil {
		t.Fatal(err)
	}
	if all, err = ol.EstimatedDocumentCount(ctx); err != nil || all != count { // the count command
		t.Fatalf("EstimatedDocumentCount: %d %v, want %d", all, err, count)
	}
	var res struct {
		N int64 `bson:"n"`
	}
	if err := client.Database("local").RunCommand(ctx, bson.D{{Key: "count", Value: "oplog.rs"}, {Key: "query", Value: filter}, {Key: "limit", Value: 2}}).Decode(&res); err != nil || res.N != 2 {
		t.Fatalf("count with a limit: %+v %v", res, err)
	}
	var ce mongo.CommandError
	if err := client.Database("local").RunCommand(ctx, bson.D{{Key: "distinct", Value: "oplog.rs"}, {Key: "key", Value: "op"}}).Err(); !errors.As(err, &ce) || ce.Code != 238 {
		t.Fatalf("distinct on the oplog: %v, want 238", err)
	}
}

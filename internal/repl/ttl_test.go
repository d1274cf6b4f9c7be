package repl_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"github.com/cmkdb/cmkdb/internal/repl/repltest"
)

// On a replica set the primary's TTL monitor expires documents through the
// ordinary write path: the deletes are replicated to every member and
// recorded in the oplog as deletes. Every member runs its monitor every
// second; a secondary's must delete nothing on its own (it would fail: only
// the primary writes), so the documents still expiring are the primary's
// work.
func TestTTLReplicates(t *testing.T) {
	set := repltest.Start(t, 3)
	pi := set.Primary(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, m := range set.Members {
		if err := direct(t, m.Host).Database("admin").RunCommand(ctx, bson.D{{Key: "setParameter", Value: 1}, {Key: "ttlMonitorSleepSecs", Value: 1}}).Err(); err != nil {
			t.Fatalf("setParameter on %s: %v", m.Name, err)
		}
	}
	primary := direct(t, set.Members[pi].Host)
	c := primary.Database("app").Collection("ttl")
	old := bson.NewDateTimeFromTime(time.Now().Add(-time.Hour))
	if _, err := c.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: 1}, {Key: "at", Value: old}},
		bson.D{{Key: "_id", Value: 2}, {Key: "at", Value: bson.NewDateTimeFromTime(time.Now().Add(time.Hour))}},
		bson.D{{Key: "_id", Value: 3}, {Key: "at", Value: bson.A{old}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := primary.Database("app").RunCommand(ctx, bson.D{{Key: "createIndexes", Value: "ttl"}, {Key: "indexes", Value: bson.A{
		bson.D{{Key: "key", Value: bson.D{{Key: "at", Value: 1}}}, {Key: "name", Value: "at_1"}, {Key: "expireAfterSeconds", Value: 60}},
	}}}).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for i, m := range set.Members {
		coll := direct(t, m.Host).Database("app", options.Database().SetReadPreference(readpref.SecondaryPreferred())).Collection("ttl")
		for {
			n, err := coll.CountDocuments(ctx, bson.D{})
			if err == nil && n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("member %d: %d documents (%v), want 1", i, n, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for i, m := range set.Members {
		oplog := direct(t, m.Host).Database("local", options.Database().SetReadPreference(readpref.SecondaryPreferred())).Collection("oplog.rs")
		// local.oplog.rs is served to find (not to aggregate's count).
		cur, err := oplog.Find(ctx, bson.D{{Key: "ns", Value: "app.ttl"}, {Key: "op", Value: "d"}})
		if err != nil {
			t.Fatal(err)
		}
		var entries []bson.Raw
		if err := cur.All(ctx, &entries); err != nil || len(entries) != 2 {
			t.Errorf("member %d: %d delete entries in the oplog (%v), want 2", i, len(entries), err)
		}
	}
}

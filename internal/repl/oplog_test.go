package repl_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/internal/repl/repltest"
)

// TestOplogThroughDriver writes through the official driver and reads
// local.oplog.rs on every member: the same entries, in MongoDB's format,
// in the same order with the same timestamps (each member derives its
// oplog from the raft log); a tailable awaitData cursor receives an
// entry written after it was opened, and a {ts: {$gt}} query resumes
// exactly after a position.
func TestOplogThroughDriver(t *testing.T) {
	set := repltest.Start(t, 3)
	set.Primary(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(set.URI()).SetWriteConcern(writeconcern.Majority()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	coll := client.Database("app").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 2}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "m", Value: 3}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}

	type entry struct {
		TS bson.Timestamp `bson:"ts"`
		Op string         `bson:"op"`
		NS string         `bson:"ns"`
		O  bson.Raw       `bson:"o"`
		O2 bson.Raw       `bson:"o2"`
		// The driver's writes are retryable: each entry names the session.
		LSID bson.Raw `bson:"lsid"`
		Txn  int64    `bson:"txnNumber"`
	}
	read := func(host string) []entry {
		t.Helper()
		c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + host + "/?directConnection=true").SetReadPreference(readpref.SecondaryPreferred()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Disconnect(context.Background())
		cur, err := c.Database("local").Collection("oplog.rs").Find(ctx, bson.D{{Key: "ns", Value: "app.c"}})
		if err != nil {
			t.Fatalf("%s: find oplog: %v", host, err)
		}
		var out []entry
		if err := cur.All(ctx, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// The secondaries apply asynchronously after a majority ack: wait for
	// every member to hold the four entries.
	var want []entry
	for i, m := range set.Members {
		var got []entry
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
			got = read(m.Host)
			if len(got) >= 4 || time.Now().After(deadline) {
				break
			}
		}
		if len(got) != 4 {
			t.Fatalf("member %d: %d oplog entries for app.c, want 4: %v", i, len(got), got)
		}
		if i == 0 {
			want = got
			ops := ""
			for _, e := range got {
				ops += e.Op
			}
			if ops != "iuud" {
				t.Fatalf("oplog ops %q, want iuud (insert, update, replacement, delete)", ops)
			}
			if v, _ := got[1].O.Lookup("$v").AsInt64OK(); v != 2 {
				t.Fatalf("update entry %v: want a $v:2 diff", got[1].O)
			}
			if got[2].O.Lookup("m").Int32() != 3 || got[2].O2.Lookup("_id").Int32() != 1 {
				t.Fatalf("replacement entry o=%v o2=%v", got[2].O, got[2].O2)
			}
			if got[3].O.Lookup("_id").Int32() != 1 {
				t.Fatalf("delete entry o=%v", got[3].O)
			}
			for j, e := range got {
				if _, id, ok := e.LSID.Lookup("id").BinaryOK(); !ok || len(id) != 16 || e.Txn < 1 {
					t.Fatalf("entry %d of a retryable write: lsid %v txnNumber %d", j, e.LSID, e.Txn)
				}
			}
			for j := 1; j < len(got); j++ {
				if got[j].TS.Compare(got[j-1].TS) <= 0 {
					t.Fatalf("timestamps not increasing: %v then %v", got[j-1].TS, got[j].TS)
				}
			}
			continue
		}
		for j := range want {
			if got[j].TS != want[j].TS || got[j].Op != want[j].Op || string(got[j].O) != string(want[j].O) {
				t.Fatalf("member %d entry %d = %+v, member 0 has %+v", i, j, got[j], want[j])
			}
		}
	}

	// The oplog is read-only.
	if _, err := client.Database("local").Collection("oplog.rs").InsertOne(ctx, bson.D{{Key: "op", Value: "n"}}); !isCode(err, 73) {
		t.Fatalf("insert into local.oplog.rs: %v, want InvalidNamespace", err)
	}

	// Resume after the second entry: exactly the last two.
	oplogColl := client.Database("local").Collection("oplog.rs")
	cur, err := oplogColl.Find(ctx, bson.D{{Key: "ns", Value: "app.c"}, {Key: "ts", Value: bson.D{{Key: "$gt", Value: want[1].TS}}}})
	if err != nil {
		t.Fatal(err)
	}
	var after []entry
	if err := cur.All(ctx, &after); err != nil {
		t.Fatal(err)
	}
	if len(after) != 2 || after[0].TS != want[2].TS {
		t.Fatalf("{ts: {$gt: second}} found %+v, want the last two entries", after)
	}

	// A tailable awaitData cursor opened at the end sees a later write.
	tail, err := oplogColl.Find(ctx, bson.D{{Key: "ts", Value: bson.D{{Key: "$gt", Value: want[3].TS}}}, {Key: "ns", Value: "app.c"}},
		options.Find().SetCursorType(options.TailableAwait).SetMaxAwaitTime(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Close(context.Background())
	go func() {
		time.Sleep(200 * time.Millisecond)
		coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	}()
	for tail.Next(ctx) == false {
		if tail.Err() != nil || tail.ID() == 0 {
			t.Fatalf("tailable cursor ended: %v", tail.Err())
		}
	}
	var e entry
	if err := tail.Decode(&e); err != nil {
		t.Fatal(err)
	}
	if e.Op != "i" || e.O.Lookup("_id").Int32() != 2 || e.TS.Compare(want[3].TS) <= 0 {
		t.Fatalf("tailed entry %+v, want the insert of _id 2", e)
	}
}

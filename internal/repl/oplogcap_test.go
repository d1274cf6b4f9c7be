package repl_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/repl/repltest"
)

// TestOplogLimitsApply: repl.Config.Oplog (what node.json's
// oplogSizeMB/oplogRetentionHours become) caps every member's oplog. With
// a cap of a few entries, writing many more leaves each member's oplog
// within it, holding the newest entries, the same on every member.
func TestOplogLimitsApply(t *testing.T) {
	const maxBytes = 4 << 10
	set := repltest.Start(t, 3, func(c *repl.Config) { c.Oplog = oplog.Limits{MaxBytes: maxBytes} })
	set.Primary(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(set.URI()).SetWriteConcern(writeconcern.Majority()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	coll := client.Database("app").Collection("c")
	pad := strings.Repeat("x", 200)
	for i := range 100 { // 100 entries of over 200 bytes: five times the cap
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: pad}}); err != nil {
			t.Fatal(err)
		}
	}
	// Every member applies the last write (majority acknowledged it on
	// two; the third catches up): wait for all three to hold it.
	want := set.Members[set.Primary(t, time.Minute)].Repl.Oplog().Last()
	for _, m := range set.Members {
		for m.Repl.Oplog().Last() != want {
			select {
			case <-ctx.Done():
				t.Fatalf("%s: last entry %v, the primary's %v", m.Name, m.Repl.Oplog().Last(), want)
			case <-m.Repl.Oplog().Changed():
			case <-time.After(100 * time.Millisecond):
			}
		}
		bytes, count, first, err := m.Repl.Oplog().Stats()
		if err != nil {
			t.Fatal(err)
		}
		if bytes > maxBytes || count == 0 || count >= 100 {
			t.Fatalf("%s: oplog of %d bytes, %d entries; cap %d bytes", m.Name, bytes, count, maxBytes)
		}
		t.Logf("%s: %d entries, %d bytes, first %v, last %v", m.Name, count, bytes, first, want)
		var newest bson.Raw
		err = m.Repl.Oplog().ScanBackward(ctx, oplog.Timestamp{}, func(s oplog.Stored) (bool, error) { newest = s.O; return false, nil })
		if err != nil || newest.Lookup("_id").AsInt64() != 99 {
			t.Fatalf("%s: newest entry %v, %v; want the insert of 99", m.Name, newest, err)
		}
	}
}

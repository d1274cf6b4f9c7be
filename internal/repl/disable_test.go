package repl_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/repl/repltest"
)

// TestDisabledMemberLeavesAndCatchesUpFromASnapshot: a member whose key is
// revoked leaves the set (no raft, no data) while the others keep taking
// majority writes; the log is compacted past it meanwhile, so when its key
// is valid again it catches up from a snapshot the primary sends, written
// under its own keys. Every member keeps its own key hierarchy.
func TestDisabledMemberLeavesAndCatchesUpFromASnapshot(t *testing.T) {
	set := repltest.Start(t, 3, func(c *repl.Config) {
		c.SnapshotThreshold, c.SnapshotInterval, c.TrailingLogs = 16, 200*time.Millisecond, 8
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := set.Primary(t, time.Minute)
	s := (p + 1) % 3
	client := connect(t, set.URI())
	coll := client.Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Majority()))
	for i := 0; i < 20; i++ {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}

	// Each member has its own node identity and master key.
	ids := map[string]bool{}
	for _, m := range set.Members {
		var ss struct {
			EAR struct {
				NodeID string `bson:"nodeId"`
			} `bson:"encryptionAtRest"`
		}
		if err := direct(t, m.Host).Database("admin").RunCommand(ctx, bson.D{{Key: "serverStatus", Value: 1}}).Decode(&ss); err != nil {
			t.Fatal(err)
		}
		if ss.EAR.NodeID == "" || ids[ss.EAR.NodeID] {
			t.Fatalf("member node ids are not distinct: %q among %v", ss.EAR.NodeID, ids)
		}
		ids[ss.EAR.NodeID] = true
	}

	set.Members[s].Node.Disable("test: key revoked", kms.Reason("KEY_DISABLED"))
	waitFor(t, func() bool { return set.Members[s].Repl.Status().Self == repl.StateRecovering }, "the disabled member to leave")
	// Writes go on until the primary's log no longer holds what the
	// disabled member needs (on a busy machine, snapshots and compaction
	// may take longer than a fixed number of writes).
	behind := set.Members[s].Repl.Status().Applied.Index
	n := 20
	for compacted := false; !compacted; {
		for end := n + 20; n < end; n++ {
			if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: n}}); err != nil {
				t.Fatalf("insert %d with one member disabled: %v", n, err)
			}
		}
		var gap *repl.LogGapError
		_, _, err := set.Members[p].Repl.ReadLog(ctx, behind, oplog.Timestamp{}, 1)
		compacted = errors.As(err, &gap)
		if ctx.Err() != nil {
			t.Fatalf("the primary's log was not compacted past the disabled member (%d writes)", n)
		}
	}
	if err := set.Members[s].Node.Enable(ctx); err != nil {
		t.Fatal(err)
	}
	sec := direct(t, set.Members[s].Host).Database("app", options.Database().SetReadPreference(readpref.SecondaryPreferred())).Collection("c")
	waitFor(t, func() bool {
		c, err := sec.CountDocuments(ctx, bson.D{})
		return err == nil && c == int64(n)
	}, "the re-enabled member to catch up with every document")
	if st := set.Members[s].Repl.Status(); st.Self != repl.StateSecondary || st.Restores == 0 {
		t.Fatalf("re-enabled member is %s after %d snapshot installs, want a SECONDARY caught up from a snapshot", st.Self, st.Restores)
	}
}

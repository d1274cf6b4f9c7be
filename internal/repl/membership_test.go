package repl_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/repl/repltest"
)

// TestAddAndRemoveMember: a fourth member, with its own node master key,
// joins a running three-member set as a non-voter, performs an initial
// sync from a snapshot (the log was compacted past its start) written
// under its own keys, is promoted to voter once caught up, and serves the
// data; every membership change raises setVersion. Then it is removed
// (REMOVED on itself, three voters again), and the primary removing
// itself steps down first; the set keeps taking majority writes.
func TestAddAndRemoveMember(t *testing.T) {
	set := repltest.Start(t, 3, func(c *repl.Config) {
		c.SnapshotThreshold, c.SnapshotInterval, c.TrailingLogs = 16, 200*time.Millisecond, 8
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := set.Primary(t, time.Minute)
	client := connect(t, set.URI())
	coll := client.Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Majority()))
	const canary = "CANARY-initial-sync-plaintext-91c2"
	for i := 0; i < 200; i++ {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "note", Value: canary}}); err != nil {
			t.Fatal(err)
		}
	}
	v0 := set.Members[p].Repl.Status().SetVersion
	// The log must not reach back to the start, or the new member would
	// replay it rather than install a snapshot: on a loaded machine the
	// periodic snapshot may not have run yet.
	if err := set.Members[p].Repl.CompactLog(); err != nil {
		t.Fatal(err)
	}

	// Adding from a secondary is refused: only the primary changes membership.
	// Its static member list is stale (a member that never existed): what
	// it reports once added comes from raft's configuration instead.
	joiner, mc := set.Join(t, "m3", func(c *repl.Config) {
		c.Members = append(c.Members, repl.MemberConfig{Name: "ghost", Host: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"})
	})
	if err := set.Members[(p+1)%3].Repl.AddMember(ctx, mc); mongoerr.CodeOf(err) != mongoerr.NotWritablePrimary {
		t.Fatalf("AddMember on a secondary: %v, want NotWritablePrimary", err)
	}
	waitFor(t, func() bool { return joiner.Repl.Status().Self == repl.StateStartup2 }, "the member waiting to be added in STARTUP2")
	if err := set.Members[p].Repl.AddMember(ctx, mc); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		st := set.Members[p].Repl.Status()
		return st.Voters == 4 && joiner.Repl.Status().Self == repl.StateSecondary
	}, "the new member to be promoted to a voting SECONDARY")
	st := joiner.Repl.Status()
	if st.Restores == 0 || st.InitialSync == nil || st.InitialSync.Active || st.InitialSync.BytesCopied == 0 ||
		st.InitialSync.BytesCopied != st.InitialSync.BytesTotal || st.InitialSync.DocumentsCopied == 0 {
		t.Fatalf("new member's initial sync: %d restores, progress %+v", st.Restores, st.InitialSync)
	}
	t.Logf("initial sync: %d bytes, %d records in %s", st.InitialSync.BytesCopied, st.InitialSync.DocumentsCopied, st.InitialSync.Finished.Sub(st.InitialSync.Started))
	pst := set.Members[p].Repl.Status()
	if pst.SetVersion <= v0 || len(pst.Members) != 4 {
		t.Fatalf("after the add: setVersion %d (was %d), %d members", pst.SetVersion, v0, len(pst.Members))
	}
	for _, ms := range st.Members {
		if ms.Config.Name == "ghost" {
			t.Fatal("the new member reports a member of its stale static list, not raft's configuration")
		}
	}
	if len(st.Members) != 4 || st.Voters != 4 {
		t.Fatalf("the new member sees %d members, %d voters, want 4 and 4", len(st.Members), st.Voters)
	}
	sec := direct(t, joiner.Host).Database("app", options.Database().SetReadPreference(readpref.SecondaryPreferred())).Collection("c")
	waitFor(t, func() bool {
		n, err := sec.CountDocuments(ctx, bson.D{{Key: "note", Value: canary}})
		return err == nil && n == 200
	}, "the new member to serve the 200 documents")

	// Its own node identity and master key; the canary is nowhere in its
	// files in the clear (raft log and snapshots included).
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
			t.Fatalf("node ids not distinct: %q among %v", ss.EAR.NodeID, ids)
		}
		ids[ss.EAR.NodeID] = true
	}
	noCanary(t, joiner.Dir, canary)

	// Writes go on with four voters; then the new member is removed.
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 200}}); err != nil {
		t.Fatal(err)
	}
	v1 := set.Members[p].Repl.Status().SetVersion
	if err := set.Members[p].Repl.RemoveMember(ctx, "m3"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return joiner.Repl.Status().Self == repl.StateRemoved }, "the removed member to see itself REMOVED")
	if st := set.Members[p].Repl.Status(); st.Voters != 3 || st.SetVersion <= v1 {
		t.Fatalf("after the removal: %d voters, setVersion %d (was %d)", st.Voters, st.SetVersion, v1)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 201}}); err != nil {
		t.Fatalf("a majority write after the removal: %v", err)
	}

	// The primary asked to remove itself steps down first; the new
	// primary removes it.
	old := set.Members[p]
	err := old.Repl.RemoveMember(ctx, old.Name)
	if !errors.Is(err, repl.ErrIsPrimary) {
		t.Fatalf("primary removing itself: %v, want ErrIsPrimary", err)
	}
	var np int
	waitFor(t, func() bool {
		for i, m := range set.Members[:3] {
			if i != p && m.Repl.CheckWritable() == nil {
				np = i
				return true
			}
		}
		return false
	}, "a new primary")
	if err := set.Members[np].Repl.RemoveMember(ctx, old.Name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return old.Repl.Status().Self == repl.StateRemoved }, "the old primary REMOVED")
	if st := set.Members[np].Repl.Status(); st.Voters != 2 {
		t.Fatalf("after removing the old primary: %d voters, want 2", st.Voters)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 202}}); err != nil {
		t.Fatalf("a majority write on the two remaining members: %v", err)
	}
}

func noCanary(t *testing.T, dir, canary string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(canary)) {
			t.Errorf("%s holds the canary in plaintext", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
	"github.com/cmkdb/cmkdb/internal/kms/local"
)

// TestReplicaSetRestoreKill9 restores a snapshot into a three-member
// replica set (cmkdbRestore on its primary, what the control plane sends)
// and kills the primary's process with SIGKILL at a random moment of the
// restore, twenty times, restarting it each time. Every member must end
// with the set's data from before the restore or the snapshot's, all
// members the same, never a mix: a restore replicates as staged parts and
// one commit entry.
func TestReplicaSetRestoreKill9(t *testing.T) {
	cmkFile := filepath.Join(t.TempDir(), "cmk.json")
	if _, _, err := local.Ensure(cmkFile); err != nil {
		t.Fatal(err)
	}
	store := t.TempDir()
	// One CMK for every member: a snapshot taken on one opens on another.
	rs := startReplSetConfig(t, 3, func(int) map[string]any {
		return map[string]any{"provider": "local", "local": map[string]any{"keyFile": cmkFile}}
	}, map[string]any{"snapshotDir": store})
	ctx := context.Background()
	client := quickClient(t, rs.procs[0].URI)
	wc := options.Collection().SetWriteConcern(writeconcern.Majority())
	app := client.Database("app").Collection("c", wc)
	pad := string(make([]byte, 1000))
	docs := make([]any, 5000)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: pad}}
	}
	if _, err := app.InsertMany(opCtx(t), docs); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Database("app2").Collection("c", wc).InsertOne(opCtx(t), bson.D{{Key: "_id", Value: "kept"}}); err != nil {
		t.Fatal(err)
	}
	p := rs.primary(ctx)
	snap := filepath.Join(store, "base")
	if err := quickClient(t, "mongodb://"+rs.hosts[p]+"/?directConnection=true").Database("admin").
		RunCommand(opCtx(t), bson.D{{Key: "cmkdbCheckpoint", Value: snap}}).Err(); err != nil {
		t.Fatal(err)
	}
	// After the snapshot: more documents, a new database, a drop.
	diverge := func() {
		t.Helper()
		e2etest.Eventually(t, e2etest.Scaled(time.Minute), "writes after the snapshot", func() error {
			for i := 10000; i < 10100; i++ {
				if _, err := app.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: i}}); err != nil && !mongo.IsDuplicateKeyError(err) {
					return err
				}
			}
			if _, err := client.Database("app3").Collection("c", wc).InsertOne(opCtx(t), bson.D{{Key: "_id", Value: 1}}); err != nil && !mongo.IsDuplicateKeyError(err) {
				return err
			}
			return client.Database("app2").Drop(opCtx(t))
		})
	}
	diverge()

	// The state of one member: "old", "snapshot", or what else it holds.
	state := func(host string) string {
		c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + host + "/?directConnection=true&readPreference=secondaryPreferred").
			SetServerSelectionTimeout(2 * time.Second))
		if err != nil {
			return err.Error()
		}
		defer c.Disconnect(context.Background())
		n, err := c.Database("app").Collection("c").CountDocuments(opCtx(t), bson.D{})
		if err != nil {
			return err.Error()
		}
		late, _ := c.Database("app").Collection("c").CountDocuments(opCtx(t), bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: 10000}}}})
		names, err := c.ListDatabaseNames(opCtx(t), bson.D{})
		if err != nil {
			return err.Error()
		}
		has := map[string]bool{}
		for _, n := range names {
			has[n] = true
		}
		switch {
		case n == 5100 && late == 100 && has["app3"] && !has["app2"]:
			return "old"
		case n == 5000 && late == 0 && !has["app3"] && has["app2"]:
			return "snapshot"
		}
		return fmt.Sprintf("a mix: %d documents (%d after the snapshot), databases %v", n, late, names)
	}

	const rounds = 20
	restored := 0
	for round := 0; round < rounds; round++ {
		p := rs.primary(ctx)
		done := make(chan error, 1)
		go func() {
			c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + rs.hosts[p] + "/?directConnection=true"))
			if err != nil {
				done <- err
				return
			}
			defer c.Disconnect(context.Background())
			done <- c.Database("admin").RunCommand(context.Background(), bson.D{{Key: "cmkdbRestore", Value: snap}}).Err()
		}()
		time.Sleep(time.Duration(rand.IntN(1000)) * time.Millisecond)
		rs.procs[p].Kill(t)
		err := <-done
		rs.start(p)
		rs.primary(ctx)
		var states []string
		e2etest.Eventually(t, e2etest.Scaled(2*time.Minute), "every member old or restored, all the same", func() error {
			states = states[:0]
			for _, h := range rs.hosts {
				states = append(states, state(h))
			}
			for _, s := range states {
				if s != states[0] || (s != "old" && s != "snapshot") {
					return fmt.Errorf("members: %q", states)
				}
			}
			return nil
		})
		t.Logf("round %d: restore answered %v; every member %s", round, err, states[0])
		if states[0] == "snapshot" {
			restored++
			diverge()
		}
	}
	t.Logf("%d of %d killed restores had committed", restored, rounds)
}

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
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/internal/repl/repltest"
	"github.com/cmkdb/cmkdb/internal/wire/wiretest"
)

func connect(t *testing.T, uri string) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A client of a stopped member would wait its whole server
		// selection timeout to end its sessions there.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Disconnect(ctx)
	})
	return c
}

func direct(t *testing.T, host string) *mongo.Client {
	return connect(t, "mongodb://"+host+"/?directConnection=true&retryWrites=false")
}

func code(err error) int {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return int(ce.Code)
	}
	var we mongo.WriteException
	if errors.As(err, &we) && len(we.WriteErrors) > 0 {
		return we.WriteErrors[0].Code
	}
	return 0
}

// TestReplicaSet drives a three-member set through the official driver:
// discovery, majority writes, reads on secondaries, the errors of a
// secondary, a failover, and no plaintext in any member's files.
func TestReplicaSet(t *testing.T) {
	set := repltest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := set.Primary(t, time.Minute)

	client := connect(t, set.URI())
	coll := client.Database("app").Collection("things", options.Collection().SetWriteConcern(writeconcern.Majority()))
	const canary = "CANARY-replicated-plaintext-7f3a"
	for i := 0; i < 100; i++ {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "note", Value: canary}}); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "note", Value: 1}}}); err != nil {
		t.Fatal(err)
	}

	// hello: every member reports the set and the same primary.
	for i, m := range set.Members {
		var hello bson.M
		if err := direct(t, m.Host).Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
			t.Fatal(err)
		}
		if hello["setName"] != "rs0" || hello["me"] != m.Host || len(hello["hosts"].(bson.A)) != 3 {
			t.Fatalf("member %d hello: %v", i, hello)
		}
		if (i == p) != hello["isWritablePrimary"].(bool) || (i != p) != hello["secondary"].(bool) {
			t.Fatalf("member %d (primary %d) hello: %v", i, p, hello)
		}
	}

	// Secondaries: writes refused, reads need a read preference, and the
	// majority-acknowledged documents arrive.
	for i, m := range set.Members {
		if i == p {
			continue
		}
		dc := direct(t, m.Host)
		// (A refused write marks the server unknown to the client that
		// sent it until its next heartbeat: use another client for reads.)
		_, err := direct(t, m.Host).Database("app").Collection("things").InsertOne(ctx, bson.D{{Key: "x", Value: 1}})
		if code(err) != 10107 {
			t.Fatalf("insert on secondary %d: %v, want NotWritablePrimary", i, err)
		}
		// A driver always allows a secondary it is directly connected to;
		// a raw command without $readPreference asks for the primary.
		raw, err := wiretest.Dial(t, m.Host).Command("app", bson.D{{Key: "find", Value: "things"}})
		if err != nil || wiretest.ErrorCode(raw) != 13435 {
			t.Fatalf("find on secondary %d without secondaryOk: %v %v, want NotPrimaryNoSecondaryOk", i, raw, err)
		}
		sec := dc.Database("app", options.Database().SetReadPreference(readpref.SecondaryPreferred())).Collection("things")
		waitFor(t, func() bool {
			n, err := sec.CountDocuments(ctx, bson.D{{Key: "note", Value: canary}})
			return err == nil && n == 100
		}, "100 documents on secondary")
	}

	// readConcern linearizable: the primary serves it, a secondary refuses it.
	lin := client.Database("app", options.Database().SetReadConcern(&readconcern.ReadConcern{Level: "linearizable"})).Collection("things")
	if n, err := lin.CountDocuments(ctx, bson.D{}); err != nil || n != 100 {
		t.Fatalf("linearizable count on the primary: %d, %v", n, err)
	}
	for i, m := range set.Members {
		if i == p {
			continue
		}
		// (Through a driver, the refusal marks the member unknown and the
		// driver's read retry waits out its timeout: ask on the wire.)
		raw, err := wiretest.Dial(t, m.Host).Command("app", bson.D{{Key: "find", Value: "things"},
			{Key: "readConcern", Value: bson.D{{Key: "level", Value: "linearizable"}}},
			{Key: "$readPreference", Value: bson.D{{Key: "mode", Value: "secondary"}}}})
		if err != nil || wiretest.ErrorCode(raw) != 10107 {
			t.Fatalf("linearizable read on secondary %d: %v %v, want NotWritablePrimary", i, raw, err)
		}
		var ss struct {
			PID  int64 `bson:"pid"`
			Repl struct {
				SetName   string `bson:"setName"`
				Secondary bool   `bson:"secondary"`
			} `bson:"repl"`
		}
		if err := direct(t, m.Host).Database("admin").RunCommand(ctx, bson.D{{Key: "serverStatus", Value: 1}}).Decode(&ss); err != nil {
			t.Fatal(err)
		}
		if ss.Repl.SetName != "rs0" || !ss.Repl.Secondary || ss.PID == 0 {
			t.Fatalf("serverStatus on secondary %d: %+v", i, ss)
		}
	}

	// Reads at a point in time are refused, not served at another one.
	for _, rc := range []bson.D{{{Key: "level", Value: "snapshot"}}, {{Key: "afterClusterTime", Value: bson.Timestamp{T: 1, I: 1}}}} {
		raw, err := wiretest.Dial(t, set.Members[p].Host).Command("app", bson.D{{Key: "find", Value: "things"}, {Key: "readConcern", Value: rc}})
		if err != nil || wiretest.ErrorCode(raw) != 115 {
			t.Fatalf("readConcern %v on the primary: %v %v, want CommandNotSupported", rc, raw, err)
		}
	}

	// w beyond what the set can acknowledge is refused before anything is written.
	_, err := coll.Database().Collection("things", options.Collection().SetWriteConcern(&writeconcern.WriteConcern{W: 5})).InsertOne(ctx, bson.D{{Key: "_id", Value: "w5"}})
	if code(err) != 100 {
		t.Fatalf("w:5 on three members: %v, want UnsatisfiableWriteConcern", err)
	}

	// Failover: stop the primary; a new one is elected and the driver
	// follows it; every acknowledged write is there.
	t0 := time.Now()
	set.Stop(p)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "after-failover"}})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write accepted after the primary stopped: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("failover: a write accepted %s after the primary stopped", time.Since(t0))
	n, err := coll.CountDocuments(ctx, bson.D{})
	if err != nil || n != 101 {
		t.Fatalf("after failover: %d documents (%v), want 101", n, err)
	}

	// No member wrote the documents in the clear, anywhere.
	for _, m := range set.Members {
		err := filepath.WalkDir(m.Dir, func(path string, d fs.DirEntry, err error) error {
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
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

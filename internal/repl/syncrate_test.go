package repl_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/repl/repltest"
)

// TestInitialSyncThroughput measures a new member's initial sync of
// CMKDB_SYNC_MB megabytes (skipped without it): the snapshot streamed
// over mutual TLS and restored under the new member's keys.
//
//	CMKDB_SYNC_MB=64 go test -run TestInitialSyncThroughput -v ./internal/repl
func TestInitialSyncThroughput(t *testing.T) {
	mb, _ := strconv.Atoi(os.Getenv("CMKDB_SYNC_MB"))
	if mb <= 0 {
		t.Skip("set CMKDB_SYNC_MB to measure")
	}
	set := repltest.Start(t, 3, func(c *repl.Config) {
		c.SnapshotThreshold, c.SnapshotInterval, c.TrailingLogs = 16, 200*time.Millisecond, 8
		// Three members loading a gigabyte in one process on a shared
		// machine miss 500 ms heartbeats; elections measure nothing here.
		c.HeartbeatTimeout, c.ElectionTimeout = 2*time.Second, 2*time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	p := set.Primary(t, time.Minute)
	coll := connect(t, set.URI()).Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Majority()))
	pad := strings.Repeat("x", 4000)
	batch := make([]any, 256)
	loadStart := time.Now()
	for n := 0; n < mb*1024*1024/(4096*len(batch))+1; n++ {
		for i := range batch {
			batch[i] = bson.D{{Key: "_id", Value: n*len(batch) + i}, {Key: "pad", Value: pad}}
		}
		insertBatch(t, ctx, coll, batch)
	}
	t.Logf("loaded %d MB with w: majority in %s", mb, time.Since(loadStart).Round(time.Millisecond))
	time.Sleep(time.Second) // a snapshot covers the data
	joiner, mc := set.Join(t, "m3")
	if err := set.Members[p].Repl.AddMember(ctx, mc); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Minute)
	for joiner.Repl.Status().Self != repl.StateSecondary {
		if time.Now().After(deadline) {
			t.Fatal("not promoted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	s := joiner.Repl.Status().InitialSync
	if s == nil {
		t.Fatal("no snapshot was installed")
	}
	el := s.Finished.Sub(s.Started)
	t.Logf("initial sync: %.1f MB, %d records in %s: %.1f MB/s", float64(s.BytesCopied)/1e6, s.DocumentsCopied, el.Round(time.Millisecond),
		float64(s.BytesCopied)/1e6/el.Seconds())
}

// insertBatch inserts batch, again after a leadership change (a loaded
// machine can delay heartbeats past the election timeout during a long
// load): the data must arrive, whichever member takes it. A retried batch
// that had been committed after all is recognised by its duplicate _ids.
func insertBatch(t *testing.T, ctx context.Context, coll *mongo.Collection, batch []any) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		_, err := coll.InsertMany(ctx, batch, options.InsertMany().SetOrdered(false))
		var bwe mongo.BulkWriteException
		if err == nil || (errors.As(err, &bwe) && bwe.WriteConcernError == nil && allDuplicates(bwe)) {
			return
		}
		if attempt == 10 || ctx.Err() != nil {
			t.Fatal(err)
		}
		t.Logf("retrying a batch after: %v", err)
		time.Sleep(time.Second)
	}
}

func allDuplicates(bwe mongo.BulkWriteException) bool {
	for _, we := range bwe.WriteErrors {
		if !mongo.IsDuplicateKeyError(we) {
			return false
		}
	}
	return len(bwe.WriteErrors) > 0
}

package repl_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/repl/repltest"
)

// TestReplSetResizeOplog runs MongoDB's replSetResizeOplog through the
// driver on each member: the new size is recorded (Config.SaveOplogLimits,
// node.json in a real member) and applied to that member's running oplog
// only; MongoDB's validation errors; minRetentionHours other than 0 is
// refused (cmkdb's oplog has a maximum age, not a minimum).
func TestReplSetResizeOplog(t *testing.T) {
	var mu sync.Mutex
	saved := map[string]oplog.Limits{}
	set := repltest.Start(t, 3, func(c *repl.Config) {
		me := c.Me
		c.Oplog = oplog.Limits{Retention: 5 * time.Hour}
		c.SaveOplogLimits = func(l oplog.Limits) error {
			mu.Lock()
			defer mu.Unlock()
			saved[me] = l
			return nil
		}
	})
	set.Primary(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := set.Members[1]
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + m.Host + "/?directConnection=true"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	admin := client.Database("admin")
	run := func(cmd bson.D) error { return admin.RunCommand(ctx, cmd).Err() }

	if err := run(bson.D{{Key: "replSetResizeOplog", Value: 1}, {Key: "size", Value: 2048.5}}); err != nil {
		t.Fatal(err)
	}
	want := oplog.Limits{MaxBytes: int64(2048.5 * (1 << 20)), Retention: 5 * time.Hour}
	if got := m.Repl.Oplog().Limits(); got != want {
		t.Fatalf("running oplog limits %+v, want %+v", got, want)
	}
	mu.Lock()
	if saved[m.Name] != want || len(saved) != 1 {
		t.Fatalf("recorded %+v, want %+v for %s only", saved, want, m.Name)
	}
	mu.Unlock()
	if other := set.Members[2].Repl.Oplog().Limits(); other.MaxBytes != oplog.DefaultMaxBytes {
		t.Fatalf("another member's oplog changed: %+v", other)
	}
	if err := run(bson.D{{Key: "replSetResizeOplog", Value: 1}, {Key: "minRetentionHours", Value: 0}}); err != nil {
		t.Fatalf("minRetentionHours 0: %v", err)
	}

	refused := map[string]struct {
		cmd  bson.D
		code int32
	}{
		"no field":        {bson.D{{Key: "replSetResizeOplog", Value: 1}}, 72},
		"size below 990":  {bson.D{{Key: "replSetResizeOplog", Value: 1}, {Key: "size", Value: 989.9}}, 51024},
		"size above 1 PB": {bson.D{{Key: "replSetResizeOplog", Value: 1}, {Key: "size", Value: float64(1<<30) + 1}}, 51024},
		"size a string":   {bson.D{{Key: "replSetResizeOplog", Value: 1}, {Key: "size", Value: "1000"}}, 14},
		"negative hours":  {bson.D{{Key: "replSetResizeOplog", Value: 1}, {Key: "minRetentionHours", Value: -1}}, 51024},
		"minimum hours":   {bson.D{{Key: "replSetResizeOplog", Value: 1}, {Key: "size", Value: 1000}, {Key: "minRetentionHours", Value: 2}}, 72},
	}
	for name, c := range refused {
		err := run(c.cmd)
		var ce mongo.CommandError
		if !errors.As(err, &ce) || ce.Code != c.code {
			t.Errorf("%s: %v, want code %d", name, err, c.code)
		}
	}
	if got := m.Repl.Oplog().Limits(); got != want {
		t.Fatalf("a refused resize changed the limits: %+v", got)
	}
	// Not on admin: refused as MongoDB's admin-only commands are.
	if err := client.Database("app").RunCommand(ctx, bson.D{{Key: "replSetResizeOplog", Value: 1}, {Key: "size", Value: 1000}}).Err(); err == nil {
		t.Fatal("replSetResizeOplog on a database other than admin was accepted")
	}
}

// TestReplSetResizeOplogNotDurable: a member that cannot record new limits
// refuses the resize rather than apply what a restart would undo.
func TestReplSetResizeOplogNotDurable(t *testing.T) {
	set := repltest.Start(t, 1)
	set.Primary(t, time.Minute)
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + set.Members[0].Host + "/?directConnection=true"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	err = client.Database("admin").RunCommand(context.Background(), bson.D{{Key: "replSetResizeOplog", Value: 1}, {Key: "size", Value: 1000}}).Err()
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != 20 {
		t.Fatalf("%v, want 20 IllegalOperation", err)
	}
	if got := set.Members[0].Repl.Oplog().Limits(); got.MaxBytes != oplog.DefaultMaxBytes {
		t.Fatalf("limits changed: %+v", got)
	}
}

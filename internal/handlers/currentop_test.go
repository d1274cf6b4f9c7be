package handlers_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/handlers/handlerstest"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// waitingGetMore opens a tailable awaitData cursor on a capped collection
// of client and starts iterating it: its getMore waits (up to 30 s) for a
// write. The returned channel yields the iteration's error.
func waitingGetMore(t *testing.T, ctx context.Context, client *mongo.Client, db, coll string) <-chan error {
	t.Helper()
	d := client.Database(db)
	if err := d.RunCommand(ctx, bson.D{{Key: "create", Value: coll}, {Key: "capped", Value: true}, {Key: "size", Value: 1 << 20}}).Err(); err != nil {
		t.Fatal(err)
	}
	c := d.Collection(coll)
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	cur, err := c.Find(ctx, bson.D{}, options.Find().SetCursorType(options.TailableAwait).SetMaxAwaitTime(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer cur.Close(context.Background())
		for cur.Next(ctx) {
		}
		done <- cur.Err()
	}()
	return done
}

// findOp polls currentOp with filter until one operation matches.
func findOp(t *testing.T, ctx context.Context, client *mongo.Client, filter bson.D) bson.Raw {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		cmd := append(bson.D{{Key: "currentOp", Value: 1}}, filter...)
		res, err := client.Database("admin").RunCommand(ctx, cmd).Raw()
		if err != nil {
			t.Fatalf("currentOp: %v", err)
		}
		vals, _ := res.Lookup("inprog").Array().Values()
		if len(vals) > 0 {
			return vals[0].Document()
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no operation matches %s", js(t, filter))
	return nil
}

// currentOp lists the commands in progress with mongod's fields; killOp
// interrupts one, which fails with 11601 Interrupted.
func TestCurrentOpAndKillOp(t *testing.T) {
	e := handlerstest.StartEnv(t, handlers.Options{})
	ctx := handlerstest.Context(t)
	tailer := e.Connect(t, func(o *options.ClientOptions) { o.SetAppName("tailer") })
	done := waitingGetMore(t, ctx, tailer, "test", "capped")

	op := findOp(t, ctx, e.Client, bson.D{{Key: "op", Value: "getmore"}, {Key: "ns", Value: "test.capped"}})
	if !op.Lookup("active").Boolean() || op.Lookup("type").StringValue() != "op" || op.Lookup("opid").Type != bson.TypeInt32 ||
		op.Lookup("command", "getMore").Type != bson.TypeInt64 || op.Lookup("command", "collection").StringValue() != "capped" ||
		op.Lookup("client").StringValue() == "" || op.Lookup("desc").StringValue() == "" ||
		op.Lookup("clientMetadata", "application", "name").StringValue() != "tailer" {
		t.Errorf("currentOp entry = %s", op)
	}
	if _, err := op.LookupErr("microsecs_running"); err != nil {
		t.Errorf("no microsecs_running: %s", op)
	}
	if _, err := op.LookupErr("secs_running"); err != nil {
		t.Errorf("no secs_running: %s", op)
	}
	// The op is still running: killOp interrupts it.
	select {
	case err := <-done:
		t.Fatalf("the getMore ended before killOp: %v", err)
	default:
	}
	res := runCmdClient(t, ctx, e.Client, "admin", bson.D{{Key: "killOp", Value: 1}, {Key: "op", Value: op.Lookup("opid").Int32()}})
	if res.Lookup("info").StringValue() != "attempting to kill op" {
		t.Errorf("killOp = %s", res)
	}
	select {
	case err := <-done:
		wantCode(t, err, 11601)
	case <-time.After(20 * time.Second):
		t.Fatal("the killed getMore did not end")
	}

	// $currentOp shows the aggregate running it; idleConnections lists
	// the others as inactive; a killed opid that is gone is not an error.
	agg := func(stage bson.D, more ...bson.D) []bson.Raw {
		pipeline := bson.A{bson.D{{Key: "$currentOp", Value: stage}}}
		for _, m := range more {
			pipeline = append(pipeline, m)
		}
		cur, err := e.Client.Database("admin").Aggregate(ctx, pipeline)
		if err != nil {
			t.Fatalf("$currentOp %s: %v", js(t, stage), err)
		}
		var out []bson.Raw
		if err := cur.All(ctx, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	self := agg(bson.D{}, bson.D{{Key: "$match", Value: bson.D{{Key: "command.aggregate", Value: 1}, {Key: "command.pipeline.0.$currentOp", Value: bson.D{{Key: "$exists", Value: true}}}}}})
	if len(self) != 1 || self[0].Lookup("ns").StringValue() != "admin.$cmd.aggregate" || self[0].Lookup("op").StringValue() != "command" {
		t.Errorf("$currentOp of itself = %s", jsDocs(t, self))
	}
	idle := agg(bson.D{{Key: "idleConnections", Value: true}}, bson.D{{Key: "$match", Value: bson.D{{Key: "active", Value: false}}}})
	if len(idle) == 0 || idle[0].Lookup("connectionId").Type == 0 {
		t.Errorf("idle connections = %s", jsDocs(t, idle))
	}
	if n := len(agg(bson.D{}, bson.D{{Key: "$match", Value: bson.D{{Key: "active", Value: false}}}})); n != 0 {
		t.Errorf("without idleConnections: %d inactive entries", n)
	}
	// An idle cursor (opened, no getMore running).
	cc := e.Client.Database("test").Collection("many")
	var docs []any
	for i := range 10 {
		docs = append(docs, bson.D{{Key: "_id", Value: i}})
	}
	if _, err := cc.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	cur, err := cc.Find(ctx, bson.D{}, options.Find().SetBatchSize(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close(ctx)
	ic := agg(bson.D{{Key: "idleCursors", Value: true}}, bson.D{{Key: "$match", Value: bson.D{{Key: "type", Value: "idleCursor"}}}})
	if len(ic) != 1 || ic[0].Lookup("cursor", "cursorId").Int64() != cur.ID() || ic[0].Lookup("ns").StringValue() != "test.many" {
		t.Errorf("idle cursors = %s, want cursor %d", jsDocs(t, ic), cur.ID())
	}
	runCmdClient(t, ctx, e.Client, "admin", bson.D{{Key: "killOp", Value: 1}, {Key: "op", Value: op.Lookup("opid").Int32()}})

	// Errors, as mongod.
	admin := e.Client.Database("admin")
	for _, tc := range []struct {
		db   *mongo.Database
		cmd  bson.D
		code int
	}{
		{admin, bson.D{{Key: "killOp", Value: 1}}, 4},
		{admin, bson.D{{Key: "killOp", Value: 1}, {Key: "op", Value: "x"}}, 14},
		{admin, bson.D{{Key: "killOp", Value: 1}, {Key: "op", Value: int64(1) << 40}}, 26823},
		{e.Client.Database("test"), bson.D{{Key: "killOp", Value: 1}, {Key: "op", Value: 1}}, 13},
		{e.Client.Database("test"), bson.D{{Key: "currentOp", Value: 1}}, 13},
		{e.Client.Database("test"), aggCmd(1, bson.D{{Key: "$currentOp", Value: bson.D{}}}), 73},
		{admin, aggCmd("c", bson.D{{Key: "$currentOp", Value: bson.D{}}}), 73},
		{admin, aggCmd(1, bson.D{{Key: "$currentOp", Value: 1}}), 14},
		{admin, aggCmd(1, bson.D{{Key: "$currentOp", Value: bson.D{{Key: "allUsers", Value: 1}}}}), 14},
		{admin, aggCmd(1, bson.D{{Key: "$currentOp", Value: bson.D{{Key: "idleConnections", Value: 1}}}}), 9},
		{admin, aggCmd(1, bson.D{{Key: "$currentOp", Value: bson.D{{Key: "foo", Value: true}}}}), 9},
		{admin, aggCmd(1, bson.D{{Key: "$match", Value: bson.D{}}}, bson.D{{Key: "$currentOp", Value: bson.D{}}}), 40602},
	} {
		wantCode(t, tc.db.RunCommand(ctx, tc.cmd).Err(), tc.code)
	}
}

func aggCmd(target any, stages ...bson.D) bson.D {
	p := bson.A{}
	for _, s := range stages {
		p = append(p, s)
	}
	return bson.D{{Key: "aggregate", Value: target}, {Key: "pipeline", Value: p}, {Key: "cursor", Value: bson.D{}}}
}

func runCmdClient(t *testing.T, ctx context.Context, c *mongo.Client, db string, cmd bson.D) bson.Raw {
	t.Helper()
	raw, err := c.Database(db).RunCommand(ctx, cmd).Raw()
	if err != nil {
		t.Fatalf("%s: %v", js(t, cmd), err)
	}
	return raw
}

// Without the cluster privilege a user sees and kills only their own
// operations ($ownOps, allUsers: false); another's: 13.
func TestCurrentOpPrivileges(t *testing.T) {
	e := handlerstest.StartEnv(t, handlers.Options{AuthRequired: true})
	ctx := handlerstest.Context(t)
	if err := mkUser(ctx, e.Client, "admin", "root", "r00t-pw", bson.A{"root"}); err != nil {
		t.Fatal(err)
	}
	root := e.Connect(t, func(o *options.ClientOptions) { o.SetAuth(*scramCred("root", "r00t-pw")) })
	if err := mkUser(ctx, root, "app", "ann", "ann-pw", bson.A{"readWrite"}); err != nil {
		t.Fatal(err)
	}
	if err := mkUser(ctx, root, "app", "bob", "bob-pw", bson.A{"readWrite"}); err != nil {
		t.Fatal(err)
	}
	as := func(user, pwd string) *mongo.Client {
		return e.Connect(t, func(o *options.ClientOptions) {
			o.SetAuth(options.Credential{AuthMechanism: "SCRAM-SHA-256", AuthSource: "app", Username: user, Password: pwd})
		})
	}
	ann, bob := as("ann", "ann-pw"), as("bob", "bob-pw")
	done := waitingGetMore(t, ctx, ann, "app", "capped")
	op := findOp(t, ctx, root, bson.D{{Key: "op", Value: "getmore"}})
	opid := op.Lookup("opid").Int32()
	if u := op.Lookup("effectiveUsers", "0", "user").StringValue(); u != "ann" {
		t.Errorf("effectiveUsers = %s", op)
	}

	_, err := authRun(ctx, bob, "admin", bson.D{{Key: "currentOp", Value: 1}})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	cur, err := bob.Database("admin").Aggregate(ctx, bson.A{bson.D{{Key: "$currentOp", Value: bson.D{{Key: "allUsers", Value: true}}}}})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	// bob's own operations: his aggregate only, never ann's getMore.
	cur, err = bob.Database("admin").Aggregate(ctx, bson.A{bson.D{{Key: "$currentOp", Value: bson.D{}}}})
	if err != nil {
		t.Fatal(err)
	}
	var own []bson.Raw
	if err := cur.All(ctx, &own); err != nil {
		t.Fatal(err)
	}
	for _, d := range own {
		if d.Lookup("effectiveUsers", "0", "user").StringValue() != "bob" {
			t.Errorf("bob sees %s", d)
		}
	}
	if len(own) != 1 {
		t.Errorf("bob's own ops = %s", jsDocs(t, own))
	}
	res, err := authRun(ctx, ann, "admin", bson.D{{Key: "currentOp", Value: 1}, {Key: "$ownOps", Value: true}, {Key: "op", Value: "getmore"}})
	if err != nil {
		t.Fatal(err)
	}
	if vals, _ := res.Lookup("inprog").Array().Values(); len(vals) != 1 {
		t.Errorf("ann's own getMores = %s", res)
	}
	_, err = authRun(ctx, bob, "admin", bson.D{{Key: "killOp", Value: 1}, {Key: "op", Value: opid}})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	select {
	case err := <-done:
		t.Fatalf("bob's killOp ended ann's getMore: %v", err)
	default:
	}
	// ann kills her own.
	if _, err := authRun(ctx, ann, "admin", bson.D{{Key: "killOp", Value: 1}, {Key: "op", Value: opid}}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var se mongo.ServerError
		if !errors.As(err, &se) || !se.HasErrorCode(11601) {
			t.Fatalf("killed getMore: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the killed getMore did not end")
	}
}

// The handshake's client metadata cannot be sent again on the connection:
// 186 ClientMetadataCannotBeMutated.
func TestClientMetadataImmutable(t *testing.T) {
	e := handlerstest.StartEnv(t, handlers.Options{})
	ctx := handlerstest.Context(t)
	err := e.Client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1},
		{Key: "client", Value: bson.D{{Key: "application", Value: bson.D{{Key: "name", Value: "again"}}}}}}).Err()
	wantCode(t, err, 186)
	if err := e.Client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Err(); err != nil {
		t.Fatalf("hello without client: %v", err)
	}
}

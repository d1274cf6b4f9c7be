package handlers_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/handlers/handlerstest"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// A cursor belongs to the user who opened it: another user's getMore and
// killCursors fail with Unauthorized, its owner's work.
func TestCursorOwner(t *testing.T) {
	e := handlerstest.StartEnv(t, handlers.Options{AuthRequired: true})
	ctx := handlerstest.Context(t)
	if err := mkUser(ctx, e.Client, "admin", "root", "r00t-pw", bson.A{"root"}); err != nil {
		t.Fatal(err)
	}
	root := e.Connect(t, func(o *options.ClientOptions) { o.SetAuth(*scramCred("root", "r00t-pw")) })
	if err := mkUser(ctx, root, "admin", "other", "other-pw", bson.A{"root"}); err != nil {
		t.Fatal(err)
	}
	other := e.Connect(t, func(o *options.ClientOptions) { o.SetAuth(*scramCred("other", "other-pw")) })
	var docs []any
	for i := 0; i < 5; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: i}})
	}
	if _, err := root.Database("app").Collection("c").InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	reply, err := authRun(ctx, root, "app", bson.D{{Key: "find", Value: "c"}, {Key: "batchSize", Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	id := reply.Lookup("cursor", "id").Int64()
	getMore := bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: 1}}
	_, err = authRun(context.Background(), other, "app", getMore)
	wantAuthCode(t, err, mongoerr.Unauthorized)
	_, err = authRun(ctx, other, "app", bson.D{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: bson.A{id}}})
	wantAuthCode(t, err, mongoerr.Unauthorized)
	// The driver sends a context's deadline as maxTimeMS, which a getMore
	// refuses: these run without one.
	bg := context.Background()
	if reply, err = authRun(bg, root, "app", getMore); err != nil {
		t.Fatalf("owner's getMore: %v", err)
	}
	if n, _ := reply.Lookup("cursor", "nextBatch").Array().Values(); len(n) != 1 {
		t.Errorf("nextBatch %s", reply)
	}
	reply, err = authRun(ctx, root, "app", bson.D{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: bson.A{id, int64(12345)}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := js(t, reply); got != `{"cursorsKilled":[`+js(t, id)+`],"cursorsNotFound":[12345],"cursorsAlive":[],"cursorsUnknown":[],"ok":1.0}` {
		t.Errorf("killCursors %s", got)
	}
}

// A cursor whose collection is dropped (or replaced) is killed: its next
// getMore fails with QueryPlanKilled, and the cursor is gone.
func TestCursorOnDroppedCollection(t *testing.T) {
	e := newDataEnv(t)
	// More documents than an aggregation reads from its scan at once, so
	// that the scan goes back to the collection after the drop.
	var docs []any
	for i := 0; i < 3000; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "a", Value: i}})
	}
	for _, tc := range []struct {
		name string
		cmd  func(coll string) bson.D
	}{
		{"find", func(coll string) bson.D { return bson.D{{Key: "find", Value: coll}, {Key: "batchSize", Value: 1}} }},
		{"aggregate", func(coll string) bson.D {
			return bson.D{{Key: "aggregate", Value: coll}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$match", Value: bson.D{}}}}}, {Key: "cursor", Value: bson.D{{Key: "batchSize", Value: 1}}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.fresh(t, docs...)
			reply, err := e.db.RunCommand(e.ctx, tc.cmd(c.Name())).Raw()
			if err != nil {
				t.Fatal(err)
			}
			id := reply.Lookup("cursor", "id").Int64()
			if err := c.Drop(e.ctx); err != nil {
				t.Fatal(err)
			}
			// A new collection of the same name is another collection.
			if _, err := c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 100}}); err != nil {
				t.Fatal(err)
			}
			getMore := bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: c.Name()}}
			bg := context.Background()
			wantCode(t, e.db.RunCommand(bg, getMore).Err(), 175)
			wantCode(t, e.db.RunCommand(bg, getMore).Err(), 43)
		})
	}
}

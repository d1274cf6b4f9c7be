package handlers_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/handlers/handlerstest"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// killSessions and killAllSessions kill the cursors opened under the
// sessions they name (and abort their transactions); a cursor of another
// session goes on.
func TestKillSessions(t *testing.T) {
	e := handlerstest.StartEnv(t, handlers.Options{})
	ctx := handlerstest.Context(t)
	c := e.Client.Database("ks").Collection("c")
	for i := 0; i < 5; i++ {
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	open := func() (*mongo.Cursor, *mongo.Session) {
		s, err := e.Client.StartSession()
		if err != nil {
			t.Fatal(err)
		}
		cur, err := c.Find(mongo.NewSessionContext(ctx, s), bson.D{}, options.Find().SetBatchSize(1))
		if err != nil {
			t.Fatal(err)
		}
		if !cur.Next(ctx) {
			t.Fatal(cur.Err())
		}
		return cur, s
	}
	a, sa := open()
	b, sb := open()
	defer sa.EndSession(ctx)
	defer sb.EndSession(ctx)
	_, id, _ := sa.ID().Lookup("id").BinaryOK()
	if err := e.Client.Database("admin").RunCommand(ctx, bson.D{{Key: "killSessions", Value: bson.A{bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: id}}}}}}).Err(); err != nil {
		t.Fatal(err)
	}
	for a.Next(ctx) {
	}
	wantAuthCode(t, a.Err(), mongoerr.CursorNotFound)
	if !b.Next(ctx) {
		t.Fatalf("another session's cursor was killed: %v", b.Err())
	}
	if err := e.Client.Database("admin").RunCommand(ctx, bson.D{{Key: "killAllSessions", Value: bson.A{}}}).Err(); err != nil {
		t.Fatal(err)
	}
	for b.Next(ctx) {
	}
	wantAuthCode(t, b.Err(), mongoerr.CursorNotFound)
	err := e.Client.Database("admin").RunCommand(ctx, bson.D{{Key: "killAllSessions", Value: bson.A{bson.D{{Key: "user", Value: "u"}, {Key: "db", Value: "x"}}}}}).Err()
	wantAuthCode(t, err, mongoerr.NotImplemented)
}

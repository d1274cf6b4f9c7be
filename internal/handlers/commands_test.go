package handlers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/handlers/handlerstest"
	"github.com/cmkdb/cmkdb/internal/kms"
)

// listCommands shows the command table in mongod's shape, and every
// command it lists is served (none answers CommandNotFound).
func TestListCommandsIsTheCommandTable(t *testing.T) {
	e := newDataEnv(t)
	var reply struct {
		Commands map[string]struct {
			Help         string `bson:"help"`
			RequiresAuth bool   `bson:"requiresAuth"`
			AdminOnly    bool   `bson:"adminOnly"`
			SecondaryOk  bool   `bson:"secondaryOk"`
		} `bson:"commands"`
	}
	if err := e.client.Database("admin").RunCommand(e.ctx, bson.D{{Key: "listCommands", Value: 1}}).Decode(&reply); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                    string
		requiresAuth, adminOnly bool
	}{
		{"hello", false, false},
		{"isMaster", false, false},
		{"ismaster", false, false},
		{"saslStart", false, false},
		{"find", true, false},
		{"findandmodify", true, false},
		{"listCommands", true, false},
		{"listDatabases", true, true},
		{"renameCollection", true, true},
		{"commitTransaction", true, true},
	} {
		c, ok := reply.Commands[tc.name]
		if !ok {
			t.Errorf("%s is not listed", tc.name)
			continue
		}
		if c.Help == "" || c.RequiresAuth != tc.requiresAuth || c.AdminOnly != tc.adminOnly {
			t.Errorf("%s: %+v, want requiresAuth %v adminOnly %v and a help text", tc.name, c, tc.requiresAuth, tc.adminOnly)
		}
	}
	if _, listed := reply.Commands["noSuchCommand"]; listed {
		t.Error("an unknown command is listed")
	}
	wantCode(t, e.client.Database("lc").RunCommand(e.ctx, bson.D{{Key: "noSuchCommand", Value: 1}}).Err(), 59)
	for name, c := range reply.Commands {
		db := "lc"
		if c.AdminOnly {
			db = "admin"
		}
		err := e.client.Database(db).RunCommand(e.ctx, bson.D{{Key: name, Value: 1}}).Err()
		if codeOf(err) == 59 {
			t.Errorf("%s is listed but not served: %v", name, err)
		}
	}
	// An admin-only command elsewhere is refused as mongod refuses it.
	wantCode(t, e.client.Database("lc").RunCommand(e.ctx, bson.D{{Key: "listDatabases", Value: 1}}).Err(), 13)
}

// Transactions and retryable writes need a replica set: a standalone node
// refuses them as a standalone mongod does, before any write is applied.
func TestTransactionsRefusedBeforeAnyWrite(t *testing.T) {
	e := newDataEnv(t)
	coll := e.fresh(t)

	// The driver's transaction API.
	sess, err := e.client.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(e.ctx)
	_, err = sess.WithTransaction(e.ctx, func(sc context.Context) (any, error) {
		if _, err := coll.InsertOne(sc, bson.D{{Key: "_id", Value: "in-txn"}}); err != nil {
			return nil, err
		}
		return coll.InsertOne(sc, bson.D{{Key: "_id", Value: "in-txn-2"}})
	})
	wantCode(t, err, 20)
	if err := sess.StartTransaction(); err != nil {
		t.Fatal(err)
	}
	_, err = coll.InsertOne(mongo.NewSessionContext(e.ctx, sess), bson.D{{Key: "_id", Value: "aborted"}})
	wantCode(t, err, 20)
	_ = sess.AbortTransaction(e.ctx)

	// The same on the wire, field by field.
	insert := func(extra ...bson.E) bson.D {
		return append(bson.D{{Key: "insert", Value: coll.Name()}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: "raw"}}}}}, extra...)
	}
	txn := bson.E{Key: "txnNumber", Value: int64(1)}
	for _, tc := range []struct {
		name string
		db   string
		cmd  bson.D
		code int
	}{
		{"transaction statement", "test", insert(txn, bson.E{Key: "startTransaction", Value: true}, bson.E{Key: "autocommit", Value: false}), 20},
		{"retryable write", "test", insert(txn), 20},
		{"autocommit without txnNumber", "test", insert(bson.E{Key: "autocommit", Value: false}), 72},
		{"startTransaction without autocommit", "test", insert(bson.E{Key: "startTransaction", Value: true}), 72},
		{"commitTransaction", "admin", bson.D{{Key: "commitTransaction", Value: 1}, txn, {Key: "autocommit", Value: false}}, 20},
		{"abortTransaction", "admin", bson.D{{Key: "abortTransaction", Value: 1}, txn, {Key: "autocommit", Value: false}}, 20},
		{"commitTransaction alone", "admin", bson.D{{Key: "commitTransaction", Value: 1}}, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, e.client.Database(tc.db).RunCommand(e.ctx, tc.cmd).Err(), tc.code)
		})
	}
	if got := all(t, e.ctx, coll); got != "[]" {
		t.Fatalf("documents written by refused transactions: %s", got)
	}

	// hello gives drivers no reason to send transaction numbers: no
	// replica set name, so retryable writes stay off.
	var hello bson.M
	if err := e.client.Database("admin").RunCommand(e.ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"setName", "hosts", "msg"} {
		if _, ok := hello[field]; ok {
			t.Errorf("hello advertises %s: %v", field, hello[field])
		}
	}
	// A plain write through the driver carries no txnNumber and works.
	if _, err := coll.InsertOne(e.ctx, bson.D{{Key: "_id", Value: "plain"}}); err != nil {
		t.Fatalf("plain insert: %v", err)
	}
}

// writeConcern is validated as a standalone mongod 7.0 validates it, before
// the command runs; what a single node can satisfy works.
func TestWriteConcern(t *testing.T) {
	e := newDataEnv(t)
	coll := e.fresh(t)
	for i, tc := range []struct {
		name string
		wc   any
		code int // 0: accepted
	}{
		{"w 1", bson.D{{Key: "w", Value: 1}}, 0},
		{"w majority", bson.D{{Key: "w", Value: "majority"}}, 0},
		{"j true", bson.D{{Key: "j", Value: true}}, 0},
		{"j as a number", bson.D{{Key: "j", Value: 1}}, 0},
		{"wtimeout", bson.D{{Key: "w", Value: 1}, {Key: "wtimeout", Value: 100}}, 0},
		{"empty", bson.D{}, 0},
		{"w 1.0", bson.D{{Key: "w", Value: 1.0}}, 0},
		{"w 2 needs other members", bson.D{{Key: "w", Value: 2}}, 2},
		{"w 5 needs other members", bson.D{{Key: "w", Value: 5}}, 2},
		{"w negative", bson.D{{Key: "w", Value: -1}}, 9},
		{"w above 50", bson.D{{Key: "w", Value: 51}}, 9},
		{"w unknown mode", bson.D{{Key: "w", Value: "dc1"}}, 2},
		{"w tags", bson.D{{Key: "w", Value: bson.D{{Key: "dc", Value: 1}}}}, 2},
		{"w empty tags", bson.D{{Key: "w", Value: bson.D{}}}, 9},
		{"w boolean", bson.D{{Key: "w", Value: true}}, 9},
		{"j a string", bson.D{{Key: "j", Value: "bad"}}, 14},
		{"wtimeout a string", bson.D{{Key: "wtimeout", Value: "1s"}}, 14},
		{"j and fsync", bson.D{{Key: "j", Value: true}, {Key: "fsync", Value: true}}, 9},
		{"not a document", "majority", 14},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := int32(i)
			err := e.db.RunCommand(e.ctx, bson.D{{Key: "insert", Value: coll.Name()},
				{Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: id}}}}, {Key: "writeConcern", Value: tc.wc}}).Err()
			n, cerr := coll.CountDocuments(e.ctx, bson.D{{Key: "_id", Value: id}})
			if cerr != nil {
				t.Fatal(cerr)
			}
			if tc.code == 0 {
				if err != nil || n != 1 {
					t.Fatalf("err %v, %d documents written, want the write acknowledged", err, n)
				}
				return
			}
			wantCode(t, err, tc.code)
			if n != 0 {
				t.Fatal("a refused write concern's write was applied")
			}
		})
	}
	// A command that writes nothing takes no write concern.
	wantCode(t, e.db.RunCommand(e.ctx, bson.D{{Key: "find", Value: coll.Name()}, {Key: "writeConcern", Value: bson.D{{Key: "w", Value: 1}}}}).Err(), 72)

	// w: 0 is unacknowledged: the driver sends moreToCome and gets no
	// reply; the write happens.
	unack := e.client.Database("test", options.Database().SetWriteConcern(writeconcern.Unacknowledged())).Collection(coll.Name())
	if _, err := unack.InsertOne(e.ctx, bson.D{{Key: "_id", Value: "w0"}}); err != nil {
		t.Fatalf("w:0 insert: %v", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := coll.CountDocuments(e.ctx, bson.D{{Key: "_id", Value: "w0"}})
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the w:0 write never appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// While the node is DISABLED only the commands whose table entry says so
// answer; every other one is refused with KeyUnavailable and the reason.
func TestDisabledNodeServesOnlyCommandsThatTouchNoData(t *testing.T) {
	env := handlerstest.StartEnv(t, handlers.Options{})
	ctx := handlerstest.Context(t)
	if _, err := env.Client.Database("test").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	env.Node.Disable("the customer master key is invalid (KEY_DISABLED): test", kms.ReasonKeyDisabled)
	for _, tc := range []struct {
		db     string
		cmd    bson.D
		served bool
	}{
		{"admin", bson.D{{Key: "hello", Value: 1}}, true},
		{"admin", bson.D{{Key: "ping", Value: 1}}, true},
		{"admin", bson.D{{Key: "serverStatus", Value: 1}}, true},
		{"admin", bson.D{{Key: "listCommands", Value: 1}}, true},
		{"admin", bson.D{{Key: "connectionStatus", Value: 1}}, true},
		{"test", bson.D{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: bson.A{int64(7)}}}, true},
		{"test", bson.D{{Key: "find", Value: "c"}}, false},
		{"test", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{}}}}, false},
		{"test", bson.D{{Key: "listCollections", Value: 1}}, false},
		{"admin", bson.D{{Key: "listDatabases", Value: 1}}, false},
		{"test", bson.D{{Key: "dropDatabase", Value: 1}}, false},
	} {
		t.Run(tc.cmd[0].Key, func(t *testing.T) {
			err := env.Client.Database(tc.db).RunCommand(ctx, tc.cmd).Err()
			if tc.served {
				if err != nil {
					t.Fatalf("refused while disabled: %v", err)
				}
				return
			}
			wantCode(t, err, 41001)
			if !strings.Contains(err.Error(), "KEY_DISABLED") {
				t.Fatalf("the refusal does not say why: %v", err)
			}
		})
	}
}

package handlers_test

import (
	"context"
	"net"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/handlers/handlerstest"
	"github.com/cmkdb/cmkdb/internal/testenv"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// FuzzHandleCommand feeds arbitrary command documents to every command
// handler of a real encrypted node: whatever the input, a handler answers
// with a reply or a typed error and never panics, and the node keeps
// serving (a ping after each input succeeds).
//
// The node is set up once per worker and its files are on tmpfs: every
// write command syncs the node's write-ahead log, and on a busy machine's
// disk the fuzzer would measure fsync instead of the handlers.
func FuzzHandleCommand(f *testing.F) {
	testenv.UseRAMTempDir(f)
	env := handlerstest.StartEnv(f, handlers.Options{})
	seeds := []bson.D{
		{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "a", Value: 1}}}}},
		{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 0}}}}}, {Key: "sort", Value: bson.D{{Key: "a", Value: -1}}}},
		{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{bson.D{{Key: "q", Value: bson.D{}}, {Key: "u", Value: bson.D{{Key: "$inc", Value: bson.D{{Key: "a", Value: 1}}}}}, {Key: "multi", Value: true}}}}},
		{{Key: "delete", Value: "c"}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: bson.D{}}, {Key: "limit", Value: 1}}}}},
		{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$a"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}}}}, {Key: "cursor", Value: bson.D{}}},
		{{Key: "createIndexes", Value: "c"}, {Key: "indexes", Value: bson.A{bson.D{{Key: "key", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "name", Value: "a_1"}}}}},
		{{Key: "findAndModify", Value: "c"}, {Key: "query", Value: bson.D{}}, {Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "b", Value: 2}}}}}},
		{{Key: "getMore", Value: int64(1)}, {Key: "collection", Value: "c"}},
		{{Key: "distinct", Value: "c"}, {Key: "key", Value: "a"}},
		{{Key: "count", Value: "c"}, {Key: "query", Value: bson.D{{Key: "a", Value: 1}}}},
		{{Key: "renameCollection", Value: "fuzz.c"}, {Key: "to", Value: "fuzz.d"}},
		{{Key: "saslStart", Value: 1}, {Key: "mechanism", Value: "SCRAM-SHA-256"}, {Key: "payload", Value: []byte("n,,n=u,r=abc")}},
		{{Key: "listCollections", Value: 1}, {Key: "filter", Value: bson.D{{Key: "name", Value: bson.D{{Key: "$regex", Value: "^c"}}}}}},
		{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{}}}, {Key: "writeConcern", Value: bson.D{{Key: "w", Value: "majority"}, {Key: "j", Value: true}, {Key: "wtimeout", Value: 5}}}},
		{{Key: "find", Value: "c"}, {Key: "maxTimeMS", Value: 1.0}},
		{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{}}, {Key: "txnNumber", Value: int64(1)}, {Key: "autocommit", Value: false}},
		{{Key: "listCommands", Value: 1}},
	}
	for _, s := range seeds {
		b, _ := bson.Marshal(s)
		f.Add(b)
	}
	conn := wire.NewConnState(1, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, &net.TCPAddr{}, nil)
	ping, _ := bson.Marshal(bson.D{{Key: "ping", Value: 1}})
	f.Fuzz(func(t *testing.T, cmd []byte) {
		if err := wire.ValidateDocument(cmd); err != nil {
			return // the wire layer refuses it before any handler sees it
		}
		raw := bson.Raw(cmd)
		first, err := raw.IndexErr(0)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout(10*time.Second))
		defer cancel()
		req := &wire.Request{DB: "fuzz", Name: first.Key(), Command: raw}
		_, _ = env.Handler.Handle(ctx, conn, req)
		if _, err := env.Handler.Handle(ctx, conn, &wire.Request{DB: "fuzz", Name: "ping", Command: ping}); err != nil {
			t.Fatalf("node stopped answering after %s: %v", raw, err)
		}
	})
}

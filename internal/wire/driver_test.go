package wire_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/cmkdb/cmkdb/internal/wire"
	"github.com/cmkdb/cmkdb/internal/wire/wiretest"
)

// minimalNode is the smallest command set the official driver needs to
// connect, run commands and disconnect. It records what it saw.
type minimalNode struct {
	mu       sync.Mutex
	seen     []string
	ops      map[string]wiremessage.OpCode // first opcode per command
	inserted []bson.Raw
}

func (n *minimalNode) registry(t *testing.T) *wire.Registry {
	r := wire.NewRegistry()
	hello := func(_ context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
		if md, ok := req.Command.Lookup("client").DocumentOK(); ok {
			c.SetClientMetadata(md)
		}
		return bson.Marshal(bson.D{
			{Key: "ismaster", Value: true},
			{Key: "isWritablePrimary", Value: true},
			{Key: "helloOk", Value: true},
			{Key: "maxBsonObjectSize", Value: int32(wire.MaxBSONObjectSize)},
			{Key: "maxMessageSizeBytes", Value: int32(wire.MaxMessageSizeBytes)},
			{Key: "maxWriteBatchSize", Value: int32(wire.MaxWriteBatchSize)},
			{Key: "localTime", Value: time.Now()},
			{Key: "logicalSessionTimeoutMinutes", Value: int32(30)},
			{Key: "connectionId", Value: c.ID()},
			{Key: "minWireVersion", Value: int32(0)},
			{Key: "maxWireVersion", Value: int32(21)},
			{Key: "readOnly", Value: false},
		})
	}
	handlers := map[string]wire.HandlerFunc{
		"hello":    hello,
		"isMaster": hello,
		"ping":     func(context.Context, *wire.ConnState, *wire.Request) (bson.Raw, error) { return nil, nil },
		"buildInfo": func(context.Context, *wire.ConnState, *wire.Request) (bson.Raw, error) {
			return bson.Marshal(bson.D{
				{Key: "version", Value: "7.0.0"},
				{Key: "versionArray", Value: bson.A{int32(7), int32(0), int32(0), int32(0)}},
				{Key: "maxBsonObjectSize", Value: int32(wire.MaxBSONObjectSize)},
			})
		},
		"endSessions": func(context.Context, *wire.ConnState, *wire.Request) (bson.Raw, error) { return nil, nil },
		"insert": func(_ context.Context, _ *wire.ConnState, req *wire.Request) (bson.Raw, error) {
			docs, _ := req.Command.Lookup("documents").Array().Values()
			n.mu.Lock()
			for _, d := range docs {
				n.inserted = append(n.inserted, append(bson.Raw(nil), d.Document()...))
			}
			n.mu.Unlock()
			return bson.Marshal(bson.D{{Key: "n", Value: int32(len(docs))}})
		},
	}
	for name, h := range handlers {
		err := r.Register(name, func(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
			n.mu.Lock()
			n.seen = append(n.seen, req.Name)
			if _, ok := n.ops[req.Name]; !ok {
				n.ops[req.Name] = req.OpCode
			}
			n.mu.Unlock()
			return h(ctx, c, req)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func (n *minimalNode) saw(name string) (wiremessage.OpCode, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	op, ok := n.ops[name]
	return op, ok
}

// TestOfficialDriver connects the official Go driver to a Server, both with
// the legacy OP_QUERY handshake (the default) and with a declared server
// API (OP_MSG hello), and runs commands including a batched insert that
// travels as an OP_MSG document sequence.
func TestOfficialDriver(t *testing.T) {
	tests := []struct {
		name        string
		serverAPI   bool
		handshakeOp wiremessage.OpCode
		handshake   string
	}{
		{"legacy handshake", false, wiremessage.OpQuery, "isMaster"},
		{"server API handshake", true, wiremessage.OpMsg, "hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := &minimalNode{ops: map[string]wiremessage.OpCode{}}
			srv := wiretest.StartServer(t, node.registry(t))

			opts := options.Client().
				ApplyURI("mongodb://" + srv.Addr + "/?directConnection=true").
				SetServerSelectionTimeout(5 * time.Second).
				SetConnectTimeout(5 * time.Second)
			if tt.serverAPI {
				opts.SetServerAPIOptions(options.ServerAPI(options.ServerAPIVersion1))
			}
			client, err := mongo.Connect(opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			if err := client.Ping(ctx, nil); err != nil {
				t.Fatalf("ping: %v", err)
			}
			var info bson.M
			if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
				t.Fatalf("buildInfo: %v", err)
			}
			if info["version"] != "7.0.0" {
				t.Errorf("buildInfo = %v", info)
			}
			docs := []any{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "_id", Value: 3}}}
			if _, err := client.Database("test").Collection("c").InsertMany(ctx, docs); err != nil {
				t.Fatalf("insertMany: %v", err)
			}
			err = client.Database("test").RunCommand(ctx, bson.D{{Key: "noSuchCommand", Value: 1}}).Err()
			var ce mongo.CommandError
			if !errors.As(err, &ce) || ce.Code != 59 || ce.Message != "no such command: 'noSuchCommand'" {
				t.Errorf("unknown command error = %#v", err)
			}
			// Starting a session makes Disconnect send endSessions.
			sess, err := client.StartSession()
			if err != nil {
				t.Fatal(err)
			}
			if err := mongo.WithSession(ctx, sess, func(ctx context.Context) error {
				return client.Ping(ctx, nil)
			}); err != nil {
				t.Fatalf("ping in session: %v", err)
			}
			sess.EndSession(ctx)
			if err := client.Disconnect(ctx); err != nil {
				t.Fatalf("disconnect: %v", err)
			}

			if op, ok := node.saw(tt.handshake); !ok || op != tt.handshakeOp {
				t.Errorf("handshake %s arrived as %v (seen=%v)", tt.handshake, op, ok)
			}
			if _, ok := node.saw("endSessions"); !ok {
				t.Error("driver never sent endSessions")
			}
			node.mu.Lock()
			defer node.mu.Unlock()
			if len(node.inserted) != 3 {
				t.Fatalf("inserted %d documents", len(node.inserted))
			}
			if id := node.inserted[2].Lookup("_id").Int32(); id != 3 {
				t.Errorf("third document _id = %d", id)
			}
		})
	}
}

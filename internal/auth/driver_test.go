package auth_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/internal/auth"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/testenv"
	"github.com/cmkdb/cmkdb/internal/wire"
	"github.com/cmkdb/cmkdb/internal/wire/wiretest"
)

// node is a minimal server with authentication: enough for the official
// driver to handshake, authenticate and run a command that requires it.
type node struct {
	mu   sync.Mutex
	seen map[string]int
}

func (n *node) count(name string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seen[name]
}

func (n *node) registry(t *testing.T, a *auth.Authenticator) *wire.Registry {
	r := wire.NewRegistry()
	hello := func(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
		reply := bson.D{
			{Key: "isWritablePrimary", Value: true},
			{Key: "ismaster", Value: true},
			{Key: "helloOk", Value: true},
			{Key: "maxBsonObjectSize", Value: int32(wire.MaxBSONObjectSize)},
			{Key: "maxMessageSizeBytes", Value: int32(wire.MaxMessageSizeBytes)},
			{Key: "maxWriteBatchSize", Value: int32(wire.MaxWriteBatchSize)},
			{Key: "localTime", Value: time.Now()},
			{Key: "logicalSessionTimeoutMinutes", Value: int32(30)},
			{Key: "connectionId", Value: c.ID()},
			{Key: "minWireVersion", Value: int32(0)},
			{Key: "maxWireVersion", Value: int32(21)},
		}
		return bson.Marshal(append(reply, a.HelloFields(ctx, c, req)...))
	}
	whoami := func(_ context.Context, c *wire.ConnState, _ *wire.Request) (bson.Raw, error) {
		p, ok := c.Authenticated()
		if !ok {
			return nil, mongoerr.New(mongoerr.Unauthorized, "command requires authentication")
		}
		return bson.Marshal(bson.D{{Key: "user", Value: p.User}, {Key: "db", Value: p.DB}})
	}
	noop := func(context.Context, *wire.ConnState, *wire.Request) (bson.Raw, error) { return nil, nil }
	handlers := map[string]wire.HandlerFunc{
		"hello": hello, "isMaster": hello, "ping": noop, "endSessions": noop,
		"whoami":       whoami,
		"saslStart":    a.SaslStart,
		"saslContinue": a.SaslContinue,
	}
	for name, h := range handlers {
		err := r.Register(name, func(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
			n.mu.Lock()
			n.seen[req.Name]++
			n.mu.Unlock()
			return h(ctx, c, req)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// TestOfficialDriverSCRAM authenticates the official Go driver against a
// wire.Server using this package: explicit SCRAM-SHA-256 and SHA-1, the
// default mechanism negotiation (saslSupportedMechs, then speculative
// authentication inside hello), and failures.
func TestOfficialDriverSCRAM(t *testing.T) {
	store := auth.NewMemoryStore()
	if err := store.AddUser("admin", "alice", "pencil"); err != nil {
		t.Fatal(err)
	}
	if err := store.AddUser("app", "bob", "s3cr3t", auth.SCRAMSHA256); err != nil {
		t.Fatal(err)
	}
	a := auth.NewAuthenticator(store)

	tests := []struct {
		name        string
		cred        options.Credential
		wantUser    string
		wantDB      string
		speculative bool // authenticated inside hello: no saslStart sent
		fail        bool
	}{
		{"SCRAM-SHA-256", options.Credential{AuthMechanism: "SCRAM-SHA-256", Username: "alice", Password: "pencil"}, "alice", "admin", true, false},
		{"SCRAM-SHA-1", options.Credential{AuthMechanism: "SCRAM-SHA-1", Username: "alice", Password: "pencil"}, "alice", "admin", true, false},
		{"negotiated mechanism", options.Credential{Username: "alice", Password: "pencil"}, "alice", "admin", true, false},
		{"auth source", options.Credential{AuthSource: "app", Username: "bob", Password: "s3cr3t"}, "bob", "app", true, false},
		{"wrong password", options.Credential{AuthMechanism: "SCRAM-SHA-256", Username: "alice", Password: "wrong"}, "", "", false, true},
		{"unknown user", options.Credential{Username: "mallory", Password: "pencil"}, "", "", false, true},
		{"wrong auth source", options.Credential{AuthSource: "admin", Username: "bob", Password: "s3cr3t"}, "", "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &node{seen: map[string]int{}}
			var logs testenv.SyncBuffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			srv := wiretest.StartServer(t, n.registry(t, a), func(c *wire.Config) { c.Logger = logger })
			defer func() {
				_ = srv.Stop()
				if out := logs.String(); strings.Contains(out, "$binary") || strings.Contains(out, "c=biws") || strings.Contains(out, tt.cred.Password) {
					t.Errorf("authentication material logged:\n%s", out)
				} else if !strings.Contains(out, "cmd=saslContinue") {
					t.Errorf("no per-command debug lines:\n%s", out)
				}
			}()
			client, err := mongo.Connect(options.Client().
				ApplyURI("mongodb://" + srv.Addr + "/?directConnection=true").
				SetAuth(tt.cred).
				SetServerSelectionTimeout(5 * time.Second))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			defer func() { _ = client.Disconnect(ctx) }()

			var who struct{ User, DB string }
			err = client.Database("admin").RunCommand(ctx, bson.D{{Key: "whoami", Value: 1}}).Decode(&who)
			if tt.fail {
				if err == nil {
					t.Fatal("authenticated with bad credentials")
				}
				if !strings.Contains(err.Error(), "AuthenticationFailed") || !strings.Contains(err.Error(), "Authentication failed.") {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("whoami: %v", err)
			}
			if who.User != tt.wantUser || who.DB != tt.wantDB {
				t.Errorf("authenticated as %s@%s", who.User, who.DB)
			}
			if got := n.count("saslStart") == 0; got != tt.speculative {
				t.Errorf("speculative = %v (saslStart sent %d times)", got, n.count("saslStart"))
			}
			if n.count("saslContinue") == 0 {
				t.Error("no saslContinue")
			}
		})
	}
}

// TestUnauthenticatedDriver checks the enforcement hook works end to end:
// without credentials the command is refused with Unauthorized.
func TestUnauthenticatedDriver(t *testing.T) {
	a := auth.NewAuthenticator(auth.NewMemoryStore())
	n := &node{seen: map[string]int{}}
	srv := wiretest.StartServer(t, n.registry(t, a))
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + srv.Addr + "/?directConnection=true"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer func() { _ = client.Disconnect(ctx) }()
	err = client.Database("admin").RunCommand(ctx, bson.D{{Key: "whoami", Value: 1}}).Err()
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != int32(mongoerr.Unauthorized) {
		t.Fatalf("err = %v", err)
	}
}

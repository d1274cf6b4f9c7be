// Package handlerstest runs a real cmkdb node for tests: an encrypted
// node in a temporary directory (local CMK, keystore, encrypted storage),
// the command handlers, and the wire server on a loopback port, with a
// client of the official Go driver connected to it.
package handlerstest

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/wire"
	"github.com/cmkdb/cmkdb/internal/wire/wiretest"
)

// Env is a running node and what tests need to reach it.
type Env struct {
	Node    *node.Node
	Handler *handlers.Handler
	// Addr is the wire server's host:port.
	Addr string
	// Client is connected to Addr (directConnection, no auth).
	Client *mongo.Client
}

// Start runs an encrypted node with default handler options and returns a
// connected client. Everything stops when the test ends.
func Start(t testing.TB) (*mongo.Client, *node.Node) {
	t.Helper()
	e := StartEnv(t, handlers.Options{})
	return e.Client, e.Node
}

// StartEnv is Start with handler options (e.g. AuthRequired).
func StartEnv(t testing.TB, opts handlers.Options) *Env {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	l := node.Layout{Dir: t.TempDir()}
	cmk, _, err := local.Ensure(l.LocalKeyPath())
	if err != nil {
		t.Fatalf("local CMK: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.Open(ctx, l, cmk, node.Options{Logger: quiet})
	if err != nil {
		t.Fatalf("node.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("node.Close: %v", err)
		}
	})
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	var srv atomic.Pointer[wiretest.Server]
	opts.ConnCount = func() int {
		if s := srv.Load(); s != nil {
			return s.Server.NumConns()
		}
		return 0
	}
	opts.Conns = func() []*wire.ConnState {
		if s := srv.Load(); s != nil {
			return s.Server.Conns()
		}
		return nil
	}
	opts.NetStats = func() wire.NetStats {
		if s := srv.Load(); s != nil {
			return s.Server.Stats()
		}
		return wire.NetStats{}
	}
	h := handlers.New(n, opts)
	t.Cleanup(h.Close)
	s := wiretest.StartServer(t, h, func(c *wire.Config) { c.Logger = quiet })
	srv.Store(s)
	e := &Env{Node: n, Handler: h, Addr: s.Addr}
	e.Client = e.Connect(t, nil)
	return e
}

// Connect returns a new client of the node; configure, if not nil, adjusts
// the options (credentials, timeouts) first. It disconnects when the test
// ends.
func (e *Env) Connect(t testing.TB, configure func(*options.ClientOptions)) *mongo.Client {
	t.Helper()
	opts := options.Client().
		ApplyURI("mongodb://" + e.Addr + "/?directConnection=true").
		SetServerSelectionTimeout(10 * time.Second).
		SetConnectTimeout(10 * time.Second)
	if configure != nil {
		configure(opts)
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		t.Fatalf("mongo.Connect: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Disconnect(ctx)
	})
	return client
}

// Context returns a context that ends with the test (or after a minute).
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

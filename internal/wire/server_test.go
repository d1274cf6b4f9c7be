package wire_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/testenv"
	"github.com/cmkdb/cmkdb/internal/wire"
	"github.com/cmkdb/cmkdb/internal/wire/wiretest"
)

// echoHandler answers every command with what it saw, so tests can check
// what reached the handler.
func echoHandler(t testing.TB) wire.HandlerFunc {
	return func(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
		switch req.Name {
		case "fail":
			return nil, mongoerr.New(mongoerr.NamespaceNotFound, "ns does not exist")
		case "failUntyped":
			return nil, errors.New("boom")
		case "panic":
			panic("handler bug")
		}
		n := 0
		if arr, ok := req.Command.Lookup("documents").ArrayOK(); ok {
			vals, _ := arr.Values()
			n = len(vals)
		}
		return wiretest.Marshal(t, bson.D{
			{Key: "cmd", Value: req.Name},
			{Key: "db", Value: req.DB},
			{Key: "op", Value: int32(req.OpCode)},
			{Key: "n", Value: n},
			{Key: "conn", Value: c.ID()},
		}), nil
	}
}

func startEcho(t *testing.T, configure ...func(*wire.Config)) *wiretest.Server {
	return wiretest.StartServer(t, echoHandler(t), configure...)
}

// assertServing checks that a fresh connection still gets answers.
func assertServing(t *testing.T, addr string) {
	t.Helper()
	c := wiretest.Dial(t, addr)
	reply, err := c.Command("admin", bson.D{{Key: "ping", Value: 1}})
	if err != nil {
		t.Fatalf("server stopped serving: %v", err)
	}
	if wiretest.ErrorCode(reply) != 0 {
		t.Fatalf("ping failed: %s", reply)
	}
}

func TestOpMsgRoundTrip(t *testing.T) {
	srv := startEcho(t)
	c := wiretest.Dial(t, srv.Addr)
	reply, err := c.Command("test", bson.D{{Key: "hello", Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if reply.Lookup("cmd").StringValue() != "hello" || reply.Lookup("db").StringValue() != "test" {
		t.Errorf("reply = %s", reply)
	}
	if reply.Lookup("op").Int32() != int32(wiremessage.OpMsg) || reply.Lookup("ok").Double() != 1 {
		t.Errorf("reply = %s", reply)
	}
}

func TestOpMsgDocumentSequencesReachHandler(t *testing.T) {
	srv := startEcho(t)
	c := wiretest.Dial(t, srv.Addr)
	body := wiretest.Marshal(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"}})
	seq := wire.DocumentSequence{Identifier: "documents"}
	for i := range 3 {
		seq.Documents = append(seq.Documents, bsoncore.Document(wiretest.Marshal(t, bson.D{{Key: "_id", Value: i}})))
	}
	m, err := c.RoundTrip(wiretest.OpMsg(1, 0, body, seq))
	if err != nil {
		t.Fatal(err)
	}
	reply, err := wiretest.ReplyDocument(m)
	if err != nil {
		t.Fatal(err)
	}
	if n := reply.Lookup("n").Int32(); n != 3 {
		t.Errorf("handler saw %d documents, want 3: %s", n, reply)
	}
}

func TestOpMsgChecksum(t *testing.T) {
	srv := startEcho(t)
	c := wiretest.Dial(t, srv.Addr)
	body := wiretest.Marshal(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})

	t.Run("valid checksum echoed on reply", func(t *testing.T) {
		m, err := c.RoundTrip(wiretest.OpMsg(1, wiremessage.ChecksumPresent, body))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := wire.ParseOpMsg(m) // verifies the reply's checksum
		if err != nil {
			t.Fatal(err)
		}
		if msg.Flags&wiremessage.ChecksumPresent == 0 {
			t.Error("reply to a checksummed request has no checksum")
		}
	})
	t.Run("no checksum requested, none sent", func(t *testing.T) {
		m, err := c.RoundTrip(wiretest.OpMsg(2, 0, body))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := wire.ParseOpMsg(m)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Flags != 0 {
			t.Errorf("reply flags = %v", msg.Flags)
		}
	})
	t.Run("bad checksum rejected", func(t *testing.T) {
		raw := wiretest.OpMsg(3, wiremessage.ChecksumPresent, body)
		raw[len(raw)-1] ^= 0xff
		m, err := c.RoundTrip(raw)
		if err != nil {
			t.Fatal(err)
		}
		reply, err := wiretest.ReplyDocument(m)
		if err != nil {
			t.Fatal(err)
		}
		if wiretest.ErrorCode(reply) != mongoerr.ProtocolError || !strings.Contains(reply.Lookup("errmsg").StringValue(), "checksum") {
			t.Errorf("reply = %s", reply)
		}
		if m.Header.ResponseTo != 3 {
			t.Errorf("responseTo = %d", m.Header.ResponseTo)
		}
	})
	// The connection survives a rejected message whose framing was intact.
	if _, err := c.Command("admin", bson.D{{Key: "ping", Value: 1}}); err != nil {
		t.Fatal(err)
	}
}

func TestOpMsgErrors(t *testing.T) {
	srv := startEcho(t)
	c := wiretest.Dial(t, srv.Addr)
	tests := []struct {
		name     string
		cmd      bson.D
		noDB     bool
		code     mongoerr.Code
		codeName string
	}{
		{"typed error", bson.D{{Key: "fail", Value: 1}}, false, mongoerr.NamespaceNotFound, "NamespaceNotFound"},
		{"untyped error", bson.D{{Key: "failUntyped", Value: 1}}, false, mongoerr.InternalError, "InternalError"},
		{"missing $db", bson.D{{Key: "ping", Value: 1}}, true, 40571, "Location40571"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reply bson.Raw
			var err error
			if tt.noDB {
				var m *wire.Message
				m, err = c.RoundTrip(wiretest.OpMsg(c.NextID(), 0, wiretest.Marshal(t, tt.cmd)))
				if err == nil {
					reply, err = wiretest.ReplyDocument(m)
				}
			} else {
				reply, err = c.Command("test", tt.cmd)
			}
			if err != nil {
				t.Fatal(err)
			}
			if wiretest.ErrorCode(reply) != tt.code || reply.Lookup("codeName").StringValue() != tt.codeName {
				t.Errorf("reply = %s", reply)
			}
		})
	}
}

func TestHandlerPanicClosesOnlyThatConnection(t *testing.T) {
	srv := startEcho(t)
	other := wiretest.Dial(t, srv.Addr)
	if _, err := other.Command("admin", bson.D{{Key: "ping", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	c := wiretest.Dial(t, srv.Addr)
	reply, err := c.Command("admin", bson.D{{Key: "panic", Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if wiretest.ErrorCode(reply) != mongoerr.InternalError {
		t.Errorf("reply = %s", reply)
	}
	if err := c.ExpectClosed(); err != nil {
		t.Error(err)
	}
	if _, err := other.Command("admin", bson.D{{Key: "ping", Value: 1}}); err != nil {
		t.Fatalf("other connection affected: %v", err)
	}
}

func TestMoreToCome(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	h := wire.HandlerFunc(func(_ context.Context, _ *wire.ConnState, req *wire.Request) (bson.Raw, error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, req.Name)
		if req.MoreToCome() {
			return nil, errors.New("errors of unacknowledged writes are dropped")
		}
		return nil, nil
	})
	srv := wiretest.StartServer(t, h)
	c := wiretest.Dial(t, srv.Addr)
	w := wiretest.Marshal(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"}})
	if err := c.Send(wiretest.OpMsg(1, wiremessage.MoreToCome, w)); err != nil {
		t.Fatal(err)
	}
	// The next reply must answer the ping, proving the insert got none.
	if _, err := c.Command("admin", bson.D{{Key: "ping", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != "insert" {
		t.Errorf("handler saw %v", seen)
	}
}

func TestMalformedMoreToComeCloses(t *testing.T) {
	srv := startEcho(t)
	c := wiretest.Dial(t, srv.Addr)
	raw := wiretest.OpMsg(1, wiremessage.MoreToCome|wiremessage.ChecksumPresent, wiretest.Marshal(t, bson.D{{Key: "insert", Value: 1}}))
	raw[len(raw)-1] ^= 1
	if err := c.Send(raw); err != nil {
		t.Fatal(err)
	}
	if err := c.ExpectClosed(); err != nil {
		t.Fatal(err)
	}
	assertServing(t, srv.Addr)
}

func TestOpQueryHandshake(t *testing.T) {
	srv := startEcho(t)
	c := wiretest.Dial(t, srv.Addr)
	tests := []struct {
		name    string
		ns      string
		query   bson.D
		wantCmd string
		wantDB  string
		code    mongoerr.Code
		failure bool // QueryFailure flag expected
	}{
		{"isMaster", "admin.$cmd", bson.D{{Key: "isMaster", Value: 1}, {Key: "helloOk", Value: true}}, "isMaster", "admin", 0, false},
		{"ismaster", "test.$cmd", bson.D{{Key: "ismaster", Value: 1}}, "ismaster", "test", 0, false},
		{"hello", "admin.$cmd", bson.D{{Key: "hello", Value: 1}}, "hello", "admin", 0, false},
		{"$query wrapped", "admin.$cmd", bson.D{
			{Key: "$query", Value: bson.D{{Key: "isMaster", Value: 1}}},
			{Key: "$readPreference", Value: bson.D{{Key: "mode", Value: "secondaryPreferred"}}},
		}, "isMaster", "admin", 0, false},
		{"other command", "admin.$cmd", bson.D{{Key: "ping", Value: 1}}, "", "", mongoerr.UnsupportedOpQueryCommand, false},
		{"legacy find", "test.coll", bson.D{}, "", "", 5739101, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := c.NextID()
			m, err := c.RoundTrip(wiretest.OpQuery(id, tt.ns, wiretest.Marshal(t, tt.query)))
			if err != nil {
				t.Fatal(err)
			}
			if m.Header.OpCode != wiremessage.OpReply || m.Header.ResponseTo != id {
				t.Fatalf("header = %+v", m.Header)
			}
			r, err := wire.ParseOpReply(m)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Flags&wiremessage.QueryFailure != 0; got != tt.failure {
				t.Errorf("QueryFailure = %v", got)
			}
			reply, err := wiretest.ReplyDocument(m)
			if err != nil {
				t.Fatal(err)
			}
			if code := wiretest.ErrorCode(reply); code != tt.code {
				t.Fatalf("code = %v: %s", code, reply)
			}
			if tt.code == 0 {
				if reply.Lookup("cmd").StringValue() != tt.wantCmd || reply.Lookup("db").StringValue() != tt.wantDB {
					t.Errorf("reply = %s", reply)
				}
				if reply.Lookup("op").Int32() != int32(wiremessage.OpQuery) {
					t.Errorf("op = %v", reply.Lookup("op"))
				}
			}
		})
	}
}

func TestOpCompressedRefused(t *testing.T) {
	srv := startEcho(t)
	tests := []struct {
		name   string
		orig   wiremessage.OpCode
		wantOp wiremessage.OpCode // 0: no reply, just close
	}{
		{"wrapping OP_MSG", wiremessage.OpMsg, wiremessage.OpMsg},
		{"wrapping OP_QUERY", wiremessage.OpQuery, wiremessage.OpReply},
		{"wrapping garbage", 9999, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := wiretest.Dial(t, srv.Addr)
			var raw []byte
			_, raw = wiremessage.AppendHeaderStart(raw, 5, 0, wiremessage.OpCompressed)
			raw = wiremessage.AppendCompressedOriginalOpCode(raw, tt.orig)
			raw = wiremessage.AppendCompressedUncompressedSize(raw, 10)
			raw = wiremessage.AppendCompressedCompressorID(raw, wiremessage.CompressorSnappy)
			raw = append(raw, "0123456789"...)
			binary.LittleEndian.PutUint32(raw, uint32(len(raw)))
			if err := c.Send(raw); err != nil {
				t.Fatal(err)
			}
			if tt.wantOp != 0 {
				m, err := c.Read()
				if err != nil {
					t.Fatal(err)
				}
				if m.Header.OpCode != tt.wantOp || m.Header.ResponseTo != 5 {
					t.Fatalf("reply header %+v", m.Header)
				}
				reply, err := wiretest.ReplyDocument(m)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(reply.Lookup("errmsg").StringValue(), "OP_COMPRESSED") {
					t.Errorf("reply = %s", reply)
				}
			}
			if err := c.ExpectClosed(); err != nil {
				t.Fatal(err)
			}
		})
	}
	assertServing(t, srv.Addr)
}

// TestHostileInput sends messages that must close the connection or get an
// error reply, each on its own connection while a bystander connection
// keeps working.
func TestHostileInput(t *testing.T) {
	srv := startEcho(t, func(c *wire.Config) { c.MaxMessageSize = 1 << 20 })
	bystander := wiretest.Dial(t, srv.Addr)

	header := func(length int32, op wiremessage.OpCode) []byte {
		return wiremessage.AppendHeader(nil, length, 1, 0, op)
	}
	ping := wiretest.OpMsg(1, 0, wiretest.Marshal(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "a"}}))
	badBSONQuery := wiretest.OpQuery(1, "admin.$cmd", wiretest.Marshal(t, bson.D{{Key: "isMaster", Value: 1}}))
	badBSONQuery[len(badBSONQuery)-15] = 0x66 // the element type byte

	tests := []struct {
		name      string
		raw       []byte
		halfClose bool  // close our write side after sending
		wantCode  int32 // error reply expected (then the connection stays usable)
	}{
		{"length below header", header(3, wiremessage.OpMsg), false, 0},
		{"negative length", header(-100, wiremessage.OpMsg), false, 0},
		{"length over max", header(1<<20+1, wiremessage.OpMsg), false, 0},
		{"truncated message then EOF", ping[:len(ping)-5], true, 0},
		{"unknown opcode", append(header(20, 4242), 0, 0, 0, 0), false, 0},
		{"legacy OP_INSERT", append(header(20, wiremessage.OpInsert), 0, 0, 0, 0), false, 0},
		{"random garbage", bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 64), false, 0},
		{"OP_MSG garbage sections", append(header(30, wiremessage.OpMsg), make([]byte, 14)...), false, int32(mongoerr.InvalidBSON)},
		{"OP_MSG unknown required flag", func() []byte {
			b := append([]byte(nil), ping...)
			b[16] = 0x04
			return b
		}(), false, int32(mongoerr.ProtocolError)},
		{"OP_QUERY invalid BSON", badBSONQuery, false, int32(mongoerr.InvalidBSON)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := wiretest.Dial(t, srv.Addr)
			if err := c.Send(tt.raw); err != nil {
				t.Fatal(err)
			}
			if tt.halfClose {
				_ = c.Conn.(*net.TCPConn).CloseWrite()
			}
			if tt.wantCode != 0 {
				m, err := c.Read()
				if err != nil {
					t.Fatalf("no error reply: %v", err)
				}
				reply, err := wiretest.ReplyDocument(m)
				if err != nil {
					t.Fatal(err)
				}
				if got := int32(wiretest.ErrorCode(reply)); got != tt.wantCode {
					t.Fatalf("code = %d, want %d: %s", got, tt.wantCode, reply)
				}
				if _, err := c.Command("admin", bson.D{{Key: "ping", Value: 1}}); err != nil {
					t.Fatalf("connection unusable after error reply: %v", err)
				}
				return
			}
			if err := c.ExpectClosed(); err != nil {
				t.Fatal(err)
			}
			if _, err := bystander.Command("admin", bson.D{{Key: "ping", Value: 1}}); err != nil {
				t.Fatalf("bystander affected: %v", err)
			}
		})
	}
	assertServing(t, srv.Addr)
}

func TestOversizedReplyBecomesError(t *testing.T) {
	h := wire.HandlerFunc(func(context.Context, *wire.ConnState, *wire.Request) (bson.Raw, error) {
		return bson.Marshal(bson.D{{Key: "pad", Value: make([]byte, wire.MaxBSONInternalSize)}})
	})
	srv := wiretest.StartServer(t, h)
	c := wiretest.Dial(t, srv.Addr)
	reply, err := c.Command("admin", bson.D{{Key: "big", Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if wiretest.ErrorCode(reply) != mongoerr.BSONObjectTooLarge {
		t.Errorf("reply = %.200s", reply)
	}
}

func TestMaxConns(t *testing.T) {
	srv := startEcho(t, func(c *wire.Config) { c.MaxConns = 2 })
	a, b := wiretest.Dial(t, srv.Addr), wiretest.Dial(t, srv.Addr)
	for _, c := range []*wiretest.Client{a, b} {
		if _, err := c.Command("admin", bson.D{{Key: "ping", Value: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	over := wiretest.Dial(t, srv.Addr)
	if err := over.ExpectClosed(); err != nil {
		t.Fatalf("third connection: %v", err)
	}
	_ = a.Conn.Close()
	// The slot frees once the server notices a hung up.
	deadline := time.Now().Add(wiretest.Timeout)
	for srv.Server.NumConns() > 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	assertServing(t, srv.Addr)
}

func TestGracefulShutdown(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	h := wire.HandlerFunc(func(ctx context.Context, _ *wire.ConnState, req *wire.Request) (bson.Raw, error) {
		if req.Name == "slow" {
			close(started)
			<-release
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
		return nil, nil
	})
	srv := wiretest.StartServer(t, h)
	idle := wiretest.Dial(t, srv.Addr)
	if _, err := idle.Command("admin", bson.D{{Key: "ping", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	busy := wiretest.Dial(t, srv.Addr)
	result := make(chan error, 1)
	go func() {
		reply, err := busy.Command("admin", bson.D{{Key: "slow", Value: 1}})
		if err == nil && wiretest.ErrorCode(reply) != 0 {
			err = errors.New(reply.String())
		}
		result <- err
	}()
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop() }()

	if err := idle.ExpectClosed(); err != nil {
		t.Errorf("idle connection: %v", err)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned with a command in flight: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-result; err != nil {
		t.Errorf("in-flight command: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := busy.ExpectClosed(); err != nil {
		t.Errorf("busy connection after its reply: %v", err)
	}
	if _, err := net.DialTimeout("tcp", srv.Addr, time.Second); err == nil {
		t.Error("still accepting after shutdown")
	}
}

func TestShutdownTimeoutCancelsCommands(t *testing.T) {
	started := make(chan struct{})
	h := wire.HandlerFunc(func(ctx context.Context, _ *wire.ConnState, _ *wire.Request) (bson.Raw, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	srv := wiretest.StartServer(t, h, func(c *wire.Config) { c.ShutdownTimeout = 50 * time.Millisecond })
	c := wiretest.Dial(t, srv.Addr)
	go func() { _, _ = c.Command("admin", bson.D{{Key: "stuck", Value: 1}}) }()
	<-started
	done := make(chan error, 1)
	go func() { done <- srv.Stop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wiretest.Timeout):
		t.Fatal("Serve did not return after ShutdownTimeout")
	}
}

func TestServeTwice(t *testing.T) {
	srv := startEcho(t)
	assertServing(t, srv.Addr) // the first Serve is running
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := srv.Server.Serve(context.Background(), ln); !errors.Is(err, wire.ErrServerStarted) {
		t.Fatalf("second Serve: %v", err)
	}
}

func TestConnStateAcrossRequests(t *testing.T) {
	h := wire.HandlerFunc(func(_ context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
		switch req.Name {
		case "login":
			c.SetAuthenticated(wire.Principal{DB: req.DB, User: "alice"})
		case "logout":
			c.Logout()
		}
		p, ok := c.Authenticated()
		return bson.Marshal(bson.D{{Key: "user", Value: p.User}, {Key: "authed", Value: ok}})
	})
	srv := wiretest.StartServer(t, h)
	a, b := wiretest.Dial(t, srv.Addr), wiretest.Dial(t, srv.Addr)
	steps := []struct {
		c      *wiretest.Client
		cmd    string
		authed bool
	}{
		{a, "whoami", false},
		{a, "login", true},
		{a, "whoami", true},
		{b, "whoami", false}, // state is per connection
		{a, "logout", false},
	}
	for i, s := range steps {
		reply, err := s.c.Command("admin", bson.D{{Key: s.cmd, Value: 1}})
		if err != nil {
			t.Fatal(err)
		}
		if got := reply.Lookup("authed").Boolean(); got != s.authed {
			t.Errorf("step %d (%s): authed = %v", i, s.cmd, got)
		}
	}
	if n := len(srv.Server.Conns()); n != 2 {
		t.Errorf("Conns() has %d entries", n)
	}
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	srv := startEcho(t, func(c *wire.Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	nc, err := tls.Dial("tcp", srv.Addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := &wiretest.Client{Conn: nc}
	reply, err := c.Command("admin", bson.D{{Key: "ping", Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if wiretest.ErrorCode(reply) != 0 {
		t.Fatalf("reply = %s", reply)
	}

	// A plaintext client fails the handshake and is dropped without
	// disturbing the server.
	plain := wiretest.Dial(t, srv.Addr)
	_ = plain.Send(wiretest.OpMsg(1, 0, wiretest.Marshal(t, bson.D{{Key: "ping", Value: 1}})))
	_ = plain.ExpectClosed()
	if _, err := c.Command("admin", bson.D{{Key: "ping", Value: 1}}); err != nil {
		t.Fatal(err)
	}
}

func TestCommandValuesNeverLogged(t *testing.T) {
	var buf testenv.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := startEcho(t, func(c *wire.Config) { c.Logger = logger })
	c := wiretest.Dial(t, srv.Addr)
	const secret = "SECRET-PAYLOAD-c2VjcmV0"
	cmds := []bson.D{
		{{Key: "saslStart", Value: 1}, {Key: "mechanism", Value: "SCRAM-SHA-256"}, {Key: "payload", Value: []byte(secret)}},
		{{Key: "saslContinue", Value: 1}, {Key: "conversationId", Value: 1}, {Key: "payload", Value: []byte(secret)}},
		{{Key: "createUser", Value: "bob"}, {Key: "pwd", Value: secret}},
		{{Key: "updateUser", Value: "bob"}, {Key: "pwd", Value: secret}},
		{{Key: "SASLSTART", Value: 1}, {Key: "payload", Value: secret}},
		{{Key: "hello", Value: 1}, {Key: "speculativeAuthenticate", Value: bson.D{{Key: "payload", Value: secret}}}},
		{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "canary", Value: "data-marker"}}}}},
		{{Key: "ping", Value: "value-marker"}},
	}
	for _, cmd := range cmds {
		if _, err := c.Command("admin", cmd); err != nil {
			t.Fatal(err)
		}
	}
	_ = srv.Stop()
	out := buf.String()
	if strings.Contains(out, secret) || strings.Contains(out, "c2VjcmV0") {
		t.Errorf("secret logged:\n%s", out)
	}
	if strings.Contains(out, "data-marker") || strings.Contains(out, "value-marker") {
		t.Errorf("a command value reached the log:\n%s", out)
	}
	if !strings.Contains(out, "cmd=saslStart") || !strings.Contains(out, "fields=insert,documents,$db") {
		t.Errorf("expected per-command debug lines with field names, got:\n%s", out)
	}
}

// Package wiretest helps tests talk the wire protocol: it builds messages
// by hand (including malformed ones), starts a wire.Server on a loopback
// port, and offers a raw client that sends bytes and reads replies.
package wiretest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// Timeout bounds every read a Client does, so a broken server fails the
// test instead of hanging it.
const Timeout = 10 * time.Second

// Marshal encodes v (usually a bson.D) or fails the test.
func Marshal(t testing.TB, v any) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(v)
	if err != nil {
		t.Fatalf("bson.Marshal: %v", err)
	}
	return b
}

// OpMsg builds an OP_MSG; with ChecksumPresent in flags it is checksummed.
func OpMsg(requestID int32, flags wiremessage.MsgFlag, body bson.Raw, seqs ...wire.DocumentSequence) []byte {
	return wire.AppendOpMsg(nil, requestID, 0, flags, body, seqs...)
}

// OpQuery builds an OP_QUERY against ns (e.g. "admin.$cmd").
func OpQuery(requestID int32, ns string, query bson.Raw) []byte {
	return wire.AppendOpQuery(nil, requestID, 0, ns, 0, -1, query)
}

// Server is a wire.Server running on a loopback port.
type Server struct {
	Addr   string
	Server *wire.Server
	cancel context.CancelFunc
	done   chan error
}

// StartServer serves h on 127.0.0.1:0 until the test ends (or Stop).
// configure, if given, adjusts the Config before the server is built.
func StartServer(t testing.TB, h wire.Handler, configure ...func(*wire.Config)) *Server {
	t.Helper()
	cfg := wire.Config{Handler: h, ShutdownTimeout: 5 * time.Second}
	for _, f := range configure {
		f(&cfg)
	}
	srv, err := wire.NewServer(cfg)
	if err != nil {
		t.Fatalf("wire.NewServer: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Addr: ln.Addr().String(), Server: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// Stop shuts the server down and returns Serve's result. It is idempotent.
func (s *Server) Stop() error {
	s.cancel()
	err, ok := <-s.done
	if ok {
		close(s.done)
	}
	return err
}

// Client is a raw wire-protocol client.
type Client struct {
	Conn   net.Conn
	nextID int32
}

// Dial connects to addr; the connection closes when the test ends.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &Client{Conn: nc}
}

// NextID returns a fresh request id.
func (c *Client) NextID() int32 {
	c.nextID++
	return c.nextID
}

// Send writes raw bytes.
func (c *Client) Send(b []byte) error {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(Timeout))
	_, err := c.Conn.Write(b)
	return err
}

// Read reads one message.
func (c *Client) Read() (*wire.Message, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(Timeout))
	return wire.ReadMessage(c.Conn, 0)
}

// RoundTrip sends b and reads the reply.
func (c *Client) RoundTrip(b []byte) (*wire.Message, error) {
	if err := c.Send(b); err != nil {
		return nil, err
	}
	return c.Read()
}

// Command runs cmd (a bson.D or similar, without $db) against db over
// OP_MSG and returns the reply document, checking that it answers the
// request.
func (c *Client) Command(db string, cmd bson.D) (bson.Raw, error) {
	body, err := bson.Marshal(append(cmd, bson.E{Key: "$db", Value: db}))
	if err != nil {
		return nil, err
	}
	id := c.NextID()
	m, err := c.RoundTrip(OpMsg(id, 0, body))
	if err != nil {
		return nil, err
	}
	if m.Header.ResponseTo != id {
		return nil, fmt.Errorf("reply answers request %d, want %d", m.Header.ResponseTo, id)
	}
	return ReplyDocument(m)
}

// ExpectClosed reads until the server closes the connection and reports an
// error if it instead sends a message or stays open past Timeout.
func (c *Client) ExpectClosed() error {
	_ = c.Conn.SetReadDeadline(time.Now().Add(Timeout))
	var b [1]byte
	_, err := c.Conn.Read(b[:])
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err == nil:
		return errors.New("server sent data, expected the connection to close")
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errors.New("connection still open")
		}
		return nil // reset by peer also means closed
	}
}

// ReplyDocument extracts the reply document of an OP_MSG or OP_REPLY.
func ReplyDocument(m *wire.Message) (bson.Raw, error) {
	switch m.Header.OpCode {
	case wiremessage.OpMsg:
		msg, err := wire.ParseOpMsg(m)
		if err != nil {
			return nil, err
		}
		return bson.Raw(msg.Body), nil
	case wiremessage.OpReply:
		r, err := wire.ParseOpReply(m)
		if err != nil {
			return nil, err
		}
		if len(r.Documents) != 1 {
			return nil, fmt.Errorf("OP_REPLY has %d documents, want 1", len(r.Documents))
		}
		return bson.Raw(r.Documents[0]), nil
	default:
		return nil, fmt.Errorf("unexpected reply opcode %v", m.Header.OpCode)
	}
}

// ErrorCode returns the code of a failed command reply, or 0 if ok is 1.
func ErrorCode(reply bson.Raw) mongoerr.Code {
	if ok, _ := reply.Lookup("ok").AsFloat64OK(); ok == 1 {
		return 0
	}
	code, _ := reply.Lookup("code").AsInt64OK()
	return mongoerr.Code(code)
}

package wire

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// readBufferSize is the per-connection read buffer; typical commands fit.
const readBufferSize = 16 << 10

// legacyRemovalURL is where mongod's OP_QUERY rejection messages point.
const legacyRemovalURL = "https://dochub.mongodb.org/core/legacy-opcode-removal"

// conn serves one client connection.
type conn struct {
	srv   *Server
	nc    net.Conn // the accepted connection, for deadlines and Close
	id    int64
	rw    io.ReadWriter             // nc, or the TLS connection over it
	state atomic.Pointer[ConnState] // set after the TLS handshake
	log   *slog.Logger
}

// serve runs the request loop until the client leaves, the server shuts
// down, or a message forces the connection closed.
func (c *conn) serve(ctx context.Context) {
	c.log = c.srv.log.With("conn", c.id, "remote", c.nc.RemoteAddr().String())
	defer func() {
		// A panic here is a bug in this package or a handler; it must not
		// take the process (and every other connection) down with it.
		if r := recover(); r != nil {
			c.log.Error("panic serving connection", "panic", r, "stack", string(debug.Stack()))
		}
		_ = c.nc.Close()
		c.srv.remove(c)
		c.log.Debug("connection closed")
	}()

	var tlsState *tls.ConnectionState
	c.rw = c.nc
	if c.srv.cfg.TLS != nil {
		tc := tls.Server(c.nc, c.srv.cfg.TLS)
		hctx, cancel := context.WithTimeout(ctx, c.srv.cfg.HandshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			c.log.Debug("TLS handshake failed", "err", err)
			return
		}
		st := tc.ConnectionState()
		tlsState = &st
		c.rw = tc
	}
	c.state.Store(NewConnState(c.id, c.nc.RemoteAddr(), c.nc.LocalAddr(), tlsState))
	c.log.Debug("connection accepted", "tls", tlsState != nil)

	br := bufio.NewReaderSize(c.rw, readBufferSize)
	for !c.srv.closing.Load() {
		msg, err := ReadMessage(br, c.srv.cfg.MaxMessageSize)
		if err != nil {
			c.logReadError(err)
			return
		}
		c.srv.bytesIn.Add(int64(msg.Header.MessageLength))
		c.srv.requests.Add(1)
		reply, keepOpen := c.handleMessage(ctx, msg)
		if reply != nil {
			c.srv.bytesOut.Add(int64(len(reply)))
			if _, err := c.rw.Write(reply); err != nil {
				c.log.Debug("write failed", "err", err)
				return
			}
		}
		if !keepOpen {
			return
		}
	}
}

func (c *conn) logReadError(err error) {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded):
		// Client hung up, or shutdown interrupted an idle read.
	case errors.Is(err, ErrInvalidLength):
		c.log.Warn("closing connection: bad message length", "err", err)
	default:
		c.log.Debug("read failed", "err", err)
	}
}

// handleMessage answers one message. reply is nil when nothing is sent;
// keepOpen is false when the connection must close after reply.
func (c *conn) handleMessage(ctx context.Context, msg *Message) (reply []byte, keepOpen bool) {
	switch op := msg.Header.OpCode; op {
	case wiremessage.OpMsg:
		return c.handleOpMsg(ctx, msg)
	case wiremessage.OpQuery:
		return c.handleOpQuery(ctx, msg)
	case wiremessage.OpCompressed:
		// No compressor is ever advertised, so a conforming client never
		// sends this. Answer in the wrapped opcode's form so the client
		// sees why, then close: the payload cannot be read, so neither can
		// a moreToCome flag, nor can the stream be trusted.
		c.log.Debug("closing connection: OP_COMPRESSED not supported")
		err := mongoerr.New(mongoerr.ProtocolError, "OP_COMPRESSED is not supported: no compressor was negotiated")
		switch orig, _ := compressedOriginalOpCode(msg); orig {
		case wiremessage.OpMsg:
			return c.msgReply(msg.Header.RequestID, 0, ErrorReply(err)), false
		case wiremessage.OpQuery:
			return c.legacyReply(msg.Header.RequestID, wiremessage.QueryFailure, legacyErrorReply(err)), false
		}
		return nil, false
	default:
		c.log.Debug("closing connection: unsupported opcode", "opcode", int32(op))
		return nil, false
	}
}

func (c *conn) handleOpMsg(ctx context.Context, msg *Message) ([]byte, bool) {
	var flags wiremessage.MsgFlag
	if f, _, ok := readInt32(msg.Body()); ok {
		flags = wiremessage.MsgFlag(uint32(f))
	}
	fail := func(err error) ([]byte, bool) {
		if flags&wiremessage.MoreToCome != 0 {
			// The client reads no reply; dropping the message silently
			// would lose a write unnoticed, so close instead.
			c.log.Debug("closing connection: malformed moreToCome OP_MSG", "err", err)
			return nil, false
		}
		c.log.Debug("malformed OP_MSG", "request_id", msg.Header.RequestID, "err", err)
		return c.msgReply(msg.Header.RequestID, flags, ErrorReply(err)), true
	}

	m, err := ParseOpMsg(msg)
	if err != nil {
		return fail(err)
	}
	cmd, err := m.Command()
	if err != nil {
		return fail(err)
	}
	req := &Request{
		RequestID: msg.Header.RequestID,
		OpCode:    wiremessage.OpMsg,
		Flags:     m.Flags,
		Name:      firstKey(cmd),
		Command:   bson.Raw(cmd),
	}
	var doc bson.Raw
	keepOpen := true
	if db, err := commandDB(cmd); err != nil {
		doc = ErrorReply(err)
		c.logRequest(ctx, req, time.Now(), doc)
	} else {
		req.DB = db
		doc, keepOpen = c.dispatch(ctx, req)
	}
	if m.MoreToCome() || doc == nil {
		return nil, keepOpen
	}
	if req.Stream != nil && req.ExhaustAllowed() && keepOpen && !isErrorReply(doc) {
		return nil, c.stream(ctx, msg.Header.RequestID, m.Flags, doc, req.Stream)
	}
	return c.msgReply(msg.Header.RequestID, m.Flags, doc), keepOpen
}

// stream sends an exhaust stream (Request.Stream): first, then each next
// reply, every one but the last with moreToCome and each answering the
// one before it (responseTo is the previous reply's requestID, as drivers
// expect). It reports whether the connection stays open.
func (c *conn) stream(ctx context.Context, responseTo int32, reqFlags wiremessage.MsgFlag, first bson.Raw,
	next func(context.Context) (bson.Raw, bool, error)) bool {
	doc, more := first, true
	for {
		flags := reqFlags & wiremessage.ChecksumPresent
		if more {
			flags |= wiremessage.MoreToCome
		}
		id := c.srv.nextRequestID()
		out := AppendOpMsg(nil, id, responseTo, flags, doc)
		c.srv.bytesOut.Add(int64(len(out)))
		if _, err := c.rw.Write(out); err != nil {
			c.log.Debug("write failed", "err", err)
			return false
		}
		if !more {
			return true
		}
		if c.srv.closing.Load() || ctx.Err() != nil {
			return false // the client sees the connection close and reconnects
		}
		responseTo = id
		var err error
		doc, more, err = next(ctx)
		if err == nil {
			doc, err = finishReply(doc)
		}
		if err != nil {
			doc, more = ErrorReply(err), false
		}
	}
}

// commandDB returns the $db field every OP_MSG command must carry.
func commandDB(cmd bsoncore.Document) (string, error) {
	v, err := cmd.LookupErr("$db")
	if err != nil {
		return "", mongoerr.New(mongoerr.Code(40571), "OP_MSG requests require a $db argument")
	}
	db, ok := v.StringValueOK()
	if !ok || db == "" {
		return "", mongoerr.New(mongoerr.TypeMismatch, "$db must be a non-empty string")
	}
	return db, nil
}

func (c *conn) handleOpQuery(ctx context.Context, msg *Message) ([]byte, bool) {
	reqID := msg.Header.RequestID
	q, err := ParseOpQuery(msg)
	if err != nil {
		c.log.Debug("malformed OP_QUERY", "request_id", reqID, "err", err)
		return c.legacyReply(reqID, wiremessage.QueryFailure, legacyErrorReply(err)), true
	}
	db, ok := q.CommandDB()
	if !ok {
		err := mongoerr.New(mongoerr.Code(5739101), "OP_QUERY is no longer supported. The client driver may require an upgrade. For more details see %s", legacyRemovalURL)
		return c.legacyReply(reqID, wiremessage.QueryFailure, legacyErrorReply(err)), true
	}
	cmd := q.Command()
	req := &Request{
		RequestID: reqID,
		OpCode:    wiremessage.OpQuery,
		DB:        db,
		Name:      firstKey(cmd),
		Command:   bson.Raw(cmd),
	}
	switch req.Name {
	case "hello", "isMaster", "ismaster":
	default:
		err := mongoerr.New(mongoerr.UnsupportedOpQueryCommand, "Unsupported OP_QUERY command: %s. The client driver may require an upgrade. For more details see %s", req.Name, legacyRemovalURL)
		doc := ErrorReply(err)
		c.logRequest(ctx, req, time.Now(), doc)
		return c.legacyReply(reqID, 0, doc), true
	}
	doc, keepOpen := c.dispatch(ctx, req)
	if doc == nil {
		return nil, keepOpen
	}
	return c.legacyReply(reqID, 0, doc), keepOpen
}

// dispatch runs the handler and produces a reply document (none when the
// handler asks to close the connection: ErrCloseConnection). A handler
// panic becomes an InternalError reply and closes the connection, since the
// connection's state may be inconsistent.
func (c *conn) dispatch(ctx context.Context, req *Request) (doc bson.Raw, keepOpen bool) {
	start := time.Now()
	keepOpen = true
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic in command handler", "cmd", req.Name, "panic", r, "stack", string(debug.Stack()))
			doc = ErrorReply(mongoerr.New(mongoerr.InternalError, "internal error while executing %s", req.Name))
			keepOpen = false
		}
		c.logRequest(ctx, req, start, doc)
	}()
	reply, err := c.srv.cfg.Handler.Handle(ctx, c.state.Load(), req)
	if err == nil {
		reply, err = finishReply(reply)
	}
	if err != nil {
		if errors.Is(err, ErrCloseConnection) {
			return nil, false
		}
		var me *mongoerr.Error
		if !errors.As(err, &me) {
			c.log.Warn("command failed with an untyped error", "cmd", req.Name, "err", err)
		}
		return ErrorReply(err), true
	}
	return reply, true
}

// ErrCloseConnection, returned by a handler, closes the connection
// without a reply (a test fail point simulating a network error).
var ErrCloseConnection = errors.New("wire: close the connection")

// logRequest writes the per-command debug line: ids, names, timing and the
// command's field names — never its values (see commandShape).
func (c *conn) logRequest(ctx context.Context, req *Request, start time.Time, reply bson.Raw) {
	if !c.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.Int("request_id", int(req.RequestID)),
		slog.String("op", req.OpCode.String()),
		slog.String("db", req.DB),
		slog.String("cmd", req.Name),
		slog.String("fields", commandShape(req.Command)),
		slog.Duration("duration", time.Since(start)),
	}
	if req.MoreToCome() {
		attrs = append(attrs, slog.Bool("more_to_come", true))
	}
	if ok, _ := bsoncore.Document(reply).Lookup("ok").AsFloat64OK(); ok != 1 {
		code, _ := bsoncore.Document(reply).Lookup("code").AsInt32OK()
		attrs = append(attrs, slog.Int("code", int(code)))
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "command", attrs...)
}

// msgReply frames doc as an OP_MSG answering responseTo, checksummed if the
// request was.
func (c *conn) msgReply(responseTo int32, reqFlags wiremessage.MsgFlag, doc bson.Raw) []byte {
	flags := reqFlags & wiremessage.ChecksumPresent
	return AppendOpMsg(nil, c.srv.nextRequestID(), responseTo, flags, doc)
}

func (c *conn) legacyReply(responseTo int32, flags wiremessage.ReplyFlag, doc bson.Raw) []byte {
	return AppendOpReply(nil, c.srv.nextRequestID(), responseTo, flags, doc)
}

// isErrorReply reports whether a reply document says ok: 0.
func isErrorReply(doc bson.Raw) bool {
	v, err := doc.LookupErr("ok")
	if err != nil {
		return true
	}
	switch v.Type {
	case bson.TypeDouble:
		return v.Double() == 0
	case bson.TypeInt32:
		return v.Int32() == 0
	case bson.TypeInt64:
		return v.Int64() == 0
	case bson.TypeBoolean:
		return !v.Boolean()
	}
	return true
}

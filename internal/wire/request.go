package wire

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// Request is one command, already validated, as a Handler sees it.
type Request struct {
	// RequestID is the client's id for the message; replies answer it.
	RequestID int32
	// OpCode is OpMsg, or OpQuery for the legacy handshake.
	OpCode wiremessage.OpCode
	// Flags are the OP_MSG flag bits (zero for OP_QUERY).
	Flags wiremessage.MsgFlag
	// DB is the command's database: $db for OP_MSG, the namespace prefix
	// for OP_QUERY.
	DB string
	// Name is the command name, the first field of Command.
	Name string
	// Command is the full command document with OP_MSG document sequences
	// merged in as arrays. It aliases the connection's read buffer only for
	// the duration of Handle; keep a copy to retain it.
	Command bson.Raw
	// Stream may be set by a handler answering a request that allows
	// exhaust replies (ExhaustAllowed): the reply it returns is then the
	// first of a stream. The server sends it with moreToCome and keeps
	// sending, without further requests, each reply Stream returns, until
	// Stream says there are no more (that reply goes without moreToCome),
	// fails, the client hangs up or the server shuts down. Each Stream call
	// may wait (an awaitable hello waits for a topology change).
	Stream func(ctx context.Context) (reply bson.Raw, more bool, err error)
}

// MoreToCome reports that the client expects no reply (unacknowledged
// writes); whatever Handle returns is discarded.
func (r *Request) MoreToCome() bool { return r.Flags&wiremessage.MoreToCome != 0 }

// ExhaustAllowed reports that the client would accept a stream of replies.
// The server never streams yet, so this is informational.
func (r *Request) ExhaustAllowed() bool { return r.Flags&wiremessage.ExhaustAllowed != 0 }

// Legacy reports a command that arrived as OP_QUERY (only the handshake).
func (r *Request) Legacy() bool { return r.OpCode == wiremessage.OpQuery }

// Handler executes commands. The server calls Handle for one request at a
// time per connection, and concurrently across connections.
//
// The reply document is sent as is, with {ok: 1} appended if it has no "ok"
// field. A returned *mongoerr.Error (possibly wrapped) becomes {ok: 0,
// errmsg, code, codeName}; any other error becomes InternalError (1). A
// handler that needs extra error fields (writeErrors, errorLabels) returns
// its own reply with ok: 0 instead of an error.
type Handler interface {
	Handle(ctx context.Context, c *ConnState, req *Request) (bson.Raw, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c *ConnState, req *Request) (bson.Raw, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, c *ConnState, req *Request) (bson.Raw, error) {
	return f(ctx, c, req)
}

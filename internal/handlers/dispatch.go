package handlers

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// Handle implements wire.Handler: it finds the command in the table and
// applies, in mongod's order, everything the table says about it before
// the command runs — authentication, the admin-only rule, the session
// fields (transactions refused), maxTimeMS, writeConcern, authorization,
// the DISABLED refusal — so that a refused command has changed nothing.
//
// The command runs under a context bound to the node (node.Bind): a
// disable cancels it, and its scans stop between two documents with
// KeyUnavailable. A maxTimeMS becomes the context's deadline.
func (h *Handler) Handle(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	// Every command is an operation in progress until it answers:
	// currentOp lists it, killOp interrupts it (ops.go).
	h.opcounters.count(req)
	cmd, _ := h.commands.lookup(req.Name)
	ctx, op := h.ops.begin(withSession(ctx, req), c, cmd, req)
	reply, err, failed := h.applyFailPoint(ctx, c, req, func() (bson.Raw, error) { return h.handle(ctx, c, req) })
	if !failed {
		reply, err = h.handle(ctx, c, req)
	}
	h.ops.end(op, err)
	if err != nil {
		err = labelRetryableWrite(req, err)
	}
	return reply, err
}

func (h *Handler) handle(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	cmd, ok := h.commands.lookup(req.Name)
	if !ok {
		return nil, mongoerr.New(mongoerr.CommandNotFound, "no such command: '%s'", req.Name)
	}
	if h.opts.AuthRequired && !cmd.public {
		if _, ok := c.Authenticated(); !ok {
			return nil, mongoerr.New(mongoerr.Unauthorized, "Command %s requires authentication", req.Name)
		}
	}
	if cmd.adminOnly && req.DB != usersDB {
		return nil, mongoerr.New(mongoerr.Unauthorized, "%s may only be run against the admin database.", req.Name)
	}
	if err := checkSessionFields(req.Name, req.Command, h.opts.Repl != nil); err != nil {
		return nil, err
	}
	txn, inTxn, err := h.txnStatement(req)
	if err != nil {
		return nil, err
	}
	maxTime, err := parseMaxTimeMS(req.Command)
	if err != nil {
		return nil, err
	}
	if err := checkWriteConcern(cmd, req.Command, h.replMembers()); err != nil {
		return nil, err
	}
	if err := h.checkReplicaRole(cmd, req); err != nil {
		return nil, err
	}
	after, err := h.guard(cmd, c, req)
	if err != nil {
		return nil, err
	}
	if after != nil {
		defer after()
	}
	// A command runs bound to the node, so a disable cancels it. One the
	// table lets run while the node is DISABLED runs unbound then: a bound
	// context would be cancelled already.
	if st := h.node.State(); st.Available {
		var unbind context.CancelFunc
		ctx, unbind = h.node.Bind(ctx)
		defer unbind()
	} else if !cmd.whileDisabled {
		return nil, acquireError(&node.DisabledError{State: st})
	}
	if maxTime > 0 && !cmd.cursorTime {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, maxTime, errMaxTimeExpired)
		defer cancel()
	}
	if cmd.rs == rsWrite && h.opts.ReadOnly {
		return nil, mongoerr.New(mongoerr.IllegalOperation, "Cannot execute a write operation in read-only mode: this node serves a snapshot")
	}
	if cmd.rs == rsWrite && writesOplog(req) {
		return nil, mongoerr.New(mongoerr.InvalidNamespace, "cannot write to 'local.oplog.rs': the oplog is derived from the replicated log and is read-only")
	}
	if cmd.rs == rsRead && !inTxn {
		if err := h.readConcernLinearizable(ctx, req); err != nil {
			return nil, commandError(ctx, err)
		}
	}
	run := func(ctx context.Context) (bson.Raw, error) { return cmd.handler(ctx, c, req) }
	switch {
	case inTxn:
		run = func(ctx context.Context) (bson.Raw, error) { return h.runTxnStatement(ctx, txn, cmd, c, req) }
	case req.Name == "getMore":
		if err := h.txns.checkCursor(req.Command, nil); err != nil {
			return nil, err
		}
	case h.opts.Repl != nil && retryableCommands[req.Name]:
		rw, ok, err := parseRetryable(req.Command)
		if err != nil {
			return nil, err
		}
		if ok {
			inner := run
			run = func(ctx context.Context) (bson.Raw, error) { return h.runRetryable(ctx, rw, c, req, inner) }
		}
	}
	reply, err := run(ctx)
	if err != nil {
		return nil, commandError(ctx, err)
	}
	return reply, nil
}

// commandError gives a failed command its MongoDB error. A command that
// stopped because its context ended reports why the context ended: the
// node was disabled (KeyUnavailable, with the reason) or maxTimeMS expired
// (MaxTimeMSExpired). Errors that carry a MongoDB code keep it.
func commandError(ctx context.Context, err error) error {
	var me *mongoerr.Error
	if errors.As(err, &me) {
		return err
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		// A bare ctx.Err() hides why; the cause says it.
		err = context.Cause(ctx)
	}
	var de *node.DisabledError
	switch {
	case errors.As(err, &de):
		return acquireError(de)
	case errors.Is(err, errMaxTimeExpired):
		return maxTimeError()
	case errors.Is(err, errInterrupted):
		return interruptedError()
	}
	return err
}

// writesOplog reports whether a write command targets local.oplog.rs
// (which is served from the member's oplog, oplogfind.go) or renames a
// collection onto it.
func writesOplog(req *wire.Request) bool {
	first, err := req.Command.IndexErr(0)
	if err != nil {
		return false
	}
	if coll, ok := first.Value().StringValueOK(); ok && req.DB == "local" && coll == oplogColl {
		return true
	}
	if to, ok := req.Command.Lookup("to").StringValueOK(); ok && req.Name == "renameCollection" {
		return to == "local."+oplogColl
	}
	return false
}

package handlers

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// MongoDB's bounds of replSetResizeOplog's size, in megabytes: 990 MB to
// 1 PB (a node.json may set a smaller oplog; the command keeps MongoDB's
// floor so that what works here works on MongoDB).
const (
	resizeOplogMinMB = 990
	resizeOplogMaxMB = 1 << 30
)

// replSetResizeOplog changes this member's oplog size:
// {replSetResizeOplog: 1, size: <MB>, minRetentionHours: <h>}. The size
// is recorded in the member's node.json before it applies, so a restart
// keeps it. minRetentionHours is MongoDB's minimum age (the oplog may
// outgrow its size to keep it); cmkdb's oplog has a maximum age instead
// (oplogRetentionHours), so only 0, "no minimum", is accepted: any other
// value is refused rather than given a different meaning.
func (h *Handler) replSetResizeOplog(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	rs := h.opts.Repl
	if rs == nil {
		return nil, mongoerr.New(mongoerr.NamespaceNotFound, "oplog does not exist: not a replica set member")
	}
	size, hasSize, err := resizeOplogNumber(req.Command, "size")
	if err != nil {
		return nil, err
	}
	hours, hasHours, err := resizeOplogNumber(req.Command, "minRetentionHours")
	if err != nil {
		return nil, err
	}
	if !hasSize && !hasHours {
		return nil, mongoerr.New(mongoerr.InvalidOptions, "Invalid replSetResizeOplog request, must specify 'size' or 'minRetentionHours'")
	}
	if hasSize && (size < resizeOplogMinMB || size > resizeOplogMaxMB) {
		return nil, mongoerr.New(51024, "BSON field 'size' value must be >= %d and <= %d, actual value '%g'", resizeOplogMinMB, resizeOplogMaxMB, size)
	}
	if hasHours && hours < 0 {
		return nil, mongoerr.New(51024, "BSON field 'minRetentionHours' value must be >= 0, actual value '%g'", hours)
	}
	if hours != 0 {
		return nil, mongoerr.New(mongoerr.InvalidOptions, "minRetentionHours %g is not supported: a cmkdb oplog keeps entries at most oplogRetentionHours (node.json), it has no minimum age; 0 is accepted", hours)
	}
	if !hasSize {
		return marshal(bson.D{{Key: "ok", Value: 1.0}})
	}
	// Hold the node's storage: a disable closes the oplog's database
	// only after the trim returns (as withOplog).
	_, _, release, err := h.node.Acquire()
	if err != nil {
		return nil, acquireError(err)
	}
	defer release()
	limits := rs.OplogLimits()
	limits.MaxBytes = int64(size * (1 << 20))
	if err := rs.ResizeOplog(limits); err != nil {
		if errors.Is(err, repl.ErrOplogNotResizable) {
			return nil, mongoerr.New(mongoerr.IllegalOperation, "%v", err)
		}
		return nil, err
	}
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}

func resizeOplogNumber(cmd bson.Raw, field string) (float64, bool, error) {
	v, err := cmd.LookupErr(field)
	if err != nil {
		return 0, false, nil
	}
	f, ok := v.AsFloat64OK()
	if !ok {
		return 0, false, mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s' is the wrong type '%s', expected types '[long, int, decimal, double]'", field, v.Type)
	}
	return f, true, nil
}

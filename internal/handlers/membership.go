package handlers

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// Membership changes, driven by whoever provisions the set's members (cmkdb
// up's provisioner, on an admin API change of the member count). They are
// cmkdb commands, not replSetReconfig: a member is known by its name, its
// MongoDB host and its raft address, and the set's configuration is raft's.
//
//	{cmkdbAddMember: "<name>", host: "<host:port>", raftAddr: "<host:port>"}
//	{cmkdbRemoveMember: "<name>"}
//
// Both run on the primary only (NotWritablePrimary elsewhere); removing the
// primary itself steps it down first and answers NotWritablePrimary, so
// the caller retries on the new primary.

func (h *Handler) cmkdbAddMember(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	rs := h.opts.Repl
	if rs == nil {
		return nil, h.notReplicaSet()
	}
	var mc repl.MemberConfig
	var ok1, ok2, ok3 bool
	mc.Name, ok1 = req.Command.Lookup("cmkdbAddMember").StringValueOK()
	mc.Host, ok2 = req.Command.Lookup("host").StringValueOK()
	mc.RaftAddr, ok3 = req.Command.Lookup("raftAddr").StringValueOK()
	if !ok1 || !ok2 || !ok3 {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "cmkdbAddMember needs the member's name, host and raftAddr as strings")
	}
	if err := rs.AddMember(ctx, mc); err != nil {
		if errors.Is(err, repl.ErrMemberExists) {
			return nil, mongoerr.New(mongoerr.InvalidOptions, "%v", err)
		}
		return nil, err
	}
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}

func (h *Handler) cmkdbRemoveMember(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	rs := h.opts.Repl
	if rs == nil {
		return nil, h.notReplicaSet()
	}
	name, ok := req.Command.Lookup("cmkdbRemoveMember").StringValueOK()
	if !ok || name == "" {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "cmkdbRemoveMember needs the member's name")
	}
	if err := rs.RemoveMember(ctx, name); err != nil {
		if errors.Is(err, repl.ErrIsPrimary) {
			return nil, mongoerr.New(mongoerr.NotWritablePrimary, "%v", err)
		}
		return nil, err
	}
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}

// initialSyncStatus is replSetGetStatus's initialSyncStatus (MongoDB's
// field names where they apply).
func initialSyncStatus(p repl.SyncProgress) bson.D {
	end := p.Finished
	if p.Active {
		end = time.Now()
	}
	return bson.D{
		{Key: "active", Value: p.Active},
		{Key: "initialSyncStart", Value: bson.NewDateTimeFromTime(p.Started)},
		{Key: "totalInitialSyncElapsedMillis", Value: end.Sub(p.Started).Milliseconds()},
		{Key: "approxTotalDataSize", Value: p.BytesTotal},
		{Key: "approxTotalBytesCopied", Value: p.BytesCopied},
		{Key: "documentsCopied", Value: p.DocumentsCopied},
		{Key: "remainingInitialSyncEstimatedMillis", Value: p.Remaining(time.Now()).Milliseconds()},
	}
}

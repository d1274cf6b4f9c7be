package handlers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// cmkdbCheckpoint writes a snapshot of this node (node.Checkpoint) into a
// new directory of the snapshot store the node is configured with: how
// the control plane backs up a replica set from one of its secondaries.
// The directory must lie inside that store (no other path is ever
// written); a member's "local" database (its raft log and oplog) is left
// out. It answers what the snapshot is bound to: the node id, keystore
// generation, master key version and CMK, and the databases' ids.
func (h *Handler) cmkdbCheckpoint(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	dir, ok := req.Command.Lookup("cmkdbCheckpoint").StringValueOK()
	if !ok || dir == "" {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "cmkdbCheckpoint needs the directory to write, as a string")
	}
	if h.opts.SnapshotDir == "" {
		return nil, mongoerr.New(mongoerr.IllegalOperation, "this node has no snapshot store configured (node.json snapshotDir)")
	}
	root, err := filepath.Abs(h.opts.SnapshotDir)
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	if !filepath.IsAbs(dir) || !strings.HasPrefix(dir, root+string(filepath.Separator)) {
		return nil, mongoerr.New(mongoerr.Unauthorized, "cmkdbCheckpoint writes only inside the node's snapshot store")
	}
	// The parent must exist and resolve inside the store too (no symlink
	// leading elsewhere); the directory itself must not exist.
	parent, err := filepath.EvalSymlinks(filepath.Dir(dir))
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "cmkdbCheckpoint: %v", err)
	}
	if realRoot, err := filepath.EvalSymlinks(root); err != nil || !strings.HasPrefix(parent+string(filepath.Separator), realRoot+string(filepath.Separator)) {
		return nil, mongoerr.New(mongoerr.Unauthorized, "cmkdbCheckpoint writes only inside the node's snapshot store")
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		return nil, mongoerr.New(mongoerr.BadValue, "cmkdbCheckpoint: %s exists", dir)
	}
	var exclude []string
	if rs := h.opts.Repl; rs != nil {
		exclude = append(exclude, "local")
		// A secondary first applies everything the primary had applied
		// when the snapshot was asked for (afterOpTime, the primary's
		// lastWrite), so the snapshot holds every write acknowledged
		// before it.
		if v := req.Command.Lookup("afterOpTime"); v.Type == bson.TypeTimestamp {
			t, i := v.Timestamp()
			want := oplog.Timestamp{T: t, I: i}
			for rs.Status().Applied.TS.Compare(want) < 0 {
				select {
				case <-ctx.Done():
					return nil, mongoerr.New(mongoerr.ExceededTimeLimit, "cmkdbCheckpoint: this member did not catch up with the primary in time")
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
	}
	info, err := h.node.Checkpoint(ctx, dir, exclude...)
	if err != nil {
		return nil, acquireError(err)
	}
	ids := bson.A{}
	for _, id := range info.DatabaseIDs {
		ids = append(ids, id)
	}
	return marshal(bson.D{
		{Key: "nodeId", Value: info.NodeID},
		{Key: "keystoreGeneration", Value: int64(info.KeystoreGeneration)},
		{Key: "masterKeyVersion", Value: int64(info.MasterKeyVersion)},
		{Key: "cmk", Value: bson.D{{Key: "provider", Value: info.CMK.Provider}, {Key: "keyId", Value: info.CMK.KeyID}, {Key: "keyVersion", Value: info.CMK.KeyVersion}}},
		{Key: "databaseIds", Value: ids},
		{Key: "ok", Value: 1.0},
	})
}

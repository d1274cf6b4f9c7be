package handlers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/repl"
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
	dir, err := h.snapshotStorePath("cmkdbCheckpoint", dir)
	if err != nil {
		return nil, err
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
		if want, ok := timestampArg(req.Command.Lookup("afterOpTime")); ok {
			if err := waitApplied(ctx, rs, "cmkdbCheckpoint", want); err != nil {
				return nil, err
			}
		}
	}
	var info node.SnapshotInfo
	var at repl.OpTime
	take := func() error {
		var err error
		info, err = h.node.Checkpoint(ctx, dir, exclude...)
		return err
	}
	if rs := h.opts.Repl; rs != nil {
		// No entry is applied while the databases are checkpointed: the
		// snapshot holds exactly the log up to one index, which a
		// point-in-time restore replays the oplog archive from.
		err = rs.WithAppliesPaused(ctx, func(t repl.OpTime) error { at = t; return take() })
	} else {
		err = take()
	}
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
		{Key: "raftIndex", Value: int64(at.Index)},
		{Key: "oplogTs", Value: bson.Timestamp{T: at.TS.T, I: at.TS.I}},
		{Key: "ok", Value: 1.0},
	})
}

// snapshotStorePath checks that dir lies inside the node's snapshot store
// (node.json snapshotDir), its parent resolving there too (no symlink
// leading elsewhere): the only place the backup commands read or write.
func (h *Handler) snapshotStorePath(cmd, dir string) (string, error) {
	if h.opts.SnapshotDir == "" {
		return "", mongoerr.New(mongoerr.IllegalOperation, "this node has no snapshot store configured (node.json snapshotDir)")
	}
	root, err := filepath.Abs(h.opts.SnapshotDir)
	if err != nil {
		return "", err
	}
	dir = filepath.Clean(dir)
	if !filepath.IsAbs(dir) || !strings.HasPrefix(dir, root+string(filepath.Separator)) {
		return "", mongoerr.New(mongoerr.Unauthorized, "%s reads and writes only inside the node's snapshot store", cmd)
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(dir))
	if err != nil {
		return "", mongoerr.New(mongoerr.BadValue, "%s: %v", cmd, err)
	}
	if realRoot, err := filepath.EvalSymlinks(root); err != nil || !strings.HasPrefix(parent+string(filepath.Separator), realRoot+string(filepath.Separator)) {
		return "", mongoerr.New(mongoerr.Unauthorized, "%s reads and writes only inside the node's snapshot store", cmd)
	}
	return dir, nil
}

package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/snapshot"
	"github.com/cmkdb/cmkdb/internal/storage"
)

// A node snapshot is a directory:
//
//	keystore        the node keystore as it was after the checkpoints: the
//	                master key wrapped by the CMK of that moment, the
//	                database keys wrapped by the master key
//	db/<id>/        a Pebble checkpoint of each database, its files
//	                encrypted as they are on the node (sstables hard-linked
//	                where the file system allows, WAL and MANIFEST written
//	                anew under the same database key)
//
// Nothing else: no KMS credential, no plaintext. Only the CMK that wrapped
// the master key then can open it.

// SnapshotInfo describes what Checkpoint wrote.
type SnapshotInfo struct {
	NodeID             string
	KeystoreGeneration uint64
	MasterKeyVersion   uint32
	CMK                kms.KeyRef
	// DatabaseIDs are the ids of the databases checkpointed (directory
	// names under db/). Names stay sealed in the keystore.
	DatabaseIDs []string
	TakenAt     time.Time
}

// Checkpoint writes a snapshot of the node into dest, which must not
// exist, without stopping writes (the databases named in exclude are left
// out: a replica set member's "local", its raft log and oplog): each database is checkpointed after its
// WAL is synced, so every write acknowledged before Checkpoint was called
// is in it. Databases are checkpointed one after the other (a write to
// two databases may be in one's checkpoint and not the other's, as with
// mongodump of a running server). While it runs, a database cannot be
// dropped (12586 at dropDatabase), so the keystore copied after the
// checkpoints has a key for every database in it. Databases created
// during it are in the keystore but not checkpointed: a restore has them
// empty.
func (n *Node) Checkpoint(ctx context.Context, dest string, exclude ...string) (SnapshotInfo, error) {
	eng, _, release, err := n.Acquire()
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("node: snapshot: %w", err)
	}
	defer release()
	if err := os.MkdirAll(filepath.Join(dest, "db"), 0o700); err != nil {
		return SnapshotInfo{}, fmt.Errorf("node: snapshot: %w", err)
	}
	taken := time.Now().UTC()
	var ids []string
	for _, name := range eng.Databases() {
		if err := ctx.Err(); err != nil {
			return SnapshotInfo{}, err
		}
		if slices.Contains(exclude, name) {
			continue
		}
		db, unhold, err := eng.Hold(name)
		if errors.Is(err, storage.ErrNoDatabase) {
			continue // dropped since it was listed
		}
		if err != nil {
			return SnapshotInfo{}, fmt.Errorf("node: snapshot of %s: %w", name, err)
		}
		defer unhold()
		if err := db.Checkpoint(filepath.Join(dest, "db", db.ID), pebble.WithFlushedWAL()); err != nil {
			return SnapshotInfo{}, fmt.Errorf("node: snapshot of %s: %w", name, err)
		}
		ids = append(ids, db.ID)
	}
	raw, err := os.ReadFile(keys.Path(n.Layout.KeystoreDir()))
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("node: snapshot: keystore: %w", err)
	}
	if err := durable.WriteFile(keys.Path(dest), raw, 0o600); err != nil {
		return SnapshotInfo{}, fmt.Errorf("node: snapshot: %w", err)
	}
	r, err := keys.Inspect(dest)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("node: snapshot: %w", err)
	}
	if err := durable.SyncDir(filepath.Join(dest, "db")); err != nil {
		return SnapshotInfo{}, err
	}
	return SnapshotInfo{NodeID: r.NodeID, KeystoreGeneration: r.Generation, MasterKeyVersion: r.Master.Version,
		CMK: r.Master.CMK, DatabaseIDs: ids, TakenAt: taken}, nil
}

// Restore replaces the node's data with the snapshot in src (as
// Checkpoint wrote it) while the node runs, with the in-place
// re-encryption's machinery (reencrypt.go): the snapshot is copied into
// DIR/node/next, its keystore opened (one unwrap by the CMK that wrapped
// it then: an invalid key fails here, before anything changed), raised
// above the current keystore's generation and given a new master key
// wrapped by the key the provider names now (so the restored node shares
// no live master key with the snapshot), every database opened once;
// then the same pause, commit point and crash recovery as a
// re-encryption. Operations wait during the switch; afterwards they see
// the snapshot's data.
func (n *Node) Restore(ctx context.Context, src string, progress func(copied, total int64)) error {
	if n.opts.ReadOnly {
		return fmt.Errorf("node: restore: %w", storage.ErrReadOnly)
	}
	n.reencrypting.Lock()
	defer n.reencrypting.Unlock()
	log := n.opts.logger()
	eng, ks, release, err := n.Acquire()
	if err != nil {
		return fmt.Errorf("node: restore: %w", err)
	}
	held := true
	defer func() {
		if held {
			release()
		}
	}()
	ctx, stop := n.Bind(ctx)
	defer stop()
	next := n.Layout.NextDir()
	abandon := func() {
		_ = os.Remove(keys.Path(next))
		_ = durable.SyncDir(next)
		_ = os.RemoveAll(next)
	}
	if err := os.RemoveAll(next); err != nil {
		return fmt.Errorf("node: restore: %w", err)
	}
	// The keystore first: a directory under next/db never exists without
	// it (settleReencryption relies on that).
	raw, err := os.ReadFile(keys.Path(src))
	if err != nil {
		return fmt.Errorf("node: restore: snapshot keystore: %w", err)
	}
	if err := os.MkdirAll(next, 0o700); err != nil {
		return fmt.Errorf("node: restore: %w", err)
	}
	if err := durable.WriteFile(keys.Path(next), raw, 0o600); err != nil {
		abandon()
		return fmt.Errorf("node: restore: %w", err)
	}
	nks, err := keys.Open(ctx, next, n.Provider)
	if err != nil {
		abandon()
		return fmt.Errorf("node: restore: the snapshot's keystore does not open: %w", err)
	}
	fail := func(err error) error {
		nks.Close()
		abandon()
		return fmt.Errorf("node: restore: %w", err)
	}
	if err := snapshot.CopyTree(ctx, filepath.Join(src, "db"), filepath.Join(next, "db"), progress); err != nil {
		return fail(err)
	}
	if err := nks.RaiseGeneration(ks.Generation()); err != nil {
		return fail(err)
	}
	if err := nks.RotateMasterKey(ctx); err != nil {
		return fail(fmt.Errorf("new master key: %w", err))
	}
	// Every database of the snapshot opens under its keys before the
	// switch: a damaged snapshot fails here, with the node unchanged.
	neng, err := storage.Open(storage.Options{Dir: filepath.Join(next, "db"), QuarantineDir: filepath.Join(next, "quarantine"),
		Plaintext: n.opts.Plaintext, CacheSize: n.opts.CacheSize, Logger: log}, nks)
	if err != nil {
		return fail(err)
	}
	for _, name := range neng.Databases() {
		if _, err := neng.Database(name); err != nil {
			neng.Close()
			return fail(err)
		}
	}
	if q := neng.Quarantined(); len(q) > 0 {
		neng.Close()
		return fail(fmt.Errorf("the snapshot holds %d database directories its keystore does not name", len(q)))
	}
	if err := neng.Close(); err != nil {
		return fail(err)
	}
	release()
	held = false
	for attempt := 1; ; attempt++ {
		err = n.switchHierarchy(ctx, eng, ks, nks, nil)
		if !errors.Is(err, errSwitchBusy) || attempt == switchAttempts {
			break
		}
		log.Warn("restore: operations in flight kept the node from switching; trying again", "attempt", attempt)
	}
	var committed *switchedError
	switch {
	case errors.As(err, &committed):
		return err
	case err != nil:
		return fail(err)
	}
	log.Info("restore done: the node serves the snapshot's data under a new master key", "nodeId", nks.NodeID())
	return nil
}

// OpenSnapshot opens the snapshot in src (as Checkpoint wrote it, its
// master key wrapped for this node) read-only, with this node's KMS
// access: what a replica set restore streams to the set. Databases in
// exclude (those Checkpoint left out) are not opened. close releases it
// and drops its keys.
func (n *Node) OpenSnapshot(ctx context.Context, src string, exclude ...string) (eng *storage.Engine, close func(), err error) {
	ks, err := keys.Open(ctx, src, n.Provider)
	if err != nil {
		return nil, nil, fmt.Errorf("node: the snapshot's keystore does not open: %w", err)
	}
	eng, err = storage.Open(storage.Options{Dir: filepath.Join(src, "db"), Plaintext: n.opts.Plaintext,
		CacheSize: 32 << 20, Logger: n.opts.logger(), ReadOnly: true}, ks)
	if err != nil {
		ks.Close()
		return nil, nil, fmt.Errorf("node: snapshot: %w", err)
	}
	for _, name := range eng.Databases() {
		if slices.Contains(exclude, name) {
			continue
		}
		if _, err := eng.Database(name); err != nil {
			eng.Close()
			ks.Close()
			return nil, nil, fmt.Errorf("node: snapshot: %w", err)
		}
	}
	return eng, func() { eng.Close(); ks.Close() }, nil
}

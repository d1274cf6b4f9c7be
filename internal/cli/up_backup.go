package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/logarchive"
)

// Snapshots of the clusters `up` runs (controlplane.Snapshotter): a
// one-member cluster's node runs in this process, so its own Checkpoint
// and Restore; a replica set is snapshotted by one of its member processes
// (cmkdbCheckpoint) and restored into through its primary (cmkdbRestore),
// which also replays the oplog archive a member extends
// (cmkdbArchiveOplog) for point-in-time restores.

// TakeSnapshot implements controlplane.Snapshotter.
func (p *upProvisioner) TakeSnapshot(ctx context.Context, gid, cluster, dir string) (controlplane.SnapshotSource, error) {
	rn, ok := p.node(gid, cluster)
	if !ok {
		return controlplane.SnapshotSource{}, fmt.Errorf("cluster %s is not running", cluster)
	}
	if rn.members != nil {
		return rn.members.checkpoint(ctx, dir)
	}
	info, err := rn.n.Checkpoint(ctx, dir)
	if err != nil {
		return controlplane.SnapshotSource{}, err
	}
	return controlplane.SnapshotSource{NodeName: upNode, NodeID: info.NodeID, KeystoreGeneration: info.KeystoreGeneration,
		MasterKeyVersion: info.MasterKeyVersion, CMK: info.CMK, DatabaseIDs: info.DatabaseIDs}, nil
}

// RestoreSnapshot implements controlplane.Snapshotter.
func (p *upProvisioner) RestoreSnapshot(ctx context.Context, gid, cluster string, in controlplane.RestoreInput, progress func(copied, total int64)) error {
	rn, ok := p.node(gid, cluster)
	if !ok {
		return fmt.Errorf("cluster %s is not running", cluster)
	}
	if rn.members != nil {
		return rn.members.restore(ctx, in, progress)
	}
	if in.PIT != nil {
		return errors.New("a point-in-time restore replays the oplog into a replica set; this cluster has one member")
	}
	dir, cleanup, err := in.Stage(ctx, upNode)
	if err != nil {
		return err
	}
	defer cleanup()
	return rn.n.Restore(ctx, dir, progress)
}

// ArchiveOplog implements controlplane.OplogArchiver.
func (p *upProvisioner) ArchiveOplog(ctx context.Context, gid, cluster, dir string) error {
	rn, ok := p.node(gid, cluster)
	if !ok {
		return fmt.Errorf("cluster %s is not running", cluster)
	}
	if rn.members == nil {
		return errors.New("a one-member cluster has no oplog to archive")
	}
	return rn.members.archiveOplog(ctx, dir)
}

// primaryLastWrite asks the primary for its last write's timestamp (what
// a member asked to back the set up applies first) and its host.
func (ms *memberSet) primaryLastWrite(ctx context.Context) (bson.Timestamp, string, error) {
	var hello struct {
		Primary   string `bson:"primary"`
		LastWrite struct {
			OpTime struct {
				TS bson.Timestamp `bson:"ts"`
			} `bson:"opTime"`
		} `bson:"lastWrite"`
	}
	primary, err := ms.client(ms.uri)
	if err != nil {
		return bson.Timestamp{}, "", err
	}
	defer primary.Disconnect(context.Background())
	if err := primary.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return bson.Timestamp{}, "", err
	}
	if hello.Primary == "" {
		return bson.Timestamp{}, "", errors.New("the replica set has no primary")
	}
	return hello.LastWrite.OpTime.TS, hello.Primary, nil
}

// memberHosts maps the running members' names to their hosts.
func (ms *memberSet) memberHosts() map[string]string {
	hosts := map[string]string{}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, mp := range ms.procs {
		if c, err := config.Load(mp.cfgFile); err == nil {
			hosts[mp.name] = cfgMember(c.Replication).Host
		}
	}
	return hosts
}

// onMember runs cmd on one member (by host) and decodes its answer.
func (ms *memberSet) onMember(ctx context.Context, host string, cmd bson.D, out any) error {
	client, err := ms.client("mongodb://" + host + "/?directConnection=true")
	if err != nil {
		return err
	}
	defer client.Disconnect(context.Background())
	return client.Database("admin").RunCommand(ctx, cmd).Decode(out)
}

// archiveOplog extends the set's oplog archive from a secondary (the
// primary when none answers), once it applied the primary's last write.
func (ms *memberSet) archiveOplog(ctx context.Context, dir string) error {
	order, err := ms.secondariesFirst(ctx)
	if err != nil {
		return err
	}
	asOf := time.Now()
	last, _, err := ms.primaryLastWrite(ctx)
	if err != nil {
		return err
	}
	hosts := ms.memberHosts()
	var firstErr error
	for _, name := range order {
		host, ok := hosts[name]
		if !ok {
			continue
		}
		var r bson.Raw
		err := ms.onMember(ctx, host, bson.D{{Key: "cmkdbArchiveOplog", Value: dir}, {Key: "afterOpTime", Value: last},
			{Key: "asOf", Value: bson.NewDateTimeFromTime(asOf)}}, &r)
		if err == nil {
			return nil
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("member %s: %w", name, err)
		}
	}
	if firstErr == nil {
		firstErr = errors.New("no member is running")
	}
	return firstErr
}

// restore restores a snapshot (and, for a point in time, the oplog
// archive) into the set through its primary (cmkdbRestore): the files
// are staged for the primary's keys; raft carries the data to the others.
func (ms *memberSet) restore(ctx context.Context, in controlplane.RestoreInput, progress func(copied, total int64)) error {
	_, primaryHost, err := ms.primaryLastWrite(ctx)
	if err != nil {
		return err
	}
	name := ""
	for n, h := range ms.memberHosts() {
		if h == primaryHost {
			name = n
		}
	}
	if name == "" {
		return fmt.Errorf("the primary %s is not one of this cluster's running members", primaryHost)
	}
	dir, cleanup, err := in.Stage(ctx, name)
	if err != nil {
		return err
	}
	defer cleanup()
	cmd := bson.D{{Key: "cmkdbRestore", Value: dir}}
	if in.PIT != nil {
		keysDir, cleanupKeys, err := in.PIT.StageKeys(ctx, name)
		if err != nil {
			return err
		}
		defer cleanupKeys()
		cmd = append(cmd, bson.E{Key: "oplog", Value: bson.D{{Key: "archive", Value: in.PIT.Archive}, {Key: "keys", Value: keysDir},
			{Key: "after", Value: int64(in.PIT.After)}, {Key: "through", Value: bson.Timestamp{T: in.PIT.Through.T, I: in.PIT.Through.I}}}})
	}
	size := dirSize(dir)
	progress(0, size)
	var r bson.Raw
	if err := ms.onMember(ctx, primaryHost, cmd, &r); err != nil {
		return fmt.Errorf("member %s: %w", name, err)
	}
	progress(size, size)
	return nil
}

// dirSize is the bytes of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// checkpoint snapshots a replica set from one of its secondaries (the
// primary only when no secondary answers): the member writes it into the
// snapshot store itself (cmkdbCheckpoint), under its own keys.
func (ms *memberSet) checkpoint(ctx context.Context, dir string) (controlplane.SnapshotSource, error) {
	order, err := ms.secondariesFirst(ctx)
	if err != nil {
		return controlplane.SnapshotSource{}, err
	}
	// What the primary has applied now: the member snapshotted catches up
	// to it first, so every write acknowledged before is in the snapshot.
	last, _, err := ms.primaryLastWrite(ctx)
	if err != nil {
		return controlplane.SnapshotSource{}, err
	}
	hosts := ms.memberHosts()
	var firstErr error
	for _, name := range order {
		host, ok := hosts[name]
		if !ok {
			continue // on disk, not running
		}
		var r struct {
			NodeID             string `bson:"nodeId"`
			KeystoreGeneration int64  `bson:"keystoreGeneration"`
			MasterKeyVersion   int64  `bson:"masterKeyVersion"`
			CMK                struct {
				Provider   string `bson:"provider"`
				KeyID      string `bson:"keyId"`
				KeyVersion string `bson:"keyVersion"`
			} `bson:"cmk"`
			DatabaseIDs []string       `bson:"databaseIds"`
			RaftIndex   int64          `bson:"raftIndex"`
			OplogTS     bson.Timestamp `bson:"oplogTs"`
		}
		err = ms.onMember(ctx, host, bson.D{{Key: "cmkdbCheckpoint", Value: dir}, {Key: "afterOpTime", Value: last}}, &r)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("member %s: %w", name, err)
			}
			_ = os.RemoveAll(dir) // what a failed checkpoint left, to try the next member
			continue
		}
		return controlplane.SnapshotSource{NodeName: name, NodeID: r.NodeID, KeystoreGeneration: uint64(r.KeystoreGeneration),
			MasterKeyVersion: uint32(r.MasterKeyVersion), CMK: kms.KeyRef{Provider: r.CMK.Provider, KeyID: r.CMK.KeyID, KeyVersion: r.CMK.KeyVersion},
			DatabaseIDs: r.DatabaseIDs, RaftIndex: uint64(r.RaftIndex), OplogTS: logarchive.Timestamp{T: r.OplogTS.T, I: r.OplogTS.I}}, nil
	}
	if firstErr == nil {
		firstErr = errors.New("no member is running")
	}
	return controlplane.SnapshotSource{}, firstErr
}

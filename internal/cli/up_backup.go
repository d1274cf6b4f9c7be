package cli

import (
	"context"
	"errors"
	"fmt"
	"os"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/kms"
)

// Snapshots of the clusters `up` runs (controlplane.Snapshotter): a
// one-member cluster's node runs in this process, so its own Checkpoint
// and Restore; a replica set is snapshotted by one of its member processes
// (cmkdbCheckpoint), and not restored into (the control plane refuses).

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
func (p *upProvisioner) RestoreSnapshot(ctx context.Context, gid, cluster, dir string, progress func(copied, total int64)) error {
	rn, ok := p.node(gid, cluster)
	if !ok {
		return fmt.Errorf("cluster %s is not running", cluster)
	}
	if rn.members != nil {
		return errors.New("restores of replica sets are not available yet")
	}
	return rn.n.Restore(ctx, dir, progress)
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
	var hello struct {
		LastWrite struct {
			OpTime struct {
				TS bson.Timestamp `bson:"ts"`
			} `bson:"opTime"`
		} `bson:"lastWrite"`
	}
	primary, err := ms.client(ms.uri)
	if err != nil {
		return controlplane.SnapshotSource{}, err
	}
	err = primary.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello)
	primary.Disconnect(context.Background())
	if err != nil {
		return controlplane.SnapshotSource{}, err
	}
	hosts := map[string]string{}
	ms.mu.Lock()
	for _, mp := range ms.procs {
		if c, err := config.Load(mp.cfgFile); err == nil {
			hosts[mp.name] = cfgMember(c.Replication).Host
		}
	}
	ms.mu.Unlock()
	var firstErr error
	for _, name := range order {
		host, ok := hosts[name]
		if !ok {
			continue // on disk, not running
		}
		client, err := ms.client("mongodb://" + host + "/?directConnection=true")
		if err != nil {
			return controlplane.SnapshotSource{}, err
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
			DatabaseIDs []string `bson:"databaseIds"`
		}
		err = client.Database("admin").RunCommand(ctx, bson.D{{Key: "cmkdbCheckpoint", Value: dir},
			{Key: "afterOpTime", Value: hello.LastWrite.OpTime.TS}}).Decode(&r)
		client.Disconnect(context.Background())
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("member %s: %w", name, err)
			}
			_ = os.RemoveAll(dir) // what a failed checkpoint left, to try the next member
			continue
		}
		return controlplane.SnapshotSource{NodeName: name, NodeID: r.NodeID, KeystoreGeneration: uint64(r.KeystoreGeneration),
			MasterKeyVersion: uint32(r.MasterKeyVersion), CMK: kms.KeyRef{Provider: r.CMK.Provider, KeyID: r.CMK.KeyID, KeyVersion: r.CMK.KeyVersion},
			DatabaseIDs: r.DatabaseIDs}, nil
	}
	if firstErr == nil {
		firstErr = errors.New("no member is running")
	}
	return controlplane.SnapshotSource{}, firstErr
}

package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// Snapshots of the clusters `up` runs (controlplane.Snapshotter): the
// node's own Checkpoint and Restore. A one-member cluster's node runs in
// this process; replica sets are refused by the control plane before
// this is reached.

// TakeSnapshot implements controlplane.Snapshotter.
func (p *upProvisioner) TakeSnapshot(ctx context.Context, gid, cluster, dir string) (controlplane.SnapshotSource, error) {
	rn, ok := p.node(gid, cluster)
	if !ok {
		return controlplane.SnapshotSource{}, fmt.Errorf("cluster %s is not running", cluster)
	}
	if rn.members != nil {
		return controlplane.SnapshotSource{}, errors.New("snapshots of replica sets are not available yet")
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

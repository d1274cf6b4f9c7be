package controlplane

import (
	"context"
	"net/http"
)

// Resyncer is a Provisioner that can re-encrypt a replica set by resync:
// member by member (secondaries first, then the primary after a step
// down), the member leaves the set, its keystore and files are destroyed,
// and it comes back with a fresh key hierarchy — a new node master key,
// wrapped by the key the cluster's encryptionAtRestProvider names now —
// and an initial sync from the others. The set keeps a majority
// throughout, so it serves.
type Resyncer interface {
	Resync(ctx context.Context, groupID, cluster string, progress func(MembershipChange)) error
}

// reencryptLocked starts the re-encryption of cluster c after its
// encryptionAtRestProvider changed (or restates it after a failed
// re-encryption): in place for a one-member cluster
// (reencrypt_inplace.go), by resync for a replica set. A replica set whose
// provisioner cannot resync is refused rather than only re-wrapped.
// Nothing is changed when it returns an error.
func (s *Service) reencryptLocked(gs *groupState, c *Cluster) (run func(), err error) {
	n := c.members()
	if c.MembershipChange != nil && c.MembershipChange.Error == "" {
		return nil, apiErr(http.StatusConflict, "CLUSTER_UPDATE_IN_PROGRESS", "Cluster %s is already changing its members.", c.Name)
	}
	if c.MembershipChange != nil && !c.MembershipChange.Reencrypt {
		// A failed member count change: re-encrypting now would end IDLE
		// with the count never reached.
		return nil, apiErr(http.StatusConflict, "CLUSTER_UPDATE_IN_PROGRESS",
			"Cluster %s's member count change failed (%s); set the member count again to resume it before changing encryptionAtRestProvider.", c.Name, c.MembershipChange.Error)
	}
	if n == 1 {
		return s.reencryptInPlaceLocked(gs, c)
	}
	rs, ok := s.provisioner.(Resyncer)
	if !ok {
		return nil, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE",
			"Invalid attribute encryptionAtRestProvider specified: this control plane does not run cluster %s's members, so it cannot re-encrypt them.", c.Name)
	}
	return s.memberChangeLocked(gs, c, MembershipChange{From: n, To: n, Reencrypt: true},
		func(ctx context.Context, progress func(MembershipChange)) (string, error) {
			return "", rs.Resync(ctx, gs.group.ID, c.Name, progress)
		}), nil
}

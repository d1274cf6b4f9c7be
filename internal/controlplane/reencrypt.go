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

// reencryptLocked starts re-encryption by resync of replica set c after
// its encryptionAtRestProvider changed (or restates it after a failed
// re-encryption). It returns nil when c is not a replica set or the
// provisioner cannot resync: its nodes then re-wrap their master keys, as
// a one-member cluster does.
func (s *Service) reencryptLocked(gs *groupState, c *Cluster) (func(), error) {
	rs, ok := s.provisioner.(Resyncer)
	if !ok || c.members() < 3 {
		return nil, nil
	}
	if c.MembershipChange != nil && c.MembershipChange.Error == "" {
		return nil, apiErr(http.StatusConflict, "CLUSTER_UPDATE_IN_PROGRESS", "Cluster %s is already changing its members.", c.Name)
	}
	n := c.members()
	return s.memberChangeLocked(gs, c, MembershipChange{From: n, To: n, Reencrypt: true},
		func(ctx context.Context, progress func(MembershipChange)) (string, error) {
			return "", rs.Resync(ctx, gs.group.ID, c.Name, progress)
		}), nil
}

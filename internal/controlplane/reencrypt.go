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
// re-encryption). A one-member cluster is not re-encrypted: its node
// re-wraps its master key under the new provider's key, as before replica
// sets existed (in-place re-encryption of a single member is not built;
// docs/architecture.md says what the old key can then still read), and
// the caller records an event that says so (rewrapOnly). A replica set
// whose provisioner cannot resync is refused rather than only re-wrapped.
// Nothing is changed when it returns an error.
func (s *Service) reencryptLocked(gs *groupState, c *Cluster) (run func(), rewrapOnly bool, err error) {
	n := c.members()
	if n < 3 {
		return nil, true, nil
	}
	rs, ok := s.provisioner.(Resyncer)
	if !ok {
		return nil, false, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE",
			"Invalid attribute encryptionAtRestProvider specified: this control plane does not run cluster %s's members, so it cannot re-encrypt them.", c.Name)
	}
	if c.MembershipChange != nil && c.MembershipChange.Error == "" {
		return nil, false, apiErr(http.StatusConflict, "CLUSTER_UPDATE_IN_PROGRESS", "Cluster %s is already changing its members.", c.Name)
	}
	if c.MembershipChange != nil && !c.MembershipChange.Reencrypt {
		// A failed member count change: re-encrypting now would end IDLE
		// with the count never reached.
		return nil, false, apiErr(http.StatusConflict, "CLUSTER_UPDATE_IN_PROGRESS",
			"Cluster %s's member count change failed (%s); set the member count again to resume it before changing encryptionAtRestProvider.", c.Name, c.MembershipChange.Error)
	}
	return s.memberChangeLocked(gs, c, MembershipChange{From: n, To: n, Reencrypt: true},
		func(ctx context.Context, progress func(MembershipChange)) (string, error) {
			return "", rs.Resync(ctx, gs.group.ID, c.Name, progress)
		}), false, nil
}

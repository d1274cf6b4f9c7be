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
// an event says so. A replica set whose provisioner cannot resync is
// refused rather than only re-wrapped.
func (s *Service) reencryptLocked(gs *groupState, c *Cluster, recs map[string]any) (func(), error) {
	n := c.members()
	if n < 3 {
		s.addEventLocked(gs, recs, Event{EventTypeName: EventConfigUpdated, ClusterName: c.Name,
			Detail: "cluster " + c.Name + " has one member: its node master key is re-wrapped under the new provider's key; its data files are not re-encrypted (in-place re-encryption of a one-member cluster is not available)"})
		return nil, nil
	}
	rs, ok := s.provisioner.(Resyncer)
	if !ok {
		return nil, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE",
			"Invalid attribute encryptionAtRestProvider specified: this control plane does not run cluster %s's members, so it cannot re-encrypt them.", c.Name)
	}
	if c.MembershipChange != nil && c.MembershipChange.Error == "" {
		return nil, apiErr(http.StatusConflict, "CLUSTER_UPDATE_IN_PROGRESS", "Cluster %s is already changing its members.", c.Name)
	}
	return s.memberChangeLocked(gs, c, MembershipChange{From: n, To: n, Reencrypt: true},
		func(ctx context.Context, progress func(MembershipChange)) (string, error) {
			return "", rs.Resync(ctx, gs.group.ID, c.Name, progress)
		}), nil
}

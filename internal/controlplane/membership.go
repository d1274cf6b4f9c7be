package controlplane

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// Resizer is a Provisioner that can change a running cluster's member
// count: it adds members (each its own certificate, keystore and node
// master key; joined as a non-voter, initial sync, promoted once caught
// up) or removes them (secondaries first; a primary steps down first),
// one at a time, reporting progress as it goes.
type Resizer interface {
	Resize(ctx context.Context, groupID, cluster string, from, to int, progress func(MembershipChange)) (connectionString string, err error)
}

// MembershipChange is a member count change in progress (a cmkdb
// extension of the cluster resource, membershipChange).
type MembershipChange struct {
	From int `json:"fromMembers"`
	To   int `json:"toMembers"`
	// Reencrypt says the change replaces every member in turn with one
	// under a fresh key hierarchy (reencrypt.go), not a count change.
	Reencrypt bool              `json:"reencrypt,omitempty"`
	Started   time.Time         `json:"started"`
	Members   []MemberSyncState `json:"members,omitempty"`
	// Error is why the change stopped (the cluster is then REPAIRING).
	Error string `json:"error,omitempty"`
}

// MemberSyncState is one member the change adds or removes.
type MemberSyncState struct {
	Name string `json:"name"`
	// State is ADDING, INITIAL_SYNC, SECONDARY (added and promoted),
	// REMOVING or REMOVED.
	State       string       `json:"state"`
	InitialSync *InitialSync `json:"initialSync,omitempty"`
}

// InitialSync is a new member's initial sync: the snapshot streamed from
// the primary and restored under the member's own keys.
type InitialSync struct {
	BytesCopied              int64 `json:"bytesCopied"`
	BytesTotal               int64 `json:"bytesTotal"`
	DocumentsCopied          int64 `json:"documentsCopied"`
	EstimatedRemainingMillis int64 `json:"estimatedRemainingMillis"`
	ElapsedMillis            int64 `json:"elapsedMillis"`
}

// interruptedMembershipChange marks a change that was running when the
// control plane stopped as failed: nothing runs it any more. Repeating
// the PATCH resumes it (every step is idempotent).
func interruptedMembershipChange(c *Cluster) {
	if mc := c.MembershipChange; mc != nil && mc.Error == "" {
		mc.Error = "interrupted: the control plane stopped during the change; set the member count again to resume it"
		if mc.Reencrypt {
			mc.Error = "interrupted: the control plane stopped during the re-encryption; set encryptionAtRestProvider again to resume it"
		}
		c.StateName = "REPAIRING"
	}
}

// retryable reports whether a PATCH restating the member count of c
// resumes a failed change.
func (c *Cluster) retryable() bool {
	return c.MembershipChange != nil && c.MembershipChange.Error != ""
}

// resizeLocked validates a member count change and starts it in the
// background. The cluster is UPDATING until it completes (IDLE) or
// fails (REPAIRING, membershipChange.error says why).
func (s *Service) resizeLocked(gs *groupState, c *Cluster, to int) (func(), error) {
	from := c.members()
	if c.retryable() && c.MembershipChange.Reencrypt {
		// Resizing would clear the failed re-encryption and leave members
		// under their old keys with the cluster IDLE.
		return nil, apiErr(http.StatusConflict, "CLUSTER_UPDATE_IN_PROGRESS",
			"Cluster %s's re-encryption failed (%s); set encryptionAtRestProvider again to resume it before changing its members.", c.Name, c.MembershipChange.Error)
	}
	if c.retryable() {
		from = c.MembershipChange.From // resume the failed change from where it began
	}
	if to != 3 && to != 5 && to != 7 {
		return nil, invalidAttr("replicationFactor", "must be 3, 5 or 7 members")
	}
	if from < 3 {
		return nil, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE",
			"Invalid attribute replicationFactor specified: cluster %s has one member; a one-member cluster cannot become a replica set.", c.Name)
	}
	rz, ok := s.provisioner.(Resizer)
	if !ok {
		return nil, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE",
			"Invalid attribute replicationFactor specified: this control plane does not run cluster %s's members.", c.Name)
	}
	if c.MembershipChange != nil && c.MembershipChange.Error == "" {
		return nil, apiErr(http.StatusConflict, "CLUSTER_UPDATE_IN_PROGRESS", "Cluster %s is already changing its members.", c.Name)
	}
	c.ReplicationFactor = to
	return s.memberChangeLocked(gs, c, MembershipChange{From: from, To: to},
		func(ctx context.Context, progress func(MembershipChange)) (string, error) {
			return rz.Resize(ctx, gs.group.ID, c.Name, from, to, progress)
		}), nil
}

// memberChangeLocked marks c UPDATING with change mc and returns what runs
// the change (f) in the background: the cluster is IDLE when it
// completes, REPAIRING with membershipChange.error when it fails.
func (s *Service) memberChangeLocked(gs *groupState, c *Cluster, mc MembershipChange,
	f func(context.Context, func(MembershipChange)) (string, error)) func() {
	gid, name := gs.group.ID, c.Name
	mc.Started = s.now()
	c.StateName, c.MembershipChange = "UPDATING", &mc
	what := "cluster members " + strconv.Itoa(mc.From) + " -> " + strconv.Itoa(mc.To)
	if mc.Reencrypt {
		what = "cluster re-encryption by resync"
		if mc.From == 1 {
			what = "cluster re-encryption in place"
		}
	}
	return func() {
		cs, err := f(context.Background(), func(p MembershipChange) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if c, ok := gs.clusters[name]; ok && c.MembershipChange != nil {
				// A new value, never a change in place: views of the
				// cluster handed out earlier share the old pointer and
				// are encoded outside s.mu.
				mc := *c.MembershipChange
				mc.Members = p.Members
				c.MembershipChange = &mc
			}
		})
		s.mu.Lock()
		defer s.mu.Unlock()
		c, ok := gs.clusters[name]
		if !ok {
			return
		}
		recs := map[string]any{}
		if err != nil {
			s.log.Error("changing a cluster's members", "cluster", name, "err", err)
			c.StateName = "REPAIRING"
			if c.MembershipChange != nil {
				mc := *c.MembershipChange
				mc.Error = err.Error()
				c.MembershipChange = &mc
			}
		} else {
			c.StateName, c.MembershipChange = "IDLE", nil
			if cs != "" {
				c.ConnectionStrings.Standard = withoutCredentials(cs)
			}
		}
		s.addEventLocked(gs, recs, Event{EventTypeName: EventConfigUpdated, ClusterName: name,
			Detail: what + " " + map[bool]string{true: "failed", false: "completed"}[err != nil]})
		recs["cluster/"+gid+"/"+name] = *c
		_ = s.st.put(recs)
		s.notifyLocked()
	}
}

// ForgetNode drops the control plane's record of a cluster's node whose
// keystore its provisioner destroyed (a removed member): a member added
// later under that name has a new keystore, which the record's keystore
// generation (the rollback guard) would otherwise refuse as an old copy
// put back.
func (s *Service) ForgetNode(gid, cluster, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return err
	}
	recs := map[string]any{}
	for key, n := range gs.nodes {
		if n.Cluster == cluster && n.Name == name {
			recs["node/"+gid+"/"+key] = nil
		}
	}
	if len(recs) == 0 {
		return nil
	}
	if err := s.st.put(recs); err != nil {
		return err
	}
	for key, n := range gs.nodes {
		if n.Cluster == cluster && n.Name == name {
			delete(gs.nodes, key)
		}
	}
	s.notifyLocked()
	return nil
}

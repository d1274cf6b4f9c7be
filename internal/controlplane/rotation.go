package controlplane

import (
	"context"
	"net/http"
	"sort"
	"time"
)

// Node master keys rotate at least every RotationPeriod, one node of a
// cluster at a time (a node's rotation is requested only when no other node
// of its cluster has one outstanding), inside the project's maintenance
// window when one is set and not deferred. Rotation is online: the node
// re-wraps its database keys under a new master key, one KMS call, no data
// rewritten.

// RotateMasterKeys asks for a rolling rotation of every node master key of a
// cluster now, whatever the maintenance window.
func (s *Service) RotateMasterKeys(_ context.Context, actor, gid, cluster string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return err
	}
	c, ok := gs.clusters[cluster]
	if !ok {
		return notFound("cluster", cluster)
	}
	if s.clusterStatusLocked(gs, c).State == "DISABLED" {
		return apiErr(http.StatusConflict, "CANNOT_ROTATE_KEY_ENCRYPTION_DISABLED", "Cannot rotate the master keys of cluster %s while it is disabled.", cluster)
	}
	now := s.now()
	next := *c
	next.RotationRequestedAt = now
	recs := map[string]any{"cluster/" + gid + "/" + cluster: next}
	s.addEventLocked(gs, recs, Event{EventTypeName: "NODE_MASTER_KEY_ROTATION_REQUESTED", ClusterName: cluster, PublicKey: actor})
	if err := s.st.put(recs); err != nil {
		return err
	}
	*c = next
	s.scheduleGroupLocked(gs, now)
	// The request is stored (RotationRequestedAt): the scheduler will
	// dispatch it. Wake every node now, so a node whose rotation can be
	// asked at once sees it at once, and one still finishing an earlier
	// request reports and gets the next without waiting out its poll.
	s.notifyLocked()
	return nil
}

// MaintenanceWindow returns a project's maintenance window.
func (s *Service) MaintenanceWindow(gid string) (MaintenanceWindow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return MaintenanceWindow{}, err
	}
	return gs.mw, nil
}

// SetMaintenanceWindow sets the window (dayOfWeek 1–7, hourOfDay 0–23).
func (s *Service) SetMaintenanceWindow(gid string, mw MaintenanceWindow) (MaintenanceWindow, error) {
	if mw.DayOfWeek < 0 || mw.DayOfWeek > 7 {
		return MaintenanceWindow{}, invalidAttr("dayOfWeek", "must be 1 (Sunday) to 7 (Saturday)")
	}
	if mw.HourOfDay < 0 || mw.HourOfDay > 23 {
		return MaintenanceWindow{}, invalidAttr("hourOfDay", "must be 0 to 23")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return MaintenanceWindow{}, err
	}
	mw.DeferredUntil = gs.mw.DeferredUntil
	if err := s.st.put(map[string]any{"mw/" + gid: mw}); err != nil {
		return MaintenanceWindow{}, err
	}
	gs.mw = mw
	return mw, nil
}

// DeferMaintenance postpones due rotations by a week.
func (s *Service) DeferMaintenance(gid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return err
	}
	mw := gs.mw
	mw.DeferredUntil = s.now().Add(7 * 24 * time.Hour)
	if err := s.st.put(map[string]any{"mw/" + gid: mw}); err != nil {
		return err
	}
	gs.mw = mw
	return nil
}

func (mw MaintenanceWindow) allows(now time.Time) bool {
	if now.Before(mw.DeferredUntil) {
		return false
	}
	if mw.DayOfWeek == 0 || mw.StartASAP {
		return true
	}
	return int(now.Weekday())+1 == mw.DayOfWeek && now.Hour() == mw.HourOfDay
}

func (s *Service) scheduleRotations() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, gs := range s.groups {
		s.scheduleGroupLocked(gs, now)
	}
}

// scheduleGroupLocked requests the next rotation in each cluster of gs.
func (s *Service) scheduleGroupLocked(gs *groupState, now time.Time) {
	recs := map[string]any{}
	for name, c := range gs.clusters {
		var nodes []*Node
		busy := false
		for _, n := range gs.nodes {
			if n.Cluster == name {
				nodes = append(nodes, n)
				busy = busy || n.RotateRequested > n.RotateApplied
			}
		}
		if busy {
			continue
		}
		sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
		for _, n := range nodes {
			if n.State != "AVAILABLE" || n.MasterKeyCreatedAt.IsZero() {
				continue
			}
			manual := n.MasterKeyCreatedAt.Before(c.RotationRequestedAt)
			aged := now.Sub(n.MasterKeyCreatedAt) > gs.ear.Settings.RotationPeriod && gs.ear.Settings.RotationPeriod > 0
			if manual || (aged && gs.mw.allows(now)) {
				n.RotateRequested = n.RotateApplied + 1
				recs["node/"+gs.group.ID+"/"+n.Cluster+"/"+n.Name] = *n
				break
			}
		}
	}
	if len(recs) == 0 {
		return
	}
	if err := s.st.put(recs); err != nil {
		s.log.Error("scheduling master key rotation", "err", err)
		return
	}
	s.notifyLocked()
}

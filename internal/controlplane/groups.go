package controlplane

import (
	"context"
	"net/http"
	"sort"
	"strings"
)

// defaultAlertEvents are the alert configurations every project starts
// with, as Atlas turns on its encryption-at-rest alerts for a new project:
// the KMS unreachable, the configuration no longer valid (Atlas's alert
// for a key that can no longer be used), and cmkdb's per-cluster alert
// for a cluster disabled by it. Each opens in the project's alert list;
// adding a WEBHOOK notification to one (PUT) delivers it.
func defaultAlertEvents() []string {
	return []string{EventKMSNetworkAccessDenied, EventConfigNoLongerValid, EventClusterEncryptionDisabled}
}

// CreateGroup creates a project in the org with the default alert
// configurations.
func (s *Service) CreateGroup(_ context.Context, actor, name, orgID string) (Group, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return Group{}, missingAttr("name")
	}
	if len(name) > 64 {
		return Group{}, invalidAttr("name", "at most 64 characters")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if orgID != "" && orgID != s.org.ID {
		return Group{}, apiErr(http.StatusNotFound, "ORG_NOT_FOUND", "No organization with ID %s exists.", orgID)
	}
	for _, gs := range s.groups {
		if strings.EqualFold(gs.group.Name, name) {
			return Group{}, apiErr(http.StatusConflict, "GROUP_ALREADY_EXISTS", "A group with name \"%s\" already exists.", name)
		}
	}
	now := s.now()
	g := Group{ID: newID(now), Name: name, OrgID: s.org.ID, Created: now}
	gs := newGroupState(g)
	gs.ear.Settings = EARSettings{CheckInterval: DefaultCheckInterval, RotationPeriod: DefaultRotationPeriod}
	recs := map[string]any{"group/" + g.ID: g, "ear/" + g.ID: gs.ear}
	for _, et := range defaultAlertEvents() {
		cfg := &AlertConfig{ID: newID(now), GroupID: g.ID, EventTypeName: et, Enabled: true,
			Notifications: []Notification{{TypeName: "GROUP", IntervalMin: 60, Roles: []string{RoleGroupOwner}}},
			Matchers:      []any{}, Created: now, Updated: now}
		gs.configs[cfg.ID] = cfg
		recs["alertcfg/"+g.ID+"/"+cfg.ID] = cfg
	}
	s.addEventLocked(gs, recs, Event{EventTypeName: "GROUP_CREATED", PublicKey: actor})
	if err := s.st.put(recs); err != nil {
		return Group{}, err
	}
	s.groups[g.ID] = gs
	gs.nextCheck = now
	return g, nil
}

// Groups lists the projects, oldest first.
func (s *Service) Groups() []Group {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Group, 0, len(s.groups))
	for _, gs := range s.groups {
		g := gs.group
		g.ClusterCount = len(gs.clusters)
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// GetGroup returns one project.
func (s *Service) GetGroup(id string) (Group, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(id)
	if err != nil {
		return Group{}, err
	}
	g := gs.group
	g.ClusterCount = len(gs.clusters)
	return g, nil
}

// GroupByName finds a project by name.
func (s *Service) GroupByName(name string) (Group, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, gs := range s.groups {
		if gs.group.Name == name {
			g := gs.group
			g.ClusterCount = len(gs.clusters)
			return g, nil
		}
	}
	return Group{}, apiErr(http.StatusNotFound, "GROUP_NAME_NOT_FOUND", "No group with name \"%s\" exists.", name)
}

// DeleteGroup deletes a project without clusters, and its configuration.
func (s *Service) DeleteGroup(_ context.Context, actor, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(id)
	if err != nil {
		return err
	}
	if len(gs.clusters) > 0 {
		return apiErr(http.StatusConflict, "CANNOT_CLOSE_GROUP_ACTIVE_ATLAS_CLUSTERS",
			"We could not delete this project because it has active clusters. Please terminate all clusters before deleting the project.")
	}
	recs := map[string]any{"group/" + id: nil, "ear/" + id: nil, "mw/" + id: nil}
	for cid := range gs.configs {
		recs["alertcfg/"+id+"/"+cid] = nil
	}
	for aid := range gs.alerts {
		recs["alert/"+id+"/"+aid] = nil
	}
	if err := s.st.put(recs); err != nil {
		return err
	}
	s.log.Info("project deleted", "group", id, "by", actor)
	closeProvider(gs.provider)
	closeProvider(gs.prevProvider)
	delete(s.groups, id)
	return nil
}

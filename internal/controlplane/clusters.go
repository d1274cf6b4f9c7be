package controlplane

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// Provisioner runs a cluster's nodes (cmkdb up runs them in its own process;
// a deployment may start them elsewhere). Without one, a cluster is a record
// its nodes join when they start with its name.
type Provisioner interface {
	// Provision starts the cluster's nodes and returns their connection
	// string. The nodes join through the key service.
	Provision(ctx context.Context, groupID, cluster string) (string, error)
	// Deprovision stops the nodes and destroys their data.
	Deprovision(ctx context.Context, groupID, cluster string) error
}

// withoutCredentials returns a connection string with any user name and
// password removed. Connection strings are readable by every key with
// read access to the project (GROUP_READ_ONLY included), so, as in Atlas,
// they never carry credentials: database users are managed as users.
// A string that does not parse is dropped whole rather than passed on.
func withoutCredentials(cs string) string {
	if cs == "" {
		return ""
	}
	u, err := url.Parse(cs)
	if err != nil {
		return ""
	}
	u.User = nil
	return u.String()
}

var clusterName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9-]{0,63}$`)

func validProvider(p string) bool {
	if p == ProviderNone {
		return true
	}
	_, ok := specByKind(p)
	return ok
}

// CreateCluster creates a cluster; encryptionAtRestProvider other than NONE
// needs the project's configuration of that provider first.
func (s *Service) CreateCluster(ctx context.Context, actor, gid string, c Cluster) (Cluster, error) {
	if !clusterName.MatchString(c.Name) {
		if c.Name == "" {
			return Cluster{}, missingAttr("name")
		}
		return Cluster{}, apiErr(http.StatusBadRequest, "CLUSTER_NAME_INVALID", "The cluster name %s is invalid.", c.Name)
	}
	switch c.ReplicationFactor {
	case 0:
		c.ReplicationFactor = 1
	case 1, 3, 5, 7:
	default:
		return Cluster{}, invalidAttr("replicationFactor", "must be 1, 3, 5 or 7 members")
	}
	// Like UpdateCluster, accept the provider in any case ("aws" is AWS).
	c.EncryptionAtRestProvider = strings.ToUpper(c.EncryptionAtRestProvider)
	if c.EncryptionAtRestProvider == "" {
		c.EncryptionAtRestProvider = ProviderNone
	}
	s.mu.Lock()
	gs, err := s.group(gid)
	if err != nil {
		s.mu.Unlock()
		return Cluster{}, err
	}
	if _, ok := gs.clusters[c.Name]; ok {
		s.mu.Unlock()
		return Cluster{}, apiErr(http.StatusBadRequest, "DUPLICATE_CLUSTER_NAME", "A cluster named %s is already present in group %s.", c.Name, gid)
	}
	if err := s.checkProviderLocked(gs, ProviderNone, c.EncryptionAtRestProvider); err != nil {
		s.mu.Unlock()
		return Cluster{}, err
	}
	backup := c.BackupEnabled || c.ProviderBackupEnabled
	if backup {
		if err := s.checkBackupLocked(c.Name); err != nil {
			s.mu.Unlock()
			return Cluster{}, err
		}
	}
	if err := checkPIT(c.PitEnabled, backup, c.members()); err != nil {
		s.mu.Unlock()
		return Cluster{}, err
	}
	now := s.now()
	nc := Cluster{ID: newID(now), GroupID: gid, Name: c.Name, ClusterType: nonEmpty(c.ClusterType, "REPLICASET"), PitEnabled: c.PitEnabled,
		MongoDBVersion: "7.0.0", MongoDBMajorVersion: "7.0", EncryptionAtRestProvider: c.EncryptionAtRestProvider,
		ProviderSettings: c.ProviderSettings, DiskSizeGB: c.DiskSizeGB, ReplicationFactor: c.ReplicationFactor,
		StateName: "CREATING", CreateDate: now, BackupEnabled: backup, ProviderBackupEnabled: backup}
	if nc.ProviderSettings == nil {
		nc.ProviderSettings = &ProviderSettings{ProviderName: "CMKDB", InstanceSizeName: "M10", RegionName: "LOCAL"}
	}
	recs := map[string]any{"cluster/" + gid + "/" + nc.Name: nc}
	s.addEventLocked(gs, recs, Event{EventTypeName: "CLUSTER_CREATED", ClusterName: nc.Name, PublicKey: actor,
		Detail: "encryptionAtRestProvider " + nc.EncryptionAtRestProvider})
	if err := s.st.put(recs); err != nil {
		s.mu.Unlock()
		return Cluster{}, err
	}
	gs.clusters[nc.Name] = &nc
	prov := s.provisioner
	s.mu.Unlock()

	if prov != nil {
		cs, err := prov.Provision(ctx, gid, nc.Name)
		s.mu.Lock()
		defer s.mu.Unlock()
		if c, ok := gs.clusters[nc.Name]; ok {
			if err != nil {
				s.log.Error("provisioning cluster", "cluster", nc.Name, "err", err)
				c.StateName = "REPAIRING"
			} else {
				c.StateName, c.ConnectionStrings.Standard = "IDLE", withoutCredentials(cs)
			}
			_ = s.st.put(map[string]any{"cluster/" + gid + "/" + nc.Name: *c})
			return s.viewLocked(gs, c), nil
		}
		return nc, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.viewLocked(gs, gs.clusters[nc.Name]), nil
}

// checkProviderLocked enforces Atlas's ordering rules for a cluster's
// encryptionAtRestProvider going from old to next.
func (s *Service) checkProviderLocked(gs *groupState, old, next string) error {
	if !validProvider(next) {
		return apiErr(http.StatusBadRequest, "INVALID_ENCRYPTION_AT_REST_PROVIDER", "Invalid encryption at rest provider %s.", next)
	}
	if next == old {
		return nil
	}
	if old != ProviderNone && next != ProviderNone {
		return apiErr(http.StatusConflict, "CANNOT_CHANGE_ENCRYPTION_AT_REST_PROVIDER",
			"Cannot change the encryption at rest provider from %s to %s; set it to NONE first.", old, next)
	}
	if next != ProviderNone && gs.ear.Kind != next {
		return apiErr(http.StatusBadRequest, "ENCRYPTION_AT_REST_NOT_ENABLED",
			"Encryption at rest with %s is not enabled for group %s.", next, gs.group.ID)
	}
	if gs.ear.Kind != "" && (old == gs.ear.Kind || next == gs.ear.Kind) && gs.ear.Key.Validity == kms.Invalid.String() {
		return apiErr(http.StatusBadRequest, "ENCRYPTION_AT_REST_SETTINGS_INVALID",
			"We are unable to access your encryption key, so encryption at rest cannot be changed on this cluster until access is restored.")
	}
	return nil
}

// Clusters lists a project's clusters.
func (s *Service) Clusters(gid string) ([]Cluster, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return nil, err
	}
	out := make([]Cluster, 0, len(gs.clusters))
	for _, c := range gs.clusters {
		out = append(out, s.viewLocked(gs, c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// GetCluster returns one cluster.
func (s *Service) GetCluster(gid, name string) (Cluster, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return Cluster{}, err
	}
	c, ok := gs.clusters[name]
	if !ok {
		return Cluster{}, notFound("cluster", name)
	}
	return s.viewLocked(gs, c), nil
}

// clusterNodeUpLocked moves a cluster that is being created (or repaired)
// to IDLE once one of its nodes reports it serves: whoever started the
// node — cmkdb up's provisioner, or an operator joining a node to a
// cluster record — the cluster is up when its node says so. It reports
// whether the cluster changed (its record is then in recs).
func (s *Service) clusterNodeUpLocked(gs *groupState, cluster, nodeState string, recs map[string]any) bool {
	c, ok := gs.clusters[cluster]
	if !ok || nodeState != "AVAILABLE" || (c.StateName != "CREATING" && c.StateName != "REPAIRING") {
		return false
	}
	if c.MembershipChange != nil {
		// REPAIRING because a member change or re-encryption failed: a
		// node being up does not finish it; resuming it does.
		return false
	}
	c.StateName = "IDLE"
	recs["cluster/"+gs.group.ID+"/"+cluster] = *c
	return true
}

// members is the cluster's member count (records written before it was
// kept are one-member clusters).
func (c *Cluster) members() int {
	if c.ReplicationFactor == 0 {
		return 1
	}
	return c.ReplicationFactor
}

// viewLocked adds the derived encryptionAtRestStatus to a cluster.
func (s *Service) viewLocked(gs *groupState, c *Cluster) Cluster {
	v := *c
	v.ReplicationFactor = c.members()
	// A record written before connection strings lost their credentials
	// may still hold some: they never leave the control plane.
	v.ConnectionStrings.Standard = withoutCredentials(v.ConnectionStrings.Standard)
	v.EncryptionAtRestStatus = s.clusterStatusLocked(gs, c)
	v.EncryptionAtRestStatus.Reason = s.red.scrub(v.EncryptionAtRestStatus.Reason)
	if v.StateName == "IDLE" {
		// A rolling master key rotation in progress is an update, as
		// Atlas reports a cluster under maintenance.
		for _, n := range gs.nodes {
			if n.Cluster == c.Name && n.RotateRequested > n.RotateApplied {
				v.StateName = "UPDATING"
			}
		}
	}
	return v
}

func (s *Service) clusterStatusLocked(gs *groupState, c *Cluster) EARStatus {
	if c.EncryptionAtRestProvider != ProviderNone && gs.ear.Kind == c.EncryptionAtRestProvider &&
		gs.ear.Key.Validity == kms.Invalid.String() {
		return EARStatus{State: "DISABLED", Since: gs.ear.Key.Since,
			Reason: "the customer master key is invalid (" + string(gs.ear.Key.Reason) + "): " + gs.ear.Key.Detail}
	}
	for _, n := range gs.nodes {
		if n.Cluster == c.Name && n.State == "DISABLED" {
			return EARStatus{State: "DISABLED", Since: n.LastSeen, Reason: "node " + n.Name + ": " + n.Reason}
		}
	}
	return EARStatus{State: "AVAILABLE", Since: s.availableSinceLocked(gs, c)}
}

// lastClusterEAREvent is the newest CLUSTER_ENCRYPTION_AT_REST_DISABLED or
// _AVAILABLE event of a cluster, or "".
func lastClusterEAREvent(gs *groupState, cluster string) string {
	for i := len(gs.events) - 1; i >= 0; i-- {
		e := gs.events[i]
		if e.ClusterName == cluster && (e.EventTypeName == EventClusterEncryptionDisabled || e.EventTypeName == EventClusterEncryptionRestored) {
			return e.EventTypeName
		}
	}
	return ""
}

// availableSinceLocked is when a cluster last became AVAILABLE: its
// creation, or the last time it came back from DISABLED (the newest
// CLUSTER_ENCRYPTION_AT_REST_AVAILABLE event naming it, or the key turning
// VALID again for a cluster on the project's provider).
func (s *Service) availableSinceLocked(gs *groupState, c *Cluster) time.Time {
	since := c.CreateDate
	if c.EncryptionAtRestProvider != ProviderNone && gs.ear.Kind == c.EncryptionAtRestProvider && gs.ear.Key.Since.After(since) {
		since = gs.ear.Key.Since
	}
	for i := len(gs.events) - 1; i >= 0; i-- {
		e := gs.events[i]
		if !e.Created.After(since) {
			break
		}
		if e.EventTypeName == EventClusterEncryptionRestored && e.ClusterName == c.Name {
			since = e.Created
			break
		}
	}
	return since
}

// UpdateCluster applies a cluster update. Changes to a cluster disabled by
// an invalid key are accepted and queued until it is available again;
// encryptionAtRestProvider changes follow checkProviderLocked's rules.
func (s *Service) UpdateCluster(_ context.Context, actor, gid, name string, p ClusterPatch) (Cluster, error) {
	var resize func()
	defer func() {
		if resize != nil {
			go resize() // after s.mu is released: it reports progress under it
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return Cluster{}, err
	}
	c, ok := gs.clusters[name]
	if !ok {
		return Cluster{}, notFound("cluster", name)
	}
	next := *c
	var run func()
	if p.ReplicationFactor != nil && (*p.ReplicationFactor != c.members() || c.retryable()) {
		if run, err = s.resizeLocked(gs, &next, *p.ReplicationFactor); err != nil {
			return Cluster{}, err
		}
	}
	p.ReplicationFactor = nil
	if on := backupSwitch(p.BackupEnabled, p.ProviderBackupEnabled); on != nil && *on {
		if err := s.checkBackupLocked(name); err != nil {
			return Cluster{}, err
		}
	}
	{
		backup, pit := c.BackupEnabled, c.PitEnabled
		if on := backupSwitch(p.BackupEnabled, p.ProviderBackupEnabled); on != nil {
			backup = *on
		}
		if p.PitEnabled != nil {
			pit = *p.PitEnabled
		}
		if err := checkPIT(pit, backup, next.members()); err != nil {
			return Cluster{}, err
		}
	}
	recs := map[string]any{}
	if p.EncryptionAtRestProvider != nil {
		np := strings.ToUpper(*p.EncryptionAtRestProvider)
		if err := s.checkProviderLocked(gs, c.EncryptionAtRestProvider, np); err != nil {
			return Cluster{}, err
		}
		failed := c.MembershipChange != nil && c.MembershipChange.Reencrypt && c.MembershipChange.Error != ""
		if np != c.EncryptionAtRestProvider || failed {
			if run != nil {
				return Cluster{}, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE",
					"Invalid attribute encryptionAtRestProvider specified: change the member count and the provider one at a time.")
			}
			if run, err = s.reencryptLocked(gs, &next); err != nil {
				return Cluster{}, err
			}
		}
		if np != c.EncryptionAtRestProvider {
			next.EncryptionAtRestProvider = np
			s.addEventLocked(gs, recs, Event{EventTypeName: EventConfigUpdated, ClusterName: name, PublicKey: actor,
				Detail: "cluster encryptionAtRestProvider " + c.EncryptionAtRestProvider + " -> " + np})
		}
	}
	rest := p
	rest.EncryptionAtRestProvider = nil
	if s.clusterStatusLocked(gs, c).State == "DISABLED" && rest != (ClusterPatch{}) {
		queued := mergePatch(next.PendingChanges, rest)
		next.PendingChanges = &queued
		s.addEventLocked(gs, recs, Event{EventTypeName: "CLUSTER_UPDATE_QUEUED", ClusterName: name, PublicKey: actor,
			Detail: "the cluster is disabled; the update applies when its key is valid again"})
	} else {
		applyPatch(&next, rest)
	}
	recs["cluster/"+gid+"/"+name] = next
	if err := s.st.put(recs); err != nil {
		return Cluster{}, err
	}
	*c = next
	resize = run
	s.notifyLocked()
	return s.viewLocked(gs, c), nil
}

func mergePatch(q *ClusterPatch, p ClusterPatch) ClusterPatch {
	var out ClusterPatch
	if q != nil {
		out = *q
	}
	if p.ProviderSettings != nil {
		out.ProviderSettings = p.ProviderSettings
	}
	if p.DiskSizeGB != nil {
		out.DiskSizeGB = p.DiskSizeGB
	}
	if p.Paused != nil {
		out.Paused = p.Paused
	}
	if p.MongoDBMajorVersion != nil {
		out.MongoDBMajorVersion = p.MongoDBMajorVersion
	}
	if p.BackupEnabled != nil || p.ProviderBackupEnabled != nil {
		out.BackupEnabled, out.ProviderBackupEnabled = p.BackupEnabled, p.ProviderBackupEnabled
	}
	if p.PitEnabled != nil {
		out.PitEnabled = p.PitEnabled
	}
	return out
}

func applyPatch(c *Cluster, p ClusterPatch) {
	if p.ProviderSettings != nil {
		ps := *p.ProviderSettings
		if c.ProviderSettings != nil {
			if ps.ProviderName == "" {
				ps.ProviderName = c.ProviderSettings.ProviderName
			}
			if ps.RegionName == "" {
				ps.RegionName = c.ProviderSettings.RegionName
			}
			if ps.InstanceSizeName == "" {
				ps.InstanceSizeName = c.ProviderSettings.InstanceSizeName
			}
		}
		c.ProviderSettings = &ps
	}
	if p.DiskSizeGB != nil {
		c.DiskSizeGB = p.DiskSizeGB
	}
	if p.Paused != nil {
		c.Paused = *p.Paused
	}
	if p.MongoDBMajorVersion != nil {
		c.MongoDBMajorVersion = *p.MongoDBMajorVersion
	}
	if on := backupSwitch(p.BackupEnabled, p.ProviderBackupEnabled); on != nil {
		c.BackupEnabled, c.ProviderBackupEnabled = *on, *on
	}
	if p.PitEnabled != nil {
		c.PitEnabled = *p.PitEnabled
	}
}

// checkPIT refuses continuous backup where it cannot work: without
// backups, or on a one-member cluster (it has no oplog to archive).
func checkPIT(pit, backup bool, members int) error {
	switch {
	case !pit:
		return nil
	case !backup:
		return apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE",
			"Invalid attribute pitEnabled specified: continuous cloud backup needs backupEnabled (or providerBackupEnabled) true.")
	case members < 2:
		return apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE",
			"Invalid attribute pitEnabled specified: point-in-time restores replay the oplog, which only a replica set (replicationFactor 3, 5 or 7) keeps.")
	}
	return nil
}

// backupSwitch is the backup setting a body asks for (either attribute),
// nil when it says nothing.
func backupSwitch(a, b *bool) *bool {
	if a != nil && *a || b != nil && *b {
		t := true
		return &t
	}
	if a != nil {
		return a
	}
	return b
}

// applyPendingChangesLocked applies queued updates of clusters that are
// available again.
func (s *Service) applyPendingChangesLocked(gs *groupState, recs map[string]any) {
	for name, c := range gs.clusters {
		if c.PendingChanges == nil {
			continue
		}
		applyPatch(c, *c.PendingChanges)
		c.PendingChanges = nil
		recs["cluster/"+gs.group.ID+"/"+name] = *c
		s.addEventLocked(gs, recs, Event{EventTypeName: "CLUSTER_UPDATE_APPLIED", ClusterName: name, Detail: "queued update applied"})
	}
}

// DeleteCluster deletes a cluster: its nodes stop and their data is destroyed.
func (s *Service) DeleteCluster(ctx context.Context, actor, gid, name string) error {
	s.mu.Lock()
	gs, err := s.group(gid)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if _, ok := gs.clusters[name]; !ok {
		s.mu.Unlock()
		return notFound("cluster", name)
	}
	recs := map[string]any{"cluster/" + gid + "/" + name: nil}
	for key, n := range gs.nodes {
		if n.Cluster == name {
			recs["node/"+gid+"/"+key] = nil
			delete(gs.nodes, key)
		}
	}
	s.addEventLocked(gs, recs, Event{EventTypeName: "CLUSTER_DELETED", ClusterName: name, PublicKey: actor})
	if err := s.st.put(recs); err != nil {
		s.mu.Unlock()
		return err
	}
	delete(gs.clusters, name)
	s.notifyLocked()
	prov := s.provisioner
	s.mu.Unlock()
	if prov != nil {
		return prov.Deprovision(ctx, gid, name)
	}
	return nil
}

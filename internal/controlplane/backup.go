package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/logarchive"
	"github.com/cmkdb/cmkdb/internal/snapshot"
)

// Cloud backup: on-demand snapshots of a cluster and automated restores
// (Atlas's Cloud Backup resources). The snapshot's files are the node's
// (node.Checkpoint: encrypted as they are, plus its keystore of that
// moment); the control plane keeps the records, the snapshot store the
// files (package snapshot), and a Snapshotter (the provisioner that runs
// the cluster's node) takes and restores them.
//
// Snapshot states: queued → inProgress → completed | failed. A snapshot
// running when the control plane stops is failed at its next start (the
// store removes what it wrote). Restore job states: QUEUED → RUNNING →
// COMPLETED | FAILED (failed: true, errorMessage).
//
// A restore into another cluster (of the same or another project) stages
// a copy of the snapshot whose master key is re-wrapped for the target
// node (stageForNode); the target then restores it as its own.
//
// Encryption rules, checked before anything is touched: the snapshot's
// CMK (the key that wrapped its master key then) must still unwrap it —
// the control plane unwraps it once and drops the result — and the target
// cluster's provider must match the snapshot's (a snapshot taken without
// a customer key cannot go into a customer-key cluster, nor one of another
// provider): else 400 INVALID_SNAPSHOT_RESTORE_ENCRYPTION. After a restore
// the node rotates its master key under the target's current key.

// Snapshotter takes and restores snapshots of a cluster's node.
type Snapshotter interface {
	// TakeSnapshot writes a snapshot of the cluster's node into dir
	// (which does not exist yet).
	TakeSnapshot(ctx context.Context, groupID, cluster, dir string) (SnapshotSource, error)
	// RestoreSnapshot replaces the cluster's data with in's snapshot
	// (and, for a point in time, its oplog archive); progress hears the
	// bytes copied so far and their total.
	RestoreSnapshot(ctx context.Context, groupID, cluster string, in RestoreInput, progress func(copied, total int64)) error
}

// RestoreInput is what a restore reads. Its staging functions give the
// snapshot's files as one node of the target may open them (master keys
// wrapped for that node: the key service binds each wrapping to a node),
// and what removes the staged copy.
type RestoreInput struct {
	Stage func(ctx context.Context, node string) (dir string, cleanup func(), err error)
	// PIT is set for a point-in-time restore.
	PIT *PITInput
}

// PITInput is the oplog archive a point-in-time restore replays after
// its snapshot: the entries after log index After whose last change is
// at or before Through.
type PITInput struct {
	Archive   string
	After     uint64
	Through   logarchive.Timestamp
	StageKeys func(ctx context.Context, node string) (dir string, cleanup func(), err error)
}

// SnapshotSource says which node a snapshot was taken from and under what
// keys.
type SnapshotSource struct {
	NodeName           string
	NodeID             string
	KeystoreGeneration uint64
	MasterKeyVersion   uint32
	CMK                kms.KeyRef
	DatabaseIDs        []string
	// RaftIndex and OplogTS are the log position a replica set's snapshot
	// holds exactly (zero for a one-member cluster).
	RaftIndex uint64
	OplogTS   logarchive.Timestamp
}

// Snapshot is a cluster snapshot (Atlas's DiskBackupReplicaSet).
type Snapshot struct {
	ID              string    `json:"id"`
	ReplicaSetName  string    `json:"replicaSetName"`
	Type            string    `json:"type"`
	SnapshotType    string    `json:"snapshotType"`
	Status          string    `json:"status"`
	Description     string    `json:"description,omitempty"`
	RetentionInDays int       `json:"retentionInDays,omitempty"`
	CreatedAt       time.Time `json:"createdAt"`
	ExpiresAt       time.Time `json:"expiresAt"`
	// FrequencyType is the least frequent policy item a scheduled
	// snapshot satisfies; PolicyItems all of them.
	FrequencyType    string     `json:"frequencyType,omitempty"`
	PolicyItems      []string   `json:"policyItems,omitempty"`
	MongodVersion    string     `json:"mongodVersion"`
	StorageSizeBytes int64      `json:"storageSizeBytes"`
	MasterKeyUUID    string     `json:"masterKeyUUID,omitempty"`
	CMK              kms.KeyRef `json:"cmkdbCustomerMasterKey"`
	// EncryptionAtRestProvider is the cluster's provider when it was taken.
	EncryptionAtRestProvider string `json:"cmkdbEncryptionAtRestProvider"`
	NodeName                 string `json:"cmkdbNodeName,omitempty"`
	FailureReason            string `json:"cmkdbFailureReason,omitempty"`
	// RaftIndex and OplogTS: the log position a replica set's snapshot
	// holds (where a point-in-time restore starts replaying).
	RaftIndex uint64                `json:"cmkdbRaftIndex,omitempty"`
	OplogTS   *logarchive.Timestamp `json:"cmkdbOplogTs,omitempty"`
}

// SnapshotRequest is the body of an on-demand snapshot.
type SnapshotRequest struct {
	Description     string `json:"description"`
	RetentionInDays int    `json:"retentionInDays"`
}

// RestoreJob is a restore of a snapshot (Atlas's DiskBackupSnapshotRestoreJob).
type RestoreJob struct {
	ID                string     `json:"id"`
	SnapshotID        string     `json:"snapshotId"`
	DeliveryType      string     `json:"deliveryType"`
	TargetClusterName string     `json:"targetClusterName"`
	TargetGroupID     string     `json:"targetGroupId"`
	SourceClusterName string     `json:"sourceClusterName"`
	CreatedAt         time.Time  `json:"createdAt"`
	FinishedAt        *time.Time `json:"finishedAt,omitempty"`
	Timestamp         time.Time  `json:"timestamp"`
	Failed            bool       `json:"failed"`
	Cancelled         bool       `json:"cancelled"`
	Expired           bool       `json:"expired"`
	EncryptionEnabled bool       `json:"encryptionEnabled"`
	MasterKeyUUID     string     `json:"masterKeyUUID,omitempty"`
	State             string     `json:"cmkdbState"`
	// BytesCopied of BytesTotal: the restore's progress (the snapshot's
	// files copied into the node's staging area).
	BytesCopied  int64  `json:"cmkdbBytesCopied,omitempty"`
	BytesTotal   int64  `json:"cmkdbBytesTotal,omitempty"`
	ErrorMessage string `json:"cmkdbErrorMessage,omitempty"`
	// A download's one-time URL and when it stops working; the job keeps
	// only the SHA-256 of its token (backup_download.go).
	DeliveryURL []string   `json:"deliveryUrl,omitempty"`
	ExpiresAt   *time.Time `json:"expiresAt,omitempty"`
	TokenSHA256 string     `json:"tokenSha256,omitempty"` // stored; cleared in what the API shows
	// A point-in-time restore's target, as the request gave it.
	PointInTimeUTCSeconds int64 `json:"pointInTimeUTCSeconds,omitempty"`
	OplogTs               int64 `json:"oplogTs,omitempty"`
	OplogInc              int64 `json:"oplogInc,omitempty"`
}

// RestoreRequest is the body of a restore job.
type RestoreRequest struct {
	SnapshotID            string `json:"snapshotId"`
	DeliveryType          string `json:"deliveryType"`
	TargetClusterName     string `json:"targetClusterName"`
	TargetGroupID         string `json:"targetGroupId"`
	OplogTs               int64  `json:"oplogTs"`
	OplogInc              int64  `json:"oplogInc"`
	PointInTimeUTCSeconds int64  `json:"pointInTimeUTCSeconds"`
	// BaseURL is where the API that received the request is served
	// (scheme, host, version prefix): a download's URL starts with it.
	BaseURL string `json:"-"`
}

// mongodVersion is the MongoDB version cmkdb answers as.
const mongodVersion = "7.0.0"

func snapshotKey(gid, cluster, id string) string { return "snapshot/" + gid + "/" + cluster + "/" + id }
func restoreKey(gid, cluster, id string) string  { return "restore/" + gid + "/" + cluster + "/" + id }

// SetSnapshotStore sets where snapshots are kept; without one, backup
// requests are refused. Leftovers of interrupted snapshots are removed.
func (s *Service) SetSnapshotStore(st snapshot.Store) error {
	if err := st.Clean(); err != nil {
		return fmt.Errorf("controlplane: snapshot store %s: %w", st.Dir, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapshots = &st
	return nil
}

// snapshotterLocked returns what takes snapshots of c, or why nothing can.
func (s *Service) snapshotterLocked(c *Cluster) (Snapshotter, *snapshot.Store, error) {
	sn, ok := s.provisioner.(Snapshotter)
	if !ok || s.snapshots == nil {
		return nil, nil, apiErr(http.StatusBadRequest, "CLOUD_BACKUP_NOT_ENABLED",
			"This control plane has no snapshot store or does not run cluster %s's nodes, so it cannot back it up.", c.Name)
	}
	return sn, s.snapshots, nil
}

// checkBackupLocked refuses turning scheduled backups on for a cluster
// this control plane cannot back up.
func (s *Service) checkBackupLocked(cluster string) error {
	if _, ok := s.provisioner.(Snapshotter); !ok || s.snapshots == nil {
		return apiErr(http.StatusBadRequest, "CLOUD_BACKUP_NOT_ENABLED",
			"Invalid attribute backupEnabled specified: this control plane has no snapshot store or does not run cluster %s's nodes.", cluster)
	}
	return nil
}

// hasSnapshotStore reports whether backups are configured.
func (s *Service) hasSnapshotStore() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshots != nil
}

// TakeSnapshot starts an on-demand snapshot of a cluster.
func (s *Service) TakeSnapshot(ctx context.Context, actor, gid, cluster string, req SnapshotRequest) (Snapshot, error) {
	if req.RetentionInDays < 1 {
		return Snapshot{}, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE", "Invalid attribute retentionInDays specified: it must be at least 1.")
	}
	if len(req.Description) > 1024 {
		return Snapshot{}, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE", "Invalid attribute description specified: longer than 1024 characters.")
	}
	sp, err := s.takeSnapshot(ctx, gid, cluster, "onDemand", req.Description, s.now().UTC().AddDate(0, 0, req.RetentionInDays), nil)
	if err == nil {
		sp.RetentionInDays = req.RetentionInDays
	}
	return sp, err
}

// takeSnapshot records a queued snapshot kept until expires and starts it.
func (s *Service) takeSnapshot(ctx context.Context, gid, cluster, kind, description string, expires time.Time, frequencies []string) (Snapshot, error) {
	s.mu.Lock()
	gs, err := s.group(gid)
	if err != nil {
		s.mu.Unlock()
		return Snapshot{}, err
	}
	c, ok := gs.clusters[cluster]
	if !ok {
		s.mu.Unlock()
		return Snapshot{}, notFound("cluster", cluster)
	}
	sn, store, err := s.snapshotterLocked(c)
	if err != nil {
		s.mu.Unlock()
		return Snapshot{}, err
	}
	now := s.now().UTC()
	snap := Snapshot{ID: newID(now), ReplicaSetName: cluster, Type: "replicaSet", SnapshotType: kind, Status: "queued",
		Description: description, CreatedAt: now, ExpiresAt: expires, MongodVersion: mongodVersion,
		EncryptionAtRestProvider: c.EncryptionAtRestProvider, PolicyItems: frequencies}
	if len(frequencies) > 0 {
		snap.FrequencyType = frequencies[len(frequencies)-1]
	}
	if kind == "onDemand" {
		snap.RetentionInDays = int(expires.Sub(now).Round(24*time.Hour) / (24 * time.Hour))
	}
	if err := s.st.put(map[string]any{snapshotKey(gid, cluster, snap.ID): snap}); err != nil {
		s.mu.Unlock()
		return Snapshot{}, err
	}
	s.mu.Unlock()
	go s.runSnapshot(gid, cluster, snap.ID, sn, *store)
	return snap, nil
}

// updateSnapshot changes a snapshot record under s.mu and stores it.
func (s *Service) updateSnapshot(gid, cluster, id string, fn func(*Snapshot)) (Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var snap Snapshot
	found := false
	if err := s.st.get(snapshotKey(gid, cluster, id), &snap, &found); err != nil {
		return Snapshot{}, err
	}
	if !found {
		return Snapshot{}, notFoundSnapshot(id)
	}
	fn(&snap)
	return snap, s.st.put(map[string]any{snapshotKey(gid, cluster, id): snap})
}

func (s *Service) runSnapshot(gid, cluster, id string, sn Snapshotter, store snapshot.Store) {
	ctx := context.Background()
	_, _ = s.updateSnapshot(gid, cluster, id, func(sp *Snapshot) { sp.Status = "inProgress" })
	fail := func(err error) {
		s.log.Error("snapshot failed", "cluster", cluster, "snapshot", id, "err", err)
		_, _ = s.updateSnapshot(gid, cluster, id, func(sp *Snapshot) { sp.Status, sp.FailureReason = "failed", err.Error() })
	}
	p, err := store.Begin(gid, cluster, id)
	if err != nil {
		fail(err)
		return
	}
	src, err := sn.TakeSnapshot(ctx, gid, cluster, p.Dir())
	if err != nil {
		p.Abort()
		fail(err)
		return
	}
	m, err := p.Commit(snapshot.Manifest{CreatedAt: s.now().UTC(), NodeName: src.NodeName, NodeID: src.NodeID, KeystoreGeneration: src.KeystoreGeneration,
		MasterKeyVersion: src.MasterKeyVersion, CMK: src.CMK, DatabaseIDs: src.DatabaseIDs})
	if err != nil {
		p.Abort()
		fail(err)
		return
	}
	_, _ = s.updateSnapshot(gid, cluster, id, func(sp *Snapshot) {
		sp.Status, sp.StorageSizeBytes, sp.CMK, sp.NodeName = "completed", m.SizeBytes, src.CMK, src.NodeName
		sp.MasterKeyUUID = src.CMK.KeyID
		if src.RaftIndex > 0 {
			ts := src.OplogTS
			sp.RaftIndex, sp.OplogTS = src.RaftIndex, &ts
		}
	})
	s.log.Info("snapshot completed", "cluster", cluster, "snapshot", id, "bytes", m.SizeBytes)
}

func notFoundSnapshot(id string) *APIError {
	return apiErr(http.StatusNotFound, "SNAPSHOT_NOT_FOUND", "No snapshot with ID %s exists.", id)
}

// Snapshots lists a cluster's snapshots, newest first.
func (s *Service) Snapshots(gid, cluster string) ([]Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return nil, err
	}
	if _, ok := gs.clusters[cluster]; !ok {
		return nil, notFound("cluster", cluster)
	}
	var out []Snapshot
	err = s.st.scan(snapshotKey(gid, cluster, ""), func(_ string, open func(any) error) error {
		var sp Snapshot
		if err := open(&sp); err != nil {
			return err
		}
		out = append(out, sp)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, err
}

// GetSnapshot returns one snapshot.
func (s *Service) GetSnapshot(gid, cluster, id string) (Snapshot, error) {
	var sp Snapshot
	if err := s.getBackupRecord(gid, cluster, snapshotKey(gid, cluster, id), &sp); err != nil {
		return Snapshot{}, err
	} else if sp.ID == "" {
		return Snapshot{}, notFoundSnapshot(id)
	}
	return sp, nil
}

// getBackupRecord reads one record of a cluster's backups into v (left
// zero when there is none), once the group and cluster exist.
func (s *Service) getBackupRecord(gid, cluster, key string, v any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return err
	}
	if _, ok := gs.clusters[cluster]; !ok {
		return notFound("cluster", cluster)
	}
	found := false
	return s.st.get(key, v, &found)
}

// DeleteSnapshot deletes a snapshot that is not running: its files, then
// its record.
func (s *Service) DeleteSnapshot(ctx context.Context, actor, gid, cluster, id string) error {
	sp, err := s.GetSnapshot(gid, cluster, id)
	if err != nil {
		return err
	}
	if sp.Status == "queued" || sp.Status == "inProgress" {
		return apiErr(http.StatusConflict, "SNAPSHOT_IN_PROGRESS", "Snapshot %s is still being taken.", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snapshots != nil {
		if err := s.snapshots.Delete(gid, cluster, id); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
			return err
		}
	}
	return s.st.put(map[string]any{snapshotKey(gid, cluster, id): nil})
}

// expireSnapshotsLocked deletes the completed or failed snapshots whose
// retention ended.
func (s *Service) expireSnapshots() {
	now := s.now()
	s.mu.Lock()
	var gone [][3]string
	_ = s.st.scan("snapshot/", func(k string, open func(any) error) error {
		var sp Snapshot
		if err := open(&sp); err != nil {
			return nil
		}
		parts := strings.SplitN(k, "/", 4)
		if len(parts) == 4 && now.After(sp.ExpiresAt) && sp.Status != "queued" && sp.Status != "inProgress" {
			gone = append(gone, [3]string{parts[1], parts[2], parts[3]})
		}
		return nil
	})
	s.mu.Unlock()
	for _, g := range gone {
		if err := s.DeleteSnapshot(context.Background(), "", g[0], g[1], g[2]); err != nil {
			s.log.Warn("deleting an expired snapshot", "snapshot", g[2], "err", err)
		}
	}
}

// CreateRestoreJob starts a restore of one of cluster's snapshots.
func (s *Service) CreateRestoreJob(ctx context.Context, actor, gid, cluster string, req RestoreRequest) (RestoreJob, error) {
	var through logarchive.Timestamp
	switch req.DeliveryType {
	case "automated":
	case "download":
		return s.createDownload(gid, cluster, req)
	case "pointInTime":
		var err error
		if through, err = pitTarget(req); err != nil {
			return RestoreJob{}, err
		}
	default:
		return RestoreJob{}, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE", "Invalid attribute deliveryType specified: %q.", req.DeliveryType)
	}
	pit := req.DeliveryType == "pointInTime"
	if req.TargetGroupID == "" || req.TargetClusterName == "" {
		return RestoreJob{}, apiErr(http.StatusBadRequest, "MISSING_ATTRIBUTE", "An %s restore needs targetGroupId and targetClusterName.", req.DeliveryType)
	}
	var sp Snapshot
	var err error
	if pit {
		sp, err = s.pitSnapshot(gid, cluster, through)
	} else {
		sp, err = s.GetSnapshot(gid, cluster, req.SnapshotID)
	}
	if err != nil {
		return RestoreJob{}, err
	}
	if sp.Status != "completed" {
		return RestoreJob{}, apiErr(http.StatusBadRequest, "SNAPSHOT_NOT_COMPLETE", "Snapshot %s is %s, not completed.", sp.ID, sp.Status)
	}
	tgid, tcluster := req.TargetGroupID, req.TargetClusterName
	s.mu.Lock()
	tgs, err := s.group(tgid)
	if err != nil {
		s.mu.Unlock()
		return RestoreJob{}, err
	}
	c, ok := tgs.clusters[tcluster]
	if !ok {
		s.mu.Unlock()
		return RestoreJob{}, notFound("cluster", tcluster)
	}
	sn, store, err := s.snapshotterLocked(c)
	if err == nil && pit && c.members() < 2 {
		err = apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE",
			"Invalid attribute targetClusterName specified: %s has one member; a point-in-time restore replays the oplog into a replica set.", tcluster)
	}
	target := c.EncryptionAtRestProvider
	targetNode := ""
	for _, n := range tgs.nodes {
		if n.Cluster == tcluster {
			targetNode = n.Name
		}
	}
	s.mu.Unlock()
	if err != nil {
		return RestoreJob{}, err
	}
	if targetNode == "" {
		return RestoreJob{}, apiErr(http.StatusConflict, "CLUSTER_NOT_READY", "Cluster %s has no node that reported to the control plane yet.", tcluster)
	}
	if sp.EncryptionAtRestProvider != target {
		return RestoreJob{}, apiErr(http.StatusBadRequest, "INVALID_SNAPSHOT_RESTORE_ENCRYPTION",
			"Snapshot %s was taken with encryptionAtRestProvider %s; cluster %s uses %s: the target must use the same provider.",
			sp.ID, sp.EncryptionAtRestProvider, tcluster, target)
	}
	dir := store.Path(gid, cluster, sp.ID)
	if err := s.checkSnapshotOpens(ctx, *store, gid, cluster, sp); err != nil {
		return RestoreJob{}, err
	}
	var in RestoreInput
	var plan []logarchive.Segment
	if pit {
		if plan, err = s.checkArchiveOpens(ctx, *store, gid, cluster, sp, through); err != nil {
			return RestoreJob{}, err
		}
	}
	now := s.now().UTC()
	job := RestoreJob{ID: newID(now), SnapshotID: sp.ID, DeliveryType: req.DeliveryType, TargetClusterName: tcluster, TargetGroupID: tgid,
		SourceClusterName: cluster, CreatedAt: now, Timestamp: sp.CreatedAt, EncryptionEnabled: sp.EncryptionAtRestProvider != ProviderNone,
		MasterKeyUUID: sp.MasterKeyUUID, State: "QUEUED"}
	if pit {
		job.PointInTimeUTCSeconds, job.OplogTs, job.OplogInc = req.PointInTimeUTCSeconds, req.OplogTs, req.OplogInc
	}
	s.mu.Lock()
	err = s.st.put(map[string]any{restoreKey(gid, cluster, job.ID): job})
	s.mu.Unlock()
	if err != nil {
		return RestoreJob{}, err
	}
	src := NodeID{GroupID: gid, Cluster: cluster, Name: sp.NodeName}
	in.Stage = func(ctx context.Context, node string) (string, func(), error) {
		dst := NodeID{GroupID: tgid, Cluster: tcluster, Name: node}
		if src == dst {
			return dir, func() {}, nil
		}
		return s.stageForNode(ctx, *store, sp.ID, job.ID, src, dst)
	}
	if pit {
		in.PIT = &PITInput{Archive: store.OplogArchiveDir(gid, cluster), After: sp.RaftIndex, Through: through,
			StageKeys: func(ctx context.Context, node string) (string, func(), error) {
				return s.stageArchiveKeys(ctx, *store, gid, cluster, plan, job.ID, NodeID{GroupID: tgid, Cluster: tcluster, Name: node})
			}}
	}
	go s.runRestore(gid, cluster, job.ID, func(ctx context.Context, progress func(int64, int64)) error {
		return sn.RestoreSnapshot(ctx, tgid, tcluster, in, progress)
	})
	return job, nil
}

// checkSnapshotOpens checks a snapshot's files against its manifest and
// that the CMK of its time still opens it: one unwrap, its result
// dropped at once. Else 400 SNAPSHOT_DAMAGED or
// INVALID_SNAPSHOT_RESTORE_ENCRYPTION, before anything is touched.
func (s *Service) checkSnapshotOpens(ctx context.Context, store snapshot.Store, gid, cluster string, sp Snapshot) error {
	dir := store.Path(gid, cluster, sp.ID)
	m, err := store.Get(gid, cluster, sp.ID)
	if err != nil {
		return err
	}
	if err := snapshot.Verify(dir, m); err != nil {
		return apiErr(http.StatusBadRequest, "SNAPSHOT_DAMAGED", "Snapshot %s is damaged: %s", sp.ID, err)
	}
	w, aad, err := keys.WrappedMaster(dir)
	if err != nil {
		return apiErr(http.StatusBadRequest, "SNAPSHOT_DAMAGED", "Snapshot %s is damaged: %s", sp.ID, err)
	}
	key, err := s.NodeUnwrap(ctx, NodeID{GroupID: gid, Cluster: cluster, Name: sp.NodeName}, w, aad)
	clear(key)
	if err != nil {
		return apiErr(http.StatusBadRequest, "INVALID_SNAPSHOT_RESTORE_ENCRYPTION",
			"Encryption credentials on snapshot %s are not valid: its customer master key %s does not unwrap it (%s).", sp.ID, sp.CMK, kmsReason(err))
	}
	return nil
}

func kmsReason(err error) string {
	var ke *kms.Error
	if errors.As(err, &ke) {
		return string(ke.Reason)
	}
	return err.Error()
}

// stageForNode copies a snapshot of node src for a restore into node dst
// of another cluster: the key service binds a node's master key wrapping
// to the node's identity, so the copy's master key is unwrapped as src
// and wrapped again as dst (keys.Keystore.RewrapMaster: one wrap and one
// verifying unwrap), here, before the target node sees it. Its database
// keys, wrapped by the master key, do not change.
func (s *Service) stageForNode(ctx context.Context, store snapshot.Store, id, jobID string, src, dst NodeID) (string, func(), error) {
	dir, cleanup, err := store.Stage(src.GroupID, src.Cluster, id, dst.GroupID, dst.Cluster, "restore-"+jobID)
	if err != nil {
		return "", nil, err
	}
	ks, err := keys.Open(ctx, dir, nodeProvider{s: s, id: src})
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("the snapshot's keystore does not open: %w", err)
	}
	defer ks.Close()
	if err := ks.RewrapMaster(ctx, nodeProvider{s: s, id: dst}); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("re-wrapping the snapshot's master key for %s: %w", dst, err)
	}
	return dir, cleanup, nil
}

// nodeProvider wraps and unwraps as one node, under the key service's
// rules for it.
type nodeProvider struct {
	s  *Service
	id NodeID
}

func (p nodeProvider) Wrap(ctx context.Context, pt, aad []byte) (kms.Wrapped, error) {
	return p.s.NodeWrap(ctx, p.id, pt, aad)
}

func (p nodeProvider) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	return p.s.NodeUnwrap(ctx, p.id, w, aad)
}

func (p nodeProvider) Check(ctx context.Context) kms.Status {
	p.s.mu.Lock()
	cur, _, err := p.s.nodeKeysLocked(p.id)
	p.s.mu.Unlock()
	if err != nil {
		return kms.Status{Validity: kms.Invalid, Reason: kms.ReasonKeyNotFound, Detail: err.Error()}
	}
	return cur.Check(ctx)
}

func (s *Service) updateRestore(gid, cluster, id string, fn func(*RestoreJob)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var job RestoreJob
	found := false
	if err := s.st.get(restoreKey(gid, cluster, id), &job, &found); err != nil || !found {
		return
	}
	fn(&job)
	_ = s.st.put(map[string]any{restoreKey(gid, cluster, id): job})
}

func (s *Service) runRestore(gid, cluster, id string, restore func(context.Context, func(copied, total int64)) error) {
	s.updateRestore(gid, cluster, id, func(j *RestoreJob) { j.State = "RUNNING" })
	var last time.Time
	err := restore(context.Background(), func(copied, total int64) {
		if time.Since(last) < time.Second && copied < total {
			return
		}
		last = time.Now()
		s.updateRestore(gid, cluster, id, func(j *RestoreJob) { j.BytesCopied, j.BytesTotal = copied, total })
	})
	now := s.now().UTC()
	s.updateRestore(gid, cluster, id, func(j *RestoreJob) {
		j.FinishedAt = &now
		if err != nil {
			j.State, j.Failed, j.ErrorMessage = "FAILED", true, err.Error()
			return
		}
		j.State = "COMPLETED"
	})
	if err != nil {
		s.log.Error("restore failed", "cluster", cluster, "job", id, "err", err)
	}
}

// createDownload records a download job for a completed snapshot.
func (s *Service) createDownload(gid, cluster string, req RestoreRequest) (RestoreJob, error) {
	sp, err := s.GetSnapshot(gid, cluster, req.SnapshotID)
	if err != nil {
		return RestoreJob{}, err
	}
	if sp.Status != "completed" {
		return RestoreJob{}, apiErr(http.StatusBadRequest, "SNAPSHOT_NOT_COMPLETE", "Snapshot %s is %s, not completed.", sp.ID, sp.Status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snapshots == nil {
		return RestoreJob{}, apiErr(http.StatusBadRequest, "CLOUD_BACKUP_NOT_ENABLED", "This control plane has no snapshot store.")
	}
	now := s.now().UTC()
	job := RestoreJob{ID: newID(now), SnapshotID: sp.ID, DeliveryType: "download", TargetGroupID: gid, SourceClusterName: cluster,
		CreatedAt: now, Timestamp: sp.CreatedAt, EncryptionEnabled: sp.EncryptionAtRestProvider != ProviderNone, MasterKeyUUID: sp.MasterKeyUUID}
	if err := createDownloadLocked(&job, req.BaseURL, now); err != nil {
		return RestoreJob{}, err
	}
	if err := s.st.put(map[string]any{restoreKey(gid, cluster, job.ID): job}); err != nil {
		return RestoreJob{}, err
	}
	job.TokenSHA256 = ""
	return job, nil
}

// RestoreJobs lists a cluster's restore jobs, newest first.
func (s *Service) RestoreJobs(gid, cluster string) ([]RestoreJob, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return nil, err
	}
	if _, ok := gs.clusters[cluster]; !ok {
		return nil, notFound("cluster", cluster)
	}
	var out []RestoreJob
	err = s.st.scan(restoreKey(gid, cluster, ""), func(_ string, open func(any) error) error {
		var j RestoreJob
		if err := open(&j); err != nil {
			return err
		}
		out = append(out, s.restoreView(j))
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, err
}

// GetRestoreJob returns one restore job.
func (s *Service) GetRestoreJob(gid, cluster, id string) (RestoreJob, error) {
	var j RestoreJob
	if err := s.getBackupRecord(gid, cluster, restoreKey(gid, cluster, id), &j); err != nil {
		return RestoreJob{}, err
	}
	if j.ID == "" {
		return RestoreJob{}, apiErr(http.StatusNotFound, "RESTORE_JOB_NOT_FOUND", "No restore job with ID %s exists.", id)
	}
	return s.restoreView(j), nil
}

// restoreView is a restore job as the API shows it: no token digest, a
// download link gone once it expired.
func (s *Service) restoreView(j RestoreJob) RestoreJob {
	j.TokenSHA256 = ""
	if j.DeliveryType == "download" && j.ExpiresAt != nil && s.now().After(*j.ExpiresAt) {
		j.Expired, j.DeliveryURL = true, nil
	}
	return j
}

// failInterruptedBackups marks snapshots and restores that were running
// when the control plane stopped as failed (nothing runs them any more; a
// restore interrupted by a crash left the node with its old data or the
// restored data, never a mix: the node's own recovery decides).
func (s *Service) failInterruptedBackups() error {
	recs := map[string]any{}
	err := s.st.scan("snapshot/", func(k string, open func(any) error) error {
		var sp Snapshot
		if err := open(&sp); err != nil {
			return err
		}
		if sp.Status == "queued" || sp.Status == "inProgress" {
			sp.Status, sp.FailureReason = "failed", "interrupted: the control plane stopped while it was taken"
			recs[k] = sp
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = s.st.scan("restore/", func(k string, open func(any) error) error {
		var j RestoreJob
		if err := open(&j); err != nil {
			return err
		}
		if j.State == "QUEUED" || j.State == "RUNNING" {
			now := s.now().UTC()
			j.State, j.Failed, j.FinishedAt = "FAILED", true, &now
			j.ErrorMessage = "interrupted: the control plane stopped during the restore; the cluster holds either its data from before or the snapshot's"
			recs[k] = j
		}
		return nil
	})
	if err != nil || len(recs) == 0 {
		return err
	}
	return s.st.put(recs)
}

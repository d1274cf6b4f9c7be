package controlplane

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"time"

	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/logarchive"
	"github.com/cmkdb/cmkdb/internal/snapshot"
)

// Continuous cloud backup (pitEnabled): the oplog archive of a replica
// set is extended every archiveEvery by one of its members
// (OplogArchiver, cmkdbArchiveOplog), in the snapshot store beside the
// cluster's snapshots (package logarchive). A point-in-time restore takes
// the newest snapshot at or before the requested time and replays the
// archive's entries after it up to that time, into a replica set.
//
// Its encryption rules are a snapshot's, for each part: the snapshot's
// CMK of its time must unwrap the snapshot, and each keystore copy that
// seals a segment to replay must be unwrapped by the CMK that wrapped it
// (checked before anything is touched: 400
// INVALID_SNAPSHOT_RESTORE_ENCRYPTION). The archive's keystore copies are
// re-wrapped for the target member like the snapshot's keystore.

// OplogArchiver extends a replica set's oplog archive in dir.
type OplogArchiver interface {
	ArchiveOplog(ctx context.Context, groupID, cluster, dir string) error
}

// archiveEvery is how often the archive of a cluster with pitEnabled is
// extended: the newest point a restore can reach trails by about this.
const archiveEvery = 5 * time.Second

// archiveOplogs extends the archive of every cluster with continuous
// backup on, and prunes what the restore window no longer needs.
func (s *Service) archiveOplogs(ctx context.Context) {
	s.mu.Lock()
	a, ok := s.provisioner.(OplogArchiver)
	store := s.snapshots
	type target struct {
		gid, cluster string
		window       int // restoreWindowDays
	}
	var todo []target
	if ok && store != nil {
		for gid, gs := range s.groups {
			for name, c := range gs.clusters {
				if c.PitEnabled && c.BackupEnabled && c.members() > 1 && !c.Paused {
					window := 2
					if sc, err := s.scheduleLocked(gid, c); err == nil && sc.RestoreWindowDays > 0 {
						window = sc.RestoreWindowDays
					}
					todo = append(todo, target{gid, name, window})
				}
			}
		}
	}
	s.mu.Unlock()
	defer func() {
		for _, t := range todo {
			s.pruneArchive(*store, t.gid, t.cluster, t.window)
		}
	}()
	for _, t := range todo {
		dir := store.OplogArchiveDir(t.gid, t.cluster)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			s.log.Warn("extending the oplog archive", "cluster", t.cluster, "err", err)
			continue
		}
		if err := a.ArchiveOplog(ctx, t.gid, t.cluster, dir); err != nil {
			s.log.Warn("extending the oplog archive", "cluster", t.cluster, "err", err)
		}
	}
}

// pitTarget is the timestamp a point-in-time request names: oplogTs and
// oplogInc exactly, or every change of second pointInTimeUTCSeconds and
// before.
func pitTarget(req RestoreRequest) (logarchive.Timestamp, error) {
	bad := func(format string, args ...any) (logarchive.Timestamp, error) {
		return logarchive.Timestamp{}, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE", format, args...)
	}
	switch {
	case req.PointInTimeUTCSeconds != 0 && (req.OplogTs != 0 || req.OplogInc != 0):
		return bad("Invalid attribute pointInTimeUTCSeconds specified: give either pointInTimeUTCSeconds or oplogTs and oplogInc, not both.")
	case req.PointInTimeUTCSeconds != 0:
		if req.PointInTimeUTCSeconds < 0 || req.PointInTimeUTCSeconds > math.MaxUint32 {
			return bad("Invalid attribute pointInTimeUTCSeconds specified: %d.", req.PointInTimeUTCSeconds)
		}
		return logarchive.Timestamp{T: uint32(req.PointInTimeUTCSeconds), I: math.MaxUint32}, nil
	case req.OplogTs != 0:
		if req.OplogTs < 0 || req.OplogTs > math.MaxUint32 || req.OplogInc < 1 || req.OplogInc > math.MaxUint32 {
			return bad("Invalid attribute oplogTs/oplogInc specified: %d/%d (oplogInc starts at 1).", req.OplogTs, req.OplogInc)
		}
		return logarchive.Timestamp{T: uint32(req.OplogTs), I: uint32(req.OplogInc)}, nil
	}
	return bad("A pointInTime restore needs pointInTimeUTCSeconds, or oplogTs and oplogInc.")
}

// pitSnapshot is the newest completed snapshot of a replica set at or
// before through, of a cluster with continuous backup on.
func (s *Service) pitSnapshot(gid, cluster string, through logarchive.Timestamp) (Snapshot, error) {
	s.mu.Lock()
	gs, err := s.group(gid)
	if err == nil {
		if c, ok := gs.clusters[cluster]; !ok {
			err = notFound("cluster", cluster)
		} else if !c.PitEnabled {
			err = apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE",
				"Invalid attribute deliveryType specified: cluster %s does not have continuous cloud backup (pitEnabled) on.", cluster)
		}
	}
	s.mu.Unlock()
	if err != nil {
		return Snapshot{}, err
	}
	all, err := s.Snapshots(gid, cluster)
	if err != nil {
		return Snapshot{}, err
	}
	var best *Snapshot
	for i := range all {
		sp := &all[i]
		if sp.Status != "completed" || sp.OplogTS == nil || sp.RaftIndex == 0 || sp.OplogTS.Compare(through) > 0 {
			continue
		}
		if best == nil || sp.OplogTS.Compare(*best.OplogTS) > 0 {
			best = sp
		}
	}
	if best == nil {
		return Snapshot{}, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE",
			"Invalid attribute pointInTimeUTCSeconds specified: cluster %s has no completed snapshot at or before %v to restore from.", cluster, through)
	}
	return *best, nil
}

// checkArchiveOpens returns the archive's segments a restore from sp to
// through replays, once it reaches that far without a gap and each
// keystore copy they need is still unwrapped by its CMK.
func (s *Service) checkArchiveOpens(ctx context.Context, store snapshot.Store, gid, cluster string, sp Snapshot, through logarchive.Timestamp) ([]logarchive.Segment, error) {
	dir := store.OplogArchiveDir(gid, cluster)
	segs, err := logarchive.List(dir)
	if err != nil {
		return nil, apiErr(http.StatusBadRequest, "SNAPSHOT_DAMAGED", "The oplog archive of cluster %s is damaged: %s", cluster, err)
	}
	pos, _, err := logarchive.ReadPosition(dir)
	if err != nil {
		return nil, apiErr(http.StatusBadRequest, "SNAPSHOT_DAMAGED", "The oplog archive of cluster %s is damaged: %s", cluster, err)
	}
	plan, err := logarchive.Plan(segs, pos, sp.RaftIndex, through)
	var gap *logarchive.GapError
	if errors.As(err, &gap) {
		return nil, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE",
			"Invalid attribute pointInTimeUTCSeconds specified: cannot restore cluster %s to %v: %s.", cluster, through, gap.Detail)
	}
	if err != nil {
		return nil, err
	}
	checked := map[string]bool{}
	for _, seg := range plan {
		if checked[seg.Keys] {
			continue
		}
		checked[seg.Keys] = true
		w, aad, err := keys.WrappedMaster(logarchive.KeysDir(dir, seg.Keys))
		if err != nil {
			return nil, apiErr(http.StatusBadRequest, "SNAPSHOT_DAMAGED", "The oplog archive of cluster %s is damaged: %s", cluster, err)
		}
		key, err := s.NodeUnwrap(ctx, NodeID{GroupID: gid, Cluster: cluster, Name: seg.Member}, w, aad)
		clear(key)
		if err != nil {
			return nil, apiErr(http.StatusBadRequest, "INVALID_SNAPSHOT_RESTORE_ENCRYPTION",
				"Encryption credentials on the oplog of cluster %s are not valid: the customer master key that wrapped segment %s's keys does not unwrap them (%s).",
				cluster, seg.Name, kmsReason(err))
		}
	}
	return plan, nil
}

// stageArchiveKeys copies the keystore copies plan needs into a staging
// directory of the target cluster, each master key re-wrapped for dst
// (see stageForNode).
func (s *Service) stageArchiveKeys(ctx context.Context, store snapshot.Store, gid, cluster string, plan []logarchive.Segment, jobID string, dst NodeID) (string, func(), error) {
	src := store.OplogArchiveDir(gid, cluster)
	dir, err := store.StagingDir(dst.GroupID, dst.Cluster, "restore-"+jobID+"-oplog-keys")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	cleanup()
	done := map[string]bool{}
	for _, seg := range plan {
		if done[seg.Keys] {
			continue
		}
		done[seg.Keys] = true
		raw, err := os.ReadFile(keys.Path(logarchive.KeysDir(src, seg.Keys)))
		if err != nil {
			cleanup()
			return "", nil, err
		}
		kd := logarchive.KeysDir(dir, seg.Keys)
		if err := os.MkdirAll(kd, 0o700); err != nil {
			cleanup()
			return "", nil, err
		}
		if err := durable.WriteFile(keys.Path(kd), raw, 0o600); err != nil {
			cleanup()
			return "", nil, err
		}
		from := NodeID{GroupID: gid, Cluster: cluster, Name: seg.Member}
		if from == dst {
			continue
		}
		ks, err := keys.Open(ctx, kd, nodeProvider{s: s, id: from})
		if err != nil {
			cleanup()
			return "", nil, fmt.Errorf("the oplog archive's keys %s do not open: %w", seg.Keys, err)
		}
		err = ks.RewrapMaster(ctx, nodeProvider{s: s, id: dst})
		ks.Close()
		if err != nil {
			cleanup()
			return "", nil, fmt.Errorf("re-wrapping the oplog archive's keys %s for %s: %w", seg.Keys, dst, err)
		}
	}
	return dir, cleanup, nil
}

// pruneArchive deletes the archive segments no restore within the
// restore window can need: those before the newest snapshot that is
// itself older than the window (a restore to any point in the window
// starts from it or a later one).
func (s *Service) pruneArchive(store snapshot.Store, gid, cluster string, windowDays int) {
	all, err := s.Snapshots(gid, cluster)
	if err != nil {
		return
	}
	edge := s.now().AddDate(0, 0, -windowDays)
	floor := logarchive.Timestamp{T: uint32(max(edge.Unix(), 0))}
	var base uint64
	for _, sp := range all {
		if sp.Status == "completed" && sp.OplogTS != nil && sp.OplogTS.Compare(floor) <= 0 && sp.RaftIndex > base {
			base = sp.RaftIndex
		}
	}
	if base == 0 {
		return
	}
	if n, err := logarchive.Prune(store.OplogArchiveDir(gid, cluster), base); err != nil {
		s.log.Warn("pruning the oplog archive", "cluster", cluster, "err", err)
	} else if n > 0 {
		s.log.Info("oplog archive pruned: the restore window no longer reaches its oldest segments", "cluster", cluster, "segments", n)
	}
}

package repl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/repl/raftstore"
	"github.com/cmkdb/cmkdb/internal/storage"
)

// localDB is the member's own database: never replicated, it holds the
// raft log, the stable store and (as files beside it, through the same
// encrypting file system) the raft snapshots.
const localDB = "local"

// raftPrefix keeps raft's keys apart from the documents a user may keep
// in the local database (docstore's keys start with 0x00–0x02).
var raftPrefix = []byte{0xF0}

// Member is a node's membership in a replica set.
//
// It runs raft while the node is AVAILABLE and stops it when the node is
// disabled: a member without its keys neither votes nor holds data
// (Run). Writes reach the log through Commit; the log applies them to
// every member's databases (fsm).
//
// Invariant: writable is true only while this member is the raft leader
// and has applied every entry committed before its term (a barrier), so
// a write is never staged against state older than the last committed.
type Member struct {
	cfg       Config
	log       *slog.Logger
	processID bson.ObjectID
	// resizeMu orders ResizeOplog calls: the limits recorded last are the
	// ones the running oplog ends with.
	resizeMu sync.Mutex

	mu      sync.Mutex
	raft    *raft.Raft                  // nil while raft is not running
	oplog   *oplog.Log                  // nil while raft is not running
	logs    raft.LogStore               // nil while raft is not running
	eng     *storage.Engine             // nil while raft is not running
	health  map[raft.ServerID]time.Time // leader: members whose heartbeats fail, since when
	frozen  time.Time                   // replSetFreeze: no candidacy before
	stepped time.Time                   // replSetStepDown: not primary again before

	writable atomic.Bool
	// restoring refuses client writes while a backup is restored into
	// the set (pitr.go): only the restore's own entries are proposed.
	restoring atomic.Bool
	// applyMu is held by every apply and snapshot install: holding it
	// pauses the log's application here (WithAppliesPaused).
	applyMu  sync.Mutex
	applied  atomic.Pointer[OpTime]
	restores atomic.Uint64 // snapshots installed from another member

	// Membership (membership.go): the latest raft configuration known
	// here, whether this member was ever in one, what each follower
	// acknowledged (leader), and the progress of a snapshot install.
	view   atomic.Pointer[view]
	vmu    sync.Mutex // serializes refreshView's read-compare-store
	cfgMu  sync.Mutex // serializes configuration changes (membership.go)
	joined atomic.Bool
	mmu    sync.Mutex
	match  map[raft.ServerID]uint64
	sync   syncTracker

	// topology counts changes drivers must learn (hello's
	// topologyVersion.counter); changed is closed and replaced on each.
	tmu     sync.Mutex
	counter int64
	changed chan struct{}
	// stopped is closed when Run returns: waiting hellos answer at once,
	// so a shutting-down server is not held by its clients' monitors.
	stopped chan struct{}
}

// OpTime is a position in the log: MongoDB's {ts, t}, with the raft index
// as the timestamp's increment and the time of the write's application.
type OpTime struct {
	Index uint64
	Term  uint64
	Wall  time.Time
	// TS is the oplog timestamp of the last change applied (oplog.go).
	TS oplog.Timestamp
}

// New returns a member of the set cfg describes; Run starts it.
func New(cfg Config) (*Member, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Member{cfg: cfg, log: cfg.Logger.With("replSet", cfg.SetName, "member", cfg.Me),
		processID: bson.NewObjectID(), changed: make(chan struct{}), stopped: make(chan struct{}), health: map[raft.ServerID]time.Time{},
		match: map[raft.ServerID]uint64{}}
	m.applied.Store(&OpTime{})
	return m, nil
}

// Config returns the set's configuration.
func (m *Member) Config() Config { return m.cfg }

// Run keeps the member in its set until ctx ends: whenever the node is
// AVAILABLE it holds the node's storage and runs raft over it; when the
// node is disabled (its key revoked) raft stops, the member leaves the
// voting and serving, and it rejoins — catching up from the log or a
// snapshot — once the node is enabled again.
func (m *Member) Run(ctx context.Context, n *node.Node, dbs Databases) error {
	defer close(m.stopped)
	for ctx.Err() == nil {
		if !n.State().Available {
			if !sleep(ctx, 250*time.Millisecond) {
				break
			}
			continue
		}
		eng, _, release, err := n.Acquire()
		if err != nil {
			continue
		}
		bctx, unbind := n.Bind(ctx)
		err = m.runEpoch(bctx, eng, dbs)
		unbind()
		release()
		if err != nil && ctx.Err() == nil {
			m.log.Error("replication stopped; restarting it", "err", err)
			if !sleep(ctx, time.Second) {
				break
			}
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// runEpoch runs raft over eng until ctx ends (the node is disabled or the
// member stops) or raft fails.
func (m *Member) runEpoch(ctx context.Context, eng *storage.Engine, dbs Databases) (err error) {
	local, err := eng.Database(localDB)
	if errors.Is(err, storage.ErrNoDatabase) {
		local, err = eng.CreateDatabase(localDB)
	}
	if err != nil {
		return fmt.Errorf("repl: the local database: %w", err)
	}
	store, err := raftstore.New(local.DB, raftPrefix)
	if err != nil {
		return fmt.Errorf("repl: raft log: %w", err)
	}
	snaps, err := raftstore.NewSnapshotStore(local.FS, filepath.Join(local.Dir, "raft-snapshots"), 2)
	if err != nil {
		return fmt.Errorf("repl: raft snapshots: %w", err)
	}
	inner, err := m.cfg.NewTransport()
	if err != nil {
		return fmt.Errorf("repl: raft transport: %w", err)
	}
	trans := m.observe(inner)
	defer trans.Close()

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(m.cfg.Me)
	rc.Logger = hclogTo(m.log)
	// The databases are persistent: a restart replays the log over them
	// from the last snapshot (every entry writes absolute keys, so replay
	// is idempotent) instead of reloading the snapshot (fsm.Snapshot
	// makes what it covers durable first).
	rc.NoSnapshotRestoreOnStart = true
	if m.cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = m.cfg.HeartbeatTimeout
		rc.LeaderLeaseTimeout = m.cfg.HeartbeatTimeout / 2
	}
	if m.cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = m.cfg.ElectionTimeout
	}
	if m.cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = m.cfg.SnapshotThreshold
	}
	if m.cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = m.cfg.SnapshotInterval
	}
	if m.cfg.TrailingLogs > 0 {
		rc.TrailingLogs = m.cfg.TrailingLogs
	}
	leaderCh := make(chan bool, 8)
	rc.NotifyCh = leaderCh

	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("repl: raft state: %w", err)
	}
	if !has && m.cfg.Join {
		// A member added to a running set: the leader's AddMember puts it
		// in the configuration and sends it a snapshot, its initial sync.
		m.log.Info("waiting to be added to the replica set by its primary")
	}
	if !has && !m.cfg.Join {
		if err := raft.BootstrapCluster(rc, store, store, snaps, trans, m.cfg.raftConfiguration()); err != nil {
			return fmt.Errorf("repl: bootstrap: %w", err)
		}
		m.log.Info("replica set member bootstrapped", "members", len(m.cfg.Members))
	}
	m.mu.Lock()
	limits := m.cfg.Oplog // ResizeOplog changes it
	m.mu.Unlock()
	ol, err := oplog.Open(local.DB, limits)
	if err != nil {
		return fmt.Errorf("repl: the oplog: %w", err)
	}
	f := &fsm{m: m, eng: eng, dbs: dbs, failed: make(chan error, 1), oplog: ol}
	if list, err := snaps.List(); err == nil && len(list) > 0 {
		f.persisted.Store(list[0].Index)
	}
	if err := f.finishInterruptedRestore(local, snaps); err != nil {
		return err
	}
	r, err := raft.NewRaft(rc, f, store, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("repl: start raft: %w", err)
	}
	obsCh := make(chan raft.Observation, 64)
	obs := raft.NewObserver(obsCh, false, nil)
	r.RegisterObserver(obs)
	m.mu.Lock()
	m.raft, m.oplog, m.logs, m.eng = r, ol, store, eng
	m.mu.Unlock()
	m.bump()

	var wg sync.WaitGroup
	wctx, stopWatch := context.WithCancel(ctx)
	wg.Add(2)
	go func() { defer wg.Done(); m.watch(wctx, r, leaderCh, obsCh) }()
	go func() { defer wg.Done(); m.promote(wctx, r) }()

	select {
	case <-ctx.Done():
	case err = <-f.failed:
	}
	m.writable.Store(false)
	m.mu.Lock()
	m.raft, m.oplog, m.logs, m.eng = nil, nil, nil, nil
	m.mu.Unlock()
	stopWatch()
	r.DeregisterObserver(obs)
	if serr := r.Shutdown().Error(); serr != nil && err == nil {
		err = serr
	}
	wg.Wait()
	m.bump()
	return err
}

// watch follows leadership: a new leader becomes writable only after a
// barrier (every earlier entry applied here), and every change is a
// topology change for drivers.
func (m *Member) watch(ctx context.Context, r *raft.Raft, leaderCh <-chan bool, obsCh <-chan raft.Observation) {
	for {
		select {
		case <-ctx.Done():
			return
		case leader := <-leaderCh:
			m.writable.Store(false)
			m.mu.Lock()
			m.health = map[raft.ServerID]time.Time{}
			m.mu.Unlock()
			m.bump()
			if !leader {
				continue
			}
			term := r.CurrentTerm()
			go func() {
				if err := r.Barrier(0).Error(); err != nil {
					m.log.Warn("leader barrier failed", "err", err)
					return
				}
				if r.State() == raft.Leader && r.CurrentTerm() == term {
					m.writable.Store(true)
					m.log.Info("PRIMARY: elected and caught up", "term", term)
					m.bump()
				}
			}()
		case o := <-obsCh:
			switch d := o.Data.(type) {
			case raft.LeaderObservation:
				m.bump()
			case raft.FailedHeartbeatObservation:
				m.mu.Lock()
				m.health[d.PeerID] = d.LastContact
				m.mu.Unlock()
			case raft.ResumedHeartbeatObservation:
				m.mu.Lock()
				delete(m.health, d.PeerID)
				m.mu.Unlock()
			}
		}
	}
}

// current returns the running raft, or nil.
func (m *Member) current() *raft.Raft {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.raft
}

// hclogTo sends raft's log lines to l (warnings and errors only: raft's
// info lines are per election and heartbeat).
func hclogTo(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{l}, DisableTime: true})
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	switch {
	case strings.Contains(line, "[ERROR]"):
		w.l.Error(line)
	default:
		w.l.Warn(line)
	}
	return len(p), nil
}

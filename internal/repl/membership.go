package repl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Membership changes.
//
// The raft configuration is the source of truth for who is in the set:
// the static member list (Config.Members) only seeds a new set's first
// configuration (bootstrap) and names members raft has not told this one
// about yet. A restarted member rebuilds its view from the configuration
// stored in its own raft log and snapshots, so a member list edited (or
// left stale) on disk changes nothing.
//
// Each server in the configuration carries both of a member's addresses in
// its raft address: "raftAddr#host" (memberAddress). The transport dials
// the part before '#'; hello and replSetGetStatus report the host.
//
// A member's life, as the primary drives it:
//
//	(absent) --AddMember--> non-voter (STARTUP2: initial sync, then the log)
//	non-voter --caught up (within PromoteLag entries of the leader)--> voter (SECONDARY/PRIMARY)
//	voter --RemoveMember--> (removed: REMOVED on itself; raft refuses its votes)
//
// Invariant: only the leader changes the configuration, one change at a
// time (cfgMu held from reading the configuration to raft committing the
// change), so a change is always decided on the configuration it applies to.

// hostSep separates a member's raft address from its MongoDB host inside
// raft's ServerAddress.
const hostSep = "#"

// memberAddress is the raft ServerAddress of a member.
func memberAddress(raftAddr, host string) raft.ServerAddress {
	return raft.ServerAddress(raftAddr + hostSep + host)
}

// splitAddress returns the dialable raft address and the MongoDB host
// ("" for a configuration written before hosts were carried) of a.
func splitAddress(a raft.ServerAddress) (raftAddr, host string) {
	raftAddr, host, _ = strings.Cut(string(a), hostSep)
	return raftAddr, host
}

// DefaultPromoteLag is how many entries behind the leader's last log index
// a non-voter may be and still be promoted.
const DefaultPromoteLag = 64

// ErrMemberExists is returned by AddMember when a member of that name or
// address is already in the set with another address.
var ErrMemberExists = errors.New("repl: a member with that name or address exists")

// ErrIsPrimary is returned by RemoveMember when asked to remove the
// primary itself: it stepped down, and the caller retries on the new one.
var ErrIsPrimary = errors.New("repl: the member to remove was the primary; it stepped down, retry on the new primary")

// configTimeout bounds how long a configuration change may wait to be
// enqueued on the leader.
const configTimeout = 10 * time.Second

// AddMember adds mc to the set as a non-voter: the leader sends it a
// snapshot (its initial sync) and the log, and promotes it once it caught
// up (promote). Adding a member already present with the same addresses
// is a no-op. Only the primary changes membership.
func (m *Member) AddMember(ctx context.Context, mc MemberConfig) error {
	if mc.Name == "" || mc.Host == "" || mc.RaftAddr == "" {
		return mongoerr.New(mongoerr.InvalidOptions, "a new member needs a name, a host and a raft address")
	}
	m.cfgMu.Lock()
	defer m.cfgMu.Unlock()
	r, cfg, err := m.leaderConfig(ctx)
	if err != nil {
		return err
	}
	want := memberAddress(mc.RaftAddr, mc.Host)
	for _, s := range cfg.Configuration().Servers {
		raftAddr, host := splitAddress(s.Address)
		if string(s.ID) == mc.Name {
			if s.Address == want {
				return nil
			}
			return fmt.Errorf("%w: %s is at %s", ErrMemberExists, s.ID, s.Address)
		}
		if raftAddr == mc.RaftAddr || host == mc.Host {
			return fmt.Errorf("%w: %s is at %s", ErrMemberExists, s.ID, s.Address)
		}
	}
	// A member of that name removed before (re-encryption re-adds it with
	// empty storage) must not be promoted on what it acknowledged then.
	m.forgetMatch(raft.ServerID(mc.Name))
	if err := r.AddNonvoter(raft.ServerID(mc.Name), want, 0, configTimeout).Error(); err != nil {
		return configErr(err)
	}
	m.log.Info("member added as a non-voter; its initial sync begins", "new", mc.Name, "host", mc.Host)
	m.refreshView(r)
	return nil
}

// RemoveMember removes the member named name from the set. Removing the
// primary itself first hands its role to another member (ErrIsPrimary:
// the caller retries on the new primary). Removing a member that is not
// in the set is a no-op.
func (m *Member) RemoveMember(ctx context.Context, name string) error {
	m.cfgMu.Lock()
	defer m.cfgMu.Unlock()
	r, cfg, err := m.leaderConfig(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, s := range cfg.Configuration().Servers {
		found = found || string(s.ID) == name
	}
	if !found {
		return nil
	}
	if name == m.cfg.Me {
		if err := m.StepDown(ctx); err != nil {
			return err
		}
		return ErrIsPrimary
	}
	if err := r.RemoveServer(raft.ServerID(name), 0, configTimeout).Error(); err != nil {
		return configErr(err)
	}
	m.forgetMatch(raft.ServerID(name))
	m.log.Info("member removed", "removed", name)
	m.refreshView(r)
	return nil
}

// leaderConfig returns the running raft and its latest configuration if
// this member is the writable primary.
// The caller holds cfgMu until its change is committed.
func (m *Member) leaderConfig(ctx context.Context) (*raft.Raft, raft.ConfigurationFuture, error) {
	r := m.current()
	if r == nil || !m.writable.Load() {
		return nil, nil, errNotPrimary()
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	cfg := r.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return nil, nil, configErr(err)
	}
	return r, cfg, nil
}

func configErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return mongoerr.New(mongoerr.NotWritablePrimary, "not primary: %v", err)
	}
	return mongoerr.New(mongoerr.OperationFailed, "replica set configuration change failed: %v", err)
}

// promote runs on every member while raft runs: it keeps the member's
// view of the configuration current, and on the leader promotes every
// non-voter whose acknowledged log reaches within PromoteLag entries of
// the leader's last index.
func (m *Member) promote(ctx context.Context, r *raft.Raft) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		m.refreshView(r)
		if r.State() == raft.Leader && m.writable.Load() {
			m.promoteCaughtUp(r)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Member) promoteCaughtUp(r *raft.Raft) {
	m.cfgMu.Lock()
	defer m.cfgMu.Unlock()
	cfg := r.GetConfiguration()
	if cfg.Error() != nil {
		return
	}
	lag := m.cfg.PromoteLag
	if lag == 0 {
		lag = DefaultPromoteLag
	}
	last := r.LastIndex()
	for _, s := range cfg.Configuration().Servers {
		if s.Suffrage != raft.Nonvoter {
			continue
		}
		match := m.matchIndex(s.ID)
		if match == 0 || match+lag < last {
			continue
		}
		if err := r.AddVoter(s.ID, s.Address, 0, configTimeout).Error(); err != nil {
			m.log.Warn("promoting a caught-up member", "member", s.ID, "err", err)
			return
		}
		m.log.Info("member caught up: promoted to voter", "member", s.ID, "match", match, "last", last)
		m.refreshView(r)
		return // one change per configuration index
	}
}

// view is the latest raft configuration this member knows, and its
// version: the raft log's last index when this member first saw it
// (raft does not expose a configuration's own index), 1 for the first
// configuration of a new set. It only grows, across restarts too.
type view struct {
	index   uint64
	servers []raft.Server
}

// refreshView reads raft's latest configuration; a change is a topology
// change for drivers.
func (m *Member) refreshView(r *raft.Raft) {
	m.vmu.Lock()
	defer m.vmu.Unlock()
	f := r.GetConfiguration()
	if f.Error() != nil {
		return
	}
	servers := f.Configuration().Servers
	old := m.view.Load()
	if old != nil && sameServers(old.servers, servers) {
		return
	}
	nv := &view{index: max(r.LastIndex(), 1), servers: servers}
	if old != nil && nv.index <= old.index {
		nv.index = old.index + 1
	}
	m.view.Store(nv)
	for _, s := range nv.servers {
		if string(s.ID) == m.cfg.Me {
			m.joined.Store(true)
		}
	}
	m.bump()
}

func sameServers(a, b []raft.Server) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// matchIndex is the highest log index member id acknowledged to this
// member as leader (observed on the transport, observe.go).
func (m *Member) matchIndex(id raft.ServerID) uint64 {
	m.mmu.Lock()
	defer m.mmu.Unlock()
	return m.match[id]
}

func (m *Member) forgetMatch(id raft.ServerID) {
	m.mmu.Lock()
	defer m.mmu.Unlock()
	delete(m.match, id)
}

func (m *Member) noteMatch(id raft.ServerID, index uint64) {
	m.mmu.Lock()
	defer m.mmu.Unlock()
	if index > m.match[id] {
		m.match[id] = index
	}
}

// members returns the set's members as this member knows them: raft's
// configuration when it has one (with each server's voting status), the
// static list otherwise.
func (m *Member) members() (ms []MemberConfig, nonvoter map[string]bool, index uint64) {
	v := m.view.Load()
	if v == nil || len(v.servers) == 0 {
		return m.cfg.Members, nil, 1
	}
	nonvoter = map[string]bool{}
	for _, s := range v.servers {
		raftAddr, host := splitAddress(s.Address)
		if host == "" {
			if mc, ok := m.cfg.member(string(s.ID)); ok {
				host = mc.Host
			}
		}
		ms = append(ms, MemberConfig{Name: string(s.ID), Host: host, RaftAddr: raftAddr})
		if s.Suffrage != raft.Voter {
			nonvoter[string(s.ID)] = true
		}
	}
	return ms, nonvoter, v.index
}

// CompactLog snapshots this member's state now and lets raft drop the log
// before the snapshot (all but TrailingLogs entries), instead of waiting
// for SnapshotThreshold: a member added afterwards starts from a snapshot.
func (m *Member) CompactLog() error {
	r := m.current()
	if r == nil {
		return errors.New("repl: raft is not running on this member")
	}
	if err := r.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return fmt.Errorf("repl: snapshot: %w", err)
	}
	return nil
}

package repl

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// bump records a topology change: drivers waiting in an awaitable hello
// (WaitTopology) answer at once.
func (m *Member) bump() {
	m.tmu.Lock()
	defer m.tmu.Unlock()
	m.counter++
	close(m.changed)
	m.changed = make(chan struct{})
}

// TopologyVersion is hello's topologyVersion: this process and how many
// topology changes it has seen.
type TopologyVersion struct {
	ProcessID bson.ObjectID
	Counter   int64
}

// Topology returns the current topology version.
func (m *Member) Topology() TopologyVersion {
	m.tmu.Lock()
	defer m.tmu.Unlock()
	return TopologyVersion{ProcessID: m.processID, Counter: m.counter}
}

// Stopped reports whether Run has returned (the member is shutting down).
func (m *Member) Stopped() bool {
	select {
	case <-m.stopped:
		return true
	default:
		return false
	}
}

// WaitTopology waits until the topology differs from seen, d passes, or
// ctx ends (an awaitable hello).
func (m *Member) WaitTopology(ctx context.Context, seen TopologyVersion, d time.Duration) {
	m.tmu.Lock()
	if seen.ProcessID != m.processID || seen.Counter != m.counter {
		m.tmu.Unlock()
		return
	}
	ch := m.changed
	m.tmu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	case <-m.stopped:
	}
}

// State names a member's state as MongoDB does (replSetGetStatus stateStr).
type State string

const (
	StatePrimary    State = "PRIMARY"
	StateSecondary  State = "SECONDARY"
	StateRecovering State = "RECOVERING" // raft not running: the node is disabled or starting
	StateStartup2   State = "STARTUP2"   // a non-voter: initial sync, then catching up on the log
	StateRemoved    State = "REMOVED"    // no longer in the set's configuration
	StateUnknown    State = "(not reachable/healthy)"
)

// Code is MongoDB's numeric member state.
func (s State) Code() int32 {
	switch s {
	case StatePrimary:
		return 1
	case StateSecondary:
		return 2
	case StateRecovering:
		return 3
	case StateStartup2:
		return 5
	case StateRemoved:
		return 10
	}
	return 8
}

// Status is what hello and replSetGetStatus report of the set, as this
// member sees it.
type Status struct {
	SetName string
	// Self is this member's state; Writable whether it takes writes now.
	Self     State
	Writable bool
	Me       MemberConfig
	// Primary is the leader's MongoDB address, "" when none is known.
	Primary string
	Term    uint64
	Applied OpTime
	// Commit is the last index known committed.
	Commit  uint64
	Members []MemberStatus
	// Restores counts the snapshots this member installed since it
	// started (a member too far behind for the log catches up from one).
	Restores uint64
	// SetVersion is the index of the raft configuration the members come
	// from: it grows with every membership change (hello's setVersion).
	SetVersion int64
	// Voters is how many members vote (non-voters are syncing).
	Voters int
	// InitialSync is this member's latest snapshot install, nil if none
	// since it started.
	InitialSync *SyncProgress
}

// MemberStatus is one member as seen from here.
type MemberStatus struct {
	ID     int
	Config MemberConfig
	State  State
	Self   bool
	// Healthy is false when the leader's heartbeats to it fail (known only
	// on the primary; elsewhere members are presumed healthy).
	Healthy     bool
	LastContact time.Time
	// Voter is false for a member still syncing (STARTUP2).
	Voter bool
}

// Status reports the set as this member sees it. Its members come from
// raft's latest configuration (membership.go).
func (m *Member) Status() Status {
	st := Status{SetName: m.cfg.SetName, Self: StateRecovering, Applied: *m.applied.Load(), Restores: m.restores.Load()}
	if p, ok := m.sync.get(); ok {
		st.InitialSync = &p
	}
	members, nonvoter, index := m.members()
	st.SetVersion = int64(index)
	st.Me, _ = m.cfg.member(m.cfg.Me)
	inConfig := false
	for _, mc := range members {
		if mc.Name == m.cfg.Me {
			st.Me, inConfig = mc, true
		}
	}
	if nonvoter == nil && m.cfg.Join {
		inConfig = false // no configuration yet: not added
	}
	r := m.current()
	var leaderID raft.ServerID
	var unhealthy map[raft.ServerID]time.Time
	if r != nil {
		_, leaderID = r.LeaderWithID()
		st.Term = r.CurrentTerm()
		st.Commit = r.CommitIndex()
		st.Writable = m.writable.Load()
		switch {
		case st.Writable:
			st.Self = StatePrimary
		case r.State() == raft.Leader:
			st.Self = StateRecovering // elected, still applying what came before
		case !inConfig && m.joined.Load():
			st.Self = StateRemoved
		case !inConfig || nonvoter[m.cfg.Me]:
			st.Self = StateStartup2 // waiting to be added, or syncing
		default:
			st.Self = StateSecondary
		}
		m.mu.Lock()
		unhealthy = make(map[raft.ServerID]time.Time, len(m.health))
		for k, v := range m.health {
			unhealthy[k] = v
		}
		m.mu.Unlock()
	}
	for i, mc := range members {
		ms := MemberStatus{ID: i, Config: mc, Self: mc.Name == m.cfg.Me, Healthy: true, State: StateSecondary, Voter: !nonvoter[mc.Name]}
		if ms.Voter {
			st.Voters++
		} else {
			ms.State = StateStartup2
		}
		if raft.ServerID(mc.Name) == leaderID && !(ms.Self && !st.Writable) {
			ms.State = StatePrimary
			st.Primary = mc.Host
		}
		if last, bad := unhealthy[raft.ServerID(mc.Name)]; bad {
			ms.Healthy, ms.LastContact, ms.State = false, last, StateUnknown
		}
		if ms.Self {
			ms.State = st.Self
		}
		st.Members = append(st.Members, ms)
	}
	return st
}

// ElectionID is hello's electionId for a term: drivers order primaries by
// it, so it grows with the term (MongoDB's layout: 0x7fffffff, then the
// term).
func ElectionID(term uint64) bson.ObjectID {
	var id bson.ObjectID
	id[0], id[1], id[2], id[3] = 0x7f, 0xff, 0xff, 0xff
	for i := 0; i < 8; i++ {
		id[11-i] = byte(term >> (8 * i))
	}
	return id
}

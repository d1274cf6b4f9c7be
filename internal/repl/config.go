package repl

import (
	"github.com/cmkdb/cmkdb/internal/oplog"

	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
)

// Config describes a replica set and this member's place in it. Every
// member is given the same SetName and Members; Me names this one.
type Config struct {
	// SetName is the replica set's name (hello's setName, the driver's
	// replicaSet= option).
	SetName string
	// Me is this member's Name in Members.
	Me string
	// Members lists every member of the set. Its order is the member ids
	// replSetGetConfig reports.
	Members []MemberConfig
	// NewTransport opens this member's raft transport (mutual TLS between
	// members, package repl/transport). It is called each time the member
	// (re)starts raft: after a disable, the listener is opened again.
	NewTransport func() (raft.Transport, error)
	Logger       *slog.Logger
	// PeerAddrs, when set, is where this member reaches other members'
	// raft listeners, by member name, instead of their RaftAddr: a proxy
	// between members (fault tests put one on every link). It only takes
	// effect when the member bootstraps.
	PeerAddrs map[string]string

	// Join says this member is added to a running set (AddMember on its
	// primary) rather than bootstrapping one: without raft state of its
	// own, it waits for the leader to send its initial sync.
	Join bool
	// PromoteLag is how many entries behind the leader's last index a
	// non-voter may be when it is promoted to voter (DefaultPromoteLag).
	PromoteLag uint64

	// Raft timing (defaults: hashicorp/raft's, 1s heartbeat and election).
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// SnapshotThreshold is how many log entries trigger a snapshot
	// (default 8192), checked every SnapshotInterval (default 120s);
	// TrailingLogs is how many entries a snapshot leaves in the log for
	// members that lag (default 10240): one further behind is sent the
	// snapshot.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// Oplog caps this member's oplog (default 1 GiB, 24 h).
	Oplog oplog.Limits
	// SaveOplogLimits records new oplog limits where the member's
	// configuration lives (node.json), for ResizeOplog; nil refuses
	// resizing.
	SaveOplogLimits func(oplog.Limits) error
}

// MemberConfig is one member of the set.
type MemberConfig struct {
	// Name is the member's raft id; Host its MongoDB address (host:port),
	// which drivers connect to; RaftAddr where its raft transport listens.
	Name     string
	Host     string
	RaftAddr string
}

func (c *Config) validate() error {
	if c.SetName == "" {
		return errors.New("repl: the replica set needs a name")
	}
	if len(c.Members) == 0 {
		return errors.New("repl: the replica set has no members")
	}
	if c.NewTransport == nil {
		return errors.New("repl: no raft transport")
	}
	seen := map[string]bool{}
	me := false
	for _, m := range c.Members {
		if m.Name == "" || m.Host == "" || m.RaftAddr == "" {
			return fmt.Errorf("repl: member %q: name, host and raft address are required", m.Name)
		}
		for _, k := range []string{"name " + m.Name, "host " + m.Host, "raft " + m.RaftAddr} {
			if seen[k] {
				return fmt.Errorf("repl: two members have the same %s", k)
			}
			seen[k] = true
		}
		me = me || m.Name == c.Me
	}
	if !me {
		return fmt.Errorf("repl: this member (%q) is not in the member list", c.Me)
	}
	return nil
}

// member returns the configuration of the member named name.
func (c *Config) member(name string) (MemberConfig, bool) {
	for _, m := range c.Members {
		if m.Name == name {
			return m, true
		}
	}
	return MemberConfig{}, false
}

// raftConfiguration is the voter set every member bootstraps with. All
// members bootstrap with this identical configuration, which raft allows:
// the first election settles who leads.
func (c *Config) raftConfiguration() raft.Configuration {
	var rc raft.Configuration
	for _, m := range c.Members {
		addr := m.RaftAddr
		if a, ok := c.PeerAddrs[m.Name]; ok && m.Name != c.Me {
			addr = a
		}
		rc.Servers = append(rc.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.Name), Address: memberAddress(addr, m.Host)})
	}
	return rc
}

// Majority is how many members of the static list must hold a write for
// it to be committed (Status.Voters is the running set's count).
func (c Config) Majority() int { return len(c.Members)/2 + 1 }

package raftstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// listFSM applies entries by appending them to a list; its snapshot is the
// list.
type listFSM struct {
	mu       sync.Mutex
	entries  [][]byte
	restores int
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, append([]byte{}, l.Data...))
	return len(f.entries)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return listSnapshot(append([][]byte{}, f.entries...)), nil
}

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var entries [][]byte
	var n [4]byte
	for {
		if _, err := io.ReadFull(rc, n[:]); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		e := make([]byte, binary.BigEndian.Uint32(n[:]))
		if _, err := io.ReadFull(rc, e); err != nil {
			return err
		}
		entries = append(entries, e)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = entries
	f.restores++
	return nil
}

func (f *listFSM) snapshot() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte{}, f.entries...)
}

type listSnapshot [][]byte

func (s listSnapshot) Persist(sink raft.SnapshotSink) error {
	for _, e := range s {
		if _, err := sink.Write(binary.BigEndian.AppendUint32(nil, uint32(len(e)))); err != nil {
			sink.Cancel()
			return err
		}
		if _, err := sink.Write(e); err != nil {
			sink.Cancel()
			return err
		}
	}
	return sink.Close()
}

func (listSnapshot) Release() {}

// node is one member: its encrypted database and snapshot directory, its
// stores, transport and FSM.
type node struct {
	id    raft.ServerID
	dir   string
	fs    vfs.FS
	db    *pebble.DB
	store *Store
	snaps *SnapshotStore
	addr  raft.ServerAddress
	trans *raft.InmemTransport
	fsm   *listFSM
	raft  *raft.Raft
}

func (n *node) start(t *testing.T) {
	t.Helper()
	n.db = openDB(t, n.fs, filepath.Join(n.dir, "db"))
	n.store = newStore(t, n.db, "raft/")
	n.snaps = newSnapStore(t, n.fs, filepath.Join(n.dir, "snapshots"), 2)
	n.addr, n.trans = raft.NewInmemTransport(n.addr)
	n.fsm = &listFSM{}
	conf := raft.DefaultConfig()
	conf.LocalID = n.id
	conf.LogOutput = io.Discard
	conf.SnapshotThreshold = 1 << 30 // only forced snapshots
	conf.SnapshotInterval = time.Hour
	conf.TrailingLogs = 10
	r, err := raft.NewRaft(conf, n.fsm, n.store, n.store, n.snaps, n.trans)
	if err != nil {
		t.Fatal(err)
	}
	n.raft = r
}

func (n *node) stop(t *testing.T) {
	t.Helper()
	if n.raft == nil {
		return
	}
	if err := n.raft.Shutdown().Error(); err != nil {
		t.Error(err)
	}
	n.trans.Close()
	if err := n.db.Close(); err != nil {
		t.Error(err)
	}
	n.raft = nil
}

func connectAll(nodes []*node) {
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.trans.Connect(b.addr, b.trans)
			}
		}
	}
}

func leaderOf(nodes []*node) *node {
	for _, n := range nodes {
		if n.raft != nil && n.raft.State() == raft.Leader {
			return n
		}
	}
	return nil
}

func TestRaftCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node raft cluster")
	}
	root := t.TempDir()
	var nodes []*node
	var servers []raft.Server
	for i := range 3 {
		n := &node{
			id:   raft.ServerID(fmt.Sprintf("n%d", i)),
			dir:  filepath.Join(root, fmt.Sprintf("n%d", i)),
			fs:   encFS(t), // each member has its own key
			addr: raft.ServerAddress(fmt.Sprintf("addr%d", i)),
		}
		n.start(t)
		nodes = append(nodes, n)
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: n.id, Address: n.addr})
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.stop(t)
		}
	})
	connectAll(nodes)
	if err := nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a leader", func() bool { return leaderOf(nodes) != nil })

	apply := func(from, to int) {
		t.Helper()
		leader := leaderOf(nodes)
		if leader == nil {
			t.Fatal("no leader")
		}
		for i := from; i < to; i++ {
			if err := leader.raft.Apply([]byte(fmt.Sprintf("entry %03d", i)), 30*time.Second).Error(); err != nil {
				t.Fatalf("apply %d: %v", i, err)
			}
		}
	}
	converged := func(n int) func() bool {
		return func() bool {
			for _, nd := range nodes {
				got := nd.fsm.snapshot()
				if len(got) != n {
					return false
				}
				for i, e := range got {
					if !bytes.Equal(e, []byte(fmt.Sprintf("entry %03d", i))) {
						t.Fatalf("%s: entry %d is %q", nd.id, i, e)
					}
				}
			}
			return true
		}
	}
	apply(0, 100)
	waitFor(t, "100 entries on every member", converged(100))

	// A forced snapshot on a follower compacts its log down to the
	// trailing entries.
	var f *node
	for _, n := range nodes {
		if n.raft.State() != raft.Leader {
			f = n
			break
		}
	}
	if f == nil {
		t.Fatal("no follower")
	}
	fut := f.raft.Snapshot()
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	meta, rc, err := fut.Open()
	if err != nil {
		t.Fatal(err)
	}
	snapData, err := io.ReadAll(rc) // verified against its digest
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if meta.Size != int64(len(snapData)) || meta.Index < 100 {
		t.Fatalf("snapshot meta %+v, %d bytes", meta, len(snapData))
	}
	first, err := f.store.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first <= 1 || first > meta.Index {
		t.Fatalf("log not compacted by the snapshot: first index %d, snapshot at %d", first, meta.Index)
	}

	// Restart it from its stores: the FSM comes back from the snapshot
	// (its log no longer holds the early entries), then catches up.
	f.stop(t)
	f.start(t)
	connectAll(nodes)
	f.fsm.mu.Lock()
	restores := f.fsm.restores
	f.fsm.mu.Unlock()
	if restores != 1 {
		t.Fatalf("restarted member restored %d snapshots", restores)
	}
	if n := len(f.fsm.snapshot()); n != 100 {
		t.Fatalf("restarted member holds %d entries after restoring", n)
	}
	apply(100, 120)
	waitFor(t, "120 entries on every member after the restart", converged(120))
	if term, err := f.store.GetUint64([]byte("CurrentTerm")); err != nil || term == 0 {
		t.Fatalf("CurrentTerm: %d, %v", term, err)
	}
}

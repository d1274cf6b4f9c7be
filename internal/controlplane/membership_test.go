package controlplane

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeResizer provisions nothing; Resize reports one member and fails
// while fail is set.
type fakeResizer struct {
	mu    sync.Mutex
	calls [][2]int
	fail  bool
	done  chan struct{}
}

func (f *fakeResizer) Provision(context.Context, string, string) (string, error) {
	return "mongodb://a,b,c/?replicaSet=C", nil
}
func (f *fakeResizer) Deprovision(context.Context, string, string) error { return nil }
func (f *fakeResizer) Resize(_ context.Context, _, _ string, from, to int, progress func(MembershipChange)) (string, error) {
	defer func() { f.done <- struct{}{} }()
	f.mu.Lock()
	f.calls = append(f.calls, [2]int{from, to})
	fail := f.fail
	f.mu.Unlock()
	progress(MembershipChange{Members: []MemberSyncState{{Name: "m3", State: "INITIAL_SYNC", InitialSync: &InitialSync{BytesCopied: 1, BytesTotal: 2}}}})
	if fail {
		return "", errors.New("boom")
	}
	return "mongodb://a,b,c,d,e/?replicaSet=C", nil
}

// A replica set's member count changes to 3, 5 or 7 through the
// provisioner, in the background (UPDATING, then IDLE with the new
// connection string); a one-member cluster and other counts are refused;
// a failed change leaves REPAIRING with the error, and restating the
// count resumes it from where it began.
func TestMembershipChange(t *testing.T) {
	s := openService(t, t.TempDir(), nil)
	ctx := context.Background()
	fr := &fakeResizer{done: make(chan struct{}, 4)}
	s.SetProvisioner(fr)
	g, err := s.CreateGroup(ctx, "test", "P0", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCluster(ctx, "test", g.ID, Cluster{Name: "C", ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCluster(ctx, "test", g.ID, Cluster{Name: "One"}); err != nil {
		t.Fatal(err)
	}
	n := func(v int) *int { return &v }
	for _, bad := range []struct {
		cluster string
		count   int
	}{{"C", 4}, {"C", 1}, {"One", 3}} {
		if _, err := s.UpdateCluster(ctx, "test", g.ID, bad.cluster, ClusterPatch{ReplicationFactor: n(bad.count)}); err == nil || !strings.Contains(err.Error(), "replicationFactor") {
			t.Errorf("%s to %d members: %v, want refused", bad.cluster, bad.count, err)
		}
	}

	fr.fail = true
	c, err := s.UpdateCluster(ctx, "test", g.ID, "C", ClusterPatch{ReplicationFactor: n(5)})
	if err != nil || c.StateName != "UPDATING" || c.ReplicationFactor != 5 || c.MembershipChange == nil {
		t.Fatalf("PATCH 5: %+v, %v", c, err)
	}
	<-fr.done
	waitCluster(t, s, g.ID, "C", func(c Cluster) bool {
		return c.StateName == "REPAIRING" && c.MembershipChange != nil && c.MembershipChange.Error == "boom" &&
			len(c.MembershipChange.Members) == 1 && c.MembershipChange.Members[0].InitialSync.BytesTotal == 2
	})
	fr.mu.Lock()
	fr.fail = false
	fr.mu.Unlock()
	if _, err := s.UpdateCluster(ctx, "test", g.ID, "C", ClusterPatch{ReplicationFactor: n(5)}); err != nil {
		t.Fatal(err)
	}
	<-fr.done
	c = waitCluster(t, s, g.ID, "C", func(c Cluster) bool { return c.StateName == "IDLE" })
	if c.MembershipChange != nil || strings.Count(c.ConnectionStrings.Standard, ",") != 4 {
		t.Fatalf("after the change: %+v", c)
	}
	if fr.calls[0] != [2]int{3, 5} || fr.calls[1] != [2]int{3, 5} {
		t.Fatalf("resizes %v, want 3→5 twice (the retry resumes from 3)", fr.calls)
	}
}

func waitCluster(t *testing.T, s *Service, gid, name string, ok func(Cluster) bool) Cluster {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := s.GetCluster(gid, name)
		if err != nil {
			t.Fatal(err)
		}
		if ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster %s: %+v", name, c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package controlplane

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/cpproto"
)

// fakeResyncer is a fakeResizer that also re-encrypts by resync: it
// reports one member syncing and fails while fail is set.
type fakeResyncer struct {
	fakeResizer
	resyncs int
}

func (f *fakeResyncer) Resync(_ context.Context, _, _ string, progress func(MembershipChange)) error {
	defer func() { f.done <- struct{}{} }()
	f.mu.Lock()
	f.resyncs++
	fail := f.fail
	f.mu.Unlock()
	progress(MembershipChange{Members: []MemberSyncState{{Name: "m0", State: "INITIAL_SYNC"}}})
	if fail {
		return errors.New("boom")
	}
	return nil
}

// noResync provisions replica sets it cannot re-encrypt.
type noResync struct{ fakeResizer }

// Changing a replica set's provider starts a re-encryption by resync
// (UPDATING, membershipChange.reencrypt, progress, then IDLE); a failed
// one is REPAIRING, refuses a member count change (which would end it
// IDLE with old keys left) and resumes when the provider is set again; a
// one-member cluster is
// re-encrypted in place by its node (directive, progress, REPAIRING when
// it fails, IDLE when done); a replica set whose provisioner cannot resync
// is refused.
func TestReencryptChange(t *testing.T) {
	s := openService(t, t.TempDir(), nil)
	ctx := context.Background()
	fr := &fakeResyncer{fakeResizer: fakeResizer{done: make(chan struct{}, 4)}}
	s.SetProvisioner(fr)
	gid, _ := localProject(t, s)
	for _, c := range []Cluster{{Name: "C", ReplicationFactor: 3}, {Name: "One"}} {
		if _, err := s.CreateCluster(ctx, "test", gid, c); err != nil {
			t.Fatal(err)
		}
	}
	provider := func(p string) *string { return &p }
	n := func(v int) *int { return &v }

	fr.fail = true
	c, err := s.UpdateCluster(ctx, "test", gid, "C", ClusterPatch{EncryptionAtRestProvider: provider(ProviderLocal)})
	if err != nil || c.StateName != "UPDATING" || c.MembershipChange == nil || !c.MembershipChange.Reencrypt {
		t.Fatalf("PATCH provider: %+v, %v", c, err)
	}
	<-fr.done
	waitCluster(t, s, gid, "C", func(c Cluster) bool {
		return c.StateName == "REPAIRING" && c.MembershipChange != nil && c.MembershipChange.Error == "boom" &&
			c.MembershipChange.Reencrypt && len(c.MembershipChange.Members) == 1
	})
	var ae *APIError
	if _, err := s.UpdateCluster(ctx, "test", gid, "C", ClusterPatch{ReplicationFactor: n(3)}); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("member count while a re-encryption failed: %v, want refused", err)
	}
	fr.mu.Lock()
	fr.fail = false
	fr.mu.Unlock()
	if _, err := s.UpdateCluster(ctx, "test", gid, "C", ClusterPatch{EncryptionAtRestProvider: provider(ProviderLocal)}); err != nil {
		t.Fatal(err)
	}
	<-fr.done
	c = waitCluster(t, s, gid, "C", func(c Cluster) bool { return c.StateName == "IDLE" })
	if c.MembershipChange != nil || fr.resyncs != 2 {
		t.Fatalf("after the resumed re-encryption: %+v, %d resyncs", c, fr.resyncs)
	}

	// One member: re-encrypted in place by its node, through directives.
	// Before its node ever reported there is nothing to re-encrypt.
	if c, err := s.UpdateCluster(ctx, "test", gid, "One", ClusterPatch{EncryptionAtRestProvider: provider(ProviderLocal)}); err != nil || c.StateName != "IDLE" || c.MembershipChange != nil {
		t.Fatalf("one-member provider change before its node reported: %+v %v, want IDLE at once", c, err)
	}
	if _, err := s.UpdateCluster(ctx, "test", gid, "One", ClusterPatch{EncryptionAtRestProvider: provider(ProviderNone)}); err != nil {
		t.Fatal(err)
	}
	one := NodeID{GroupID: gid, Cluster: "One", Name: "node0"}
	if err := s.NodeReport(one, NodeReport{State: "AVAILABLE", MasterKeyVersion: 3}); err != nil {
		t.Fatal(err)
	}
	for round, fail := range []bool{true, false} {
		c, err = s.UpdateCluster(ctx, "test", gid, "One", ClusterPatch{EncryptionAtRestProvider: provider(ProviderLocal)})
		if err != nil || c.StateName != "UPDATING" || c.MembershipChange == nil || !c.MembershipChange.Reencrypt || fr.resyncs != 2 {
			t.Fatalf("one-member provider change: %+v, %v, %d resyncs", c, err, fr.resyncs)
		}
		want := uint64(round + 1)
		var d Directive
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		for d.Reencrypt != want {
			if d, err = s.NodeDirective(dctx, one, d.Gen); err != nil || dctx.Err() != nil {
				t.Fatalf("directive never asked for re-encryption %d: %+v %v", want, d, err)
			}
		}
		cancel()
		if err := s.NodeReport(one, NodeReport{State: "AVAILABLE", MasterKeyVersion: 3, ReencryptApplied: want - 1,
			Reencryption: &cpproto.Reencryption{Requested: want, Phase: "COPYING", BytesCopied: 40, BytesTotal: 100, ElapsedMillis: 400}}); err != nil {
			t.Fatal(err)
		}
		c = waitCluster(t, s, gid, "One", func(c Cluster) bool {
			m := c.MembershipChange
			return m != nil && len(m.Members) == 1 && m.Members[0].State == "REENCRYPTING" && m.Members[0].InitialSync != nil &&
				m.Members[0].InitialSync.BytesCopied == 40
		})
		if est := c.MembershipChange.Members[0].InitialSync.EstimatedRemainingMillis; est != 600 {
			t.Fatalf("estimated remaining %d ms, want 600", est)
		}
		if fail {
			if err := s.NodeReport(one, NodeReport{State: "AVAILABLE", MasterKeyVersion: 3, ReencryptApplied: want - 1,
				Reencryption: &cpproto.Reencryption{Requested: want, Phase: "FAILED", Error: "disk full"}}); err != nil {
				t.Fatal(err)
			}
			waitCluster(t, s, gid, "One", func(c Cluster) bool {
				return c.StateName == "REPAIRING" && c.MembershipChange != nil && strings.Contains(c.MembershipChange.Error, "disk full")
			})
			continue
		}
		if err := s.NodeReport(one, NodeReport{State: "AVAILABLE", MasterKeyVersion: 1, ReencryptApplied: want,
			Reencryption: &cpproto.Reencryption{Requested: want, Phase: "DONE"}}); err != nil {
			t.Fatal(err)
		}
		waitCluster(t, s, gid, "One", func(c Cluster) bool { return c.StateName == "IDLE" && c.MembershipChange == nil })
	}
	evs, err := s.Events(gid, "")
	if err != nil {
		t.Fatal(err)
	}
	said := false
	for _, e := range evs {
		said = said || (e.ClusterName == "One" && strings.Contains(e.Detail, "re-encrypted in place"))
	}
	if !said {
		t.Fatalf("no event says One was re-encrypted in place: %+v", evs)
	}

	s.SetProvisioner(&noResync{fakeResizer: fakeResizer{done: make(chan struct{}, 4)}})
	if _, err := s.UpdateCluster(ctx, "test", gid, "C", ClusterPatch{EncryptionAtRestProvider: provider(ProviderNone)}); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Fatalf("provider change without a Resyncer: %v, want refused", err)
	}
	if after, _ := s.Events(gid, ""); len(after) != len(evs) {
		t.Fatalf("a refused provider change left events: %+v", after[len(evs):])
	}
	if c, _ := s.GetCluster(gid, "C"); c.EncryptionAtRestProvider != ProviderLocal || c.StateName != "IDLE" {
		t.Fatalf("a refused provider change changed the cluster: %+v", c)
	}
}

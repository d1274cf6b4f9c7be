package controlplane

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms/local"
)

func currentDirective(t *testing.T, s *Service, id NodeID) Directive {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err := s.NodeDirective(ctx, id, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCMKChangeKeepsOldKeyUntilRewrapped: a PATCH naming another key keeps
// the old one unwrapping until every node reports its master key wrapped
// by the new one; the rotation is an event.
func TestCMKChangeKeepsOldKeyUntilRewrapped(t *testing.T) {
	ctx := context.Background()
	s := openService(t, t.TempDir(), nil)
	gid, _ := localProject(t, s)
	id := NodeID{GroupID: gid, Cluster: "C0", Name: "n"}
	master := []byte("0123456789abcdef0123456789abcdef")
	old, err := s.NodeWrap(ctx, id, master, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.NodeReport(id, NodeReport{State: "AVAILABLE", MasterKeyVersion: 1, MasterKeyCreatedAt: time.Now(), CMK: old.Key}); err != nil {
		t.Fatal(err)
	}

	newKey := filepath.Join(t.TempDir(), "cmk2.json")
	if _, err := local.Create(newKey); err != nil {
		t.Fatal(err)
	}
	if _, err := patch(t, s, gid, fmt.Sprintf(`{"local":{"keyFile":%q}}`, newKey)); err != nil {
		t.Fatal(err)
	}
	d := currentDirective(t, s, id)
	if d.WrapKey == old.Key || d.WrapKey.KeyID == "" {
		t.Fatalf("directive still names the old key: %+v", d.WrapKey)
	}
	if !strings.Contains(eventTypes(t, s, gid), "LOCAL_ENCRYPTION_KEY_ROTATED") {
		t.Error("no rotation event")
	}
	back, err := s.NodeUnwrap(ctx, id, old, []byte("m"))
	if err != nil || string(back) != string(master) {
		t.Fatalf("old wrapping during the change: %v", err)
	}
	rewrapped, err := s.NodeWrap(ctx, id, master, []byte("m"))
	if err != nil || rewrapped.Key != d.WrapKey {
		t.Fatalf("wrap during the change: %+v %v", rewrapped.Key, err)
	}
	if err := s.NodeReport(id, NodeReport{State: "AVAILABLE", MasterKeyVersion: 1, MasterKeyCreatedAt: time.Now(), CMK: rewrapped.Key}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NodeUnwrap(ctx, id, old, []byte("m")); err == nil {
		t.Fatal("the replaced key still unwraps after every node re-wrapped")
	}
	if !strings.Contains(eventTypes(t, s, gid), EventMasterKeyRewrapped) {
		t.Error("no re-wrap event")
	}
}

// TestNewPrimaryVersionNoticedAtCheck: a version-less key that gets a new
// version at the KMS is noticed at the next check; nodes are told to
// re-wrap, old versions keep unwrapping, and the rotation-age alert (open
// past its threshold) closes.
func TestNewPrimaryVersionNoticedAtCheck(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Now().UTC()}
	s := openService(t, t.TempDir(), clk)
	gid, keyFile := localProject(t, s)
	id := NodeID{GroupID: gid, Cluster: "C0", Name: "n"}
	w, err := s.NodeWrap(ctx, id, []byte("0123456789abcdef0123456789abcdef"), []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(91 * 24 * time.Hour)
	if _, err := s.CheckNow(ctx, gid); err != nil {
		t.Fatal(err)
	}
	open, _ := s.Alerts(gid, "OPEN")
	if len(open) != 1 || open[0].EventTypeName != "LOCAL_ENCRYPTION_KEY_NEEDS_ROTATION" {
		t.Fatalf("rotation-age alert after 91 days: %+v", open)
	}

	if _, err := local.Rotate(keyFile); err != nil {
		t.Fatal(err)
	}
	// Back to the key file's clock: the new version is minutes old.
	clk.mu.Lock()
	clk.now = time.Now().UTC()
	clk.mu.Unlock()
	if _, err := s.CheckNow(ctx, gid); err != nil {
		t.Fatal(err)
	}
	d := currentDirective(t, s, id)
	if d.WrapKey.KeyVersion == w.Key.KeyVersion {
		t.Fatalf("the new primary version was not noticed: %+v", d.WrapKey)
	}
	if _, err := s.NodeUnwrap(ctx, id, w, []byte("m")); err != nil {
		t.Fatalf("old version stopped unwrapping: %v", err)
	}
	if open, _ := s.Alerts(gid, "OPEN"); len(open) != 0 {
		t.Fatalf("rotation-age alert still open after the rotation: %+v", open)
	}
}

// TestRotationAfterRestartDispatchedAtOnce: the control plane restarts with
// a node record that lags the keystore (a rotation asked, its report lost
// in a crash). A fresh agent's first long-poll answers at once with the
// outstanding rotation; a rotation requested now wakes a waiting poll; the
// node's report on connect brings the record up to date.
func TestRotationAfterRestartDispatchedAtOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clk := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s := openService(t, dir, clk)
	gid, _ := localProject(t, s)
	id := NodeID{GroupID: gid, Cluster: "C0", Name: "n"}
	created := clk.Now()
	if err := s.NodeReport(id, NodeReport{State: "AVAILABLE", MasterKeyVersion: 1, MasterKeyCreatedAt: created}); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute)
	if err := s.RotateMasterKeys(ctx, "test", gid, "C0"); err != nil {
		t.Fatal(err)
	}
	// Crash: the node rotated (v2) but its report never arrived.
	s.Close()
	clk.Add(time.Minute)
	s = openService(t, dir, clk)

	// A fresh agent asks with generation 0 and must not wait for a change.
	ctx0, cancel := context.WithCancel(ctx)
	got := make(chan Directive, 1)
	go func() { d, _ := s.NodeDirective(ctx0, id, 0); got <- d }()
	var d Directive
	select {
	case d = <-got:
	case <-time.After(time.Minute): // a hang guard, not a timing assertion
		cancel()
		d = <-got
		t.Fatalf("the first long-poll after a restart waited for a change: %+v", d)
	}
	cancel()
	if d.Rotate != d.RotateApplied+1 {
		t.Fatalf("directive after restart %+v: the outstanding rotation is not in it", d)
	}
	// The node reports on connect what its keystore holds: v2.
	rotated := clk.Now()
	if err := s.NodeReport(id, NodeReport{State: "AVAILABLE", MasterKeyVersion: 2, MasterKeyCreatedAt: rotated, RotateApplied: d.Rotate}); err != nil {
		t.Fatal(err)
	}
	nodes, _ := s.Nodes(gid, "C0")
	if nodes[0].MasterKeyVersion != 2 || !nodes[0].MasterKeyCreatedAt.Equal(rotated) || nodes[0].RotateApplied != d.Rotate {
		t.Fatalf("record after the report on connect: %+v", nodes[0])
	}
	// A poll waiting for a change returns as soon as a rotation is asked,
	// with that rotation in it.
	waiting := make(chan Directive, 1)
	ctx1, cancel1 := context.WithCancel(ctx)
	defer cancel1()
	go func() { d, _ := s.NodeDirective(ctx1, id, d.Gen); waiting <- d }()
	clk.Add(time.Minute)
	if err := s.RotateMasterKeys(ctx, "test", gid, "C0"); err != nil {
		t.Fatal(err)
	}
	select {
	case d2 := <-waiting:
		if d2.Rotate != nodes[0].RotateApplied+1 {
			t.Fatalf("directive after the request %+v, want rotation %d", d2, nodes[0].RotateApplied+1)
		}
	case <-time.After(time.Minute): // a hang guard
		t.Fatal("a rotation request did not wake the node's long-poll")
	}
}

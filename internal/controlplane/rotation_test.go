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

package controlplane

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// TestKeystoreRollbackRefused: a node that reports a lower keystore
// generation than it reported before is told INVALID with the rollback
// reason and its unwraps are refused, across a control plane restart,
// until it reports a generation at least as high again.
func TestKeystoreRollbackRefused(t *testing.T) {
	dir := t.TempDir()
	s := openService(t, dir, nil)
	gid, _ := localProject(t, s)
	ctx := context.Background()
	id := NodeID{GroupID: gid, Cluster: "C0", Name: "n0"}
	master := []byte("0123456789abcdef0123456789abcdef")
	w, err := s.NodeWrap(ctx, id, master, []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	report := func(s *Service, gen uint64) {
		t.Helper()
		if err := s.NodeReport(id, NodeReport{State: "AVAILABLE", MasterKeyVersion: 1, MasterKeyCreatedAt: time.Now(), KeystoreGeneration: gen}); err != nil {
			t.Fatal(err)
		}
	}
	for _, gen := range []uint64{3, 7, 7} {
		report(s, gen)
	}
	if d := currentDirective(t, s, id); d.Validity != "VALID" {
		t.Fatalf("directive %+v before any rollback", d)
	}
	report(s, 5) // an older keystore put back
	for _, s := range []*Service{s, reopenService(t, s, dir)} {
		d := currentDirective(t, s, id)
		if d.Validity != "INVALID" || d.Reason != ReasonKeystoreRollback || !strings.Contains(d.Detail, "generation 5") {
			t.Fatalf("directive after rollback: %+v", d)
		}
		if _, err := s.NodeUnwrap(ctx, id, w, []byte("aad")); err == nil {
			t.Fatal("unwrap allowed for a rolled-back node")
		} else if ke := (*kms.Error)(nil); !errors.As(err, &ke) || ke.Reason != ReasonKeystoreRollback {
			t.Fatalf("unwrap refusal: %v", err)
		}
	}
}

// reopenService closes s and opens the same directory again.
func reopenService(t *testing.T, s *Service, dir string) *Service {
	t.Helper()
	s.Close()
	return openService(t, dir, nil)
}

// TestKeystoreRollbackCleared: once the node reports the newest
// generation again (the newest keystore restored), it is served again.
func TestKeystoreRollbackCleared(t *testing.T) {
	s := openService(t, t.TempDir(), nil)
	gid, _ := localProject(t, s)
	ctx := context.Background()
	id := NodeID{GroupID: gid, Cluster: "C0", Name: "n0"}
	w, err := s.NodeWrap(ctx, id, []byte("0123456789abcdef0123456789abcdef"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, gen := range []uint64{9, 4} {
		if err := s.NodeReport(id, NodeReport{State: "DISABLED", KeystoreGeneration: gen}); err != nil {
			t.Fatal(err)
		}
	}
	if d := currentDirective(t, s, id); d.Reason != ReasonKeystoreRollback {
		t.Fatalf("not refused: %+v", d)
	}
	if err := s.NodeReport(id, NodeReport{State: "DISABLED", KeystoreGeneration: 9}); err != nil {
		t.Fatal(err)
	}
	if d := currentDirective(t, s, id); d.Validity != "VALID" {
		t.Fatalf("still refused after the newest keystore came back: %+v", d)
	}
	if _, err := s.NodeUnwrap(ctx, id, w, nil); err != nil {
		t.Fatalf("unwrap after the newest keystore came back: %v", err)
	}
}

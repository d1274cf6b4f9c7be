package controlplane

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/snapshot"
)

// fakeSnapshotter writes one file per snapshot and counts them.
type fakeSnapshotter struct {
	fakeResizer
	mu    sync.Mutex
	taken int
}

func (f *fakeSnapshotter) TakeSnapshot(_ context.Context, _, _, dir string) (SnapshotSource, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return SnapshotSource{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "keystore"), []byte("k"), 0o600); err != nil {
		return SnapshotSource{}, err
	}
	f.mu.Lock()
	f.taken++
	f.mu.Unlock()
	return SnapshotSource{NodeName: "node0", NodeID: "n", CMK: kms.KeyRef{Provider: "local", KeyID: "k1"}}, nil
}

func (f *fakeSnapshotter) RestoreSnapshot(context.Context, string, string, RestoreInput, func(int64, int64)) error {
	return nil
}

func TestNextSlotAndRetention(t *testing.T) {
	sc := defaultSchedule(&Cluster{ID: "c", CreateDate: time.Date(2026, 1, 1, 3, 30, 0, 0, time.UTC)})
	// Saturday 2026-01-31 is also the last day of the month: a 03:30
	// snapshot that day is hourly, daily, weekly and monthly, kept 12 months.
	at := time.Date(2026, 1, 31, 1, 0, 0, 0, time.UTC)
	next, types, ok := nextSlot(sc, at)
	if !ok || !next.Equal(time.Date(2026, 1, 31, 3, 30, 0, 0, time.UTC)) || len(types) != 4 {
		t.Fatalf("next slot after %v: %v %v", at, next, types)
	}
	if kept, _ := matches(sc, next); !kept.Equal(next.AddDate(0, 12, 0)) {
		t.Fatalf("kept until %v", kept)
	}
	// Six hours later: hourly only, kept 2 days.
	next, types, _ = nextSlot(sc, next)
	if !next.Equal(time.Date(2026, 1, 31, 9, 30, 0, 0, time.UTC)) || len(types) != 1 {
		t.Fatalf("following slot %v %v", next, types)
	}
	if kept, _ := matches(sc, next); !kept.Equal(next.AddDate(0, 0, 2)) {
		t.Fatalf("kept until %v", kept)
	}
	// Weekly and monthly only: the grid is daily, slots the items miss skipped.
	sc.Policies[0].PolicyItems = []BackupPolicyItem{{FrequencyType: "weekly", FrequencyInterval: 3, RetentionUnit: "weeks", RetentionValue: 1}}
	next, _, _ = nextSlot(sc, at)
	if next.Weekday() != time.Wednesday || next.Hour() != 3 || next.Minute() != 30 {
		t.Fatalf("weekly slot %v", next)
	}
	sc.Policies[0].PolicyItems = nil
	if _, _, ok := nextSlot(sc, at); ok {
		t.Fatal("a schedule without items has a next slot")
	}
}

// A cluster with backupEnabled gets scheduled snapshots on its grid (none
// while it is off); the schedule is read and changed through the service,
// and what cmkdb does not do is refused.
func TestScheduledSnapshots(t *testing.T) {
	clk := &clock{now: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}
	s := openService(t, t.TempDir(), clk)
	fs := &fakeSnapshotter{fakeResizer: fakeResizer{done: make(chan struct{}, 4)}}
	s.SetProvisioner(fs)
	ctx := context.Background()
	gid, _ := localProject(t, s)
	if _, err := s.CreateCluster(ctx, "t", gid, Cluster{Name: "B", BackupEnabled: true}); err == nil {
		t.Fatal("backups accepted without a snapshot store")
	}
	if err := s.SetSnapshotStore(snapshot.Store{Dir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateCluster(ctx, "t", gid, Cluster{Name: "B", ProviderBackupEnabled: true})
	if err != nil || !c.BackupEnabled || !c.ProviderBackupEnabled {
		t.Fatalf("create with providerBackupEnabled: %+v %v", c, err)
	}
	if _, err := s.CreateCluster(ctx, "t", gid, Cluster{Name: "Off"}); err != nil {
		t.Fatal(err)
	}
	hour, minute := 1, 15
	sc, err := s.UpdateBackupSchedule(ctx, "t", gid, "B", BackupSchedulePatch{ReferenceHourOfDay: &hour, ReferenceMinuteOfHour: &minute,
		Policies: []BackupPolicy{{PolicyItems: []BackupPolicyItem{
			{FrequencyType: "hourly", FrequencyInterval: 12, RetentionUnit: "days", RetentionValue: 1},
			{FrequencyType: "daily", FrequencyInterval: 1, RetentionUnit: "days", RetentionValue: 3}}}}})
	if err != nil || sc.NextSnapshot == nil || !sc.NextSnapshot.Equal(time.Date(2026, 3, 2, 1, 15, 0, 0, time.UTC)) {
		t.Fatalf("schedule %+v %v", sc, err)
	}
	var ae *APIError
	yes := true
	for _, bad := range []BackupSchedulePatch{
		{UpdateSnapshots: &yes}, {AutoExportEnabled: &yes}, {CopySettings: []any{map[string]any{}}},
		{Policies: []BackupPolicy{{PolicyItems: []BackupPolicyItem{{FrequencyType: "hourly", FrequencyInterval: 5, RetentionUnit: "days", RetentionValue: 1}}}}},
	} {
		if _, err := s.UpdateBackupSchedule(ctx, "t", gid, "B", bad); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Fatalf("%+v: %v, want 400", bad, err)
		}
	}

	last := clk.Now()
	clk.Add(2 * time.Hour) // past 01:15: one daily+hourly snapshot due
	s.runSchedules(last)
	last = clk.Now()
	clk.Add(time.Hour) // 03:00: nothing due
	s.runSchedules(last)
	waitSnapshots := func(n int) []Snapshot {
		t.Helper()
		for i := 0; ; i++ {
			sps, err := s.Snapshots(gid, "B")
			done := 0
			for _, sp := range sps {
				if sp.Status == "completed" {
					done++
				}
			}
			if err == nil && done == n && len(sps) == n {
				return sps
			}
			if i > 500 {
				t.Fatalf("%d snapshots (%v), want %d completed", len(sps), err, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	sps := waitSnapshots(1)
	if sp := sps[0]; sp.SnapshotType != "scheduled" || sp.FrequencyType != "daily" || !sp.ExpiresAt.Equal(time.Date(2026, 3, 5, 1, 15, 0, 0, time.UTC)) {
		t.Fatalf("scheduled snapshot %+v", sp)
	}
	if o, _ := s.Snapshots(gid, "Off"); len(o) != 0 {
		t.Fatalf("a cluster without backups got snapshots: %+v", o)
	}
	last = clk.Now()
	clk.Add(11 * time.Hour) // 14:00: the 13:15 hourly slot
	s.runSchedules(last)
	sps = waitSnapshots(2)
	if sps[0].FrequencyType != "hourly" || !sps[0].ExpiresAt.Equal(time.Date(2026, 3, 3, 13, 15, 0, 0, time.UTC)) {
		t.Fatalf("hourly snapshot %+v", sps[0])
	}
	// Expired snapshots go.
	clk.Add(50 * time.Hour)
	s.expireSnapshots()
	if sps, _ := s.Snapshots(gid, "B"); len(sps) != 1 || sps[0].FrequencyType != "daily" {
		t.Fatalf("after the hourly one expired: %+v", sps)
	}
	// Backups off: no more scheduled snapshots.
	no := false
	if _, err := s.UpdateCluster(ctx, "t", gid, "B", ClusterPatch{BackupEnabled: &no}); err != nil {
		t.Fatal(err)
	}
	last = clk.Now()
	clk.Add(48 * time.Hour)
	s.runSchedules(last)
	time.Sleep(50 * time.Millisecond)
	if sps, _ := s.Snapshots(gid, "B"); len(sps) != 1 {
		t.Fatalf("snapshots taken with backups off: %d", len(sps))
	}
	if sc, _ := s.BackupSchedule(gid, "B"); sc.NextSnapshot != nil {
		t.Fatalf("a next snapshot with backups off: %v", sc.NextSnapshot)
	}
}

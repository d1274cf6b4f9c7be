package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Snapshot is a cluster snapshot as the API shows it.
type Snapshot struct {
	ID               string    `json:"id"`
	SnapshotType     string    `json:"snapshotType"`
	Status           string    `json:"status"`
	CreatedAt        time.Time `json:"createdAt"`
	ExpiresAt        time.Time `json:"expiresAt"`
	StorageSizeBytes int64     `json:"storageSizeBytes"`
	CMK              KeyRef    `json:"cmkdbCustomerMasterKey"`
	Provider         string    `json:"cmkdbEncryptionAtRestProvider"`
}

// Snapshots lists a cluster's snapshots with the customer master key
// version that protects each. With key set (provider:keyId@version, or a
// prefix of it such as provider:keyId), only the snapshots that key
// protects: what disabling or deleting that key version would make
// unopenable.
func (a *App) Snapshots(ctx context.Context, cluster, key string) error {
	sps, printed, err := listProject[Snapshot](ctx, a, "/clusters/"+seg(cluster)+"/backup/snapshots", nil, 0)
	if err != nil || printed {
		return err
	}
	var rows [][]string
	for _, s := range sps {
		ref := s.CMK.String()
		if key != "" && !matchesKey(ref, key) {
			continue
		}
		rows = append(rows, []string{s.ID, s.SnapshotType, s.Status, when(s.CreatedAt), when(s.ExpiresAt),
			strconv.FormatInt(s.StorageSizeBytes, 10), s.Provider, ref})
	}
	return a.table([]string{"ID", "TYPE", "STATUS", "CREATED", "EXPIRES", "BYTES", "PROVIDER", "PROTECTED BY"}, rows)
}

// matchesKey reports whether ref (provider:keyId@version) is key or starts
// with it up to a separator.
func matchesKey(ref, key string) bool {
	if ref == key {
		return true
	}
	return len(ref) > len(key) && ref[:len(key)] == key && (ref[len(key)] == '@' || ref[len(key)] == ':')
}

// TakeSnapshot takes an on-demand snapshot of a cluster; with wait it
// prints its status until it is completed (or fails).
func (a *App) TakeSnapshot(ctx context.Context, cluster string, retentionDays int, description string, wait bool) error {
	path, err := a.groupPath(ctx, "/clusters/"+seg(cluster)+"/backup/snapshots")
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := a.c.Do(ctx, http.MethodPost, path, nil, map[string]any{"retentionInDays": retentionDays, "description": description}, &raw); err != nil {
		return err
	}
	var s struct {
		Snapshot
		Failure string `json:"cmkdbFailureReason"`
	}
	for {
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("decoding the snapshot: %w", err)
		}
		if !wait || s.Status == "completed" {
			break
		}
		if s.Status == "failed" {
			return fmt.Errorf("snapshot %s failed: %s", s.ID, s.Failure)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		raw = nil
		if err := a.c.Do(ctx, http.MethodGet, path+"/"+seg(s.ID), nil, nil, &raw); err != nil {
			return err
		}
	}
	if a.json {
		return a.printResource(raw)
	}
	fmt.Fprintf(a.out, "snapshot %s %s (%d bytes, protected by %s)\n", s.ID, s.Status, s.StorageSizeBytes, orNone(s.CMK.String()))
	return nil
}

// Restore starts an automated restore of a snapshot into target (the
// snapshot's cluster when empty); with wait it draws the restore's
// progress until it finishes, and fails if it failed.
func (a *App) Restore(ctx context.Context, cluster, snapshotID, target string, wait bool) error {
	path, err := a.groupPath(ctx, "/clusters/"+seg(cluster)+"/backup/restoreJobs")
	if err != nil {
		return err
	}
	if target == "" {
		target = cluster
	}
	g, err := a.project(ctx)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	body := map[string]any{"snapshotId": snapshotID, "deliveryType": "automated", "targetClusterName": target, "targetGroupId": g.ID}
	if err := a.c.Do(ctx, http.MethodPost, path, nil, body, &raw); err != nil {
		return err
	}
	var j struct {
		ID          string `json:"id"`
		State       string `json:"cmkdbState"`
		Error       string `json:"cmkdbErrorMessage"`
		BytesCopied int64  `json:"cmkdbBytesCopied"`
		BytesTotal  int64  `json:"cmkdbBytesTotal"`
	}
	last := ""
	for {
		if err := json.Unmarshal(raw, &j); err != nil {
			return fmt.Errorf("decoding the restore job: %w", err)
		}
		if wait && !a.json {
			line := "restore " + j.ID + " " + j.State
			if j.BytesTotal > 0 {
				pct := int(100 * j.BytesCopied / j.BytesTotal)
				line += fmt.Sprintf(" [%s] %d%% %.1f/%.1f MB", strings.Repeat("#", pct/10)+strings.Repeat(".", 10-pct/10), pct,
					float64(j.BytesCopied)/1e6, float64(j.BytesTotal)/1e6)
			}
			if line != last {
				fmt.Fprintln(a.out, line)
				last = line
			}
		}
		if !wait || j.State == "COMPLETED" {
			break
		}
		if j.State == "FAILED" {
			return fmt.Errorf("restore %s failed: %s", j.ID, j.Error)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		raw = nil
		if err := a.c.Do(ctx, http.MethodGet, path+"/"+seg(j.ID), nil, nil, &raw); err != nil {
			return err
		}
	}
	if a.json {
		return a.printResource(raw)
	}
	if !wait {
		fmt.Fprintf(a.out, "restore %s %s\n", j.ID, j.State)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// MembershipChange is a cluster's member count change in progress (the
// cmkdb extension field membershipChange).
type MembershipChange struct {
	From    int    `json:"fromMembers"`
	To      int    `json:"toMembers"`
	Error   string `json:"error"`
	Members []struct {
		Name        string `json:"name"`
		State       string `json:"state"`
		InitialSync *struct {
			BytesCopied              int64 `json:"bytesCopied"`
			BytesTotal               int64 `json:"bytesTotal"`
			DocumentsCopied          int64 `json:"documentsCopied"`
			EstimatedRemainingMillis int64 `json:"estimatedRemainingMillis"`
		} `json:"initialSync"`
	} `json:"members"`
}

// progress is a one-line summary: "3→5: m3 SECONDARY, m4 INITIAL_SYNC
// [#####.....] 52% 1.2/2.3 MB 1830 docs ~3s".
func (mc *MembershipChange) progress() string {
	if mc == nil {
		return ""
	}
	parts := []string{fmt.Sprintf("%d→%d", mc.From, mc.To)}
	for _, m := range mc.Members {
		p := m.Name + " " + m.State
		if s := m.InitialSync; s != nil && s.BytesTotal > 0 {
			pct := int(100 * s.BytesCopied / s.BytesTotal)
			bar := strings.Repeat("#", pct/10) + strings.Repeat(".", 10-pct/10)
			p += fmt.Sprintf(" [%s] %d%% %.1f/%.1f MB %d docs", bar, pct, float64(s.BytesCopied)/1e6, float64(s.BytesTotal)/1e6, s.DocumentsCopied)
			if s.EstimatedRemainingMillis > 0 {
				p += fmt.Sprintf(" ~%s", (time.Duration(s.EstimatedRemainingMillis) * time.Millisecond).Round(time.Second))
			}
		}
		parts = append(parts, p)
	}
	if mc.Error != "" {
		parts = append(parts, "failed: "+mc.Error)
	}
	return strings.Join(parts, ", ")
}

// ClusterSetMembers changes a replica set's member count (3, 5 or 7).
// With wait it prints the change's progress until the cluster is IDLE
// again, and fails if the change failed.
func (a *App) ClusterSetMembers(ctx context.Context, name string, members int, wait bool) error {
	path, err := a.groupPath(ctx, "/clusters/"+seg(name))
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := a.c.Do(ctx, http.MethodPatch, path, nil, map[string]any{"replicationFactor": members}, &raw); err != nil {
		return err
	}
	if !wait {
		return a.printCluster(raw)
	}
	last := ""
	for {
		var c Cluster
		if err := json.Unmarshal(raw, &c); err != nil {
			return err
		}
		if line := c.MembershipChange.progress(); line != "" && line != last && !a.json {
			fmt.Fprintln(a.out, line)
			last = line
		}
		switch {
		case c.MembershipChange != nil && c.MembershipChange.Error != "":
			return fmt.Errorf("cluster %s: changing its members failed: %s", name, c.MembershipChange.Error)
		case c.StateName == "IDLE" && c.MembershipChange == nil:
			return a.printCluster(raw)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		raw = nil
		if err := a.c.Do(ctx, http.MethodGet, path, nil, nil, &raw); err != nil {
			return err
		}
	}
}

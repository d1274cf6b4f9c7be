package ctl_test

import (
	"context"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/internal/ctl"
	"github.com/cmkdb/cmkdb/internal/kms/local"
)

// TestReadCommands runs every listing against the fixture, as a table and
// as --json, and checks both show the control plane's real state.
func TestReadCommands(t *testing.T) {
	e := newEnv(t)
	info, err := local.Inspect(e.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cmk := info.Key.String()
	tests := []struct {
		name  string
		cmd   func(context.Context, *ctl.App) error
		table func(t *testing.T, out string)
		json  func(t *testing.T, out string)
	}{
		{
			name: "projects",
			cmd:  func(ctx context.Context, a *ctl.App) error { return a.Projects(ctx) },
			table: func(t *testing.T, out string) {
				if got := row(t, out, "ID"); strings.Join(got, " ") != "ID NAME CLUSTERS" {
					t.Errorf("header %q", got)
				}
				if r := row(t, out, e.gid); r[1] != "Project0" || r[2] != "1" {
					t.Errorf("project row %q", r)
				}
			},
			json: func(t *testing.T, out string) {
				var gs []map[string]any
				decode(t, out, &gs)
				if len(gs) != 1 || gs[0]["id"] != e.gid || gs[0]["name"] != "Project0" || gs[0]["clusterCount"] != 1.0 {
					t.Errorf("projects %v", gs)
				}
				if _, ok := gs[0]["links"]; ok {
					t.Errorf("links left in %v", gs[0])
				}
			},
		},
		{
			name: "ear show",
			cmd:  func(ctx context.Context, a *ctl.App) error { return a.EARShow(ctx) },
			table: func(t *testing.T, out string) {
				want := map[string]string{
					"project": "Project0 (" + e.gid + ")", "provider": "local (clusters: LOCAL)", "enabled": "true",
					"valid": "true", "key": cmk, "validity": "VALID", "reachable": "true", "reason": "-",
					"check interval": "15m0s", "rotation days": "90", "local.keyFile": e.keyFile,
				}
				for k, v := range want {
					if got := field(t, out, k); got != v {
						t.Errorf("%s = %q, want %q", k, got, v)
					}
				}
				for _, k := range []string{"checked at", "rotated at"} {
					if got := field(t, out, k); got == "-" {
						t.Errorf("%s empty", k)
					}
				}
			},
			json: func(t *testing.T, out string) {
				var ear struct {
					Local struct {
						Enabled bool   `json:"enabled"`
						Valid   bool   `json:"valid"`
						KeyFile string `json:"keyFile"`
					} `json:"local"`
					KeyStatus struct {
						Validity string `json:"validity"`
						Key      string `json:"key"`
					} `json:"keyStatus"`
					Settings struct {
						Interval int `json:"validityCheckIntervalSeconds"`
					} `json:"settings"`
				}
				decode(t, out, &ear)
				if !ear.Local.Enabled || !ear.Local.Valid || ear.Local.KeyFile != e.keyFile ||
					ear.KeyStatus.Validity != "VALID" || ear.KeyStatus.Key != cmk || ear.Settings.Interval != 900 {
					t.Errorf("ear %+v", ear)
				}
			},
		},
		{
			name: "clusters",
			cmd:  func(ctx context.Context, a *ctl.App) error { return a.Clusters(ctx) },
			table: func(t *testing.T, out string) {
				if got := strings.Join(rows(out)[0], " "); got != "NAME PROVIDER STATE REASON SINCE MEMBERS CONNECTION" {
					t.Errorf("header %q", got)
				}
				r := row(t, out, "Cluster0")
				if r[1] != "LOCAL" || r[2] != "AVAILABLE" || r[3] != "-" || r[5] != "1" || r[6] != "mongodb://127.0.0.1:27017" {
					t.Errorf("cluster row %q", r)
				}
			},
			json: func(t *testing.T, out string) {
				var cs []struct {
					Name   string `json:"name"`
					Status struct {
						State string `json:"state"`
					} `json:"encryptionAtRestStatus"`
				}
				decode(t, out, &cs)
				if len(cs) != 1 || cs[0].Name != "Cluster0" || cs[0].Status.State != "AVAILABLE" {
					t.Errorf("clusters %+v", cs)
				}
			},
		},
		{
			name: "nodes",
			cmd:  func(ctx context.Context, a *ctl.App) error { return a.Nodes(ctx, "Cluster0") },
			table: func(t *testing.T, out string) {
				r := row(t, out, "node0")
				if r[1] != "AVAILABLE" || r[3] != "1" || r[4] != "2026-01-02T03:04:05Z" || r[5] != cmk {
					t.Errorf("node row %q", r)
				}
			},
			json: func(t *testing.T, out string) {
				var ns []map[string]any
				decode(t, out, &ns)
				if len(ns) != 1 || ns[0]["name"] != "node0" || ns[0]["masterKeyVersion"] != 1.0 {
					t.Errorf("nodes %v", ns)
				}
			},
		},
		{
			name: "alert-configs",
			cmd:  func(ctx context.Context, a *ctl.App) error { return a.AlertConfigs(ctx) },
			table: func(t *testing.T, out string) {
				mustContain(t, "alert-configs", out, "ENCRYPTION_AT_REST_KMS_NETWORK_ACCESS_DENIED")
				var r []string
				for _, x := range rows(out) {
					if len(x) > 1 && x[1] == "LOCAL_ENCRYPTION_KEY_NEEDS_ROTATION" {
						r = x
					}
				}
				if len(r) < 3 || strings.Join(r[2:], " ") != "true > 90 DAYS GROUP" {
					t.Errorf("rotation alert config row %q", r)
				}
			},
			json: func(t *testing.T, out string) {
				var cs []map[string]any
				decode(t, out, &cs)
				// Three defaults of every project, and the rotation one.
				if len(cs) != 4 {
					t.Errorf("alert configs %v", cs)
				}
			},
		},
		{
			name: "events of a type",
			cmd:  func(ctx context.Context, a *ctl.App) error { return a.Events(ctx, "CLUSTER_CREATED", 10) },
			table: func(t *testing.T, out string) {
				rs := rows(out)
				if len(rs) != 2 || rs[1][1] != "CLUSTER_CREATED" || rs[1][2] != "Cluster0" {
					t.Errorf("events:\n%s", out)
				}
			},
			json: func(t *testing.T, out string) {
				var es []map[string]any
				decode(t, out, &es)
				if len(es) != 1 || es[0]["eventTypeName"] != "CLUSTER_CREATED" {
					t.Errorf("events %v", es)
				}
			},
		},
		{
			name: "events limited",
			cmd:  func(ctx context.Context, a *ctl.App) error { return a.Events(ctx, "", 2) },
			table: func(t *testing.T, out string) {
				if n := len(rows(out)); n != 3 {
					t.Errorf("want header and 2 events:\n%s", out)
				}
			},
			json: func(t *testing.T, out string) {
				var es []map[string]any
				decode(t, out, &es)
				if len(es) != 2 {
					t.Errorf("want 2 events, got %d", len(es))
				}
			},
		},
		{
			name: "maintenance show",
			cmd:  func(ctx context.Context, a *ctl.App) error { return a.MaintenanceShow(ctx) },
			table: func(t *testing.T, out string) {
				if got := field(t, out, "day of week"); !strings.HasPrefix(got, "0 (not set") {
					t.Errorf("day of week %q", got)
				}
			},
			json: func(t *testing.T, out string) {
				var mw map[string]any
				decode(t, out, &mw)
				if mw["dayOfWeek"] != 0.0 {
					t.Errorf("window %v", mw)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, e.opts(), tc.cmd)
			if r.err != nil {
				t.Fatalf("table: %s", r.text())
			}
			tc.table(t, r.out)
			r = run(t, e.opts(asJSON), tc.cmd)
			if r.err != nil {
				t.Fatalf("--json: %s", r.text())
			}
			tc.json(t, r.out)
		})
	}
}

package ctl_test

import (
	"context"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/internal/ctl"
)

// TestClusterAndMaintenanceCommands changes state through ctl and reads it
// back through ctl.
func TestClusterAndMaintenanceCommands(t *testing.T) {
	e := newEnv(t)
	day, hour := 1, 3
	steps := []struct {
		name  string
		json  bool
		cmd   func(context.Context, *ctl.App) error
		check func(t *testing.T, out string)
	}{
		{name: "create with the project's provider", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.ClusterCreate(ctx, "Cluster1", "local")
		}, check: func(t *testing.T, out string) {
			if r := row(t, out, "Cluster1"); r[1] != "LOCAL" || r[2] != "AVAILABLE" {
				t.Errorf("created %q", r)
			}
		}},
		{name: "create without", json: true, cmd: func(ctx context.Context, a *ctl.App) error {
			return a.ClusterCreate(ctx, "Cluster2", "")
		}, check: func(t *testing.T, out string) {
			var c map[string]any
			decode(t, out, &c)
			if c["name"] != "Cluster2" || c["encryptionAtRestProvider"] != "NONE" {
				t.Errorf("created %v", c)
			}
		}},
		{name: "set-provider NONE", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.ClusterSetProvider(ctx, "Cluster1", "none")
		}, check: func(t *testing.T, out string) {
			if r := row(t, out, "Cluster1"); r[1] != "NONE" {
				t.Errorf("after set-provider %q", r)
			}
		}},
		{name: "delete", cmd: func(ctx context.Context, a *ctl.App) error { return a.ClusterDelete(ctx, "Cluster1") },
			check: func(t *testing.T, out string) {
				if out != "cluster Cluster1 deleted\n" {
					t.Errorf("delete printed %q", out)
				}
			}},
		{name: "list", cmd: func(ctx context.Context, a *ctl.App) error { return a.Clusters(ctx) }, check: func(t *testing.T, out string) {
			var names []string
			for _, r := range rows(out)[1:] {
				names = append(names, r[0])
			}
			if strings.Join(names, ",") != "Cluster0,Cluster2" {
				t.Errorf("clusters %v:\n%s", names, out)
			}
		}},
		{name: "projects count clusters", cmd: func(ctx context.Context, a *ctl.App) error { return a.Projects(ctx) },
			check: func(t *testing.T, out string) {
				if r := row(t, out, e.gid); r[2] != "2" {
					t.Errorf("project row %q", r)
				}
			}},
		{name: "maintenance set", cmd: func(ctx context.Context, a *ctl.App) error { return a.MaintenanceSet(ctx, &day, &hour) },
			check: func(t *testing.T, out string) {
				if field(t, out, "day of week") != "1 (Sunday)" || field(t, out, "hour of day") != "3" || field(t, out, "deferred until") != "-" {
					t.Errorf("window:\n%s", out)
				}
			}},
		{name: "maintenance defer", cmd: func(ctx context.Context, a *ctl.App) error { return a.MaintenanceDefer(ctx) },
			check: func(t *testing.T, out string) {
				if field(t, out, "day of week") != "1 (Sunday)" || !strings.HasPrefix(field(t, out, "deferred until"), "20") {
					t.Errorf("window:\n%s", out)
				}
			}},
		{name: "maintenance show, json", json: true, cmd: func(ctx context.Context, a *ctl.App) error { return a.MaintenanceShow(ctx) },
			check: func(t *testing.T, out string) {
				var mw map[string]any
				decode(t, out, &mw)
				if mw["dayOfWeek"] != 1.0 || mw["hourOfDay"] != 3.0 || mw["deferredUntil"] == nil {
					t.Errorf("window %v", mw)
				}
			}},
		{name: "audit trail", cmd: func(ctx context.Context, a *ctl.App) error { return a.Events(ctx, "CLUSTER_DELETED", 0) },
			check: func(t *testing.T, out string) {
				if r := rows(out); len(r) != 2 || r[1][2] != "Cluster1" || r[1][3] != e.pub {
					t.Errorf("events:\n%s", out)
				}
			}},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) {
			o := e.opts()
			o.JSON = s.json
			r := run(t, o, s.cmd)
			if r.err != nil {
				t.Fatalf("failed: %s", r.text())
			}
			s.check(t, r.out)
		}) {
			return
		}
	}
}

package ctl_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/ctl"
	"github.com/cmkdb/cmkdb/internal/kms/local"
)

// TestKeyLifecycle disables the local key file, as a KMS operator would
// disable a CMK, and follows what an operator sees through ctl: validate
// fails and exits non-zero, the cluster is DISABLED with the KMS's reason,
// an alert opens, rotation is refused; after enabling the key, validate
// succeeds and everything is AVAILABLE again.
func TestKeyLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.svc.CreateAlertConfig(ctx, e.gid, controlplane.AlertConfig{EventTypeName: "LOCAL_ENCRYPTION_KEY_INVALID",
		Enabled: true, Notifications: []controlplane.Notification{{TypeName: "GROUP"}}}); err != nil {
		t.Fatal(err)
	}
	validate := func(ctx context.Context, a *ctl.App) error { return a.EARValidate(ctx) }
	clusters := func(ctx context.Context, a *ctl.App) error { return a.Clusters(ctx) }
	openAlerts := func(ctx context.Context, a *ctl.App) error { return a.Alerts(ctx, "open") }
	closedAlerts := func(ctx context.Context, a *ctl.App) error { return a.Alerts(ctx, "CLOSED") }
	rotate := func(ctx context.Context, a *ctl.App) error { return a.Rotate(ctx, "Cluster0") }

	steps := []struct {
		name   string
		before func(t *testing.T)
		cmd    func(context.Context, *ctl.App) error
		json   bool
		// wantErr is a substring of the failure text; "" means success.
		wantErr string
		check   func(t *testing.T, out string)
	}{
		{name: "validate a valid key", cmd: validate, check: func(t *testing.T, out string) {
			if field(t, out, "validity") != "VALID" || field(t, out, "valid") != "true" {
				t.Errorf("validate:\n%s", out)
			}
		}},
		{name: "validate after the key is disabled", before: func(t *testing.T) {
			if _, err := local.Disable(e.keyFile); err != nil {
				t.Fatal(err)
			}
		}, cmd: validate, wantErr: "error: the customer master key is INVALID (KEY_DISABLED)", check: func(t *testing.T, out string) {
			if field(t, out, "validity") != "INVALID" || field(t, out, "valid") != "false" || field(t, out, "reason") != "KEY_DISABLED" {
				t.Errorf("validate printed:\n%s", out)
			}
		}},
		{name: "cluster disabled", cmd: clusters, check: func(t *testing.T, out string) {
			r := row(t, out, "Cluster0")
			if r[2] != "DISABLED" || !strings.Contains(strings.Join(r, " "), "KEY_DISABLED") {
				t.Errorf("cluster row %q", r)
			}
		}},
		{name: "cluster disabled, json", cmd: clusters, json: true, check: func(t *testing.T, out string) {
			var cs []struct {
				Status struct {
					State  string `json:"state"`
					Reason string `json:"reason"`
				} `json:"encryptionAtRestStatus"`
			}
			decode(t, out, &cs)
			if len(cs) != 1 || cs[0].Status.State != "DISABLED" || !strings.Contains(cs[0].Status.Reason, "KEY_DISABLED") {
				t.Errorf("clusters %+v", cs)
			}
		}},
		{name: "alert open", cmd: openAlerts, check: func(t *testing.T, out string) {
			// The key's alert, and the project's default ones: the
			// configuration no longer valid, the cluster disabled.
			open := map[string]bool{}
			for _, r := range rows(out)[1:] {
				open[r[1]] = r[2] == "OPEN"
			}
			if len(open) != 3 || !open["LOCAL_ENCRYPTION_KEY_INVALID"] || !open["ENCRYPTION_AT_REST_CONFIG_NO_LONGER_VALID"] || !open["CLUSTER_ENCRYPTION_AT_REST_DISABLED"] {
				t.Errorf("open alerts:\n%s", out)
			}
		}},
		{name: "rotation refused while disabled", cmd: rotate, wantErr: "error: CANNOT_ROTATE_KEY_ENCRYPTION_DISABLED: "},
		{name: "validate after the key is enabled", before: func(t *testing.T) {
			if _, err := local.Enable(e.keyFile); err != nil {
				t.Fatal(err)
			}
		}, cmd: validate, check: func(t *testing.T, out string) {
			if field(t, out, "validity") != "VALID" || field(t, out, "reason") != "-" {
				t.Errorf("validate printed:\n%s", out)
			}
		}},
		{name: "cluster available", cmd: clusters, check: func(t *testing.T, out string) {
			if r := row(t, out, "Cluster0"); r[2] != "AVAILABLE" || r[3] != "-" {
				t.Errorf("cluster row %q", r)
			}
		}},
		{name: "alert closed", cmd: closedAlerts, json: true, check: func(t *testing.T, out string) {
			var as []map[string]any
			decode(t, out, &as)
			// The three that opened are closed.
			if len(as) != 3 {
				t.Errorf("closed alerts %v", as)
			}
			for _, a := range as {
				if a["status"] != "CLOSED" || a["resolved"] == nil {
					t.Errorf("closed alerts %v", as)
				}
			}
		}},
		{name: "events record both transitions", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.Events(ctx, "CLUSTER_ENCRYPTION_AT_REST_DISABLED", 0)
		}, check: func(t *testing.T, out string) {
			if r := rows(out); len(r) != 2 || r[1][2] != "Cluster0" {
				t.Errorf("events:\n%s", out)
			}
		}},
		{name: "rotation requested", cmd: rotate, check: func(t *testing.T, out string) {
			mustContain(t, "rotate", out, "master key rotation of cluster Cluster0 requested at 20")
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) {
			if s.before != nil {
				s.before(t)
			}
			o := e.opts()
			o.JSON = s.json
			r := run(t, o, s.cmd)
			if s.wantErr == "" && r.err != nil {
				t.Fatalf("failed: %s", r.text())
			}
			if s.wantErr != "" && !strings.Contains(r.text(), s.wantErr) {
				t.Fatalf("failure %q, want %q", r.text(), s.wantErr)
			}
			var ke *ctl.KeyError
			if isKeyErr := errors.As(r.err, &ke); isKeyErr != strings.HasPrefix(s.wantErr, "error: the customer master key") {
				t.Errorf("error %T %v: a *ctl.KeyError is for an invalid key only", r.err, r.err)
			}
			if s.check != nil {
				s.check(t, r.out)
			}
		}) {
			return // later steps depend on this one
		}
	}
}

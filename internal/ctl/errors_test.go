package ctl_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/ctl"
)

// TestFailures checks that refusals print as "error: CODE: detail" with the
// API's own code and detail, that authentication failures say what to
// check, and that bad input is refused before anything is sent.
func TestFailures(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ro, err := e.svc.CreateAPIKey(ctx, "read only", []controlplane.RoleAssignment{{RoleName: controlplane.RoleGroupReadOnly, GroupID: e.gid}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateCluster(ctx, "fixture", e.gid, controlplane.Cluster{Name: "Plain"}); err != nil {
		t.Fatal(err)
	}
	wrongKey := func(o *ctl.Options) { o.PrivateKeyFile = writeFile(t, "wrong", strings.Repeat("0", len(e.priv))) }
	unknownKey := func(o *ctl.Options) { o.PublicKey = "nosuchkey" }
	readOnly := func(o *ctl.Options) { o.PublicKey, o.PrivateKeyFile = ro.PublicKey, writeFile(t, "ro", ro.PrivateKey) }
	interval := 500 * time.Millisecond
	day := 9

	tests := []struct {
		name string
		opts []func(*ctl.Options)
		cmd  func(context.Context, *ctl.App) error
		// want is the failure text's first line, or its prefix when it ends in "…".
		want string
		// status is the HTTP status of an API error (0: not an API error).
		status   int
		wantHint string
	}{
		{name: "set-provider without its configuration", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.ClusterSetProvider(ctx, "Cluster0", "aws")
		}, want: "error: CANNOT_CHANGE_ENCRYPTION_AT_REST_PROVIDER: Cannot change the encryption at rest provider from LOCAL to AWS; set it to NONE first.", status: 409},
		{name: "set-provider to an unconfigured provider", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.ClusterSetProvider(ctx, "Plain", "AWS")
		}, want: "error: ENCRYPTION_AT_REST_NOT_ENABLED: Encryption at rest with AWS is not enabled for group " + e.gid + ".", status: 400},
		{name: "create with an unconfigured provider", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.ClusterCreate(ctx, "Cluster1", "aws")
		}, want: "error: ENCRYPTION_AT_REST_NOT_ENABLED: Encryption at rest with AWS is not enabled for group " + e.gid + ".", status: 400},
		{name: "invalid cluster name", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.ClusterCreate(ctx, "bad name!", "")
		}, want: "error: CLUSTER_NAME_INVALID: The cluster name bad name! is invalid.", status: 400},
		{name: "unknown cluster", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.Nodes(ctx, "nosuch")
		}, want: "error: CLUSTER_NOT_FOUND: No cluster named nosuch exists in group.", status: 404},
		{name: "unknown project name", opts: []func(*ctl.Options){group("NoSuchProject")}, cmd: func(ctx context.Context, a *ctl.App) error {
			return a.Clusters(ctx)
		}, want: `error: GROUP_NAME_NOT_FOUND: No group with name "NoSuchProject" exists.`, status: 404},
		{name: "disable while a cluster uses the key", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.EARDisable(ctx)
		}, want: "error: CANNOT_DISABLE_ENCRYPTION_AT_REST: Encryption at rest cannot be disabled while it is enabled on clusters Cluster0.", status: 409},
		{name: "settings out of range", cmd: func(ctx context.Context, a *ctl.App) error {
			d := 2 * time.Hour * 24
			return a.EARSettings(ctx, &d, nil)
		}, want: "error: INVALID_ATTRIBUTE: Invalid attribute settings.validityCheckIntervalSeconds specified: must be between 1 and 86400", status: 400},
		{name: "maintenance day out of range", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.MaintenanceSet(ctx, &day, nil)
		}, want: "error: INVALID_ATTRIBUTE: Invalid attribute dayOfWeek specified: must be 1 (Sunday) to 7 (Saturday)", status: 400},
		{name: "unknown alert status", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.Alerts(ctx, "bogus")
		}, want: "error: INVALID_QUERY_PARAMETER: Invalid query parameter status specified.", status: 400},
		{name: "unknown provider object", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.EARSet(ctx, "nosuchKms", []string{"keyId=x"}, nil)
		}, want: "error: INVALID_ATTRIBUTE: Invalid attribute nosuchKms specified: not an encryption at rest provider", status: 400},
		{name: "wrong private key", opts: []func(*ctl.Options){wrongKey}, cmd: func(ctx context.Context, a *ctl.App) error {
			return a.Projects(ctx)
		}, want: "error: UNAUTHORIZED: You are not authorized for this resource.", status: 401,
			wantHint: "rejected API key \"" + e.pub + "\" (HTTP 401): the public key is unknown or the private key does not match it; check --public-key and --private-key-file"},
		{name: "unknown public key", opts: []func(*ctl.Options){unknownKey}, cmd: func(ctx context.Context, a *ctl.App) error {
			return a.EARShow(ctx)
		}, want: "error: UNAUTHORIZED: You are not authorized for this resource.", status: 401, wantHint: `rejected API key "nosuchkey" (HTTP 401)`},
		{name: "read-only key rotates", opts: []func(*ctl.Options){readOnly}, cmd: func(ctx context.Context, a *ctl.App) error {
			return a.Rotate(ctx, "Cluster0")
		}, want: "error: USER_UNAUTHORIZED: Current user is not authorized to perform this action.", status: 403, wantHint: "lacks the role"},
		{name: "sub-second check interval", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.EARSettings(ctx, &interval, nil)
		}, want: "error: --check-interval 500ms: want a positive whole number of seconds"},
		{name: "settings without a change", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.EARSettings(ctx, nil, nil)
		}, want: "error: nothing to change: give --check-interval and/or --rotation-days"},
		{name: "credential given with --set", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.EARSet(ctx, "awsKms", []string{"secretAccessKey=hunter2hunter2"}, nil)
		}, want: "error: --set secretAccessKey=…: secretAccessKey is a credential; pass it with --secret-file secretAccessKey=PATH so it stays out of shell history"},
		{name: "malformed --set", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.EARSet(ctx, "local", []string{"keyFile"}, nil)
		}, want: `error: --set "keyFile": want NAME=VALUE`},
		{name: "negative event limit", cmd: func(ctx context.Context, a *ctl.App) error {
			return a.Events(ctx, "", -1)
		}, want: "error: --limit -1: want 0 (all) or more"},
		{name: "nothing listening", opts: []func(*ctl.Options){func(o *ctl.Options) { o.APIURL = "http://127.0.0.1:1" }},
			cmd:  func(ctx context.Context, a *ctl.App) error { return a.Projects(ctx) },
			want: "error: cannot reach the admin API at http://127.0.0.1:1 (is the control plane running?): …"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, e.opts(tc.opts...), tc.cmd)
			if r.err == nil {
				t.Fatalf("succeeded, printing:\n%s", r.out)
			}
			first, hint, _ := strings.Cut(r.text(), "\n")
			if p, ok := strings.CutSuffix(tc.want, "…"); ok {
				if !strings.HasPrefix(first, p) {
					t.Errorf("got  %q\nwant %q…", first, p)
				}
			} else if first != tc.want {
				t.Errorf("got  %q\nwant %q", first, tc.want)
			}
			var ae *ctl.APIError
			if isAPI := errors.As(r.err, &ae); isAPI != (tc.status != 0) || isAPI && ae.Status != tc.status {
				t.Errorf("error %#v, want an APIError with status %d", r.err, tc.status)
			}
			if !strings.Contains(hint, tc.wantHint) || (tc.wantHint == "") != (hint == "") {
				t.Errorf("hint %q, want %q", hint, tc.wantHint)
			}
			if r.out != "" {
				t.Errorf("a failure printed to stdout:\n%s", r.out)
			}
		})
	}
}

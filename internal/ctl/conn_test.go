package ctl_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/internal/ctl"
)

// writeUp writes DIR/up.json as `cmkdb up` does.
func (e *env) writeUp(t *testing.T, groupID string) string {
	t.Helper()
	dir := t.TempDir()
	b, _ := json.Marshal(map[string]any{"connectionString": "mongodb://127.0.0.1:27017", "apiUrl": e.url,
		"apiPublicKey": e.pub, "apiPrivateKey": e.priv, "groupId": groupID, "cluster": "Cluster0"})
	if err := os.WriteFile(filepath.Join(dir, "up.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestConnection covers how ctl finds the API, the key and the project.
func TestConnection(t *testing.T) {
	e := newEnv(t)
	g1, err := e.svc.CreateGroup(context.Background(), "fixture", "Project1", "")
	if err != nil {
		t.Fatal(err)
	}
	upDir := e.writeUp(t, e.gid)
	upNoGroup := e.writeUp(t, "")
	showProject := func(ctx context.Context, a *ctl.App) error { return a.EARShow(ctx) }

	tests := []struct {
		name        string
		opts        ctl.Options
		wantProject string // the project ear show names
		wantErr     string
	}{
		{name: "up.json", opts: ctl.Options{Dir: upDir}, wantProject: "Project0 (" + e.gid + ")"},
		{name: "up.json, another project by name", opts: ctl.Options{Dir: upDir, Group: "Project1"}, wantProject: "Project1 (" + g1.ID + ")"},
		{name: "up.json, another project by id", opts: ctl.Options{Dir: upDir, Group: g1.ID}, wantProject: "Project1 (" + g1.ID + ")"},
		{name: "up.json key, flags' API", opts: ctl.Options{Dir: upDir, PublicKey: e.pub, PrivateKeyFile: e.privFile}, wantProject: "Project0"},
		{name: "flags, project by name", opts: e.opts(group("Project0")), wantProject: "Project0 (" + e.gid + ")"},
		{name: "flags, two projects and no --group", opts: e.opts(),
			wantErr: "error: the API key can read 2 projects (Project0, Project1): name one with --group"},
		{name: "up.json without a project", opts: ctl.Options{Dir: upNoGroup},
			wantErr: "error: the API key can read 2 projects (Project0, Project1): name one with --group"},
		{name: "no up.json", opts: ctl.Options{Dir: t.TempDir()}, wantErr: "up.json does not exist: run `cmkdb up`"},
		{name: "--api-url without a key", opts: ctl.Options{APIURL: e.url},
			wantErr: "error: --api-url needs --public-key and --private-key-file"},
		{name: "--public-key alone", opts: ctl.Options{Dir: upDir, PublicKey: e.pub},
			wantErr: "error: --public-key and --private-key-file go together"},
		{name: "missing private key file", opts: e.opts(func(o *ctl.Options) { o.PrivateKeyFile = filepath.Join(t.TempDir(), "nope") }),
			wantErr: "error: --private-key-file: open "},
		{name: "empty private key file", opts: e.opts(func(o *ctl.Options) { o.PrivateKeyFile = writeFile(t, "empty", "\n") }),
			wantErr: "is empty"},
		{name: "credentials in the URL", opts: e.opts(func(o *ctl.Options) { o.APIURL = strings.Replace(e.url, "http://", "http://u:p@", 1) }),
			wantErr: "error: the API URL must not carry credentials"},
		{name: "URL with the version prefix", opts: e.opts(group("Project0"), func(o *ctl.Options) { o.APIURL = e.url + "/api/atlas/v2/" }),
			wantProject: "Project0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.opts, showProject)
			if tc.wantErr != "" {
				if !strings.Contains(r.text(), tc.wantErr) {
					t.Fatalf("failure %q, want %q", r.text(), tc.wantErr)
				}
				return
			}
			if r.err != nil {
				t.Fatalf("failed: %s", r.text())
			}
			if got := field(t, r.out, "project"); !strings.HasPrefix(got, tc.wantProject) {
				t.Errorf("project %q, want %q", got, tc.wantProject)
			}
		})
	}
}

// TestPrivateKeyFileMode warns about a key file others can read.
func TestPrivateKeyFileMode(t *testing.T) {
	e := newEnv(t)
	p := writeFile(t, "open-key", e.priv)
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, e.opts(func(o *ctl.Options) { o.PrivateKeyFile = p }), func(ctx context.Context, a *ctl.App) error { return a.Projects(ctx) })
	if r.err != nil {
		t.Fatal(r.text())
	}
	mustContain(t, "stderr", r.errOut, "is readable by other users", "chmod 600")
}

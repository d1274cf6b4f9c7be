package ctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/atlasapi"
	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/ctl"
	"github.com/cmkdb/cmkdb/internal/kms/local"
)

// env is a real control plane behind the real admin API, holding project
// Project0 whose provider is a local key file, and cluster Cluster0 (LOCAL)
// with one node that has reported itself.
type env struct {
	t        *testing.T
	svc      *controlplane.Service
	url      string
	pub      string
	priv     string
	privFile string
	keyFile  string // the project's local CMK, in the allowed provider directory
	gid      string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	keyDir := t.TempDir()
	svc, err := controlplane.Open(ctx, controlplane.Options{Dir: t.TempDir(), MinCheckInterval: time.Second,
		ProviderPaths: []string{keyDir}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("controlplane.Open: %v", err)
	}
	srv := httptest.NewServer(atlasapi.New(svc, atlasapi.Options{Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(func() {
		srv.Close()
		if err := svc.Close(); err != nil {
			t.Errorf("svc.Close: %v", err)
		}
	})
	k, err := svc.CreateAPIKey(ctx, "ctl test", []controlplane.RoleAssignment{{RoleName: controlplane.RoleOrgOwner}})
	if err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	e := &env{t: t, svc: svc, url: srv.URL, pub: k.PublicKey, priv: k.PrivateKey}
	e.privFile = writeFile(t, "api-private-key", k.PrivateKey+"\n")
	g, err := svc.CreateGroup(ctx, "fixture", "Project0", "")
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	e.gid = g.ID
	e.keyFile = filepath.Join(keyDir, "cmk.json")
	if _, err := local.Create(e.keyFile); err != nil {
		t.Fatalf("local.Create: %v", err)
	}
	patch, err := controlplane.ParseEARPatch([]byte(`{"local":{"enabled":true,"keyFile":` + quote(e.keyFile) + `}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PatchEncryptionAtRest(ctx, "fixture", g.ID, patch); err != nil {
		t.Fatalf("configuring the local key: %v", err)
	}
	if _, err := svc.CreateCluster(ctx, "fixture", g.ID, controlplane.Cluster{Name: "Cluster0", EncryptionAtRestProvider: controlplane.ProviderLocal}); err != nil {
		t.Fatalf("CreateCluster: %v", err)
	}
	// A node reports itself as the node agent would through the key service.
	info, err := local.Inspect(e.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.NodeReport(controlplane.NodeID{GroupID: g.ID, Cluster: "Cluster0", Name: "node0"}, controlplane.NodeReport{
		Address: "127.0.0.1:27017", State: "AVAILABLE", MasterKeyVersion: 1,
		MasterKeyCreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), CMK: info.Key}); err != nil {
		t.Fatalf("NodeReport: %v", err)
	}
	return e
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// writeFile writes a mode 0600 file in a fresh directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// opts are the connection options of the fixture's key; more adjusts them.
func (e *env) opts(more ...func(*ctl.Options)) ctl.Options {
	o := ctl.Options{APIURL: e.url, PublicKey: e.pub, PrivateKeyFile: e.privFile}
	for _, f := range more {
		f(&o)
	}
	return o
}

func asJSON(o *ctl.Options) { o.JSON = true }

func group(g string) func(*ctl.Options) { return func(o *ctl.Options) { o.Group = g } }

// result is what one command printed and returned.
type result struct {
	out, errOut string
	err         error
}

// text is the failure as the command line shows it ("" on success).
func (r result) text() string {
	if r.err == nil {
		return ""
	}
	return ctl.ErrorText(r.err)
}

// run connects with o and runs one command.
func run(t *testing.T, o ctl.Options, cmd func(context.Context, *ctl.App) error) result {
	t.Helper()
	var out, errOut bytes.Buffer
	o.Stdout, o.Stderr = &out, &errOut
	a, err := ctl.Connect(o)
	if err == nil {
		err = cmd(context.Background(), a)
	}
	return result{out: out.String(), errOut: errOut.String(), err: err}
}

// rows splits a table into its rows' cells.
func rows(out string) [][]string {
	var rs [][]string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rs = append(rs, strings.Fields(l))
	}
	return rs
}

// row returns the first table row whose first cell is first.
func row(t *testing.T, out, first string) []string {
	t.Helper()
	for _, r := range rows(out) {
		if len(r) > 0 && r[0] == first {
			return r
		}
	}
	t.Fatalf("no row %q in:\n%s", first, out)
	return nil
}

// field returns the value of "name:" in a fields listing.
func field(t *testing.T, out, name string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no field %q in:\n%s", name, out)
	return ""
}

// decode decodes --json output into v.
func decode(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s lacks %q:\n%s", what, sub, s)
		}
	}
}

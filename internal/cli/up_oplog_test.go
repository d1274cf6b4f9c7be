package cli

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/oplog"
)

// memberFile is a member's node.json as up writes it, before the oplog
// flags are applied.
func memberFile(dir string) *config.Config {
	return &config.Config{Dir: dir, KMS: config.KMS{Provider: "controlplane", ControlPlane: &config.ControlPlaneKMS{
		URL: "https://127.0.0.1:1", CAFile: "/ca", CertFile: "/c", KeyFile: "/k", GroupID: "g", Cluster: "Cluster0"}},
		Replication: &config.Replication{SetName: "Cluster0", Project: "g", Me: "m0", CertFile: "/c", KeyFile: "/k", CAFile: "/ca",
			Members: []config.ReplMember{{Name: "m0", Host: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}}}}
}

// TestOplogFlagsReachReplConfig follows the flags the way a member's
// limits travel: up's command line, written into the member's node.json,
// read back by the member process, turned into repl.Config.Oplog.
func TestOplogFlagsReachReplConfig(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want oplog.Limits
	}{
		{"none: defaults", nil, oplog.Limits{}},
		{"size", []string{"--oplog-size-mb", "50"}, oplog.Limits{MaxBytes: 50 << 20}},
		{"fractional size", []string{"--oplog-size-mb", "1.5"}, oplog.Limits{MaxBytes: 3 << 19}},
		{"retention", []string{"--oplog-retention-hours", "1.5"}, oplog.Limits{Retention: 90 * time.Minute}},
		{"both", []string{"--oplog-size-mb=2048", "--oplog-retention-hours=72"}, oplog.Limits{MaxBytes: 2048 << 20, Retention: 72 * time.Hour}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var o oplogFlags
			fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
			o.register(fs)
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			o.seen(fs)
			if err := o.check(3); err != nil {
				t.Fatal(err)
			}
			file := memberFile(t.TempDir())
			o.apply(file.Replication)
			if err := writeMemberConfig(file); err != nil {
				t.Fatal(err)
			}
			back, err := config.Load(filepath.Join(file.Dir, "node.json"))
			if err != nil {
				t.Fatal(err)
			}
			got := replConfig(back.Replication, slog.Default()).Oplog
			if got != c.want {
				t.Fatalf("repl.Config.Oplog = %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestOplogFlagsKeepFile: a later run without the flags leaves the limits
// node.json holds (a user's edit, or an earlier run's flags).
func TestOplogFlagsKeepFile(t *testing.T) {
	var o oplogFlags
	fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
	o.register(fs)
	if err := fs.Parse([]string{"--oplog-retention-hours", "2"}); err != nil {
		t.Fatal(err)
	}
	o.seen(fs)
	r := memberFile("/d").Replication
	r.OplogSizeMB, r.OplogRetentionHours = 300, 48
	o.apply(r)
	if r.OplogSizeMB != 300 || r.OplogRetentionHours != 2 {
		t.Fatalf("after --oplog-retention-hours 2: %g MB, %g h; want 300 MB (kept), 2 h", r.OplogSizeMB, r.OplogRetentionHours)
	}
}

// TestUpOplogFlagsRefused runs the real up command: values out of range,
// and the flags on a single node (which keeps no oplog), are refused
// before anything starts. Its data directory holds both a single node's
// keystore and a replica set's members, which up refuses right after the
// oplog check: were the check unwired, the test fails on that refusal
// instead of starting a cluster (whose member processes would be this
// test binary).
func TestUpOplogFlagsRefused(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string
	}{
		"single node":      {[]string{"--oplog-size-mb", "100"}, "no oplog"},
		"zero size":        {[]string{"--nodes", "3", "--oplog-size-mb", "0"}, "must be positive"},
		"negative size":    {[]string{"--nodes", "3", "--oplog-size-mb", "-5"}, "out of range"},
		"absurd size":      {[]string{"--nodes", "3", "--oplog-size-mb", "9999999999"}, "out of range"},
		"below a megabyte": {[]string{"--nodes", "3", "--oplog-size-mb", "0.5"}, "out of range"},
		"zero retention":   {[]string{"--nodes", "3", "--oplog-retention-hours", "0"}, "must be positive"},
		"negative hours":   {[]string{"--nodes", "3", "--oplog-retention-hours", "-1"}, "out of range"},
		"seconds as hours": {[]string{"--nodes", "3", "--oplog-retention-hours", "86400"}, "out of range"},
		"NaN hours":        {[]string{"--nodes", "3", "--oplog-retention-hours", "NaN"}, "out of range"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for _, d := range []string{node.Layout{Dir: dir}.KeystoreDir(), membersDir(dir)} {
				if err := os.MkdirAll(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			cmd := newUpCmd(io.Discard)
			cmd.SetArgs(append([]string{"--dir", dir, "--port", "0", "--api-port", "0"}, c.args...))
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("up %v: %v, want an error saying %q", c.args, err, c.want)
			}
		})
	}
}

// TestSaveOplogLimits: replSetResizeOplog's new limits land in the
// member's node.json, and a restart reads them back.
func TestSaveOplogLimits(t *testing.T) {
	file := memberFile(t.TempDir())
	if err := writeMemberConfig(file); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(file.Dir, "node.json")
	want := oplog.Limits{MaxBytes: 1000 << 20, Retention: 36 * time.Hour}
	if err := saveOplogLimits(path, want); err != nil {
		t.Fatal(err)
	}
	back, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := replConfig(back.Replication, slog.Default()).Oplog; got != want {
		t.Fatalf("after saving %+v, node.json gives %+v", want, got)
	}
}

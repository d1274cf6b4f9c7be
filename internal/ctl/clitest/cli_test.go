package clitest

import (
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
	"github.com/cmkdb/cmkdb/internal/cli"
	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/kmsserver/awstest"
	"github.com/cmkdb/cmkdb/internal/testenv"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCtlCommandLine sets up what `cmkdb up` leaves behind — a control
// plane whose project uses a local key file, a cluster on it, and up.json —
// and runs command lines against it in order.
func TestCtlCommandLine(t *testing.T) {
	ctx := context.Background()
	keyDir := t.TempDir()
	svc, err := controlplane.Open(ctx, controlplane.Options{Dir: t.TempDir(), MinCheckInterval: time.Second,
		ProviderPaths: []string{keyDir}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(atlasapi.New(svc, atlasapi.Options{Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(func() { srv.Close(); _ = svc.Close() })
	key, err := svc.CreateAPIKey(ctx, "ctl", []controlplane.RoleAssignment{{RoleName: controlplane.RoleOrgOwner}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := svc.CreateGroup(ctx, "test", "Project0", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateGroup(ctx, "test", "Project1", ""); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(keyDir, "cmk.json")
	if _, err := local.Create(keyFile); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	up, _ := json.Marshal(map[string]string{"apiUrl": srv.URL, "apiPublicKey": key.PublicKey, "apiPrivateKey": key.PrivateKey, "groupId": g.ID})
	if err := os.WriteFile(filepath.Join(dir, "up.json"), up, 0o600); err != nil {
		t.Fatal(err)
	}
	const access, secret = "AKIACMKDBCLITEST0001", "cli-test-secret-access-key-0123456789abcdef"
	kms := awstest.NewServer(awstest.Options{Credentials: map[string]string{access: secret}})
	t.Cleanup(kms.Close)
	awsKey, _ := kms.CreateSymmetricKey()
	secretFile := writeFile(t, "aws-secret", secret+"\n")
	wrongKeyFile := writeFile(t, "wrong-key", "not-the-private-key")

	ctlArgs := func(args ...string) []string {
		return append([]string{"--log-level", "error", "ctl", "--dir", dir}, args...)
	}
	steps := []struct {
		name   string
		before func(t *testing.T)
		args   []string
		code   int
		stdout []string // substrings
		stderr []string
	}{
		{name: "configure the local key", args: ctlArgs("ear", "set", "local", "--set", "keyFile="+keyFile),
			stdout: []string{"provider:", "local (clusters: LOCAL)", "validity:", "VALID", "local.keyFile:"}},
		{name: "create a cluster on it", args: ctlArgs("clusters", "create", "Cluster0", "--provider", "LOCAL"),
			stdout: []string{"Cluster0", "LOCAL", "AVAILABLE"}},
		{name: "create a cluster without", args: ctlArgs("clusters", "create", "Plain"), stdout: []string{"Plain", "NONE", "AVAILABLE"}},
		{name: "set-provider to an unconfigured provider", args: ctlArgs("clusters", "set-provider", "Plain", "AWS"), code: 1,
			stderr: []string{"error: ENCRYPTION_AT_REST_NOT_ENABLED: Encryption at rest with AWS is not enabled for group " + g.ID}},
		{name: "settings", args: ctlArgs("ear", "settings", "--check-interval", "30s", "--rotation-days", "60"),
			stdout: []string{"check interval:", "30s", "rotation days:", "60"}},
		{name: "key disabled: validate fails", before: func(t *testing.T) {
			if _, err := local.Disable(keyFile); err != nil {
				t.Fatal(err)
			}
		}, args: ctlArgs("ear", "validate"), code: 1, stdout: []string{"INVALID", "KEY_DISABLED"},
			stderr: []string{"error: the customer master key is INVALID (KEY_DISABLED)"}},
		{name: "cluster disabled", args: ctlArgs("--json", "clusters"), stdout: []string{`"state": "DISABLED"`, "KEY_DISABLED"}},
		{name: "key enabled: validate succeeds", before: func(t *testing.T) {
			if _, err := local.Enable(keyFile); err != nil {
				t.Fatal(err)
			}
		}, args: ctlArgs("ear", "validate"), stdout: []string{"validity:", "VALID"}},
		{name: "cluster available", args: ctlArgs("clusters"), stdout: []string{"Cluster0  LOCAL     AVAILABLE"}},
		{name: "rotate", args: ctlArgs("rotate", "Cluster0"), stdout: []string{"master key rotation of cluster Cluster0 requested"}},
		{name: "events", args: ctlArgs("events", "--type", "LOCAL_ENCRYPTION_KEY_INVALID", "--limit", "1"),
			stdout: []string{"LOCAL_ENCRYPTION_KEY_INVALID", "KEY_DISABLED"}},
		{name: "maintenance", args: ctlArgs("maintenance", "set", "--day", "2", "--hour", "4"), stdout: []string{"2 (Monday)"}},
		{name: "aws with a secret file", args: ctlArgs("--group", "Project1", "ear", "set", "awsKms",
			"--set", "customerMasterKeyID="+awsKey, "--set", "region=US_EAST_1", "--set", "accessKeyID="+access,
			"--set", "endpoint="+kms.URL, "--secret-file", "secretAccessKey="+secretFile),
			stdout: []string{"awsKms (clusters: AWS)", "awsKms.customerMasterKeyID:", awsKey}},
		{name: "aws, json", args: ctlArgs("--group", "Project1", "--json", "ear"), stdout: []string{`"valid": true`}},
		{name: "secret on the command line refused", args: ctlArgs("--group", "Project1", "ear", "set", "awsKms", "--set", "secretAccessKey=x"),
			code: 1, stderr: []string{"secretAccessKey is a credential; pass it with --secret-file"}},
		{name: "wrong private key", args: []string{"ctl", "--api-url", srv.URL, "--public-key", key.PublicKey,
			"--private-key-file", wrongKeyFile, "projects"}, code: 1,
			stderr: []string{"error: UNAUTHORIZED: You are not authorized for this resource.", "HTTP 401", "check --public-key and --private-key-file"}},
		{name: "projects", args: []string{"ctl", "--api-url", srv.URL, "--public-key", key.PublicKey,
			"--private-key-file", writeFile(t, "key", key.PrivateKey), "projects"}, stdout: []string{"Project0", "Project1"}},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) {
			if s.before != nil {
				s.before(t)
			}
			var stdout, stderr testenv.SyncBuffer
			code := cli.Execute(ctx, s.args, &stdout, &stderr)
			out, errOut := stdout.String(), stderr.String()
			if code != s.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, s.code, out, errOut)
			}
			for _, want := range s.stdout {
				if !strings.Contains(out, want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			for _, want := range s.stderr {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
			if strings.Contains(out+errOut, secret) {
				t.Errorf("the secret access key was printed:\n%s%s", out, errOut)
			}
			if s.code == 0 && errOut != "" {
				t.Errorf("stderr on success:\n%s", errOut)
			}
		}) {
			return
		}
	}
}

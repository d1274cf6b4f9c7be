package ctl_test

import (
	"context"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/internal/ctl"
	"github.com/cmkdb/cmkdb/internal/kmsserver/awstest"
)

// TestEARSetSecretFile configures awsKms with its secret access key read
// from a file, on a project of its own, and checks that no output — table,
// --json, or the error of a rejected configuration — ever shows the secret.
func TestEARSetSecretFile(t *testing.T) {
	e := newEnv(t)
	const access, secret = "AKIACMKDBCTLTEST0001", "ctl-test-secret-access-key-0123456789abcdef"
	kms := awstest.NewServer(awstest.Options{Credentials: map[string]string{access: secret}})
	t.Cleanup(kms.Close)
	keyID, _ := kms.CreateSymmetricKey()
	if _, err := e.svc.CreateGroup(context.Background(), "fixture", "Project1", ""); err != nil {
		t.Fatal(err)
	}
	secretFile := writeFile(t, "aws-secret", secret+"\n")
	wrongSecret := "ctl-test-WRONG-secret-0123456789abcdefghij"
	wrongFile := writeFile(t, "aws-wrong", wrongSecret)
	sets := []string{"customerMasterKeyID=" + keyID, "region=US_EAST_1", "accessKeyID=" + access, "endpoint=" + kms.URL}
	set := func(file string) func(context.Context, *ctl.App) error {
		return func(ctx context.Context, a *ctl.App) error {
			return a.EARSet(ctx, "awsKms", sets, []string{"secretAccessKey=" + file})
		}
	}

	tests := []struct {
		name    string
		json    bool
		cmd     func(context.Context, *ctl.App) error
		wantErr string
		check   func(t *testing.T, out string)
	}{
		{name: "wrong secret refused by the KMS", cmd: set(wrongFile), wantErr: "error: INVALID_AWS_CREDENTIALS: "},
		{name: "set", cmd: set(secretFile), check: func(t *testing.T, out string) {
			want := map[string]string{"project": "Project1", "provider": "awsKms (clusters: AWS)", "valid": "true",
				"validity": "VALID", "awsKms.customerMasterKeyID": keyID, "awsKms.accessKeyID": access, "awsKms.region": "US_EAST_1"}
			for k, v := range want {
				if got := field(t, out, k); !strings.HasPrefix(got, v) {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if !strings.Contains(field(t, out, "key"), keyID) {
				t.Errorf("key does not name %s:\n%s", keyID, out)
			}
		}},
		{name: "set again, json", json: true, cmd: set(secretFile), check: func(t *testing.T, out string) {
			var ear struct {
				AWS map[string]any `json:"awsKms"`
			}
			decode(t, out, &ear)
			if ear.AWS["enabled"] != true || ear.AWS["valid"] != true || ear.AWS["customerMasterKeyID"] != keyID {
				t.Errorf("awsKms %v", ear.AWS)
			}
			if _, ok := ear.AWS["secretAccessKey"]; ok {
				t.Errorf("secretAccessKey present: %v", ear.AWS)
			}
		}},
		{name: "show", cmd: func(ctx context.Context, a *ctl.App) error { return a.EARShow(ctx) }},
		{name: "show, json", json: true, cmd: func(ctx context.Context, a *ctl.App) error { return a.EARShow(ctx) }},
		{name: "settings", cmd: func(ctx context.Context, a *ctl.App) error {
			days := 30
			return a.EARSettings(ctx, nil, &days)
		}, check: func(t *testing.T, out string) {
			if field(t, out, "rotation days") != "30" || field(t, out, "check interval") != "15m0s" {
				t.Errorf("settings:\n%s", out)
			}
		}},
		{name: "events", cmd: func(ctx context.Context, a *ctl.App) error { return a.Events(ctx, "", 0) }},
		{name: "disable", cmd: func(ctx context.Context, a *ctl.App) error { return a.EARDisable(ctx) }, check: func(t *testing.T, out string) {
			if field(t, out, "provider") != "none (customer key management is off)" {
				t.Errorf("disable:\n%s", out)
			}
		}},
		{name: "disable again", cmd: func(ctx context.Context, a *ctl.App) error { return a.EARDisable(ctx) }, check: func(t *testing.T, out string) {
			mustContain(t, "disable", out, "customer key management is already off")
		}},
		{name: "validate with nothing to validate", cmd: func(ctx context.Context, a *ctl.App) error { return a.EARValidate(ctx) },
			wantErr: "error: customer key management is off: there is no key to validate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := e.opts(group("Project1"))
			o.JSON = tc.json
			r := run(t, o, tc.cmd)
			if tc.wantErr == "" && r.err != nil {
				t.Fatalf("failed: %s", r.text())
			}
			if !strings.HasPrefix(r.text(), tc.wantErr) {
				t.Fatalf("failure %q, want %q", r.text(), tc.wantErr)
			}
			for _, s := range []string{secret, wrongSecret} {
				for what, text := range map[string]string{"stdout": r.out, "stderr": r.errOut, "error": r.text()} {
					if strings.Contains(text, s) {
						t.Errorf("%s shows a secret:\n%s", what, text)
					}
				}
			}
			if tc.check != nil {
				tc.check(t, r.out)
			}
		})
	}
}

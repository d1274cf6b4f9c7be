package devkms

import (
	"context"
	"net/http"
	"testing"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/aws"
	"github.com/cmkdb/cmkdb/internal/kms/vault"
)

func post(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
}

// TestAdminSwitchesWhatTheSDKSees drives each dev server's admin API and
// checks that a provider talking to it through the official SDK sees the
// change with the right classification.
func TestAdminSwitchesWhatTheSDKSees(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		provider string
		open     func(Info) (kms.Provider, error)
		steps    []struct {
			path   string
			reason kms.Reason // "" means VALID
		}
	}{
		{"aws", func(i Info) (kms.Provider, error) {
			s := i.Settings
			return aws.New(aws.Config{Region: s["region"], KeyID: s["keyId"], AccessKeyID: s["accessKeyId"],
				SecretAccessKey: s["secretAccessKey"], Endpoint: i.Endpoint, MaxAttempts: 1})
		}, []struct {
			path   string
			reason kms.Reason
		}{
			{"", ""},
			{"/key/state?value=Disabled", kms.ReasonKeyDisabled},
			{"/key/state?value=Enabled", ""},
			{"/deny?action=kms:Decrypt&on=true", kms.ReasonPermissionDenied},
			{"/deny?action=kms:Decrypt&on=false", ""},
			{"/throttle?on=true", kms.ReasonThrottled},
			{"/throttle?on=false", ""},
			{"/fail5xx?on=true", kms.ReasonServerError},
		}},
		{"vault", func(i Info) (kms.Provider, error) {
			s := i.Settings
			return vault.New(vault.Config{Address: s["address"], Token: s["token"], Mount: s["mount"], Key: s["key"], MaxAttempts: 1})
		}, []struct {
			path   string
			reason kms.Reason
		}{
			{"", ""},
			{"/seal?on=true", kms.ReasonServerError},
			{"/seal?on=false", ""},
			{"/throttle?on=true", kms.ReasonThrottled},
			{"/throttle?on=false", ""},
			{"/token/revoke", kms.ReasonCredentialsRejected},
		}},
	}
	for _, c := range cases {
		t.Run(c.provider, func(t *testing.T) {
			svc, err := Start(c.provider, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			p, err := c.open(svc.Info)
			if err != nil {
				t.Fatal(err)
			}
			for _, step := range c.steps {
				if step.path != "" {
					post(t, svc.Info.AdminURL+step.path)
				}
				st := p.Check(ctx)
				if st.Reason != step.reason || (step.reason == "" && st.Validity != kms.Valid) {
					t.Fatalf("after %q: %v %s (%s), want reason %q", step.path, st.Validity, st.Reason, st.Detail, step.reason)
				}
			}
		})
	}
}

func TestAdminStaysOnLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "10.0.0.1:0", "nonsense"} {
		if svc, err := Start("aws", addr); err == nil {
			svc.Close()
			t.Fatalf("admin API accepted %s", addr)
		}
	}
}

package devkms

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/aws"
	"github.com/cmkdb/cmkdb/internal/kms/azure"
	"github.com/cmkdb/cmkdb/internal/kms/gcp"
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
		{"gcp", openGCP, []struct {
			path   string
			reason kms.Reason
		}{
			{"", ""},
			{"/key/state?value=DISABLED", kms.ReasonKeyDisabled},
			{"/key/state?value=ENABLED", ""},
			{"/key/state?value=destroy-scheduled", kms.ReasonKeyPendingDeletion},
			{"/key/state?value=DESTROYED", kms.ReasonKeyDeleted},
			{"/key/state?value=PENDING_GENERATION", kms.ReasonKeyNotYetActive},
			{"/key/state?value=ENABLED", ""},
			{"/key/rotate", ""},
			{"/key/state?value=DISABLED&version=1", ""}, // not the primary any more
			{"/key/purpose?value=ASYMMETRIC_SIGN", kms.ReasonWrongKeyType},
			{"/key/purpose?value=ENCRYPT_DECRYPT", ""},
			{"/key/hide?on=true", kms.ReasonKeyNotFound},
			{"/key/hide?on=false", ""},
			{"/deny?permission=cloudkms.cryptoKeyVersions.useToDecrypt&on=true", kms.ReasonPermissionDenied},
			{"/deny?permission=cloudkms.cryptoKeyVersions.useToDecrypt&on=false", ""},
			{"/credentials/disable?on=true", kms.ReasonCredentialsRejected},
			{"/credentials/disable?on=false", ""},
			{"/corrupt?n=5", kms.ReasonServerError},
			{"/corrupt?n=0", ""},
			{"/throttle?on=true", kms.ReasonThrottled},
			{"/throttle?on=false", ""},
			{"/unavailable?on=true", kms.ReasonNetwork},
			{"/unavailable?on=false", ""},
			{"/fail5xx?on=true", kms.ReasonServerError},
		}},
		{"azure", openAzure, []struct {
			path   string
			reason kms.Reason
		}{
			{"", ""},
			{"/key/state?value=disabled", kms.ReasonKeyDisabled},
			{"/key/state?value=expired", kms.ReasonKeyExpired},
			{"/key/state?value=not-yet-active", kms.ReasonKeyNotYetActive},
			{"/key/state?value=deleted", kms.ReasonKeyDeleted},
			{"/key/state?value=enabled", ""},
			{"/key/rotate", ""},
			{"/deny?permission=unwrapKey&on=true", kms.ReasonPermissionDenied},
			{"/deny?permission=unwrapKey&on=false", ""},
			{"/credentials/revoke?on=true", kms.ReasonCredentialsRejected},
			{"/credentials/revoke?on=false", ""},
			{"/throttle?on=true", kms.ReasonThrottled},
			{"/throttle?on=false", ""},
			{"/fail5xx?on=true", kms.ReasonServerError},
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

// openGCP builds the provider from Info exactly as a node configuration
// would: key name, endpoint, credentials file and CA file.
func openGCP(i Info) (kms.Provider, error) {
	s := i.Settings
	creds, err := os.ReadFile(s["credentialsFile"])
	if err != nil {
		return nil, err
	}
	return gcp.New(context.Background(), gcp.Config{KeyName: s["keyName"], CredentialsJSON: creds,
		Endpoint: s["endpoint"], CAFile: s["caFile"], MaxAttempts: 1})
}

// openAzure routes Azure's host names to the dev server, as the "endpoint"
// setting does, and trusts its CA file.
func openAzure(i Info) (kms.Provider, error) {
	s := i.Settings
	ca, err := os.ReadFile(s["caFile"])
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s", s["caFile"])
	}
	addr := strings.TrimPrefix(i.Endpoint, "https://")
	d := &net.Dialer{}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	secret, err := os.ReadFile(s["clientSecretFile"])
	if err != nil {
		return nil, err
	}
	return azure.New(azure.Config{VaultURL: s["vaultUrl"], KeyName: s["keyName"], TenantID: s["tenantId"],
		ClientID: s["clientId"], ClientSecret: strings.TrimSpace(string(secret)), Transport: client, MaxRetries: -1})
}

// The files Info names exist while the service runs and go with it.
func TestInfoFiles(t *testing.T) {
	for provider, keys := range map[string][]string{
		"gcp":   {"credentialsFile", "caFile"},
		"azure": {"clientSecretFile", "caFile"},
	} {
		t.Run(provider, func(t *testing.T) {
			svc, err := Start(provider, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				fi, err := os.Stat(svc.Info.Settings[k])
				if err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s mode %v", k, fi.Mode().Perm())
				}
			}
			svc.Close()
			for _, k := range keys {
				if _, err := os.Stat(svc.Info.Settings[k]); !os.IsNotExist(err) {
					t.Errorf("%s left behind after Close: %v", k, err)
				}
			}
		})
	}
}

func TestAdminRejectsUnknownValues(t *testing.T) {
	for provider, paths := range map[string][]string{
		"gcp":   {"/key/state?value=GONE", "/key/purpose?value=NOPE", "/deny?permission=x&on=true", "/corrupt?n=x"},
		"azure": {"/key/state?value=gone", "/deny?permission=sign&on=true"},
	} {
		svc, err := Start(provider, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			resp, err := http.Post(svc.Info.AdminURL+p, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s %s: %s, want 400", provider, p, resp.Status)
			}
		}
		svc.Close()
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

//go:build unix

package providers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/kmipclient"

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/providers"
	"github.com/cmkdb/cmkdb/internal/kmsserver/awstest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/azuretest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/kmiptest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kmiptest.Stop()
	os.Exit(code)
}

// surfaceCase is one setting that used to be accepted on one surface only:
// the same key configured through a node file and through the control
// plane's encryptionAtRest API.
type surfaceCase struct {
	provider string         // node file name
	node     map[string]any // the node file's block
	object   string         // API object
	api      map[string]any // the API object's attributes
	// shown is an attribute the API must render back as given.
	shown string
	// prove exercises the setting through a provider opened from it; nil
	// means a wrap and unwrap.
	prove func(t *testing.T, p kms.Provider)
}

// TestFormerlyDriftedSettingsOnBothSurfaces: every setting that drifted
// between the node configuration and the API (AWS regions in Atlas's
// spelling, Azure's endpoint and CA, KMIP's previous key ids) is accepted
// and works on both, because both read the provider's own Settings.
func TestFormerlyDriftedSettingsOnBothSurfaces(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string]func(t *testing.T) surfaceCase{
		"aws region in Atlas spelling": func(t *testing.T) surfaceCase {
			const access, secret = "AKIDSURFACE", "aws-surface-secret"
			srv := awstest.NewServer(awstest.Options{Credentials: map[string]string{access: secret}})
			t.Cleanup(srv.Close)
			_, arn := srv.CreateSymmetricKey()
			region := strings.ToUpper(strings.ReplaceAll(srv.Region, "-", "_")) // US_EAST_1
			return surfaceCase{provider: "aws", object: "awsKms", shown: "region",
				node: map[string]any{"region": region, "keyId": arn, "accessKeyId": access,
					"secretAccessKeyFile": file("aws.secret", secret), "endpoint": srv.URL},
				api: map[string]any{"region": region, "customerMasterKeyID": arn, "accessKeyID": access,
					"secretAccessKey": secret, "endpoint": srv.URL}}
		},
		"azure endpoint and caFile": func(t *testing.T) surfaceCase {
			const tenant, client, secret = "72f988bf-86f1-41af-91ab-2d7cd011db47", "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "azure-surface-secret"
			srv := azuretest.NewServer(azuretest.Options{TenantID: tenant, ClientID: client, ClientSecret: secret})
			t.Cleanup(srv.Close)
			srv.CreateRSAKey("cmkdb", 2048)
			ca := file("azure-ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
			return surfaceCase{provider: "azure", object: "azureKeyVault", shown: "endpoint",
				node: map[string]any{"vaultUrl": srv.VaultURL(), "keyName": "cmkdb", "tenantId": tenant, "clientId": client,
					"clientSecretFile": file("azure.secret", secret), "endpoint": srv.Addr(), "caFile": ca},
				api: map[string]any{"azureEnvironment": "AZURE", "clientID": client, "tenantID": tenant, "subscriptionID": "sub",
					"resourceGroupName": "rg", "keyVaultName": "cmkdbtest", "keyIdentifier": srv.VaultURL() + "/keys/cmkdb",
					"secret": secret, "endpoint": srv.Addr(), "caFile": ca}}
		},
		"kmip previousKeyIds": func(t *testing.T) surfaceCase {
			srv := kmiptest.Shared(t)
			prev, cur := kmipKey(t, srv, "surface-prev"), kmipKey(t, srv, "surface-cur")
			base := map[string]any{"address": srv.Addr, "caFile": srv.CAFile, "clientKeyFile": srv.Client.KeyFile}
			node, api := map[string]any{"clientCertFile": srv.Client.CertFile, "keyId": cur, "previousKeyIds": []string{prev}},
				map[string]any{"clientCertificateFile": srv.Client.CertFile, "keyId": cur, "previousKeyIds": prev}
			for k, v := range base {
				node[k], api[k] = v, v
			}
			// A record the previous key wrapped, before the rotation.
			old, err := providers.OpenNode(context.Background(), "kmip", map[string]string{"address": srv.Addr, "caFile": srv.CAFile,
				"clientCertFile": srv.Client.CertFile, "clientKeyFile": srv.Client.KeyFile, "keyId": prev})
			if err != nil {
				t.Fatal(err)
			}
			w, err := old.Wrap(context.Background(), []byte("master key, 32 bytes long......."), []byte("aad"))
			if err != nil {
				t.Fatalf("wrap under the previous key: %v\n%s", err, srv.Log())
			}
			return surfaceCase{provider: "kmip", object: "kmip", shown: "previousKeyIds", node: node, api: api,
				prove: func(t *testing.T, p kms.Provider) {
					got, err := p.Unwrap(context.Background(), w, []byte("aad"))
					if err != nil || !bytes.Equal(got, []byte("master key, 32 bytes long.......")) {
						t.Fatalf("unwrapping the previous key's record: %q, %v", got, err)
					}
				}}
		},
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			c := setup(t)
			t.Run("node file", func(t *testing.T) {
				js, err := json.Marshal(map[string]any{"dir": "/d", "kms": map[string]any{"provider": c.provider, c.provider: c.node}})
				if err != nil {
					t.Fatal(err)
				}
				cfg, err := config.Parse(js)
				if err != nil {
					t.Fatalf("node configuration refused: %v", err)
				}
				p, err := providers.OpenNode(context.Background(), cfg.KMS.Provider, cfg.KMS.Settings)
				if err != nil {
					t.Fatal(err)
				}
				prove(t, c, p)
			})
			t.Run("API", func(t *testing.T) {
				ctx := context.Background()
				allowed := []string{dir}
				if ca, ok := c.api["caFile"].(string); ok {
					allowed = append(allowed, filepath.Dir(ca)) // the KMIP server's certificates
				}
				svc, err := controlplane.Open(ctx, controlplane.Options{Dir: filepath.Join(t.TempDir(), "cp"),
					ProviderPaths: allowed, MinCheckInterval: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { svc.Close() })
				g, err := svc.CreateGroup(ctx, "test", "surfaces", "")
				if err != nil {
					t.Fatal(err)
				}
				obj := map[string]any{"enabled": true}
				for k, v := range c.api {
					obj[k] = v
				}
				body, _ := json.Marshal(map[string]any{c.object: obj})
				patch, err := controlplane.ParseEARPatch(body)
				if err != nil {
					t.Fatalf("API refused the settings: %v", err)
				}
				// The PATCH validates the new configuration against the KMS
				// (a wrap and an unwrap) before storing it.
				out, err := svc.PatchEncryptionAtRest(ctx, "test", g.ID, patch)
				if err != nil {
					t.Fatalf("API configuration: %v", err)
				}
				shown, _ := out[c.object].(map[string]any)
				if shown["valid"] != true || shown[c.shown] != c.api[c.shown] {
					t.Fatalf("API shows %s = %v (valid %v), want %v", c.shown, shown[c.shown], shown["valid"], c.api[c.shown])
				}
				if c.prove == nil {
					return
				}
				// What the control plane stored opens the same provider.
				set, _ := providers.ByObject(c.object)
				values := map[string]string{}
				for k, v := range c.api {
					values[k] = fmt.Sprint(v)
				}
				p, err := providers.Open(ctx, set, values)
				if err != nil {
					t.Fatal(err)
				}
				c.prove(t, p)
			})
		})
	}
}

func prove(t *testing.T, c surfaceCase, p kms.Provider) {
	t.Helper()
	ctx := context.Background()
	if st := p.Check(ctx); st.Validity != kms.Valid {
		t.Fatalf("check: %+v", st)
	}
	w, err := p.Wrap(ctx, []byte("a key"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.Unwrap(ctx, w, []byte("aad")); err != nil || string(got) != "a key" {
		t.Fatalf("unwrap: %q, %v", got, err)
	}
	if c.prove != nil {
		c.prove(t, p)
	}
}

// kmipKey creates and activates an AES-256 key named name on srv and
// returns its unique identifier.
func kmipKey(t *testing.T, srv *kmiptest.Server, name string) string {
	t.Helper()
	admin, err := kmipclient.Dial(srv.Addr, kmipclient.WithRootCAFile(srv.CAFile),
		kmipclient.WithClientCertFiles(srv.Client.CertFile, srv.Client.KeyFile))
	if err != nil {
		t.Fatalf("dial PyKMIP: %v\n%s", err, srv.Log())
	}
	defer admin.Close()
	created, err := admin.Create().AES(256, kmip.CryptographicUsageEncrypt|kmip.CryptographicUsageDecrypt).WithName(name).Exec()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Activate(created.UniqueIdentifier).Exec(); err != nil {
		t.Fatal(err)
	}
	return created.UniqueIdentifier
}

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// TestUpWithEachCloudProvider configures cmkdb up's project for each cloud
// provider through the admin API — its faithful dev server (`cmkdb dev
// kms-server`, reached through the provider's official SDK) — and moves
// Cluster0 onto it: the node is re-encrypted in place online (a new key hierarchy under the new key). Revoking
// the key at the KMS disables the cluster at the next check; restoring it
// and "try again" brings it back with its data.
func TestUpWithEachCloudProvider(t *testing.T) {
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, tc := range []struct {
		provider, object, kind, keyRef string
		revoke, restore, reason        string
		config                         func(k devKMS) map[string]any
	}{
		{"aws", "awsKms", "AWS", "aws", "/key/state?value=Disabled", "/key/state?value=Enabled", "KEY_DISABLED",
			func(k devKMS) map[string]any {
				return map[string]any{"customerMasterKeyID": k.Settings["keyId"], "region": k.Settings["region"],
					"accessKeyID": k.Settings["accessKeyId"], "secretAccessKey": k.Settings["secretAccessKey"], "endpoint": k.Endpoint}
			}},
		{"gcp", "googleCloudKms", "GCP", "gcp", "/key/state?value=DISABLED", "/key/state?value=ENABLED", "KEY_DISABLED",
			func(k devKMS) map[string]any {
				return map[string]any{"keyVersionResourceID": k.Settings["keyName"], "serviceAccountKey": read(k.Settings["credentialsFile"]),
					"endpoint": k.Settings["endpoint"], "caFile": k.Settings["caFile"]}
			}},
		{"azure", "azureKeyVault", "AZURE", "azure", "/key/state?value=disabled", "/key/state?value=enabled", "KEY_DISABLED",
			func(k devKMS) map[string]any {
				return map[string]any{"azureEnvironment": "AZURE", "clientID": k.Settings["clientId"], "tenantID": k.Settings["tenantId"],
					"subscriptionID": "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b", "resourceGroupName": "cmkdb", "keyVaultName": "cmkdbtest",
					"keyIdentifier": k.Settings["vaultUrl"] + "/keys/" + k.Settings["keyName"], "secret": k.Settings["clientSecret"],
					"endpoint": k.Endpoint, "caFile": k.Settings["caFile"]}
			}},
		{"vault", "vaultTransit", "VAULT", "vault", "/key/delete", "/key/restore", "KEY_NOT_FOUND",
			func(k devKMS) map[string]any {
				return map[string]any{"address": k.Settings["address"], "keyName": k.Settings["key"], "mount": k.Settings["mount"],
					"token": k.Settings["token"]}
			}},
	} {
		t.Run(tc.provider, func(t *testing.T) {
			k := startDevKMS(t, tc.provider)
			s := startServer(t, "--key-check-interval", "1s", "--allow-provider-path", os.TempDir())
			api := s.UpAPI()
			gid := s.Info.GroupID
			c := connect(t, s.URI)
			writeLifecycleData(t, c)

			cfg := tc.config(k)
			cfg["enabled"] = true
			api.Call(t, "PATCH", "/groups/"+gid+"/clusters/Cluster0", map[string]any{"encryptionAtRestProvider": "NONE"}, nil)
			waitClusterIdle(t, api, gid, "Cluster0") // re-encrypted in place
			api.Call(t, "PATCH", "/groups/"+gid+"/encryptionAtRest", map[string]any{"local": map[string]any{"enabled": false}}, nil)
			api.Call(t, "PATCH", "/groups/"+gid+"/encryptionAtRest", map[string]any{tc.object: cfg}, nil)
			api.Call(t, "PATCH", "/groups/"+gid+"/clusters/Cluster0", map[string]any{"encryptionAtRestProvider": tc.kind}, nil)
			waitClusterIdle(t, api, gid, "Cluster0")
			e2etest.Eventually(t, stateTimeout, "node master key wrapped by "+tc.provider, func() error {
				if ns := clusterNodes(t, api, gid, "Cluster0"); len(ns) != 1 || ns[0].CMK.Provider != tc.keyRef {
					return fmt.Errorf("nodes: %+v", ns)
				}
				return nil
			})
			var ear map[string]any
			_, raw, err := api.Do("GET", "/groups/"+gid+"/encryptionAtRest", nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{"secretAccessKey", "serviceAccountKey", "\"secret\"", "\"token\"", k.Settings["secretAccessKey"] + "x"} {
				if secret != "x" && strings.Contains(string(raw), secret) {
					t.Fatalf("write-only attribute %s in the resource: %s", secret, raw)
				}
			}
			api.Call(t, "GET", "/groups/"+gid+"/encryptionAtRest", nil, &ear)
			if obj, _ := ear[tc.object].(map[string]any); obj["valid"] != true {
				t.Fatalf("%s not valid: %v", tc.object, ear)
			}

			admin(t, k, tc.revoke)
			e2etest.Eventually(t, stateTimeout, "data commands refused with "+tc.reason, func() error {
				return findRefused(opCtx(t), c, tc.reason)
			})
			admin(t, k, tc.restore)
			api.Call(t, "POST", "/groups/"+gid+"/encryptionAtRest/validate", nil, nil)
			e2etest.Eventually(t, stateTimeout, "data readable after restore + try again", func() error {
				return readAll(opCtx(t), c)
			})
			disconnect(c)
			s.Stop(t)
		})
	}
}

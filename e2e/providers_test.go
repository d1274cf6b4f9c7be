package e2e

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// devKMS runs `cmkdb dev kms-server` and returns what it printed.
type devKMS struct {
	Provider string            `json:"provider"`
	Endpoint string            `json:"endpoint"`
	AdminURL string            `json:"adminUrl"`
	Settings map[string]string `json:"settings"`
}

func startDevKMS(t *testing.T, provider string) devKMS {
	t.Helper()
	cmd := exec.Command(cmkdbBin, "dev", "kms-server", "--provider", provider)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// The server prints one JSON object, then serves.
	var js strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		js.WriteString(sc.Text())
		if sc.Text() == "}" {
			break
		}
	}
	var info devKMS
	if err := json.Unmarshal([]byte(js.String()), &info); err != nil {
		t.Fatalf("dev kms-server output %q: %v", js.String(), err)
	}
	return info
}

func admin(t *testing.T, k devKMS, path string) {
	t.Helper()
	resp, err := http.Post(k.AdminURL+path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("admin %s: %s", path, resp.Status)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestNodeWithCloudProviders runs the real binary as `cmkdb node --config`
// against a faithful AWS KMS and a faithful Vault Transit server (`cmkdb
// dev kms-server`, driven through their official SDKs), and walks the
// lifecycle: the key revoked at the KMS disables the node, restored
// re-enables it with every document intact, and an unreachable KMS
// (throttling, outage) keeps it serving.
func TestNodeWithCloudProviders(t *testing.T) {
	for _, tc := range []struct {
		provider        string
		revoke, restore string
		reason          string
		kms             func(k devKMS, secretFile string) map[string]any
		secret          func(k devKMS) string
	}{
		{"aws", "/key/state?value=Disabled", "/key/state?value=Enabled", "KEY_DISABLED",
			func(k devKMS, f string) map[string]any {
				return map[string]any{"region": k.Settings["region"], "keyId": k.Settings["keyId"],
					"accessKeyId": k.Settings["accessKeyId"], "secretAccessKeyFile": f, "endpoint": k.Endpoint}
			}, func(k devKMS) string { return k.Settings["secretAccessKey"] }},
		{"vault", "/key/delete", "/key/restore", "KEY_NOT_FOUND",
			func(k devKMS, f string) map[string]any {
				return map[string]any{"address": k.Settings["address"], "key": k.Settings["key"], "tokenFile": f}
			}, func(k devKMS) string { return k.Settings["token"] }},
	} {
		t.Run(tc.provider, func(t *testing.T) {
			k := startDevKMS(t, tc.provider)
			dir := t.TempDir()
			secretFile := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(secretFile, []byte(tc.secret(k)), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := map[string]any{"dir": dir, "port": freePort(t), "keyCheckInterval": "1s",
				"kms": map[string]any{"provider": tc.provider, tc.provider: tc.kms(k, secretFile)}}
			cfgFile := filepath.Join(t.TempDir(), "node.json")
			js, _ := json.Marshal(cfg)
			os.WriteFile(cfgFile, js, 0o600)

			s := e2etest.StartCommand(t, cmkdbBin, dir, "node", "--config", cfgFile)
			c := connect(t, s.URI)
			writeLifecycleData(t, c)

			// The KMS is unreachable (throttled): the node keeps serving.
			admin(t, k, "/throttle?on=true")
			waitNodeKMSChecks(t, c, 3) // several checks see the throttled KMS
			if err := readAll(opCtx(t), c); err != nil {
				t.Fatalf("node stopped serving while its KMS was only unreachable: %v", err)
			}
			admin(t, k, "/throttle?on=false")

			// The key is revoked at the KMS: the node disables.
			admin(t, k, tc.revoke)
			e2etest.Eventually(t, stateTimeout, "data refused after revocation", func() error {
				return findRefused(opCtx(t), c, tc.reason)
			})
			operatorCommandsAnswer(t, c, "DISABLED")
			admin(t, k, tc.restore)
			e2etest.Eventually(t, stateTimeout, "data back after restoring the key", func() error {
				return readAll(opCtx(t), c)
			})
			if _, err := c.Database("life").Collection("data").InsertOne(opCtx(t), bson.D{{Key: "after", Value: 1}}); err != nil {
				t.Fatal(err)
			}
			// The secret is in no file the node wrote and not in its output.
			hits, _, _, err := e2etest.FindInTree(dir, []byte(tc.secret(k)))
			if err != nil || len(hits) > 0 {
				t.Fatalf("secret found in %v (%v)", hits, err)
			}
			if strings.Contains(s.Output.String(), tc.secret(k)) {
				t.Fatal("secret in the node's output")
			}
			disconnect(c)
			s.Stop(t)
		})
	}
}

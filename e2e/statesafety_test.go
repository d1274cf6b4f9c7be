package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
	"github.com/cmkdb/cmkdb/internal/testfiles"
)

// TestUpRefusesDamagedControlPlaneState: `cmkdb up` over a control plane
// whose store has one flipped byte in its MANIFEST, or in its WAL, exits
// with an error naming the file, changes nothing in the control plane's
// directory, and creates no new project; with the byte restored it starts
// on the same project, with every acknowledged change.
func TestUpRefusesDamagedControlPlaneState(t *testing.T) {
	for _, kind := range []string{"MANIFEST", ".log"} {
		t.Run(strings.TrimPrefix(kind, "."), func(t *testing.T) {
			dir := t.TempDir()
			s := e2etest.Start(t, cmkdbBin, dir, "--allow-private-webhooks")
			gid := s.Info.GroupID
			api := s.UpAPI()
			var cfg struct {
				ID string `json:"id"`
			}
			api.Call(t, "POST", "/groups/"+gid+"/alertConfigs", map[string]any{
				"eventTypeName": "ENCRYPTION_AT_REST_KMS_NETWORK_ACCESS_DENIED", "enabled": true,
				"notifications": []map[string]any{{"typeName": "WEBHOOK", "webhookUrl": "http://127.0.0.1:9/x"}},
			}, &cfg)
			s.Stop(t)

			storeDir := filepath.Join(dir, "controlplane", "state", "store")
			entries, err := os.ReadDir(storeDir)
			if err != nil {
				t.Fatal(err)
			}
			var target string
			var biggest int64
			for _, e := range entries {
				info, _ := e.Info()
				if strings.Contains(e.Name(), kind) && info.Size() > biggest {
					target, biggest = filepath.Join(storeDir, e.Name()), info.Size()
				}
			}
			const off = 4096 + 64 // inside the first chunk after the header
			if target == "" || biggest <= off {
				t.Fatalf("no %s file with data in %s (%v)", kind, storeDir, entries)
			}
			orig, err := os.ReadFile(target)
			if err != nil {
				t.Fatal(err)
			}
			damaged := append([]byte(nil), orig...)
			damaged[off] ^= 0x04
			if err := os.WriteFile(target, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			cpDir := filepath.Join(dir, "controlplane")
			before := testfiles.HashTree(t, cpDir)
			_, err = e2etest.StartErr(cmkdbBin, dir, "--allow-private-webhooks")
			if err == nil {
				t.Fatalf("cmkdb up started over a damaged %s", target)
			}
			if !strings.Contains(err.Error(), "exited before writing up.json") || !strings.Contains(err.Error(), filepath.Base(target)) {
				t.Fatalf("cmkdb up did not refuse naming %s: %v", filepath.Base(target), err)
			}
			if after := testfiles.HashTree(t, cpDir); after != before {
				t.Fatal("the refused start changed the control plane's directory")
			}

			if err := os.WriteFile(target, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			s2 := e2etest.Start(t, cmkdbBin, dir, "--allow-private-webhooks")
			if s2.Info.GroupID != gid {
				t.Fatalf("project %s after repair, want %s", s2.Info.GroupID, gid)
			}
			var got map[string]any
			api2 := s2.UpAPI()
			if err := api2.CallErr("GET", fmt.Sprintf("/groups/%s/alertConfigs/%s", gid, cfg.ID), nil, &got); err != nil {
				t.Fatalf("acknowledged alert configuration lost: %v", err)
			}
			s2.Stop(t)
		})
	}
}

// keystoreGeneration reads the keystore's generation with `cmkdb keystore
// inspect` (no keys needed).
func keystoreGeneration(t *testing.T, dir string) uint64 {
	t.Helper()
	out := e2etest.CLI(t, cmkdbBin, "keystore", "inspect", dir)
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "generation:"); ok {
			var g uint64
			if _, err := fmt.Sscan(strings.TrimSpace(rest), &g); err == nil {
				return g
			}
		}
	}
	t.Fatalf("no generation in keystore inspect output:\n%s", out)
	return 0
}

// waitReportedGeneration waits until the control plane has recorded the
// node's keystore generation gen.
func waitReportedGeneration(t *testing.T, s *e2etest.Server, gen uint64) {
	t.Helper()
	api := s.UpAPI()
	e2etest.Eventually(t, 2*time.Minute, "the node reports its keystore generation", func() error {
		var page struct {
			Results []struct {
				KeystoreGeneration uint64 `json:"keystoreGeneration"`
			} `json:"results"`
		}
		if err := api.CallErr("GET", "/groups/"+s.Info.GroupID+"/clusters/Cluster0/nodes", nil, &page); err != nil {
			return err
		}
		if len(page.Results) != 1 || page.Results[0].KeystoreGeneration < gen {
			return fmt.Errorf("nodes %+v, want generation %d", page.Results, gen)
		}
		return nil
	})
}

// TestKeystoreRollbackDetected: an older copy of the node keystore put back
// in place. The node does not delete the database created since: its
// directory is quarantined and serverStatus lists it; the control plane,
// which saw a newer keystore generation, disables the node with the
// rollback as the reason. With the newest keystore restored the node
// serves again and the database is back with its documents.
func TestKeystoreRollbackDetected(t *testing.T) {
	dir := t.TempDir()
	ksPath := filepath.Join(dir, "node", "keystore")
	s := e2etest.Start(t, cmkdbBin, dir)
	c := connect(t, s.URI)
	if _, err := c.Database("first").Collection("c").InsertOne(opCtx(t), bson.D{{Key: "x", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	disconnect(c)
	s.Stop(t)
	older, err := os.ReadFile(ksPath)
	if err != nil {
		t.Fatal(err)
	}

	s = e2etest.Start(t, cmkdbBin, dir)
	c = connect(t, s.URI)
	coll := c.Database("second").Collection("c")
	for i := range 20 {
		if _, err := coll.InsertOne(opCtx(t), bson.D{{Key: "i", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	disconnect(c)
	waitReportedGeneration(t, s, keystoreGeneration(t, dir))
	s.Stop(t)
	newest, err := os.ReadFile(ksPath)
	if err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(ksPath, older, 0o600); err != nil {
		t.Fatal(err)
	}
	s = e2etest.Start(t, cmkdbBin, dir)
	c = connect(t, s.URI)
	e2etest.Eventually(t, 2*time.Minute, "the node is disabled for the rollback", func() error {
		var st struct {
			EncryptionAtRest struct {
				State  string `bson:"state"`
				Reason string `bson:"reason"`
			} `bson:"encryptionAtRest"`
		}
		if err := c.Database("admin").RunCommand(opCtx(t), bson.D{{Key: "serverStatus", Value: 1}}).Decode(&st); err != nil {
			return err
		}
		if st.EncryptionAtRest.State != "DISABLED" || !strings.Contains(st.EncryptionAtRest.Reason, "rollback") {
			return fmt.Errorf("state %s (%s)", st.EncryptionAtRest.State, st.EncryptionAtRest.Reason)
		}
		return nil
	})
	q, err := os.ReadDir(filepath.Join(dir, "node", "quarantine"))
	if err != nil || len(q) != 1 {
		t.Fatalf("quarantine: %v %v", q, err)
	}
	disconnect(c)
	s.Stop(t)

	if err := os.WriteFile(ksPath, newest, 0o600); err != nil {
		t.Fatal(err)
	}
	s = e2etest.Start(t, cmkdbBin, dir)
	c = connect(t, s.URI)
	e2etest.Eventually(t, 2*time.Minute, "the database created after the older keystore is back", func() error {
		n, err := c.Database("second").Collection("c").CountDocuments(opCtx(t), bson.D{})
		if err != nil {
			return err
		}
		if n != 20 {
			return fmt.Errorf("%d documents, want 20", n)
		}
		return nil
	})
	disconnect(c)
	s.Stop(t)
	testfiles.CheckPrivateModes(t, dir)
}

// TestCopiedDataDirUsesItsOwnKey: a data directory copied elsewhere runs on
// its own local CMK. `cmkdb kms local disable --dir COPY` disables the key
// the copy's cluster uses (it goes DISABLED), and the original's key file
// is untouched.
func TestCopiedDataDirUsesItsOwnKey(t *testing.T) {
	orig := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, orig, "--key-check-interval", "1s")
	s.Stop(t)
	origKey, err := os.ReadFile(filepath.Join(orig, "kms", "local-cmk.json"))
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy")
	testfiles.CopyTree(t, orig, cp)

	s = e2etest.Start(t, cmkdbBin, cp, "--key-check-interval", "1s")
	c := connect(t, s.URI)
	if _, err := c.Database("d").Collection("c").InsertOne(opCtx(t), bson.D{{Key: "x", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	e2etest.CLI(t, cmkdbBin, "kms", "local", "disable", "--dir", cp)
	e2etest.Eventually(t, 2*time.Minute, "the copy's cluster is disabled by its own key", func() error {
		_, err := c.Database("d").Collection("c").CountDocuments(opCtx(t), bson.D{})
		return wantKeyUnavailable(err, "KEY_DISABLED")
	})
	e2etest.CLI(t, cmkdbBin, "kms", "local", "enable", "--dir", cp)
	e2etest.Eventually(t, 2*time.Minute, "the copy's cluster serves again", func() error {
		_, err := c.Database("d").Collection("c").CountDocuments(opCtx(t), bson.D{})
		return err
	})
	disconnect(c)
	s.Stop(t)
	if now, err := os.ReadFile(filepath.Join(orig, "kms", "local-cmk.json")); err != nil || string(now) != string(origKey) {
		t.Fatalf("the original's key file changed (%v)", err)
	}
	var info struct {
		LocalKeyFile string `json:"localKeyFile"`
	}
	b, _ := os.ReadFile(filepath.Join(cp, "up.json"))
	if err := json.Unmarshal(b, &info); err != nil || info.LocalKeyFile != filepath.Join("kms", "local-cmk.json") {
		t.Fatalf("up.json localKeyFile %q (%v), want relative kms/local-cmk.json", info.LocalKeyFile, err)
	}
}

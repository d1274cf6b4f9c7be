package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// hashDir digests every file under dir (names and contents).
func hashDir(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		h.Write([]byte(rel + "\x00"))
		if !d.IsDir() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestUpRefusesDamagedControlPlaneState: `cmkdb up` over a control plane
// whose store has one flipped byte in its MANIFEST, or in its WAL, exits
// with an error naming the file, changes nothing in the control plane's
// directory, and creates no new project; with the byte restored it starts
// on the same project, with every acknowledged change.
func TestUpRefusesDamagedControlPlaneState(t *testing.T) {
	for _, kind := range []string{"MANIFEST", ".log"} {
		t.Run(strings.TrimPrefix(kind, "."), func(t *testing.T) {
			dir := t.TempDir()
			s := e2etest.Start(t, cmkdbBin, dir)
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
			before := hashDir(t, cpDir)
			_, err = e2etest.StartErr(cmkdbBin, dir)
			if err == nil {
				t.Fatalf("cmkdb up started over a damaged %s", target)
			}
			if !strings.Contains(err.Error(), "exited before writing up.json") || !strings.Contains(err.Error(), filepath.Base(target)) {
				t.Fatalf("cmkdb up did not refuse naming %s: %v", filepath.Base(target), err)
			}
			if after := hashDir(t, cpDir); after != before {
				t.Fatal("the refused start changed the control plane's directory")
			}

			if err := os.WriteFile(target, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			s2 := e2etest.Start(t, cmkdbBin, dir)
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

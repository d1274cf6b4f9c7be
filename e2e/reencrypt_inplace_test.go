package e2e

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
	"github.com/cmkdb/cmkdb/internal/keys"
)

// TestUpReencryptInPlace changes the encryptionAtRestProvider of `cmkdb
// up`'s one-node Cluster0 (LOCAL → NONE → LOCAL) while a client keeps
// inserting: the node copies every database into a fresh key hierarchy
// online, switches, and destroys the old one. No client operation fails;
// afterwards the node has a new identity whose master key is wrapped by the
// new provider's key, every file under its data directory is of the new
// hierarchy (new database key ids, header salts never seen before), no old
// keystore is left anywhere under the data directory, and every
// acknowledged document is there, also after a restart.
func TestUpReencryptInPlace(t *testing.T) {
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--key-check-interval", "2s")
	api, gid := s.UpAPI(), s.Info.GroupID
	path := "/groups/" + gid + "/clusters/Cluster0"
	c := connect(t, s.URI)
	const bulkDocs = 20000 // 10 MB: the copy takes long enough for writes to land during it
	for b := 0; b < bulkDocs; b += 2000 {
		bulk := make([]any, 2000)
		for i := range bulk {
			bulk[i] = bson.D{{Key: "_id", Value: b + i}, {Key: "pad", Value: fmt.Sprintf("%0500d", b+i)}}
		}
		if _, err := c.Database("app").Collection("c").InsertMany(opCtx(t), bulk); err != nil {
			t.Fatal(err)
		}
	}
	files := func() hierarchy {
		var h hierarchy
		e2etest.Eventually(t, stateTimeout, "the node's files read", func() (err error) {
			h, err = readHierarchy(dir)
			return err
		})
		return h
	}
	var history []hierarchy
	history = append(history, files())

	wc := c.Database("app").Collection("w")
	stop := make(chan struct{})
	werrs := make(chan error, 1)
	var written atomic.Int64
	go func() {
		defer close(werrs)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := wc.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: i}}); err != nil {
				werrs <- err
				return
			}
			if err := wc.FindOne(opCtx(t), bson.D{{Key: "_id", Value: i}}).Err(); err != nil {
				werrs <- fmt.Errorf("reading back %d: %w", i, err)
				return
			}
			written.Add(1)
		}
	}()
	for _, provider := range []string{"NONE", "LOCAL"} {
		var started struct {
			StateName        string `json:"stateName"`
			MembershipChange *struct {
				Reencrypt bool `json:"reencrypt"`
			} `json:"membershipChange"`
		}
		api.Call(t, "PATCH", path, map[string]any{"encryptionAtRestProvider": provider}, &started)
		if started.StateName != "UPDATING" || started.MembershipChange == nil || !started.MembershipChange.Reencrypt {
			t.Fatalf("PATCH encryptionAtRestProvider %s answered %+v: want UPDATING with a re-encryption", provider, started)
		}
		e2etest.Eventually(t, 3*stateTimeout, "Cluster0 re-encrypted under "+provider, func() error {
			var cl resizeCluster
			api.Call(t, "GET", path, nil, &cl)
			if cl.MembershipChange != nil && cl.MembershipChange.Error != "" {
				t.Fatalf("re-encryption failed: %s", cl.MembershipChange.Error)
			}
			if cl.StateName != "IDLE" || cl.MembershipChange != nil {
				return fmt.Errorf("state %s, change %+v", cl.StateName, cl.MembershipChange)
			}
			return nil
		})
		now := files()
		checkReencrypted(t, 0, history[len(history)-1:], now)
		for _, old := range history { // nothing of any earlier hierarchy either
			for salt, p := range now.salts {
				if _, ok := old.salts[salt]; ok || now.nodeID == old.nodeID {
					t.Fatalf("%s is of the hierarchy of node %s", p, old.nodeID)
				}
			}
		}
		history = append(history, now)
	}
	close(stop)
	if err := <-werrs; err != nil {
		t.Fatalf("a client operation failed during the re-encryption: %v", err)
	}
	if written.Load() == 0 {
		t.Fatal("no write happened during the re-encryptions")
	}
	count := func() (int64, int64) {
		a, err := c.Database("app").Collection("c").CountDocuments(opCtx(t), bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := wc.CountDocuments(opCtx(t), bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		return a, w
	}
	if a, w := count(); a != bulkDocs || w < written.Load() {
		t.Fatalf("after re-encryption: %d of %d bulk documents, %d of %d acknowledged inserts", a, bulkDocs, w, written.Load())
	}
	// No keystore of an earlier hierarchy anywhere under the data directory.
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "keystore" {
			return err
		}
		r, err := keys.Inspect(filepath.Dir(p))
		for _, old := range history[:len(history)-1] {
			if err == nil && r.NodeID == old.nodeID {
				return fmt.Errorf("%s is the keystore of the old node %s", p, old.nodeID)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	disconnect(c)

	s.Stop(t)
	s = e2etest.Start(t, cmkdbBin, dir, "--key-check-interval", "2s")
	c = connect(t, s.URI)
	defer disconnect(c)
	wc = c.Database("app").Collection("w")
	if a, w := count(); a != bulkDocs || w < written.Load() {
		t.Fatalf("after a restart: %d of %d bulk documents, %d of %d acknowledged inserts", a, bulkDocs, w, written.Load())
	}
	t.Logf("%d inserts (each read back) during two re-encryptions, none failed", written.Load())
}

// waitClusterIdle waits until a cluster's change (a member count change or
// a re-encryption) ended, and fails the test if it failed.
func waitClusterIdle(t *testing.T, api *e2etest.API, gid, name string) {
	t.Helper()
	e2etest.Eventually(t, 3*stateTimeout, name+" IDLE", func() error {
		var cl resizeCluster
		api.Call(t, "GET", "/groups/"+gid+"/clusters/"+name, nil, &cl)
		if cl.MembershipChange != nil && cl.MembershipChange.Error != "" {
			t.Fatalf("%s's change failed: %s", name, cl.MembershipChange.Error)
		}
		if cl.StateName != "IDLE" || cl.MembershipChange != nil {
			return fmt.Errorf("state %s, change %+v", cl.StateName, cl.MembershipChange)
		}
		return nil
	})
}

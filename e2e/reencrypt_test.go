package e2e

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
	"github.com/cmkdb/cmkdb/internal/keys"
)

type memberKeys struct {
	EAR struct {
		NodeID string `bson:"nodeId"`
		CMK    struct {
			Provider string `bson:"provider"`
			KeyID    string `bson:"keyId"`
		} `bson:"customerMasterKey"`
	} `bson:"encryptionAtRest"`
}

// TestAPIClusterReencryptByResync changes a three-member API cluster's
// encryptionAtRestProvider from NONE to the project's LOCAL key while a
// client writes with w:"majority": member by member (the primary last),
// each gets a fresh key hierarchy under the new key and an initial sync
// from the others. No client write fails; afterwards every member has a
// new node identity whose master key is wrapped by the new CMK, and all
// the data.
func TestAPIClusterReencryptByResync(t *testing.T) {
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--key-check-interval", "2s")
	api, gid := s.UpAPI(), s.Info.GroupID
	path := "/groups/" + gid + "/clusters/Cluster1"
	var cl resizeCluster
	api.Call(t, "POST", "/groups/"+gid+"/clusters", map[string]any{"name": "Cluster1", "replicationFactor": 3}, &cl)
	e2etest.Eventually(t, stateTimeout, "Cluster1 provisioned", func() error {
		api.Call(t, "GET", path, nil, &cl)
		if cl.StateName != "IDLE" || !strings.Contains(cl.ConnectionStrings.Standard, "replicaSet=Cluster1") {
			return fmt.Errorf("state %s", cl.StateName)
		}
		return nil
	})
	c := quickClient(t, cl.ConnectionStrings.Standard)
	coll := c.Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Majority()))
	docs := make([]any, 300)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}}
	}
	if _, err := coll.InsertMany(opCtx(t), docs); err != nil {
		t.Fatal(err)
	}
	members := filepath.Join(dir, "clusters", gid, "Cluster1", "members")
	earKeys := func(i int) memberKeys {
		_, uri := memberUpIn(t, filepath.Join(members, "m"+strconv.Itoa(i)))
		var k memberKeys
		if err := quickClient(t, uri).Database("admin").RunCommand(opCtx(t), bson.D{{Key: "serverStatus", Value: 1}}).Decode(&k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	files := func(i int) hierarchy {
		var h hierarchy
		e2etest.Eventually(t, stateTimeout, fmt.Sprintf("m%d's files read", i), func() (err error) {
			h, err = readHierarchy(filepath.Join(members, "m"+strconv.Itoa(i)))
			return err
		})
		return h
	}
	var before []memberKeys
	var filesBefore []hierarchy
	for i := 0; i < 3; i++ {
		before = append(before, earKeys(i))
		filesBefore = append(filesBefore, files(i))
	}

	wc := c.Database("app").Collection("w", options.Collection().SetWriteConcern(writeconcern.Majority()))
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
			written.Add(1)
		}
	}()
	var started struct {
		StateName        string `json:"stateName"`
		MembershipChange *struct {
			Reencrypt bool `json:"reencrypt"`
		} `json:"membershipChange"`
	}
	api.Call(t, "PATCH", path, map[string]any{"encryptionAtRestProvider": "LOCAL"}, &started)
	if started.StateName != "UPDATING" || started.MembershipChange == nil || !started.MembershipChange.Reencrypt {
		t.Fatalf("PATCH encryptionAtRestProvider answered %+v: want UPDATING with a re-encryption in membershipChange", started)
	}
	sawProgress := false
	e2etest.Eventually(t, 3*stateTimeout, "Cluster1 re-encrypted", func() error {
		// A fresh value each time: decoding into the previous one would
		// keep its membershipChange when the answer no longer has one.
		cl = resizeCluster{}
		api.Call(t, "GET", path, nil, &cl)
		if cl.MembershipChange != nil && cl.MembershipChange.Error != "" {
			t.Fatalf("re-encryption failed: %s", cl.MembershipChange.Error)
		}
		if cl.MembershipChange != nil && len(cl.MembershipChange.Members) > 0 {
			sawProgress = true
		}
		if cl.StateName != "IDLE" || cl.MembershipChange != nil {
			return fmt.Errorf("state %s, change %+v", cl.StateName, cl.MembershipChange)
		}
		return nil
	})
	close(stop)
	if err := <-werrs; err != nil {
		t.Fatalf("a majority write failed during the re-encryption: %v", err)
	}
	for i := 0; i < 3; i++ {
		k := earKeys(i)
		checkReencrypted(t, i, filesBefore, files(i))
		if k.EAR.NodeID == "" || k.EAR.NodeID == before[i].EAR.NodeID || k.EAR.CMK.KeyID == before[i].EAR.CMK.KeyID {
			t.Fatalf("m%d after re-encryption: %+v, before %+v: want a new node identity under a new CMK", i, k.EAR, before[i].EAR)
		}
		_, uri := memberUpIn(t, filepath.Join(members, "m"+strconv.Itoa(i)))
		sec := quickClient(t, uri).Database("app", options.Database().SetReadPreference(readpref.SecondaryPreferred())).Collection("c")
		e2etest.Eventually(t, stateTimeout, fmt.Sprintf("m%d serves the data", i), func() error {
			n, err := sec.CountDocuments(opCtx(t), bson.D{})
			if err != nil || n != 300 {
				return fmt.Errorf("%d documents (%v)", n, err)
			}
			return nil
		})
	}
	// The old hierarchies' keystores are gone from the whole tree, not
	// only from the members' node/ directories.
	for _, old := range filesBefore {
		if err := filepath.WalkDir(members, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "keystore" {
				return err
			}
			r, err := keys.Inspect(filepath.Dir(path))
			if err == nil && r.NodeID == old.nodeID {
				return fmt.Errorf("%s is the keystore of the old node %s", path, old.nodeID)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("member progress seen while polling: %v", sawProgress)
	t.Logf("%d majority writes during the re-encryption, none failed", written.Load())
}

// checkReencrypted fails the test unless member m<i>'s files now are
// all of a new hierarchy: a new node id and master key wrapped by
// another CMK key, no database key id of any old hierarchy, and no file
// that existed before (every encrypted file's header salt is new).
func checkReencrypted(t *testing.T, i int, before []hierarchy, now hierarchy) {
	t.Helper()
	if len(now.salts) == 0 {
		t.Fatalf("m%d has no encrypted file", i)
	}
	for j, old := range before {
		if now.nodeID == old.nodeID {
			t.Fatalf("m%d's keystore is still node %s (m%d's before)", i, old.nodeID, j)
		}
		for id := range now.dbIDs {
			if old.dbIDs[id] {
				t.Fatalf("m%d's keystore still has database key %s of m%d's old hierarchy", i, id, j)
			}
		}
		for salt, path := range now.salts {
			if p, ok := old.salts[salt]; ok {
				t.Fatalf("m%d's %s is a file of the old hierarchy (was %s)", i, path, p)
			}
		}
	}
	if now.cmkKeyID == before[i].cmkKeyID {
		t.Fatalf("m%d's master key is still wrapped by %s", i, now.cmkKeyID)
	}
}

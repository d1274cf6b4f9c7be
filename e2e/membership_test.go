package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

type resizeCluster struct {
	ReplicationFactor int    `json:"replicationFactor"`
	StateName         string `json:"stateName"`
	ConnectionStrings struct {
		Standard string `json:"standard"`
	} `json:"connectionStrings"`
	MembershipChange *struct {
		Error   string `json:"error"`
		Members []struct {
			Name        string `json:"name"`
			State       string `json:"state"`
			InitialSync *struct {
				BytesCopied     int64 `json:"bytesCopied"`
				BytesTotal      int64 `json:"bytesTotal"`
				DocumentsCopied int64 `json:"documentsCopied"`
			} `json:"initialSync"`
		} `json:"members"`
	} `json:"membershipChange"`
}

// TestAPIClusterResize raises an API cluster from 3 to 5 members through
// the admin API (v2's electableSpecs.nodeCount): two new member processes,
// each with its own keystore, join with an initial sync whose progress the
// cluster resource shows, and serve the data on secondary reads. Then the
// count goes back to 3 (v1.0's replicationFactor) while a client writes
// with w:"majority": no write fails, the removed members' processes stop
// and their keystores and files are gone. Raised to 5 again, the members
// re-added under the same names serve the data.
func TestAPIClusterResize(t *testing.T) {
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--key-check-interval", "2s")
	api, gid := s.UpAPI(), s.Info.GroupID
	path := "/groups/" + gid + "/clusters/Cluster1"
	var cl resizeCluster
	api.Call(t, "POST", "/groups/"+gid+"/clusters", map[string]any{"name": "Cluster1", "replicationFactor": 3}, &cl)
	e2etest.Eventually(t, stateTimeout, "Cluster1 provisioned", func() error {
		api.Call(t, "GET", path, nil, &cl)
		if cl.StateName != "IDLE" || !strings.Contains(cl.ConnectionStrings.Standard, "replicaSet=Cluster1") {
			return fmt.Errorf("state %s, connection string %q", cl.StateName, cl.ConnectionStrings.Standard)
		}
		return nil
	})
	c := quickClient(t, cl.ConnectionStrings.Standard)
	coll := c.Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Majority()))
	docs := make([]any, 500)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: strings.Repeat("x", 512)}}
	}
	if _, err := coll.InsertMany(opCtx(t), docs); err != nil {
		t.Fatal(err)
	}

	// 3 -> 5.
	api.Call(t, "PATCH", path, map[string]any{"replicationSpecs": []any{map[string]any{"regionConfigs": []any{
		map[string]any{"electableSpecs": map[string]any{"nodeCount": 5}}}}}}, &cl)
	if cl.ReplicationFactor != 5 || cl.StateName != "UPDATING" {
		t.Fatalf("after PATCH nodeCount 5: replicationFactor %d, state %s", cl.ReplicationFactor, cl.StateName)
	}
	var synced int64
	e2etest.Eventually(t, 3*stateTimeout, "Cluster1 at 5 members", func() error {
		api.Call(t, "GET", path, nil, &cl)
		if mc := cl.MembershipChange; mc != nil {
			if mc.Error != "" {
				t.Fatalf("membership change failed: %s", mc.Error)
			}
			for _, m := range mc.Members {
				if m.InitialSync != nil && m.InitialSync.BytesCopied > synced {
					synced = m.InitialSync.BytesCopied
				}
				t.Logf("progress: %s %s %+v", m.Name, m.State, m.InitialSync)
			}
		}
		if cl.StateName != "IDLE" || strings.Count(cl.ConnectionStrings.Standard, ",") != 4 {
			return fmt.Errorf("state %s, connection string %q", cl.StateName, cl.ConnectionStrings.Standard)
		}
		return nil
	})
	// A set whose log still holds its whole history syncs a new member
	// from the log alone (no snapshot bytes); internal/repl's
	// TestAddAndRemoveMember covers the snapshot path.
	t.Logf("largest initial sync reported: %d bytes", synced)
	members := filepath.Join(dir, "clusters", gid, "Cluster1", "members")
	ids := map[string]bool{}
	for i := 3; i < 5; i++ {
		mdir := filepath.Join(members, "m"+strconv.Itoa(i))
		_, uri := memberUpIn(t, mdir)
		sec := quickClient(t, uri).Database("app", options.Database().SetReadPreference(readpref.SecondaryPreferred())).Collection("c")
		n, err := sec.CountDocuments(opCtx(t), bson.D{})
		if err != nil || n != 500 {
			t.Fatalf("new member m%d serves %d documents (%v), want 500", i, n, err)
		}
		var ss struct {
			EAR struct {
				NodeID string `bson:"nodeId"`
			} `bson:"encryptionAtRest"`
		}
		if err := quickClient(t, uri).Database("admin").RunCommand(opCtx(t), bson.D{{Key: "serverStatus", Value: 1}}).Decode(&ss); err != nil || ss.EAR.NodeID == "" || ids[ss.EAR.NodeID] {
			t.Fatalf("m%d's node id %q (%v) not its own", i, ss.EAR.NodeID, err)
		}
		ids[ss.EAR.NodeID] = true
	}

	// 5 -> 3 while a client writes with w:"majority".
	var pids []int
	for i := 3; i < 5; i++ {
		pid, _ := memberUpIn(t, filepath.Join(members, "m"+strconv.Itoa(i)))
		pids = append(pids, pid)
	}
	c2 := quickClient(t, cl.ConnectionStrings.Standard)
	wc := c2.Database("app").Collection("w", options.Collection().SetWriteConcern(writeconcern.Majority()))
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
	// Through cmkdb ctl, waiting until the change completes.
	out, err := exec.Command(cmkdbBin, "ctl", "--dir", dir, "clusters", "set-members", "Cluster1", "3", "--wait").CombinedOutput()
	if err != nil {
		t.Fatalf("ctl clusters set-members Cluster1 3 --wait: %v\n%s", err, out)
	}
	t.Logf("ctl set-members --wait:\n%s", out)
	e2etest.Eventually(t, stateTimeout, "Cluster1 back at 3 members", func() error {
		api.Call(t, "GET", path, nil, &cl)
		if cl.MembershipChange != nil && cl.MembershipChange.Error != "" {
			t.Fatalf("membership change failed: %s", cl.MembershipChange.Error)
		}
		if cl.StateName != "IDLE" || cl.ReplicationFactor != 3 || strings.Count(cl.ConnectionStrings.Standard, ",") != 2 {
			return fmt.Errorf("state %s, %d members, connection string %q", cl.StateName, cl.ReplicationFactor, cl.ConnectionStrings.Standard)
		}
		return nil
	})
	close(stop)
	if err := <-werrs; err != nil {
		t.Fatalf("a majority write failed while members were removed: %v", err)
	}
	if written.Load() == 0 {
		t.Fatal("the writer wrote nothing")
	}
	for i, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Fatalf("removed member m%d (pid %d) still runs", 3+i, pid)
		}
		if _, err := os.Stat(filepath.Join(members, "m"+strconv.Itoa(3+i))); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("removed member m%d's files remain: %v", 3+i, err)
		}
	}
	if _, err := coll.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: "after"}}); err != nil {
		t.Fatalf("a majority write on 3 members: %v", err)
	}

	// Back to 5: members under the removed names, with new keystores
	// (the control plane forgot the destroyed ones), serve the data.
	out, err = exec.Command(cmkdbBin, "ctl", "--dir", dir, "clusters", "set-members", "Cluster1", "5", "--wait").CombinedOutput()
	if err != nil {
		t.Fatalf("ctl clusters set-members Cluster1 5 --wait: %v\n%s", err, out)
	}
	for i := 3; i < 5; i++ {
		_, uri := memberUpIn(t, filepath.Join(members, "m"+strconv.Itoa(i)))
		sec := quickClient(t, uri).Database("app", options.Database().SetReadPreference(readpref.SecondaryPreferred())).Collection("c")
		if n, err := sec.CountDocuments(opCtx(t), bson.D{}); err != nil || n != 501 {
			t.Fatalf("re-added member m%d serves %d documents (%v), want 501", i, n, err)
		}
	}
}

// memberUpIn is memberUp for a member directory.
func memberUpIn(t *testing.T, mdir string) (pid int, uri string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mdir, "node.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Replication struct {
			Me      string `json:"me"`
			Members []struct {
				Name, Host string
			} `json:"members"`
		} `json:"replication"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Replication.Members {
		if m.Name == c.Replication.Me {
			uri = "mongodb://" + m.Host + "/?directConnection=true"
		}
	}
	if b, err := os.ReadFile(filepath.Join(mdir, "up.json")); err == nil {
		var info e2etest.UpInfo
		if json.Unmarshal(b, &info) == nil {
			pid = info.PID
		}
	}
	return pid, uri
}

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
	"github.com/cmkdb/cmkdb/internal/config"
)

// memberUp returns a member's process id (from DIR/members/m<i>/up.json,
// 0 when it is not running) and a direct connection string to it (from
// its node.json).
func memberUp(t *testing.T, dir string, i int) (pid int, uri string) {
	t.Helper()
	mdir := filepath.Join(dir, "members", "m"+strconv.Itoa(i))
	c, err := config.Load(filepath.Join(mdir, "node.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Replication.Members {
		if m.Name == c.Replication.Me {
			uri = "mongodb://" + m.Host + "/?directConnection=true"
		}
	}
	b, err := os.ReadFile(filepath.Join(mdir, "up.json"))
	if err != nil {
		return 0, uri
	}
	var info e2etest.UpInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return 0, uri
	}
	return info.PID, uri
}

// TestUpReplicaSet runs `cmkdb up --nodes 3`: three member processes that
// mongosh, the Node driver and the Go driver use as a replica set; the
// primary's process killed, a new primary serves and the killed member
// comes back and catches up; each member has its own node identity; the
// set restarts with its data, and the directory cannot be reopened as a
// single node.
func TestUpReplicaSet(t *testing.T) {
	e2etest.RequireNodeClients(t)
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--nodes", "3", "--key-check-interval", "2s")
	if !strings.Contains(s.URI, "replicaSet=Cluster0") || strings.Count(s.URI, ",") != 2 {
		t.Fatalf("up.json connection string %q does not name the set and its three members", s.URI)
	}

	out := e2etest.Mongosh(t, s.URI, `db.getSiblingDB("app").c.insertOne({_id: 1}, {writeConcern: {w: "majority"}});
const st = rs.status();
print(JSON.stringify({set: st.set, states: st.members.map(m => m.stateStr).sort(), conf: rs.conf().members.length}));`)
	if !strings.Contains(out, `{"set":"Cluster0","states":["PRIMARY","SECONDARY","SECONDARY"],"conf":3}`) {
		t.Fatalf("mongosh rs.status(): %s", out)
	}
	// mongosh's replication helpers read local.oplog.rs through $collStats.
	out = e2etest.Mongosh(t, s.URI, `const ri = db.getReplicationInfo();
const pri = rs.printReplicationInfo();
print(JSON.stringify(Object.keys(pri.value)));
print(JSON.stringify({configured: ri.configuredLogSizeMB > 0, used: ri.usedMB > 0, first: typeof ri.tFirst}));`)
	if !strings.Contains(out, `{"configured":true,"used":true,"first":"string"}`) || !strings.Contains(out, "configured oplog size") {
		t.Fatalf("mongosh db.getReplicationInfo() / rs.printReplicationInfo(): %s", out)
	}
	if out := e2etest.Node(t, "crud.js", s.URI, "node_e2e"); !strings.Contains(out, `"ok":true`) {
		t.Fatalf("Node driver against the replica set: %s", out)
	}

	// Each member has its own node identity (its own keystore and master key).
	ids := map[string]bool{}
	for i := 0; i < 3; i++ {
		_, uri := memberUp(t, dir, i)
		var ss struct {
			EAR struct {
				NodeID string `bson:"nodeId"`
			} `bson:"encryptionAtRest"`
		}
		if err := quickClient(t, uri).Database("admin").RunCommand(opCtx(t), bson.D{{Key: "serverStatus", Value: 1}}).Decode(&ss); err != nil {
			t.Fatalf("serverStatus of member %d: %v", i, err)
		}
		if ss.EAR.NodeID == "" || ids[ss.EAR.NodeID] {
			t.Fatalf("member %d node id %q not distinct from %v", i, ss.EAR.NodeID, ids)
		}
		ids[ss.EAR.NodeID] = true
	}

	// Kill the primary's process: a new primary takes writes; up starts
	// the killed member again and it catches up.
	client := quickClient(t, s.URI)
	coll := client.Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Majority()))
	var hello struct {
		Me string `bson:"me"`
	}
	if err := client.Database("admin").RunCommand(opCtx(t), bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		t.Fatal(err)
	}
	victim := -1
	for i := 0; i < 3; i++ {
		if _, uri := memberUp(t, dir, i); strings.Contains(uri, "//"+hello.Me+"/") {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("no member serves the primary %s", hello.Me)
	}
	pid, _ := memberUp(t, dir, victim)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e2etest.Eventually(t, e2etest.Scaled(time.Minute), "a write through the new primary", func() error {
		_, err := coll.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: 2}})
		if mongo.IsDuplicateKeyError(err) {
			return nil
		}
		return err
	})
	e2etest.Eventually(t, e2etest.Scaled(time.Minute), "the killed member restarted by up", func() error {
		if p, _ := memberUp(t, dir, victim); p == 0 || p == pid {
			return os.ErrNotExist
		}
		return nil
	})
	_, vuri := memberUp(t, dir, victim)
	back := quickClient(t, vuri).Database("app", options.Database().SetReadPreference(readpref.SecondaryPreferred())).Collection("c")
	e2etest.Eventually(t, e2etest.Scaled(time.Minute), "the restarted member catches up", func() error {
		n, err := back.CountDocuments(opCtx(t), bson.D{})
		if err != nil {
			return err
		}
		if n != 2 {
			return os.ErrNotExist
		}
		return nil
	})

	// Stopped and started again, the set has its data; as one node, the
	// directory is refused.
	s.Stop(t)
	for i := 0; i < 3; i++ {
		if p, _ := memberUp(t, dir, i); p != 0 && syscall.Kill(p, 0) == nil {
			t.Fatalf("member %d (pid %d) still runs after up stopped", i, p)
		}
	}
	out2, err := exec.Command(cmkdbBin, "up", "--dir", dir, "--port", "0").CombinedOutput()
	if err == nil || !strings.Contains(string(out2), "holds a replica set") {
		t.Fatalf("up without --nodes on a replica set directory: %v\n%s", err, out2)
	}
	s2 := e2etest.Start(t, cmkdbBin, dir, "--nodes", "3")
	c2 := quickClient(t, s2.URI)
	e2etest.Eventually(t, e2etest.Scaled(time.Minute), "the data after a restart", func() error {
		n, err := c2.Database("app").Collection("c").CountDocuments(opCtx(t), bson.D{})
		if err != nil {
			return err
		}
		if n != 2 {
			return os.ErrNotExist
		}
		return nil
	})

	// A rolling master-key rotation runs across the three members, one at
	// a time, while a client writes: no client error, every member ends on
	// a new master key of its own.
	api, gid := s2.UpAPI(), s2.Info.GroupID
	versions := func() map[string]int {
		vs := map[string]int{}
		for _, n := range clusterNodes(t, api, gid, "Cluster0") {
			vs[n.Name] = n.MasterKeyVersion
		}
		return vs
	}
	e2etest.Eventually(t, stateTimeout, "three members reported to the control plane", func() error {
		vs := versions()
		for _, name := range []string{"m0", "m1", "m2"} {
			if vs[name] == 0 {
				return fmt.Errorf("nodes: %v", vs)
			}
		}
		return nil
	})
	before := versions()
	wc := c2.Database("app").Collection("rot", options.Collection().SetWriteConcern(writeconcern.Majority()))
	stop := make(chan struct{})
	werrs := make(chan error, 1)
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
		}
	}()
	api.Call(t, "POST", "/groups/"+gid+"/clusters/Cluster0/encryptionAtRest/rotateMasterKey", nil, nil)
	e2etest.Eventually(t, stateTimeout, "every member rotated", func() error {
		vs := versions()
		for name, v := range before {
			if vs[name] != v+1 {
				return fmt.Errorf("%s at master key version %d, was %d", name, vs[name], v)
			}
		}
		return nil
	})
	close(stop)
	if err := <-werrs; err != nil {
		t.Fatalf("a client write failed during the rolling rotation: %v", err)
	}
}

// quickClient is a client whose cleanup does not wait for servers the
// test stopped (ending its sessions there would wait out server selection).
func quickClient(t *testing.T, uri string) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetTimeout(e2etest.Scaled(opTimeout)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Disconnect(ctx)
	})
	return c
}

// TestAPIClusterWithMembers creates a cluster through the admin API with
// replicationFactor 3 (its members read from v2 replicationSpecs work the
// same way): up runs it as three member processes and serves its
// replica-set connection string; its member count cannot change; deleting
// it stops the members and removes their keys and files.
func TestAPIClusterWithMembers(t *testing.T) {
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--key-check-interval", "2s")
	api, gid := s.UpAPI(), s.Info.GroupID

	// v2's shape: one replication spec, electable nodes in its region configs.
	body := map[string]any{"name": "Cluster1", "replicationSpecs": []any{map[string]any{"regionConfigs": []any{
		map[string]any{"electableSpecs": map[string]any{"nodeCount": 3, "instanceSize": "M10"}, "providerName": "AWS", "regionName": "EU_WEST_1"}}}}}
	var cl struct {
		ReplicationFactor int `json:"replicationFactor"`
		StateName         string
		ConnectionStrings struct {
			Standard string `json:"standard"`
		} `json:"connectionStrings"`
	}
	api.Call(t, "POST", "/groups/"+gid+"/clusters", body, &cl)
	e2etest.Eventually(t, stateTimeout, "Cluster1 provisioned", func() error {
		api.Call(t, "GET", "/groups/"+gid+"/clusters/Cluster1", nil, &cl)
		if !strings.Contains(cl.ConnectionStrings.Standard, "replicaSet=Cluster1") {
			return fmt.Errorf("connection string %q", cl.ConnectionStrings.Standard)
		}
		return nil
	})
	if cl.ReplicationFactor != 3 || strings.Count(cl.ConnectionStrings.Standard, ",") != 2 {
		t.Fatalf("Cluster1: replicationFactor %d, connection string %q", cl.ReplicationFactor, cl.ConnectionStrings.Standard)
	}
	c := quickClient(t, cl.ConnectionStrings.Standard)
	if _, err := c.Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Majority())).InsertOne(opCtx(t), bson.D{{Key: "x", Value: 1}}); err != nil {
		t.Fatalf("write to Cluster1: %v", err)
	}

	// Its member count changes only to another replica set size
	// (TestAPIClusterResize changes it): refused, not ignored.
	err := api.CallErr("PATCH", "/groups/"+gid+"/clusters/Cluster1", map[string]any{"replicationFactor": 4}, nil)
	if err == nil || !strings.Contains(err.Error(), "INVALID_ATTRIBUTE") {
		t.Fatalf("PATCH replicationFactor 4: %v, want 400 INVALID_ATTRIBUTE", err)
	}
	if err := api.CallErr("POST", "/groups/"+gid+"/clusters", map[string]any{"name": "Cluster2", "replicationFactor": 4}, nil); err == nil {
		t.Fatal("a cluster of 4 members was accepted")
	}

	// Deleted: its members stop and their files go.
	members := filepath.Join(dir, "clusters", gid, "Cluster1", "members")
	var pids []int
	for i := 0; i < 3; i++ {
		b, err := os.ReadFile(filepath.Join(members, "m"+strconv.Itoa(i), "up.json"))
		if err != nil {
			t.Fatal(err)
		}
		var info e2etest.UpInfo
		if err := json.Unmarshal(b, &info); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, info.PID)
	}
	api.Call(t, "DELETE", "/groups/"+gid+"/clusters/Cluster1", nil, nil)
	e2etest.Eventually(t, stateTimeout, "Cluster1's members gone", func() error {
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				return fmt.Errorf("member pid %d still runs", pid)
			}
		}
		if _, err := os.Stat(members); err == nil {
			return fmt.Errorf("%s still exists", members)
		}
		return nil
	})
}

// TestUpReplicaSetAuthTLS runs `up --nodes 3 --auth --tls`: every member
// serves TLS with up's local CA and requires authentication; the
// administrator the primary created is known to every member; the
// connection string names the set, TLS and the CA, and no credential.
func TestUpReplicaSetAuthTLS(t *testing.T) {
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--nodes", "3", "--auth", "--tls")
	var up struct {
		AdminUser     string `json:"adminUser"`
		AdminPassword string `json:"adminPassword"`
		TLSCAFile     string `json:"tlsCAFile"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "up.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &up); err != nil {
		t.Fatal(err)
	}
	if up.AdminPassword == "" || up.TLSCAFile == "" || strings.Contains(s.URI, up.AdminPassword) ||
		!strings.Contains(s.URI, "tls=true") || !strings.Contains(s.URI, "replicaSet=Cluster0") {
		t.Fatalf("up.json: user %q, CA %q, connection string %q", up.AdminUser, up.TLSCAFile, s.URI)
	}
	anon := quickClient(t, s.URI)
	_, err = anon.Database("app").Collection("c").InsertOne(opCtx(t), bson.D{{Key: "x", Value: 1}})
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != 13 {
		t.Fatalf("unauthenticated insert: %v, want Unauthorized", err)
	}
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI).SetAuth(options.Credential{Username: up.AdminUser, Password: up.AdminPassword, AuthSource: "admin"}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Disconnect(ctx)
	}()
	coll := c.Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Majority()))
	e2etest.Eventually(t, e2etest.Scaled(time.Minute), "an authenticated majority write", func() error {
		_, err := coll.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: 1}})
		if mongo.IsDuplicateKeyError(err) {
			return nil
		}
		return err
	})
	// Every member knows the administrator (it came through the log).
	for i := 0; i < 3; i++ {
		_, uri := memberUp(t, dir, i)
		mc, err := mongo.Connect(options.Client().ApplyURI(uri + "&tls=true&tlsCAFile=" + up.TLSCAFile).
			SetAuth(options.Credential{Username: up.AdminUser, Password: up.AdminPassword, AuthSource: "admin"}))
		if err != nil {
			t.Fatal(err)
		}
		e2etest.Eventually(t, e2etest.Scaled(time.Minute), fmt.Sprintf("member %d authenticates the administrator", i), func() error {
			return mc.Database("admin").RunCommand(opCtx(t), bson.D{{Key: "ping", Value: 1}}).Err()
		})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = mc.Disconnect(ctx)
		cancel()
	}
}

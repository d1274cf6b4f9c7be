package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/atlas/mongodbatlas"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// TestBackupPointInTime drives continuous cloud backup of a three-member
// replica set under `cmkdb up` through the official Atlas Go client:
// pitEnabled on, a snapshot, then single writes whose oplog timestamps
// are known (inserts, an update, a delete); a pointInTime restore to the
// timestamp of one of them leaves exactly the writes at or before it, on
// every member, and the set takes writes again afterwards. An automated
// restore of the snapshot into the same replica set then leaves exactly
// the snapshot's documents. The oplog archive in the snapshot store holds
// no plaintext of the documents and no key.
func TestBackupPointInTime(t *testing.T) {
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--nodes", "3", "--key-check-interval", "2s")
	gid := s.Info.GroupID
	atlas := s.UpAPI().Atlas(t)
	on := true
	// pitEnabled without backups is refused.
	var er *mongodbatlas.ErrorResponse
	if _, _, err := atlas.Clusters.Update(opCtx(t), gid, "Cluster0", &mongodbatlas.Cluster{PitEnabled: &on}); !errors.As(err, &er) || er.HTTPCode != 400 {
		t.Fatalf("pitEnabled without backup: %v, want 400", err)
	}
	if _, _, err := atlas.Clusters.Update(opCtx(t), gid, "Cluster0", &mongodbatlas.Cluster{PitEnabled: &on, ProviderBackupEnabled: &on}); err != nil {
		t.Fatal(err)
	}
	client := quickClient(t, s.URI)
	coll := client.Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Majority()))
	const canary = "pitr-canary-plaintext-7f3a9"
	docs := make([]any, 100)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}, {Key: "note", Value: canary}}
	}
	if _, err := coll.InsertMany(opCtx(t), docs); err != nil {
		t.Fatal(err)
	}
	params := &mongodbatlas.SnapshotReqPathParameters{GroupID: gid, ClusterName: "Cluster0"}
	snap, _, err := atlas.CloudProviderSnapshots.Create(opCtx(t), params, &mongodbatlas.CloudProviderSnapshot{RetentionInDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, s, gid, snap.ID)

	// Single writes after the snapshot, each with its oplog timestamp.
	lastWrite := func() bson.Timestamp {
		var hello struct {
			LastWrite struct {
				OpTime struct {
					TS bson.Timestamp `bson:"ts"`
				} `bson:"opTime"`
			} `bson:"lastWrite"`
		}
		if err := client.Database("admin").RunCommand(opCtx(t), bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
			t.Fatal(err)
		}
		return hello.LastWrite.OpTime.TS
	}
	type write struct {
		do func() error
		ts bson.Timestamp
	}
	insert := func(id int) func() error {
		return func() error {
			_, err := coll.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: id}, {Key: "note", Value: canary}})
			return err
		}
	}
	writes := []write{
		{do: insert(1000)},
		{do: insert(1001)},
		{do: func() error {
			_, err := coll.UpdateOne(opCtx(t), bson.D{{Key: "_id", Value: 7}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 1}}}})
			return err
		}},
		{do: func() error { _, err := coll.DeleteOne(opCtx(t), bson.D{{Key: "_id", Value: 5}}); return err }},
		{do: insert(1002)},
		{do: insert(1003)},
		{do: func() error { _, err := coll.DeleteOne(opCtx(t), bson.D{{Key: "_id", Value: 6}}); return err }},
	}
	for i := range writes {
		if err := writes[i].do(); err != nil {
			t.Fatal(err)
		}
		writes[i].ts = lastWrite()
	}
	// Restore to the timestamp of the fifth write (insert 1002).
	target := writes[4].ts
	jobParams := &mongodbatlas.SnapshotReqPathParameters{GroupID: gid, ClusterName: "Cluster0"}
	var job *mongodbatlas.CloudProviderSnapshotRestoreJob
	e2etest.Eventually(t, 3*stateTimeout, "the oplog archive reaches the point in time", func() error {
		j, _, err := atlas.CloudProviderSnapshotRestoreJobs.Create(opCtx(t), jobParams, &mongodbatlas.CloudProviderSnapshotRestoreJob{
			DeliveryType: "pointInTime", TargetClusterName: "Cluster0", TargetGroupID: gid, OplogTs: int64(target.T), OplogInc: int64(target.I)})
		if errors.As(err, &er) && er.HTTPCode == 400 && strings.Contains(er.Detail, "reaches") {
			return err // not archived that far yet
		}
		if err != nil {
			t.Fatalf("pointInTime restore: %v", err)
		}
		job = j
		return nil
	})
	waitRestore(t, atlas, gid, job.ID)
	want := map[int]bool{}
	for i := 0; i < 100; i++ {
		want[i] = i != 5
	}
	want[1000], want[1001], want[1002] = true, true, true
	checkIDs(t, coll, want)
	var seven struct {
		V int `bson:"v"`
	}
	if err := coll.FindOne(opCtx(t), bson.D{{Key: "_id", Value: 7}}).Decode(&seven); err != nil || seven.V != 1 {
		t.Fatalf("document 7 after the restore: %+v %v (the update before the point in time is lost)", seven, err)
	}
	// Every member holds the restored state.
	for _, uri := range memberURIs(t, s.URI) {
		mc := quickClient(t, uri)
		e2etest.Eventually(t, stateTimeout, "member "+uri+" restored", func() error {
			n, err := mc.Database("app").Collection("c").CountDocuments(opCtx(t), bson.D{})
			if err != nil || n != int64(len(idsOf(want))) {
				return fmt.Errorf("%d documents (%v)", n, err)
			}
			return nil
		})
	}
	// The set takes writes again, with timestamps after every earlier one.
	if err := insert(2000)(); err != nil {
		t.Fatal(err)
	}
	if ts := lastWrite(); ts.Compare(writes[len(writes)-1].ts) <= 0 {
		t.Fatalf("a write after the restore has timestamp %v, not after %v", ts, writes[len(writes)-1].ts)
	}

	// An automated restore of the snapshot into the same replica set.
	j, _, err := atlas.CloudProviderSnapshotRestoreJobs.Create(opCtx(t), jobParams, &mongodbatlas.CloudProviderSnapshotRestoreJob{
		SnapshotID: snap.ID, DeliveryType: "automated", TargetClusterName: "Cluster0", TargetGroupID: gid})
	if err != nil {
		t.Fatal(err)
	}
	waitRestore(t, atlas, gid, j.ID)
	want = map[int]bool{}
	for i := 0; i < 100; i++ {
		want[i] = true
	}
	checkIDs(t, coll, want)

	// The archive holds no plaintext and no key.
	archive := filepath.Join(dir, "snapshots", gid, "Cluster0", ".oplog")
	keyFile, err := os.ReadFile(filepath.Join(dir, "kms", "local-cmk.json"))
	if err != nil {
		t.Fatal(err)
	}
	segments := 0
	err = filepath.WalkDir(archive, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".seg") {
			segments++
		}
		if bytes.Contains(b, []byte(canary)) || bytes.Contains(b, keyFile) {
			t.Errorf("%s holds plaintext or the key file", path)
		}
		return nil
	})
	if err != nil || segments == 0 {
		t.Fatalf("the archive: %d segments (%v)", segments, err)
	}
}

func waitSnapshot(t *testing.T, s *e2etest.Server, gid, id string) {
	t.Helper()
	var full struct {
		Status  string `json:"status"`
		Failure string `json:"cmkdbFailureReason"`
	}
	e2etest.Eventually(t, 3*stateTimeout, "snapshot completed", func() error {
		s.UpAPI().Call(t, "GET", "/groups/"+gid+"/clusters/Cluster0/backup/snapshots/"+id, nil, &full)
		if full.Status == "failed" {
			t.Fatalf("snapshot failed: %s", full.Failure)
		}
		if full.Status != "completed" {
			return fmt.Errorf("status %s", full.Status)
		}
		return nil
	})
}

func waitRestore(t *testing.T, atlas *mongodbatlas.Client, gid, id string) {
	t.Helper()
	p := &mongodbatlas.SnapshotReqPathParameters{GroupID: gid, ClusterName: "Cluster0", JobID: id}
	e2etest.Eventually(t, 3*stateTimeout, "restore finished", func() error {
		j, _, err := atlas.CloudProviderSnapshotRestoreJobs.Get(opCtx(t), p)
		if err != nil {
			return err
		}
		if j.Failed != nil && *j.Failed {
			t.Fatalf("restore failed: %+v", j)
		}
		if j.FinishedAt == "" {
			return errors.New("not finished")
		}
		return nil
	})
}

func idsOf(want map[int]bool) []int {
	var out []int
	for id, ok := range want {
		if ok {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// checkIDs waits until coll holds exactly the ids want marks true.
func checkIDs(t *testing.T, coll *mongo.Collection, want map[int]bool) {
	t.Helper()
	ids := idsOf(want)
	e2etest.Eventually(t, stateTimeout, "the restored documents", func() error {
		cur, err := coll.Find(opCtx(t), bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			return err
		}
		var got []struct {
			ID int `bson:"_id"`
		}
		if err := cur.All(opCtx(t), &got); err != nil {
			return err
		}
		have := make([]int, len(got))
		for i, g := range got {
			have[i] = g.ID
		}
		if !slices.Equal(have, ids) {
			return fmt.Errorf("ids %v, want %v", have, ids)
		}
		return nil
	})
}

// memberURIs turns a replica set's connection string into one direct
// connection string per member (same credentials and options).
func memberURIs(t *testing.T, uri string) []string {
	t.Helper()
	rest, ok := strings.CutPrefix(uri, "mongodb://")
	if !ok {
		t.Fatalf("connection string %q", uri)
	}
	creds := ""
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		creds, rest = rest[:i+1], rest[i+1:]
	}
	hosts, query, _ := strings.Cut(rest, "/")
	var opts []string
	if _, q, ok := strings.Cut(query, "?"); ok {
		for _, o := range strings.Split(q, "&") {
			if !strings.HasPrefix(o, "replicaSet=") && o != "" {
				opts = append(opts, o)
			}
		}
	}
	opts = append(opts, "directConnection=true", "readPreference=secondaryPreferred")
	var out []string
	for _, h := range strings.Split(hosts, ",") {
		out = append(out, "mongodb://"+creds+h+"/?"+strings.Join(opts, "&"))
	}
	return out
}

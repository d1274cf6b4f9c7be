package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.mongodb.org/atlas/mongodbatlas"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
	"github.com/cmkdb/cmkdb/internal/kms/local"
)

// TestBackupSnapshotAndRestore drives Cloud Backup through the official
// Atlas Go client against `cmkdb up`: an on-demand snapshot of Cluster0
// (queued → completed, its size and the CMK protecting it), more writes,
// then an automated restore into Cluster0 — refused with
// INVALID_SNAPSHOT_RESTORE_ENCRYPTION while the snapshot's CMK is disabled
// (nothing changes), accepted once it is enabled again — after which the
// cluster serves exactly the snapshot's documents, also after a restart.
// The snapshot store holds no plaintext of the documents and no secret;
// a deleted snapshot is gone from the list and the disk.
func TestBackupSnapshotAndRestore(t *testing.T) {
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--key-check-interval", "1s")
	api, gid := s.UpAPI(), s.Info.GroupID
	atlas := api.Atlas(t)
	c := connect(t, s.URI)
	coll := c.Database("app").Collection("c")
	const canary = "backup-canary-7f3a9c"
	docs := make([]any, 1000)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}, {Key: "v", Value: fmt.Sprintf("%s-%d", canary, i)}}
	}
	if _, err := coll.InsertMany(opCtx(t), docs); err != nil {
		t.Fatal(err)
	}
	params := &mongodbatlas.SnapshotReqPathParameters{GroupID: gid, ClusterName: "Cluster0"}
	snap, _, err := atlas.CloudProviderSnapshots.Create(opCtx(t), params, &mongodbatlas.CloudProviderSnapshot{Description: "before", RetentionInDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	if snap.ID == "" || snap.SnapshotType != "onDemand" {
		t.Fatalf("created snapshot %+v", snap)
	}
	params.SnapshotID = snap.ID
	e2etest.Eventually(t, stateTimeout, "snapshot completed", func() error {
		if snap, _, err = atlas.CloudProviderSnapshots.GetOneCloudProviderSnapshot(opCtx(t), params); err != nil {
			return err
		}
		if snap.Status == "failed" {
			t.Fatalf("snapshot failed: %+v", snap)
		}
		if snap.Status != "completed" {
			return fmt.Errorf("status %s", snap.Status)
		}
		return nil
	})
	if snap.StorageSizeBytes == 0 || snap.MasterKeyUUID == "" || snap.ExpiresAt == "" {
		t.Fatalf("completed snapshot %+v", snap)
	}
	list, _, err := atlas.CloudProviderSnapshots.GetAllCloudProviderSnapshots(opCtx(t), params, nil)
	if err != nil || list.TotalCount != 1 || list.Results[0].ID != snap.ID {
		t.Fatalf("list: %+v %v", list, err)
	}

	// The store holds encrypted files, a keystore and a manifest: no
	// document in the clear, no credential.
	store := filepath.Join(dir, "snapshots")
	files := 0
	if err := filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, secret := range []string{canary, s.Info.APIPrivateKey} {
			if bytes.Contains(b, []byte(secret)) {
				return fmt.Errorf("%s holds %q in the clear", p, secret)
			}
		}
		if fi, _ := d.Info(); fi.Mode().Perm()&0o077 != 0 {
			return fmt.Errorf("%s has mode %v", p, fi.Mode())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if files < 3 {
		t.Fatalf("snapshot store has %d files", files)
	}

	// Offline: what it holds and which key opens it, without the key;
	// every byte authenticated with the key the user supplies; nothing
	// opened with another key.
	snapDir := filepath.Join(store, gid, "Cluster0", snap.ID)
	if out := e2etest.CLI(t, cmkdbBin, "snapshot", "inspect", snapDir); !strings.Contains(out, "opens with") || !strings.Contains(out, snap.MasterKeyUUID) {
		t.Fatalf("snapshot inspect:\n%s", out)
	}
	kmsConfig := func(keyFile string) string {
		p := filepath.Join(t.TempDir(), "kms.json")
		b, _ := json.Marshal(map[string]any{"provider": "local", "local": map[string]string{"keyFile": keyFile}})
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	out := e2etest.CLI(t, cmkdbBin, "snapshot", "verify", snapDir, "--kms-config", kmsConfig(filepath.Join(dir, "kms", "local-cmk.json")))
	if !strings.Contains(out, "every chunk authenticated") {
		t.Fatalf("snapshot verify with the key:\n%s", out)
	}
	other := filepath.Join(t.TempDir(), "other-cmk.json")
	if _, err := local.Create(other); err != nil {
		t.Fatal(err)
	}
	wrong, err := exec.Command(cmkdbBin, "snapshot", "verify", snapDir, "--kms-config", kmsConfig(other)).CombinedOutput()
	if err == nil || !strings.Contains(string(wrong), "does not open") {
		t.Fatalf("snapshot verify with another key: %v\n%s", err, wrong)
	}

	// Served read-only with the key, as mongosh or mongodump would read it;
	// writes refused; the snapshot unchanged afterwards.
	port := freePort(t)
	serve := exec.Command(cmkdbBin, "snapshot", "serve", snapDir, "--kms-config", kmsConfig(filepath.Join(dir, "kms", "local-cmk.json")),
		"--port", fmt.Sprint(port))
	var serveOut bytes.Buffer
	serve.Stdout, serve.Stderr = &serveOut, &serveOut
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	sc := connect(t, fmt.Sprintf("mongodb://127.0.0.1:%d/?retryWrites=false", port))
	e2etest.Eventually(t, stateTimeout, "the served snapshot answers", func() error {
		n, err := sc.Database("app").Collection("c").CountDocuments(opCtx(t), bson.D{})
		if err != nil || n != 1000 {
			return fmt.Errorf("%d documents (%v)", n, err)
		}
		return nil
	})
	_, err = sc.Database("app").Collection("c").InsertOne(opCtx(t), bson.D{{Key: "x", Value: 1}})
	var ce mongo.ServerError
	if !errors.As(err, &ce) || !ce.HasErrorCode(20) {
		t.Fatalf("a write to the served snapshot: %v, want 20 IllegalOperation", err)
	}
	disconnect(sc)
	serve.Process.Signal(os.Interrupt)
	serve.Wait()
	if out := e2etest.CLI(t, cmkdbBin, "snapshot", "verify", snapDir); !strings.Contains(out, "match the manifest") {
		t.Fatalf("the snapshot changed while served:\n%s\n%s", out, serveOut.String())
	}

	// Which snapshots a key version protects, before someone deletes it.
	var full struct {
		CMK struct{ Provider, KeyID, KeyVersion string } `json:"cmkdbCustomerMasterKey"`
	}
	api.Call(t, "GET", "/groups/"+gid+"/clusters/Cluster0/backup/snapshots/"+snap.ID, nil, &full)
	keyRef := full.CMK.Provider + ":" + full.CMK.KeyID
	if out := e2etest.CLI(t, cmkdbBin, "ctl", "--dir", s.Dir, "snapshots", "Cluster0", "--key", keyRef); !strings.Contains(out, snap.ID) {
		t.Fatalf("ctl snapshots --key %s:\n%s", keyRef, out)
	}
	if out := e2etest.CLI(t, cmkdbBin, "ctl", "--dir", s.Dir, "snapshots", "Cluster0", "--key", "aws:another"); strings.Contains(out, snap.ID) {
		t.Fatalf("ctl snapshots --key aws:another lists %s:\n%s", snap.ID, out)
	}

	for i := 1000; i < 1500; i++ {
		if _, err := coll.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Database("later").Collection("x").InsertOne(opCtx(t), bson.D{{Key: "a", Value: 1}}); err != nil {
		t.Fatal(err)
	}

	// The snapshot's CMK is disabled: the restore is refused before
	// anything is touched.
	e2etest.CLI(t, cmkdbBin, "kms", "local", "disable", "--dir", s.Dir)
	job := &mongodbatlas.CloudProviderSnapshotRestoreJob{SnapshotID: snap.ID, DeliveryType: "automated", TargetClusterName: "Cluster0", TargetGroupID: gid}
	_, _, err = atlas.CloudProviderSnapshotRestoreJobs.Create(opCtx(t), params, job)
	var er *mongodbatlas.ErrorResponse
	if !errors.As(err, &er) || er.ErrorCode != "INVALID_SNAPSHOT_RESTORE_ENCRYPTION" || er.HTTPCode != 400 {
		t.Fatalf("restore with the snapshot's CMK disabled: %v, want 400 INVALID_SNAPSHOT_RESTORE_ENCRYPTION", err)
	}
	e2etest.CLI(t, cmkdbBin, "kms", "local", "enable", "--dir", s.Dir)
	api.Call(t, "POST", "/groups/"+gid+"/encryptionAtRest/validate", nil, nil)
	e2etest.Eventually(t, stateTimeout, "data readable again", func() error {
		n, err := coll.CountDocuments(opCtx(t), bson.D{})
		if err != nil || n != 1500 {
			return fmt.Errorf("%d documents (%v)", n, err)
		}
		return nil
	})

	created, _, err := atlas.CloudProviderSnapshotRestoreJobs.Create(opCtx(t), params, job)
	if err != nil {
		t.Fatal(err)
	}
	params.JobID = created.ID
	e2etest.Eventually(t, stateTimeout, "restore finished", func() error {
		j, _, err := atlas.CloudProviderSnapshotRestoreJobs.Get(opCtx(t), params)
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
	check := func() {
		t.Helper()
		e2etest.Eventually(t, stateTimeout, "the snapshot's documents served", func() error {
			n, err := coll.CountDocuments(opCtx(t), bson.D{})
			if err != nil || n != 1000 {
				return fmt.Errorf("%d documents (%v)", n, err)
			}
			names, err := c.ListDatabaseNames(opCtx(t), bson.D{{Key: "name", Value: "later"}})
			if err != nil || len(names) != 0 {
				return fmt.Errorf("database later after the restore: %v %v", names, err)
			}
			return nil
		})
	}
	check()
	disconnect(c)
	s.Stop(t)
	s = e2etest.Start(t, cmkdbBin, dir, "--key-check-interval", "1s")
	c = connect(t, s.URI)
	defer disconnect(c)
	coll = c.Database("app").Collection("c")
	check()

	atlas = s.UpAPI().Atlas(t)
	// A download: a one-time URL serving the snapshot as a tar archive of
	// encrypted files, the keystore and the manifest; it opens offline
	// with the key, and holds no plaintext.
	dl, _, err := atlas.CloudProviderSnapshotRestoreJobs.Create(opCtx(t), &mongodbatlas.SnapshotReqPathParameters{GroupID: gid, ClusterName: "Cluster0"},
		&mongodbatlas.CloudProviderSnapshotRestoreJob{SnapshotID: snap.ID, DeliveryType: "download"})
	if err != nil || len(dl.DeliveryURL) != 1 {
		t.Fatalf("download job: %+v %v", dl, err)
	}
	get := func() (int, []byte) {
		resp, err := http.Get(dl.DeliveryURL[0])
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	status, archive := get()
	if status != 200 || len(archive) == 0 || bytes.Contains(archive, []byte(canary)) {
		t.Fatalf("download: %d, %d bytes (canary in it: %v)", status, len(archive), bytes.Contains(archive, []byte(canary)))
	}
	if again, _ := get(); again != 404 {
		t.Fatalf("a second download of a one-time link: %d", again)
	}
	tarPath := filepath.Join(t.TempDir(), snap.ID+".tar")
	if err := os.WriteFile(tarPath, archive, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := e2etest.CLI(t, cmkdbBin, "snapshot", "verify", tarPath, "--kms-config", kmsConfig(filepath.Join(dir, "kms", "local-cmk.json"))); !strings.Contains(out, "every chunk authenticated") {
		t.Fatalf("verify of the downloaded archive:\n%s", out)
	}
	// The download served read-only and read with mongosh, with the key;
	// with another key it does not start and says why.
	port = freePort(t)
	serve = exec.Command(cmkdbBin, "snapshot", "serve", tarPath, "--kms-config", kmsConfig(filepath.Join(dir, "kms", "local-cmk.json")),
		"--port", fmt.Sprint(port))
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	e2etest.Eventually(t, stateTimeout, "mongosh reads the downloaded snapshot", func() error {
		out, err := e2etest.MongoshErr(t, fmt.Sprintf("mongodb://127.0.0.1:%d/app", port), "print('count=' + db.c.countDocuments({}))")
		if err != nil || !strings.Contains(out, "count=1000") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	serve.Process.Signal(os.Interrupt)
	serve.Wait()
	wrongServe, err := exec.Command(cmkdbBin, "snapshot", "serve", tarPath, "--kms-config", kmsConfig(other), "--port", fmt.Sprint(freePort(t))).CombinedOutput()
	if err == nil || !strings.Contains(string(wrongServe), "keystore") {
		t.Fatalf("serving with another key: %v\n%s", err, wrongServe)
	}

	if _, err := atlas.CloudProviderSnapshots.Delete(opCtx(t), params); err != nil {
		t.Fatal(err)
	}
	if list, _, err := atlas.CloudProviderSnapshots.GetAllCloudProviderSnapshots(opCtx(t), params, nil); err != nil || list.TotalCount != 0 {
		t.Fatalf("list after delete: %+v %v", list, err)
	}
	if _, err := os.Stat(filepath.Join(store, gid, "Cluster0", snap.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("deleted snapshot still on disk: %v", err)
	}
}

// TestBackupSchedule reads and changes Cluster0's backup policy through the
// official Atlas Go client (CloudProviderSnapshotBackupPolicies): Atlas's
// default items until one is set, a next snapshot once backups are turned
// on (providerBackupEnabled through Clusters.Update), refusals for what
// cmkdb does not do.
func TestBackupSchedule(t *testing.T) {
	s := e2etest.Start(t, cmkdbBin, t.TempDir())
	gid := s.Info.GroupID
	atlas := s.UpAPI().Atlas(t)
	pol, _, err := atlas.CloudProviderSnapshotBackupPolicies.Get(opCtx(t), gid, "Cluster0")
	if err != nil {
		t.Fatal(err)
	}
	if len(pol.Policies) != 1 || len(pol.Policies[0].PolicyItems) != 4 || pol.Policies[0].PolicyItems[0].FrequencyType != "hourly" ||
		pol.Policies[0].PolicyItems[0].FrequencyInterval != 6 || pol.NextSnapshot != "" {
		t.Fatalf("default policy %+v", pol)
	}
	on := true
	if _, _, err := atlas.Clusters.Update(opCtx(t), gid, "Cluster0", &mongodbatlas.Cluster{ProviderBackupEnabled: &on}); err != nil {
		t.Fatal(err)
	}
	hour, minute := int64(4), int64(5)
	pol, _, err = atlas.CloudProviderSnapshotBackupPolicies.Update(opCtx(t), gid, "Cluster0", &mongodbatlas.CloudProviderSnapshotBackupPolicy{
		ReferenceHourOfDay: &hour, ReferenceMinuteOfHour: &minute,
		Policies: []mongodbatlas.Policy{{ID: pol.Policies[0].ID, PolicyItems: []mongodbatlas.PolicyItem{
			{FrequencyType: "daily", FrequencyInterval: 1, RetentionUnit: "days", RetentionValue: 5}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if *pol.ReferenceHourOfDay != 4 || len(pol.Policies[0].PolicyItems) != 1 || pol.NextSnapshot == "" {
		t.Fatalf("updated policy %+v", pol)
	}
	yes := true
	_, _, err = atlas.CloudProviderSnapshotBackupPolicies.Update(opCtx(t), gid, "Cluster0", &mongodbatlas.CloudProviderSnapshotBackupPolicy{UpdateSnapshots: &yes})
	var er *mongodbatlas.ErrorResponse
	if !errors.As(err, &er) || er.HTTPCode != 400 {
		t.Fatalf("updateSnapshots true: %v, want 400", err)
	}
	pol, _, err = atlas.CloudProviderSnapshotBackupPolicies.Delete(opCtx(t), gid, "Cluster0")
	if err != nil || len(pol.Policies[0].PolicyItems) != 0 || pol.NextSnapshot != "" {
		t.Fatalf("after delete: %+v %v", pol, err)
	}
}

// TestBackupRestoreIntoAnotherCluster restores a snapshot of Cluster0 into
// another cluster of the project with the same provider: the control plane
// re-wraps the snapshot's master key for the target node (the key service
// binds wrappings to node identity), the target serves exactly the
// snapshot's documents, and Cluster0 is untouched. A target with another
// provider is refused with INVALID_SNAPSHOT_RESTORE_ENCRYPTION.
func TestBackupRestoreIntoAnotherCluster(t *testing.T) {
	s := e2etest.Start(t, cmkdbBin, t.TempDir(), "--key-check-interval", "1h")
	gid := s.Info.GroupID
	atlas := s.UpAPI().Atlas(t)
	c := connect(t, s.URI)
	defer disconnect(c)
	docs := make([]any, 300)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}}
	}
	if _, err := c.Database("app").Collection("c").InsertMany(opCtx(t), docs); err != nil {
		t.Fatal(err)
	}
	params := &mongodbatlas.SnapshotReqPathParameters{GroupID: gid, ClusterName: "Cluster0"}
	snap, _, err := atlas.CloudProviderSnapshots.Create(opCtx(t), params, &mongodbatlas.CloudProviderSnapshot{RetentionInDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	params.SnapshotID = snap.ID
	e2etest.Eventually(t, stateTimeout, "snapshot completed", func() error {
		sp, _, err := atlas.CloudProviderSnapshots.GetOneCloudProviderSnapshot(opCtx(t), params)
		if err != nil || sp.Status != "completed" {
			return fmt.Errorf("%+v %v", sp, err)
		}
		return nil
	})
	if _, err := c.Database("app").Collection("c").InsertOne(opCtx(t), bson.D{{Key: "_id", Value: "after"}}); err != nil {
		t.Fatal(err)
	}
	var uris = map[string]string{}
	for _, tc := range []struct{ name, provider string }{{"Copy", "LOCAL"}, {"Plain", "NONE"}} {
		cl, _, err := atlas.Clusters.Create(opCtx(t), gid, &mongodbatlas.Cluster{Name: tc.name, EncryptionAtRestProvider: tc.provider})
		if err != nil {
			t.Fatal(err)
		}
		uris[tc.name] = cl.ConnectionStrings.Standard
		e2etest.Eventually(t, stateTimeout, tc.name+"'s node reported", func() error {
			if ns := clusterNodes(t, s.UpAPI(), gid, tc.name); len(ns) != 1 || ns[0].State != "AVAILABLE" {
				return fmt.Errorf("nodes %+v", ns)
			}
			return nil
		})
	}
	copyClient := connect(t, uris["Copy"])
	defer disconnect(copyClient)
	if _, err := copyClient.Database("mine").Collection("x").InsertOne(opCtx(t), bson.D{{Key: "y", Value: 1}}); err != nil {
		t.Fatal(err)
	}

	_, _, err = atlas.CloudProviderSnapshotRestoreJobs.Create(opCtx(t), params, &mongodbatlas.CloudProviderSnapshotRestoreJob{
		SnapshotID: snap.ID, DeliveryType: "automated", TargetClusterName: "Plain", TargetGroupID: gid})
	var er *mongodbatlas.ErrorResponse
	if !errors.As(err, &er) || er.ErrorCode != "INVALID_SNAPSHOT_RESTORE_ENCRYPTION" {
		t.Fatalf("restore of a LOCAL snapshot into a NONE cluster: %v", err)
	}
	job, _, err := atlas.CloudProviderSnapshotRestoreJobs.Create(opCtx(t), params, &mongodbatlas.CloudProviderSnapshotRestoreJob{
		SnapshotID: snap.ID, DeliveryType: "automated", TargetClusterName: "Copy", TargetGroupID: gid})
	if err != nil {
		t.Fatal(err)
	}
	params.JobID = job.ID
	e2etest.Eventually(t, stateTimeout, "restore finished", func() error {
		j, _, err := atlas.CloudProviderSnapshotRestoreJobs.Get(opCtx(t), params)
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
	e2etest.Eventually(t, stateTimeout, "Copy serves the snapshot", func() error {
		n, err := copyClient.Database("app").Collection("c").CountDocuments(opCtx(t), bson.D{})
		if err != nil || n != 300 {
			return fmt.Errorf("%d documents (%v)", n, err)
		}
		names, err := copyClient.ListDatabaseNames(opCtx(t), bson.D{{Key: "name", Value: "mine"}})
		if err != nil || len(names) != 0 {
			return fmt.Errorf("the target's own database survived the restore: %v %v", names, err)
		}
		return nil
	})
	if n, err := c.Database("app").Collection("c").CountDocuments(opCtx(t), bson.D{}); err != nil || n != 301 {
		t.Fatalf("the source changed: %d documents (%v)", n, err)
	}
}

// TestBackupSnapshotBoundToKeyVersion: a snapshot is bound to the CMK
// version that wrapped it. Cluster0 on the faithful Google Cloud KMS; a
// snapshot under key version 1; the key rotated (the node re-wraps under
// version 2) and a second snapshot; version 1 disabled at the KMS: the
// first snapshot is refused with INVALID_SNAPSHOT_RESTORE_ENCRYPTION and
// nothing changes, the second restores.
func TestBackupSnapshotBoundToKeyVersion(t *testing.T) {
	k := startDevKMS(t, "gcp")
	s := e2etest.Start(t, cmkdbBin, t.TempDir(), "--key-check-interval", "1s", "--allow-provider-path", os.TempDir())
	api, gid := s.UpAPI(), s.Info.GroupID
	atlas := api.Atlas(t)
	creds, err := os.ReadFile(k.Settings["credentialsFile"])
	if err != nil {
		t.Fatal(err)
	}
	api.Call(t, "PATCH", "/groups/"+gid+"/clusters/Cluster0", map[string]any{"encryptionAtRestProvider": "NONE"}, nil)
	waitClusterIdle(t, api, gid, "Cluster0")
	api.Call(t, "PATCH", "/groups/"+gid+"/encryptionAtRest", map[string]any{"local": map[string]any{"enabled": false}}, nil)
	api.Call(t, "PATCH", "/groups/"+gid+"/encryptionAtRest", map[string]any{"googleCloudKms": map[string]any{"enabled": true,
		"keyVersionResourceID": k.Settings["keyName"], "serviceAccountKey": string(creds),
		"endpoint": k.Settings["endpoint"], "caFile": k.Settings["caFile"]}}, nil)
	api.Call(t, "PATCH", "/groups/"+gid+"/clusters/Cluster0", map[string]any{"encryptionAtRestProvider": "GCP"}, nil)
	waitClusterIdle(t, api, gid, "Cluster0")
	c := connect(t, s.URI)
	defer disconnect(c)
	coll := c.Database("app").Collection("c")
	take := func(docs int) (string, string) {
		t.Helper()
		for i := 0; i < docs; i++ {
			if _, err := coll.InsertOne(opCtx(t), bson.D{}); err != nil {
				t.Fatal(err)
			}
		}
		params := &mongodbatlas.SnapshotReqPathParameters{GroupID: gid, ClusterName: "Cluster0"}
		sp, _, err := atlas.CloudProviderSnapshots.Create(opCtx(t), params, &mongodbatlas.CloudProviderSnapshot{RetentionInDays: 1})
		if err != nil {
			t.Fatal(err)
		}
		var full struct {
			Status string                      `json:"status"`
			CMK    struct{ KeyVersion string } `json:"cmkdbCustomerMasterKey"`
		}
		e2etest.Eventually(t, stateTimeout, "snapshot completed", func() error {
			api.Call(t, "GET", "/groups/"+gid+"/clusters/Cluster0/backup/snapshots/"+sp.ID, nil, &full)
			if full.Status != "completed" {
				return fmt.Errorf("status %s", full.Status)
			}
			return nil
		})
		return sp.ID, full.CMK.KeyVersion
	}
	first, v1 := take(10)
	admin(t, k, "/key/rotate")
	api.Call(t, "POST", "/groups/"+gid+"/encryptionAtRest/validate", nil, nil)
	e2etest.Eventually(t, stateTimeout, "the node's master key re-wrapped under the new key version", func() error {
		if ns := clusterNodes(t, api, gid, "Cluster0"); len(ns) != 1 || ns[0].CMK.KeyVersion == v1 {
			return fmt.Errorf("nodes %+v", ns)
		}
		return nil
	})
	second, v2 := take(5)
	if v1 == v2 {
		t.Fatalf("both snapshots under key version %s", v1)
	}
	admin(t, k, "/key/state?value=DISABLED&version="+lastSegment(v1))
	restore := func(id string) error {
		_, _, err := atlas.CloudProviderSnapshotRestoreJobs.Create(opCtx(t), &mongodbatlas.SnapshotReqPathParameters{GroupID: gid, ClusterName: "Cluster0"},
			&mongodbatlas.CloudProviderSnapshotRestoreJob{SnapshotID: id, DeliveryType: "automated", TargetClusterName: "Cluster0", TargetGroupID: gid})
		return err
	}
	var er *mongodbatlas.ErrorResponse
	if err := restore(first); !errors.As(err, &er) || er.ErrorCode != "INVALID_SNAPSHOT_RESTORE_ENCRYPTION" {
		t.Fatalf("restore of the snapshot under the disabled version %s: %v", v1, err)
	}
	if n, _ := coll.CountDocuments(opCtx(t), bson.D{}); n != 15 {
		t.Fatalf("a refused restore changed the data: %d documents", n)
	}
	if err := restore(second); err != nil {
		t.Fatalf("restore of the snapshot under version %s: %v", v2, err)
	}
	e2etest.Eventually(t, stateTimeout, "the second snapshot restored", func() error {
		var jobs struct {
			Results []struct {
				State string `json:"cmkdbState"`
				Error string `json:"cmkdbErrorMessage"`
			} `json:"results"`
		}
		api.Call(t, "GET", "/groups/"+gid+"/clusters/Cluster0/backup/restoreJobs", nil, &jobs)
		if len(jobs.Results) != 1 || jobs.Results[0].State != "COMPLETED" {
			return fmt.Errorf("jobs %+v", jobs.Results)
		}
		return nil
	})
}

// lastSegment is what follows the last '/' (a key version's number in its
// resource name).
func lastSegment(s string) string { return s[strings.LastIndex(s, "/")+1:] }

// TestCtlSnapshotTakeAndRestore drives a backup from `cmkdb ctl`: take a
// snapshot and wait for it, then restore it with a progress bar.
func TestCtlSnapshotTakeAndRestore(t *testing.T) {
	s := e2etest.Start(t, cmkdbBin, t.TempDir())
	c := connect(t, s.URI)
	defer disconnect(c)
	coll := c.Database("app").Collection("c")
	for i := 0; i < 50; i++ {
		if _, err := coll.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	ctlCmd := func(args ...string) string {
		return e2etest.CLI(t, cmkdbBin, append([]string{"ctl", "--dir", s.Dir}, args...)...)
	}
	out := ctlCmd("snapshots", "take", "Cluster0", "--retention-days", "2", "--wait")
	f := strings.Fields(out)
	if len(f) < 3 || f[0] != "snapshot" || f[2] != "completed" {
		t.Fatalf("ctl snapshots take:\n%s", out)
	}
	id := f[1]
	if _, err := coll.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: "later"}}); err != nil {
		t.Fatal(err)
	}
	out = ctlCmd("snapshots", "restore", "Cluster0", id, "--wait")
	if !strings.Contains(out, "COMPLETED") || !strings.Contains(out, "100%") {
		t.Fatalf("ctl snapshots restore:\n%s", out)
	}
	e2etest.Eventually(t, stateTimeout, "the snapshot's documents", func() error {
		n, err := coll.CountDocuments(opCtx(t), bson.D{})
		if err != nil || n != 50 {
			return fmt.Errorf("%d documents (%v)", n, err)
		}
		return nil
	})
	if out := ctlCmd("snapshots", "Cluster0"); !strings.Contains(out, id) {
		t.Fatalf("ctl snapshots:\n%s", out)
	}
}

// TestBackupReplicaSet snapshots `up --nodes 3`'s Cluster0 through the API:
// a secondary writes the snapshot under its own keys (its raft log and
// oplog left out); it restores into a one-member cluster of the same
// provider (its master key re-wrapped for that node), which then serves
// every document acknowledged with w:"majority" before the snapshot
// (restores into the replica set itself: backup_pitr_test.go).
func TestBackupReplicaSet(t *testing.T) {
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--nodes", "3", "--key-check-interval", "2s")
	gid := s.Info.GroupID
	atlas := s.UpAPI().Atlas(t)
	coll := quickClient(t, s.URI).Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Majority()))
	docs := make([]any, 200)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}}
	}
	if _, err := coll.InsertMany(opCtx(t), docs); err != nil {
		t.Fatal(err)
	}
	params := &mongodbatlas.SnapshotReqPathParameters{GroupID: gid, ClusterName: "Cluster0"}
	snap, _, err := atlas.CloudProviderSnapshots.Create(opCtx(t), params, &mongodbatlas.CloudProviderSnapshot{RetentionInDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	params.SnapshotID = snap.ID
	var full struct {
		Status   string `json:"status"`
		NodeName string `json:"cmkdbNodeName"`
		Failure  string `json:"cmkdbFailureReason"`
	}
	e2etest.Eventually(t, 3*stateTimeout, "replica set snapshot completed", func() error {
		s.UpAPI().Call(t, "GET", "/groups/"+gid+"/clusters/Cluster0/backup/snapshots/"+snap.ID, nil, &full)
		if full.Status == "failed" {
			t.Fatalf("snapshot failed: %s", full.Failure)
		}
		if full.Status != "completed" {
			return fmt.Errorf("status %s", full.Status)
		}
		return nil
	})
	var hello struct {
		Primary string `bson:"primary"`
	}
	if err := quickClient(t, s.URI).Database("admin").RunCommand(opCtx(t), bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot taken by member %s (primary %s)", full.NodeName, hello.Primary)
	// It opens offline with the project's key, bound to the member's
	// identity, and holds every acknowledged document (and its catalog).
	kmsFile := filepath.Join(t.TempDir(), "kms.json")
	kb, _ := json.Marshal(map[string]any{"provider": "local", "local": map[string]string{"keyFile": filepath.Join(dir, "kms", "local-cmk.json")}})
	if err := os.WriteFile(kmsFile, kb, 0o600); err != nil {
		t.Fatal(err)
	}
	out := e2etest.CLI(t, cmkdbBin, "snapshot", "verify", filepath.Join(dir, "snapshots", gid, "Cluster0", snap.ID), "--kms-config", kmsFile)
	var records int
	if i := strings.Index(out, " databases, "); i < 0 {
		t.Fatalf("verify:\n%s", out)
	} else if _, err := fmt.Sscanf(out[i+len(" databases, "):], "%d records", &records); err != nil || records < 200 {
		t.Fatalf("the snapshot holds %d records (%v):\n%s", records, err, out)
	}

	cl, _, err := atlas.Clusters.Create(opCtx(t), gid, &mongodbatlas.Cluster{Name: "Copy", EncryptionAtRestProvider: "LOCAL"})
	if err != nil {
		t.Fatal(err)
	}
	e2etest.Eventually(t, stateTimeout, "Copy's node reported", func() error {
		if ns := clusterNodes(t, s.UpAPI(), gid, "Copy"); len(ns) != 1 || ns[0].State != "AVAILABLE" {
			return fmt.Errorf("nodes %+v", ns)
		}
		return nil
	})
	job, _, err := atlas.CloudProviderSnapshotRestoreJobs.Create(opCtx(t), params, &mongodbatlas.CloudProviderSnapshotRestoreJob{
		SnapshotID: snap.ID, DeliveryType: "automated", TargetClusterName: "Copy", TargetGroupID: gid})
	if err != nil {
		t.Fatal(err)
	}
	waitRestore(t, atlas, gid, job.ID)
	copyColl := connect(t, cl.ConnectionStrings.Standard).Database("app").Collection("c")
	e2etest.Eventually(t, stateTimeout, "Copy serves the replica set's documents", func() error {
		n, err := copyColl.CountDocuments(opCtx(t), bson.D{})
		if err != nil || n != 200 {
			return fmt.Errorf("%d documents (%v)", n, err)
		}
		return nil
	})
}

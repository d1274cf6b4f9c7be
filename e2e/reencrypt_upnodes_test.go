package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// TestUpNodesReencrypt re-encrypts Cluster0 of `up --nodes 3` (members on
// --port, --port+1, …, which keep their ports) by switching its provider
// between NONE and LOCAL: every member ends under a new hierarchy with all
// the data.
func TestUpNodesReencrypt(t *testing.T) {
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--nodes", "3", "--key-check-interval", "2s")
	api, gid := s.UpAPI(), s.Info.GroupID
	path := "/groups/" + gid + "/clusters/Cluster0"
	coll := quickClient(t, s.URI).Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Majority()))
	docs := make([]any, 100)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}}
	}
	if _, err := coll.InsertMany(opCtx(t), docs); err != nil {
		t.Fatal(err)
	}
	members := filepath.Join(dir, "members")
	files := func(i int) hierarchy {
		var h hierarchy
		e2etest.Eventually(t, stateTimeout, fmt.Sprintf("m%d's files read", i), func() (err error) {
			h, err = readHierarchy(filepath.Join(members, "m"+strconv.Itoa(i)))
			return err
		})
		return h
	}
	var before []hierarchy
	for i := 0; i < 3; i++ {
		before = append(before, files(i))
	}
	var cur struct {
		Provider string `json:"encryptionAtRestProvider"`
	}
	api.Call(t, "GET", path, nil, &cur)
	next := map[bool]string{true: "LOCAL", false: "NONE"}[cur.Provider == "NONE"]
	api.Call(t, "PATCH", path, map[string]any{"encryptionAtRestProvider": next}, nil)
	e2etest.Eventually(t, 3*stateTimeout, "Cluster0 re-encrypted", func() error {
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
	for i := 0; i < 3; i++ {
		checkReencrypted(t, i, before, files(i))
		_, uri := memberUp(t, dir, i)
		sec := quickClient(t, uri).Database("app", options.Database().SetReadPreference(readpref.SecondaryPreferred())).Collection("c")
		e2etest.Eventually(t, stateTimeout, fmt.Sprintf("m%d serves the data", i), func() error {
			n, err := sec.CountDocuments(opCtx(t), bson.D{})
			if err != nil || n != 100 {
				return fmt.Errorf("%d documents (%v)", n, err)
			}
			return nil
		})
	}
}

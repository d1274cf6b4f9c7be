package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// TestAPIClusterReencryptResumesAfterCrash kills `up` (SIGKILL; its
// members get SIGTERM) while a three-member cluster is being re-encrypted,
// with a member between removal and re-addition or syncing. Started again,
// the cluster is REPAIRING with the interruption; restating the provider
// resumes the re-encryption, which ends with every member under a new
// hierarchy and all the data: no member is left wiped or under old keys.
func TestAPIClusterReencryptResumesAfterCrash(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--key-check-interval", "2s"}
	s := e2etest.Start(t, cmkdbBin, dir, args...)
	api, gid := s.UpAPI(), s.Info.GroupID
	path := "/groups/" + gid + "/clusters/Cluster1"
	get := func(api *e2etest.API) resizeCluster {
		var cl resizeCluster // fresh: see TestAPIClusterReencryptByResync
		api.Call(t, "GET", path, nil, &cl)
		return cl
	}
	api.Call(t, "POST", "/groups/"+gid+"/clusters", map[string]any{"name": "Cluster1", "replicationFactor": 3}, nil)
	var cl resizeCluster
	e2etest.Eventually(t, stateTimeout, "Cluster1 provisioned", func() error {
		if cl = get(api); cl.StateName != "IDLE" || !strings.Contains(cl.ConnectionStrings.Standard, "replicaSet=Cluster1") {
			return fmt.Errorf("state %s", cl.StateName)
		}
		return nil
	})
	coll := quickClient(t, cl.ConnectionStrings.Standard).Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Majority()))
	docs := make([]any, 300)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}}
	}
	if _, err := coll.InsertMany(opCtx(t), docs); err != nil {
		t.Fatal(err)
	}
	members := filepath.Join(dir, "clusters", gid, "Cluster1", "members")
	files := func(i int) hierarchy {
		var h hierarchy
		e2etest.Eventually(t, stateTimeout, fmt.Sprintf("m%d's files read", i), func() (err error) {
			h, err = readHierarchy(filepath.Join(members, "m"+strconv.Itoa(i)))
			return err
		})
		return h
	}

	// Each round changes the provider and kills up as soon as a member is
	// past WAITING; a round that completed before it was seen is followed
	// by another, the other way round (both directions re-encrypt).
	var before []hierarchy
	provider, caught := "", false
	for round := 0; round < 5 && !caught; round++ {
		before = before[:0]
		for i := 0; i < 3; i++ {
			before = append(before, files(i))
		}
		provider = map[bool]string{true: "LOCAL", false: "NONE"}[round%2 == 0]
		api.Call(t, "PATCH", path, map[string]any{"encryptionAtRestProvider": provider}, nil)
		e2etest.Eventually(t, 3*stateTimeout, "a member being re-encrypted, or the round done", func() error {
			cl := get(api)
			if cl.MembershipChange == nil {
				return nil // done before it was seen
			}
			for _, m := range cl.MembershipChange.Members {
				if m.State == "REMOVING" || m.State == "ADDING" || m.State == "INITIAL_SYNC" {
					t.Logf("round %d: killing up while %s is %s", round, m.Name, m.State)
					caught = true
					return nil
				}
			}
			return fmt.Errorf("state %s, %+v", cl.StateName, cl.MembershipChange)
		})
	}
	if !caught {
		t.Fatal("no round of re-encryption was seen in progress in 5 rounds")
	}
	s.Kill(t)

	s2 := e2etest.Start(t, cmkdbBin, dir, args...)
	api2 := s2.UpAPI()
	cl = get(api2)
	if cl.StateName != "REPAIRING" || cl.MembershipChange == nil || !strings.Contains(cl.MembershipChange.Error, "encryptionAtRestProvider") {
		t.Fatalf("after up was killed during the re-encryption: %+v, change %+v", cl, cl.MembershipChange)
	}
	api2.Call(t, "PATCH", path, map[string]any{"encryptionAtRestProvider": provider}, nil)
	e2etest.Eventually(t, 3*stateTimeout, "the re-encryption resumed and done", func() error {
		cl := get(api2)
		if cl.MembershipChange != nil && cl.MembershipChange.Error != "" {
			t.Fatalf("resumed re-encryption failed: %s", cl.MembershipChange.Error)
		}
		if cl.StateName != "IDLE" || cl.MembershipChange != nil {
			return fmt.Errorf("state %s, change %+v", cl.StateName, cl.MembershipChange)
		}
		return nil
	})
	for i := 0; i < 3; i++ {
		checkReencrypted(t, i, before, files(i))
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
}

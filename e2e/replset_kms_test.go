package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// TestReplicaSetKMSOutage: three members whose CMK is in AWS KMS (the
// faithful server, through the official SDK). While the KMS does not
// answer, the running members keep serving; a member restarted meanwhile
// cannot unwrap its master key and stays DISABLED while the other two take
// majority writes; when the KMS answers again it comes back and catches
// up. A revoked key then disables every member, and restoring it brings
// the set back with every document.
func TestReplicaSetKMSOutage(t *testing.T) {
	k := startDevKMS(t, "aws")
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(k.Settings["secretAccessKey"]), 0o600); err != nil {
		t.Fatal(err)
	}
	rs := startReplSetWith(t, 3, func(int) map[string]any {
		return map[string]any{"provider": "aws", "aws": map[string]any{"region": k.Settings["region"], "keyId": k.Settings["keyId"],
			"accessKeyId": k.Settings["accessKeyId"], "secretAccessKeyFile": secretFile, "endpoint": k.Endpoint}}
	})
	ctx := context.Background()
	p := rs.primary(ctx)
	client := quickClient(t, rs.procs[0].URI)
	coll := client.Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Majority()))
	insert := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			e2etest.Eventually(t, e2etest.Scaled(time.Minute), fmt.Sprintf("insert %d", i), func() error {
				_, err := coll.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: i}})
				if err != nil && !mongo.IsDuplicateKeyError(err) {
					return err
				}
				return nil
			})
		}
	}
	insert(0, 10)

	// The KMS stops answering: every member keeps serving.
	admin(t, k, "/throttle?on=true")
	for i := range rs.hosts {
		waitNodeKMSChecks(t, quickClient(t, "mongodb://"+rs.hosts[i]+"/?directConnection=true"), 2)
	}
	insert(10, 20)

	// A secondary restarted now cannot unwrap its master key: it stays
	// DISABLED; the other two still make a majority.
	s := (p + 1) % 3
	rs.procs[s].Kill(t)
	rs.start(s)
	sc := quickClient(t, "mongodb://"+rs.hosts[s]+"/?directConnection=true")
	if st := eaState(t, sc); st != "DISABLED" {
		t.Fatalf("member restarted during the KMS outage is %s, want DISABLED", st)
	}
	insert(20, 30)

	// The KMS answers: it comes back and catches up.
	admin(t, k, "/throttle?on=false")
	sec := sc.Database("app", options.Database().SetReadPreference(readpref.SecondaryPreferred())).Collection("c")
	e2etest.Eventually(t, e2etest.Scaled(2*time.Minute), "the member back with every document", func() error {
		n, err := sec.CountDocuments(opCtx(t), bson.D{})
		if err != nil {
			return err
		}
		if n != 30 {
			return fmt.Errorf("%d documents", n)
		}
		return nil
	})

	// The key is revoked: every member is disabled, nothing is written.
	admin(t, k, "/key/state?value=Disabled")
	for i := range rs.hosts {
		c := quickClient(t, "mongodb://"+rs.hosts[i]+"/?directConnection=true")
		e2etest.Eventually(t, stateTimeout, fmt.Sprintf("member %d disabled", i), func() error {
			if st := eaState(t, c); st != "DISABLED" {
				return fmt.Errorf("state %s", st)
			}
			return nil
		})
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := coll.InsertOne(wctx, bson.D{{Key: "_id", Value: "refused"}})
	cancel()
	if err == nil {
		t.Fatal("a write was acknowledged with every member's key revoked")
	}

	// Restored: the set elects a primary and has every document.
	admin(t, k, "/key/state?value=Enabled")
	insert(30, 31)
	if n, err := coll.CountDocuments(opCtx(t), bson.D{}); err != nil || n != 31 {
		t.Fatalf("after the key came back: %d documents (%v), want 31", n, err)
	}
}

// eaState is a member's serverStatus.encryptionAtRest.state ("" when it
// does not answer).
func eaState(t *testing.T, c *mongo.Client) string {
	t.Helper()
	var ss struct {
		EAR struct {
			State string `bson:"state"`
		} `bson:"encryptionAtRest"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "serverStatus", Value: 1}}).Decode(&ss); err != nil {
		return ""
	}
	return ss.EAR.State
}

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// stateTimeout bounds how long a node may take to notice a CMK change:
// many check intervals, on a loaded machine.
const stateTimeout = 60 * time.Second

const lifecycleDocs = 500

func writeLifecycleData(t *testing.T, c *mongo.Client) {
	t.Helper()
	docs := make([]any, lifecycleDocs)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: int32(i)}, {Key: "v", Value: fmt.Sprintf("value-%d", i)}}
	}
	if _, err := c.Database("life").Collection("data").InsertMany(opCtx(t), docs); err != nil {
		t.Fatalf("insertMany: %v", err)
	}
}

// readAll returns an error unless every document written is readable.
func readAll(ctx context.Context, c *mongo.Client) error {
	cur, err := c.Database("life").Collection("data").Find(ctx, bson.D{})
	if err != nil {
		return err
	}
	var docs []bson.M
	if err := cur.All(ctx, &docs); err != nil {
		return err
	}
	if len(docs) != lifecycleDocs {
		return fmt.Errorf("%d documents, want %d", len(docs), lifecycleDocs)
	}
	for _, d := range docs {
		id := d["_id"].(int32)
		if d["v"] != fmt.Sprintf("value-%d", id) {
			return fmt.Errorf("document %d: %v", id, d)
		}
	}
	return nil
}

// findRefused checks a find and an insert are refused with 41001 naming reason.
func findRefused(ctx context.Context, c *mongo.Client, reason string) error {
	err := c.Database("life").Collection("data").FindOne(ctx, bson.D{}).Err()
	if err := wantKeyUnavailable(err, reason); err != nil {
		return fmt.Errorf("find: %w", err)
	}
	_, err = c.Database("life").Collection("data").InsertOne(ctx, bson.D{{Key: "late", Value: true}})
	if err := wantKeyUnavailable(err, reason); err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	return nil
}

// operatorCommandsAnswer checks ping, hello and serverStatus still answer,
// and serverStatus shows the expected state.
func operatorCommandsAnswer(t *testing.T, c *mongo.Client, state string) {
	t.Helper()
	admin := c.Database("admin")
	if err := admin.RunCommand(opCtx(t), bson.D{{Key: "ping", Value: 1}}).Err(); err != nil {
		t.Fatalf("ping on a %s node: %v", state, err)
	}
	var hello bson.M
	if err := admin.RunCommand(opCtx(t), bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		t.Fatalf("hello on a %s node: %v", state, err)
	}
	var st struct {
		EAR struct {
			State string `bson:"state"`
		} `bson:"encryptionAtRest"`
	}
	if err := admin.RunCommand(opCtx(t), bson.D{{Key: "serverStatus", Value: 1}}).Decode(&st); err != nil {
		t.Fatalf("serverStatus on a %s node: %v", state, err)
	}
	if st.EAR.State != state {
		t.Fatalf("serverStatus.encryptionAtRest.state = %q, want %q", st.EAR.State, state)
	}
}

func TestKeyRevokedAndRestored(t *testing.T) {
	for _, tc := range []struct {
		name, revoke, restore, reason string
	}{
		{"DisableEnable", "disable", "enable", "KEY_DISABLED"},
		{"DeleteRestore", "delete", "restore", "KEY_DELETED"},
		{"ScheduleDeletionRestore", "schedule-deletion", "restore", "KEY_PENDING_DELETION"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, "--key-check-interval", "500ms")
			c := connect(t, s.URI)
			writeLifecycleData(t, c)
			if err := readAll(opCtx(t), c); err != nil {
				t.Fatal(err)
			}

			e2etest.CLI(t, cmkdbBin, "kms", "local", tc.revoke, "--dir", s.Dir)
			e2etest.Eventually(t, stateTimeout, "data commands refused with "+tc.reason, func() error {
				return findRefused(opCtx(t), c, tc.reason)
			})
			operatorCommandsAnswer(t, c, "DISABLED")
			// A new connection is served too: an operator can still look.
			fresh := connect(t, s.URI)
			operatorCommandsAnswer(t, fresh, "DISABLED")

			e2etest.CLI(t, cmkdbBin, "kms", "local", tc.restore, "--dir", s.Dir)
			e2etest.Eventually(t, stateTimeout, "data readable again", func() error {
				return readAll(opCtx(t), c)
			})
			operatorCommandsAnswer(t, c, "AVAILABLE")
			if _, err := c.Database("life").Collection("data").InsertOne(opCtx(t), bson.D{{Key: "after", Value: tc.restore}}); err != nil {
				t.Fatalf("insert after %s: %v", tc.restore, err)
			}
			disconnect(fresh)
			disconnect(c)
			s.Stop(t)
		})
	}
}

// TestStartsDisabled: a node whose CMK is disabled while it is down starts
// DISABLED (hello answers, data refused) and becomes AVAILABLE once the key
// is enabled, within its check interval.
func TestStartsDisabled(t *testing.T) {
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--key-check-interval", "500ms")
	c := connect(t, s.URI)
	writeLifecycleData(t, c)
	disconnect(c)
	s.Stop(t)

	e2etest.CLI(t, cmkdbBin, "kms", "local", "disable", "--dir", dir)
	s2 := e2etest.Start(t, cmkdbBin, dir, "--key-check-interval", "500ms")
	if s2.Info.State == "AVAILABLE" {
		t.Fatalf("up.json says AVAILABLE for a node started with a disabled CMK")
	}
	c2 := connect(t, s2.URI)
	operatorCommandsAnswer(t, c2, "DISABLED")
	if err := findRefused(opCtx(t), c2, "KEY_DISABLED"); err != nil {
		t.Fatal(err)
	}

	e2etest.CLI(t, cmkdbBin, "kms", "local", "enable", "--dir", dir)
	e2etest.Eventually(t, stateTimeout, "data readable after enable", func() error {
		return readAll(opCtx(t), c2)
	})
	operatorCommandsAnswer(t, c2, "AVAILABLE")
	disconnect(c2)
	s2.Stop(t)
}

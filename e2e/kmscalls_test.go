package e2e

import (
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestZeroKMSCallsPerOperation: client reads and writes, including the first
// write to new databases, never call the KMS. The check interval is long,
// so no scheduled check falls inside the measurement either.
func TestZeroKMSCallsPerOperation(t *testing.T) {
	s := startServer(t, "--key-check-interval", "1h")
	c := connect(t, s.URI)
	before := readKMSCalls(t, c)
	t.Logf("kmsCalls after start: %+v", before)
	if before.Unwrap < 1 {
		t.Errorf("kmsCalls.unwrap = %d after start: the node's start must unwrap its master key (is the counter wired?)", before.Unwrap)
	}

	const n = 1000
	for db := range 3 {
		coll := c.Database(fmt.Sprintf("kms_zero_%d", db)).Collection("c")
		for i := range n / 3 {
			if _, err := coll.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: int32(i)}, {Key: "v", Value: i}}); err != nil {
				t.Fatalf("insert: %v", err)
			}
		}
	}
	coll := c.Database("kms_zero_0").Collection("c")
	for i := range n - 3*(n/3) {
		if _, err := coll.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: int32(10000 + i)}}); err != nil {
			t.Fatalf("insert: %v", err)
		}
	}
	for i := range n {
		var doc bson.M
		if err := coll.FindOne(opCtx(t), bson.D{{Key: "_id", Value: int32(i % (n / 3))}}).Decode(&doc); err != nil {
			t.Fatalf("find %d: %v", i, err)
		}
	}

	after := readKMSCalls(t, c)
	t.Logf("kmsCalls after %d inserts and %d finds: %+v", n, n, after)
	if after.Wrap != before.Wrap || after.Unwrap != before.Unwrap {
		t.Errorf("KMS wrap/unwrap calls during client operations: before %+v, after %+v", before, after)
	}
	if after.Check != before.Check {
		t.Errorf("KMS checks during client operations with a 1h interval: before %+v, after %+v", before, after)
	}
}

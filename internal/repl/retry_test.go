package repl_test

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/repl/repltest"
	"github.com/cmkdb/cmkdb/internal/wire/wiretest"
)

// TestRetryableWriteRunsOnce sends the same retryable write twice, as a
// driver does when the reply is lost: the second gets the first's reply
// and changes nothing — on the primary that ran it and, after a stepdown,
// on the next primary. An older txnNumber is refused.
func TestRetryableWriteRunsOnce(t *testing.T) {
	set := repltest.Start(t, 3)
	p := set.Primary(t, time.Minute)
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: bson.TypeBinaryUUID, Data: []byte("0123456789abcdef")}}}
	inc := func(txn int64) bson.D {
		return bson.D{{Key: "update", Value: "c"},
			{Key: "updates", Value: bson.A{bson.D{{Key: "q", Value: bson.D{{Key: "_id", Value: 1}}},
				{Key: "u", Value: bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}}, {Key: "upsert", Value: true}}}},
			{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: txn},
			{Key: "writeConcern", Value: bson.D{{Key: "w", Value: "majority"}}}}
	}
	counter := func(host string) int32 {
		raw, err := wiretest.Dial(t, host).Command("app", bson.D{{Key: "find", Value: "c"},
			{Key: "$readPreference", Value: bson.D{{Key: "mode", Value: "primaryPreferred"}}}})
		if err != nil {
			t.Fatal(err)
		}
		docs, _ := raw.Lookup("cursor", "firstBatch").Array().Values()
		if len(docs) != 1 {
			t.Fatalf("counter documents: %v", raw)
		}
		return docs[0].Document().Lookup("n").Int32()
	}

	c := wiretest.Dial(t, set.Members[p].Host)
	first, err := c.Command("app", inc(5))
	if err != nil || wiretest.ErrorCode(first) != 0 {
		t.Fatalf("first: %v %v", first, err)
	}
	again, err := c.Command("app", inc(5))
	if err != nil || string(again) != string(first) {
		t.Fatalf("retry answered %v, want the first reply %v", again, first)
	}
	if n := counter(set.Members[p].Host); n != 1 {
		t.Fatalf("counter = %d after a write and its retry, want 1", n)
	}
	old, err := c.Command("app", inc(4))
	if err != nil || wiretest.ErrorCode(old) != 225 {
		t.Fatalf("older txnNumber: %v %v, want TransactionTooOld", old, err)
	}

	// The record is replicated with the write: after a stepdown the new
	// primary answers the retry from it too.
	if raw, err := c.Command("admin", bson.D{{Key: "replSetStepDown", Value: 60}}); err != nil || wiretest.ErrorCode(raw) != 0 {
		t.Fatalf("stepdown: %v %v", raw, err)
	}
	var np int
	deadline := time.Now().Add(time.Minute)
	for {
		np = set.Primary(t, time.Minute)
		if np != p || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if np == p {
		t.Fatal("the primary did not change after replSetStepDown")
	}
	c2 := wiretest.Dial(t, set.Members[np].Host)
	retried, err := c2.Command("app", inc(5))
	if err != nil || wiretest.ErrorCode(retried) != 0 {
		t.Fatalf("retry on the new primary: %v %v", retried, err)
	}
	if n := counter(set.Members[np].Host); n != 1 {
		t.Fatalf("counter = %d after a retry on the new primary, want 1", n)
	}
	next, err := c2.Command("app", inc(6))
	if err != nil || wiretest.ErrorCode(next) != 0 {
		t.Fatalf("next write: %v %v", next, err)
	}
	if n := counter(set.Members[np].Host); n != 2 {
		t.Fatalf("counter = %d after a new write, want 2", n)
	}
}

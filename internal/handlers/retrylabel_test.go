package handlers

import (
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// TestLabelRetryableWrite: only a retryable write (txnNumber, no
// autocommit) or a commit/abort refused as not-primary is labelled.
func TestLabelRetryableWrite(t *testing.T) {
	req := func(name string, fields ...bson.E) *wire.Request {
		cmd, err := bson.Marshal(append(bson.D{{Key: name, Value: "c"}}, fields...))
		if err != nil {
			t.Fatal(err)
		}
		return &wire.Request{Name: name, Command: cmd}
	}
	notPrimary := mongoerr.New(mongoerr.NotWritablePrimary, "not primary")
	txn := bson.E{Key: "txnNumber", Value: int64(1)}
	for _, tc := range []struct {
		what string
		req  *wire.Request
		err  error
		want bool
	}{
		{"retryable insert", req("insert", txn), notPrimary, true},
		{"findAndModify", req("findAndModify", txn), mongoerr.New(mongoerr.InterruptedDueToReplStateChange, "x"), true},
		{"commitTransaction", req("commitTransaction", txn, bson.E{Key: "autocommit", Value: false}), notPrimary, true},
		{"insert without txnNumber", req("insert"), notPrimary, false},
		{"transaction statement", req("insert", txn, bson.E{Key: "autocommit", Value: false}), notPrimary, false},
		{"find", req("find", txn), notPrimary, false},
		{"duplicate key", req("insert", txn), mongoerr.New(mongoerr.DuplicateKey, "dup"), false},
	} {
		got := labelRetryableWrite(tc.req, tc.err)
		me, _ := got.(*mongoerr.Error)
		if has := me != nil && slices.Contains(me.Labels, mongoerr.RetryableWriteError); has != tc.want {
			t.Errorf("%s: labelled %v, want %v", tc.what, has, tc.want)
		}
	}
}

package handlers_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/handlers/handlerstest"
	"github.com/cmkdb/cmkdb/internal/kms"
)

// seedMany fills coll with n small documents {_id: i, x: i, s: i % 100} in
// one insert command.
func seedMany(t *testing.T, ctx context.Context, coll *mongo.Collection, n int) {
	t.Helper()
	docs := make([]any, n)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: int32(i)}, {Key: "x", Value: int32(i)}, {Key: "s", Value: int32(i % 100)}}
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatalf("seed: %v", err)
	}
}

// maxTimeMS is validated as mongod validates it, and a command that runs
// longer than it fails with MaxTimeMSExpired. Each command below reads
// every one of 150,000 documents, which takes far longer than
// 1 ms on any machine: the outcome does not depend on the machine's speed.
func TestMaxTimeMS(t *testing.T) {
	e := newDataEnv(t)
	coll := e.fresh(t)
	const n = 150000
	seedMany(t, e.ctx, coll, n)
	name := coll.Name()
	find := func(maxTime any) bson.D {
		return bson.D{{Key: "find", Value: name}, {Key: "filter", Value: bson.D{{Key: "_id", Value: 1}}}, {Key: "maxTimeMS", Value: maxTime}}
	}
	for _, tc := range []struct {
		name    string
		maxTime any
		code    int
	}{
		{"zero is no limit", int32(0), 0},
		{"largest", int64(1<<31 - 1), 0},
		{"integral double", 1000.0, 0},
		{"negative", int32(-1), 2},
		{"above 2^31-1", int64(1 << 31), 2},
		{"fractional", 1.5, 2},
		{"a string", "1000", 2},
	} {
		t.Run("validate "+tc.name, func(t *testing.T) {
			err := e.db.RunCommand(e.ctx, find(tc.maxTime)).Err()
			if tc.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantCode(t, err, tc.code)
		})
	}

	all := bson.D{{Key: "x", Value: bson.D{{Key: "$gte", Value: 0}}}}
	ms1 := bson.E{Key: "maxTimeMS", Value: int32(1)}
	for _, tc := range []struct {
		name string
		cmd  bson.D
	}{
		{"find with a blocking sort", bson.D{{Key: "find", Value: name}, {Key: "filter", Value: all}, {Key: "sort", Value: bson.D{{Key: "s", Value: 1}}}, ms1}},
		{"count", bson.D{{Key: "count", Value: name}, {Key: "query", Value: all}, ms1}},
		{"distinct", bson.D{{Key: "distinct", Value: name}, {Key: "key", Value: "s"}, ms1}},
		{"aggregate", bson.D{{Key: "aggregate", Value: name}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$s"}}}}}}, {Key: "cursor", Value: bson.D{}}, ms1}},
		{"update", bson.D{{Key: "update", Value: name}, {Key: "updates", Value: bson.A{bson.D{{Key: "q", Value: all}, {Key: "u", Value: bson.D{{Key: "$inc", Value: bson.D{{Key: "y", Value: 1}}}}}, {Key: "multi", Value: true}}}}, ms1}},
		{"findAndModify", bson.D{{Key: "findAndModify", Value: name}, {Key: "query", Value: all}, {Key: "sort", Value: bson.D{{Key: "s", Value: -1}}}, {Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "z", Value: 1}}}}}, ms1}},
		{"createIndexes", bson.D{{Key: "createIndexes", Value: name}, {Key: "indexes", Value: bson.A{bson.D{{Key: "key", Value: bson.D{{Key: "s", Value: 1}}}, {Key: "name", Value: "s_1"}}}}, ms1}},
		{"explain", bson.D{{Key: "explain", Value: bson.D{{Key: "find", Value: name}, {Key: "filter", Value: all}}}, {Key: "verbosity", Value: "executionStats"}, ms1}},
		{"delete", bson.D{{Key: "delete", Value: name}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: bson.D{{Key: "x", Value: -1}}}, {Key: "limit", Value: 0}}}}, ms1}},
	} {
		t.Run("expire "+tc.name, func(t *testing.T) {
			wantCode(t, e.db.RunCommand(e.ctx, tc.cmd).Err(), 50)
		})
	}
	// The interrupted index build published nothing.
	if specs, err := coll.Indexes().ListSpecifications(e.ctx); err != nil || len(specs) != 1 {
		t.Errorf("indexes after an interrupted build: %v, %v", specs, err)
	}

	// A cursor's maxTimeMS covers its getMores: with one document per
	// batch the find's first batch fits in the limit, and the getMores
	// that follow use up the rest of it.
	// The driver gives a RunCommand the context's remaining time as its
	// maxTimeMS, which getMore refuses (as mongod does): these run under
	// a context without a deadline.
	bg := context.Background()
	err := func() error {
		reply, err := e.db.RunCommand(bg, bson.D{{Key: "find", Value: name}, {Key: "batchSize", Value: 1}, ms1}).Raw()
		for err == nil {
			id := reply.Lookup("cursor", "id").Int64()
			if id == 0 {
				return nil
			}
			reply, err = e.db.RunCommand(bg, bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: name}, {Key: "batchSize", Value: 1}}).Raw()
		}
		return err
	}()
	wantCode(t, err, 50)
	// getMore takes no maxTimeMS of its own (no tailable cursors here).
	var first bson.Raw
	first, err = e.db.RunCommand(bg, bson.D{{Key: "find", Value: name}, {Key: "batchSize", Value: 1}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	id := first.Lookup("cursor", "id").Int64()
	wantCode(t, e.db.RunCommand(bg, bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: name}, {Key: "maxTimeMS", Value: 1000}}).Err(), 2)
}

// A disable does not wait for a long scan in flight: the scan stops and
// its command fails with KeyUnavailable (41001) and the reason. The figure
// logged is the time from the DISABLED verdict to the scan's error reply
// (docs/benchmarks.md).
func TestDisableStopsAScanInFlight(t *testing.T) {
	env := handlerstest.StartEnv(t, handlers.Options{})
	ctx := handlerstest.Context(t)
	coll := env.Client.Database("test").Collection("big")
	const n = 60000
	seedMany(t, ctx, coll, n)
	all := bson.D{{Key: "x", Value: bson.D{{Key: "$gte", Value: 0}}}}
	for _, tc := range []struct {
		name string
		run  func() error
	}{
		// One count with a filter reads all n documents in one batch,
		// holding the node the whole time.
		{"count", func() error {
			_, err := coll.CountDocuments(ctx, all)
			return err
		}},
		// A blocking aggregation reads its input a batch at a time.
		{"aggregate", func() error {
			cur, err := coll.Aggregate(ctx, bson.A{bson.D{{Key: "$match", Value: all}}, bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$s"}}}}})
			if err == nil {
				cur.Close(ctx)
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				err error
				at  time.Time
			}
			// Start the scan and wait until it holds the node (it is reading
			// documents). On a fast machine it may finish before the poll
			// sees it: that is no verdict on cancellation, so run it again.
			var done chan result
			for attempt := 1; ; attempt++ {
				done = make(chan result, 1)
				go func() {
					err := tc.run()
					done <- result{err, time.Now()}
				}()
				seen := false
				for !seen {
					if env.Node.InFlight() > 0 {
						seen = true
						break
					}
					select {
					case r := <-done:
						if r.err != nil || attempt == 50 {
							t.Fatalf("the scan ended (%v) before it was seen in flight, %d times", r.err, attempt)
						}
					default:
						time.Sleep(50 * time.Microsecond)
						continue
					}
					break
				}
				if seen {
					break
				}
			}
			verdict := time.Now()
			env.Node.Disable("the customer master key is invalid (KEY_DISABLED): test", kms.ReasonKeyDisabled)
			disabled := time.Since(verdict)
			var r result
			select {
			case r = <-done:
			case <-time.After(time.Minute):
				t.Fatal("the scan did not return")
			}
			wantCode(t, r.err, 41001)
			t.Logf("DISABLED verdict -> in-flight %s's 41001 reply: %v (Disable returned after %v)", tc.name, r.at.Sub(verdict), disabled)

			// Nothing was lost: re-enabled, the node has every document.
			if err := env.Node.Enable(ctx); err != nil {
				t.Fatal(err)
			}
			if c, err := coll.CountDocuments(ctx, bson.D{}); err != nil || c != n {
				t.Fatalf("after re-enable: %d documents, %v", c, err)
			}
		})
	}
}

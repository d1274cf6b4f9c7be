package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/handlers/handlerstest"
	"github.com/cmkdb/cmkdb/internal/testenv"
)

// The options walk: every option MongoDB 7.0 documents for create, find,
// aggregate and update (with the update statement's fields), and the
// unknown-field rule of the other data commands, each either working (an
// observable effect is checked) or refused with the exact error code. A
// row whose option silently did nothing would fail its effect check.

// optRun is one row's execution: its collection (seeded with _id 1..3,
// names "a", "B", "c", and an index name_1) and the command's reply.
type optRun struct {
	e     *dataEnv
	coll  string
	reply bson.Raw
}

type optCase struct {
	name string
	// noSeed leaves the row's collection uncreated (create rows).
	noSeed bool
	// setup runs before the command (e.g. make the collection capped).
	setup func(t *testing.T, r *optRun)
	cmd   func(coll string) bson.D
	// code is the expected top-level error code; 0 means the command works
	// and check verifies its effect.
	code  int32
	check func(t *testing.T, r *optRun)
	// skip names a dependency on another branch (arrayFilters only).
	skip string
}

func runOptCases(t *testing.T, e *dataEnv, cases []optCase) {
	t.Helper()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			r := &optRun{e: e, coll: fmt.Sprintf("opt%d_%s", i, strings.NewReplacer("/", "_", " ", "_", "$", "_", ".", "_").Replace(t.Name()))}
			if len(r.coll) > 100 {
				r.coll = r.coll[:100]
			}
			_ = e.db.Collection(r.coll).Drop(e.ctx)
			if !tc.noSeed {
				c := e.db.Collection(r.coll)
				if _, err := c.InsertMany(e.ctx, []any{
					bson.D{{Key: "_id", Value: 1}, {Key: "name", Value: "a"}},
					bson.D{{Key: "_id", Value: 2}, {Key: "name", Value: "B"}},
					bson.D{{Key: "_id", Value: 3}, {Key: "name", Value: "c"}},
				}); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "name", Value: 1}}}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.setup != nil {
				tc.setup(t, r)
			}
			reply, err := e.db.RunCommand(e.ctx, tc.cmd(r.coll)).Raw()
			r.reply = reply
			if tc.code != 0 {
				var ce mongo.CommandError
				if !errors.As(err, &ce) || ce.Code != tc.code {
					t.Fatalf("got %v (reply %v), want error code %d", err, reply, tc.code)
				}
				if ce.Name == "" || ce.Message == "" {
					t.Errorf("error without codeName or message: %+v", ce)
				}
				return
			}
			// Write errors are part of a working write command's reply
			// (the driver raises them); the row's check inspects them.
			var we mongo.WriteException
			if errors.As(err, &we) && reply != nil {
				err = nil
			}
			if err != nil {
				t.Fatalf("command failed: %v", err)
			}
			if tc.check == nil {
				t.Fatal("a working row needs an effect check")
			}
			tc.check(t, r)
		})
	}
}

// batchIDs renders the _ids of a cursor reply's first batch.
func batchIDs(t *testing.T, reply bson.Raw) string {
	t.Helper()
	arr, ok := reply.Lookup("cursor", "firstBatch").ArrayOK()
	if !ok {
		t.Fatalf("no cursor.firstBatch in %v", reply)
	}
	vals, _ := arr.Values()
	var ids []string
	for _, v := range vals {
		ids = append(ids, valText(v.Document().Lookup("_id")))
	}
	return strings.Join(ids, ",")
}

// valText renders a value as relaxed JSON (numbers plain, strings quoted).
func valText(v bson.RawValue) string {
	if n, ok := v.AsInt64OK(); ok {
		return fmt.Sprint(n)
	}
	return v.String()
}

func cursorID(reply bson.Raw) int64 {
	id, _ := reply.Lookup("cursor", "id").AsInt64OK()
	return id
}

func wantIDs(want string) func(t *testing.T, r *optRun) {
	return func(t *testing.T, r *optRun) {
		t.Helper()
		if got := batchIDs(t, r.reply); got != want {
			t.Errorf("first batch ids = %s, want %s", got, want)
		}
	}
}

// wantWriteError checks a write command's first writeError code.
func wantWriteError(code int32) func(t *testing.T, r *optRun) {
	return func(t *testing.T, r *optRun) {
		t.Helper()
		got, _ := r.reply.Lookup("writeErrors", "0", "code").Int32OK()
		if got != code {
			t.Errorf("writeErrors[0].code = %d, want %d (reply %v)", got, code, r.reply)
		}
	}
}

// stored renders the collection's documents in natural order.
func (r *optRun) stored(t *testing.T) string {
	t.Helper()
	cur, err := r.e.db.Collection(r.coll).Find(r.e.ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.Raw
	if err := cur.All(r.e.ctx, &docs); err != nil {
		t.Fatal(err)
	}
	return jsDocs(t, docs)
}

func (r *optRun) insertCode(t *testing.T, doc bson.D) int {
	t.Helper()
	_, err := r.e.db.Collection(r.coll).InsertOne(r.e.ctx, doc)
	return codeOf(err)
}

func (r *optRun) run(t *testing.T, cmd bson.D) (bson.Raw, error) {
	t.Helper()
	return r.e.db.RunCommand(r.e.ctx, cmd).Raw()
}

// makeCapped replaces the row's collection by a capped one (max 3)
// holding _id 1..3 in that insertion order.
func makeCapped(t *testing.T, r *optRun) {
	t.Helper()
	c := r.e.db.Collection(r.coll)
	_ = c.Drop(r.e.ctx)
	if _, err := r.run(t, bson.D{{Key: "create", Value: r.coll}, {Key: "capped", Value: true}, {Key: "size", Value: 1 << 20}, {Key: "max", Value: 3}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{1, 2, 3} {
		if _, err := c.InsertOne(r.e.ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
			t.Fatal(err)
		}
	}
}

// withValidator puts a validator {n: {$gte: 0}} on the row's collection.
func withValidator(t *testing.T, r *optRun) {
	t.Helper()
	if _, err := r.run(t, bson.D{{Key: "collMod", Value: r.coll}, {Key: "validator", Value: bson.D{{Key: "n", Value: bson.D{{Key: "$gte", Value: 0}}}}}}); err != nil {
		t.Fatal(err)
	}
}

func cmdWith(name string, base bson.D, extra ...bson.E) func(coll string) bson.D {
	return func(coll string) bson.D {
		d := bson.D{{Key: name, Value: coll}}
		d = append(d, base...)
		return append(d, extra...)
	}
}

func find(extra ...bson.E) func(string) bson.D { return cmdWith("find", nil, extra...) }

func e(k string, v any) bson.E { return bson.E{Key: k, Value: v} }

type d = bson.D

const (
	codeBadValue        = 2
	codeFailedToParse   = 9
	codeTypeMismatch    = 14
	codeNamespaceExists = 48
	codeInvalidOptions  = 72
	codeValidation      = 121
	codeNotAReplicaSet  = 123
	codeNotImplemented  = 238
	codeIDLValue        = 51024
	codeUnknownField    = 40415
)

func TestOptionsFind(t *testing.T) {
	e0 := newDataEnv(t)
	en := d{{Key: "locale", Value: "en"}, {Key: "strength", Value: 2}}
	runOptCases(t, e0, []optCase{
		{name: "filter", cmd: find(e("filter", d{{Key: "_id", Value: 2}})), check: wantIDs("2")},
		{name: "projection", cmd: find(e("projection", d{{Key: "name", Value: 0}}), e("sort", d{{Key: "_id", Value: 1}})), check: func(t *testing.T, r *optRun) {
			if strings.Contains(r.reply.String(), `"name"`) {
				t.Errorf("projection kept name: %v", r.reply)
			}
		}},
		{name: "sort", cmd: find(e("sort", d{{Key: "_id", Value: -1}})), check: wantIDs("3,2,1")},
		{name: "sort $natural reverse", cmd: find(e("sort", d{{Key: "$natural", Value: -1}})), check: wantIDs("3,2,1")},
		{name: "hint by name", cmd: find(e("hint", "name_1"), e("filter", d{{Key: "name", Value: "c"}})), check: wantIDs("3")},
		{name: "hint by key", cmd: find(e("hint", d{{Key: "name", Value: 1}}), e("filter", d{{Key: "_id", Value: 1}})), check: wantIDs("1")},
		{name: "hint $natural reverse", cmd: find(e("hint", d{{Key: "$natural", Value: -1}})), check: wantIDs("3,2,1")},
		{name: "hint naming no index", cmd: find(e("hint", "nope")), code: codeBadValue},
		{name: "skip", cmd: find(e("skip", 1), e("sort", d{{Key: "_id", Value: 1}})), check: wantIDs("2,3")},
		{name: "limit", cmd: find(e("limit", 1), e("sort", d{{Key: "_id", Value: 1}})), check: wantIDs("1")},
		{name: "batchSize", cmd: find(e("batchSize", 1)), check: func(t *testing.T, r *optRun) {
			if n := len(strings.Split(batchIDs(t, r.reply), ",")); n != 1 || cursorID(r.reply) == 0 {
				t.Errorf("batch of %d, cursor %d: want 1 and an open cursor", n, cursorID(r.reply))
			}
		}},
		{name: "batchSize negative", cmd: find(e("batchSize", -1)), code: codeIDLValue},
		{name: "singleBatch", cmd: find(e("batchSize", 1), e("singleBatch", true)), check: func(t *testing.T, r *optRun) {
			if cursorID(r.reply) != 0 {
				t.Errorf("singleBatch left cursor %d open", cursorID(r.reply))
			}
		}},
		{name: "comment", cmd: find(e("comment", "hello"), e("sort", d{{Key: "_id", Value: 1}})), check: wantIDs("1,2,3")},
		{name: "maxTimeMS", cmd: find(e("maxTimeMS", 60000), e("sort", d{{Key: "_id", Value: 1}})), check: wantIDs("1,2,3")},
		{name: "readConcern local", cmd: find(e("readConcern", d{{Key: "level", Value: "local"}}), e("filter", d{{Key: "_id", Value: 3}})), check: wantIDs("3")},
		{name: "readConcern majority", cmd: find(e("readConcern", d{{Key: "level", Value: "majority"}}), e("filter", d{{Key: "_id", Value: 3}})), check: wantIDs("3")},
		{name: "readConcern available", cmd: find(e("readConcern", d{{Key: "level", Value: "available"}}), e("filter", d{{Key: "_id", Value: 3}})), check: wantIDs("3")},
		{name: "readConcern snapshot", cmd: find(e("readConcern", d{{Key: "level", Value: "snapshot"}})), code: codeNotAReplicaSet},
		{name: "readConcern linearizable", cmd: find(e("readConcern", d{{Key: "level", Value: "linearizable"}})), code: codeNotAReplicaSet},
		{name: "readConcern unknown level", cmd: find(e("readConcern", d{{Key: "level", Value: "bogus"}})), code: codeBadValue},
		{name: "max", cmd: find(e("max", d{{Key: "name", Value: "b"}}), e("hint", "name_1")), code: codeNotImplemented},
		{name: "min", cmd: find(e("min", d{{Key: "name", Value: "b"}}), e("hint", "name_1")), code: codeNotImplemented},
		{name: "returnKey", cmd: find(e("returnKey", true)), code: codeNotImplemented},
		{name: "returnKey false", cmd: find(e("returnKey", false), e("filter", d{{Key: "_id", Value: 1}})), check: wantIDs("1")},
		{name: "showRecordId", cmd: find(e("showRecordId", true)), code: codeNotImplemented},
		{name: "tailable on a non-capped collection", cmd: find(e("tailable", true)), code: codeBadValue},
		{name: "awaitData without tailable", cmd: find(e("awaitData", true)), code: codeFailedToParse},
		{name: "tailable on a capped collection", setup: makeCapped, cmd: find(e("tailable", true)), check: func(t *testing.T, r *optRun) {
			if got := batchIDs(t, r.reply); got != "1,2,3" || cursorID(r.reply) == 0 {
				t.Fatalf("tailable first batch %s, cursor %d: want 1,2,3 and an open cursor", got, cursorID(r.reply))
			}
			if _, err := r.e.db.Collection(r.coll).InsertOne(r.e.ctx, d{{Key: "_id", Value: 4}}); err != nil {
				t.Fatal(err)
			}
			// getMores go without a deadline: the driver would turn one into maxTimeMS,
			// which mongod refuses on a getMore of a non-awaitData cursor.
			more, err := r.e.db.RunCommand(context.WithoutCancel(r.e.ctx), d{{Key: "getMore", Value: cursorID(r.reply)}, {Key: "collection", Value: r.coll}}).Raw()
			if err != nil {
				t.Fatal(err)
			}
			arr, _ := more.Lookup("cursor", "nextBatch").ArrayOK()
			if vals, _ := arr.Values(); len(vals) != 1 || valText(vals[0].Document().Lookup("_id")) != "4" {
				t.Errorf("getMore after an insert = %v, want the new document", more)
			}
			// Three more inserts evict the cursor's last document (max 3).
			for _, id := range []int{5, 6, 7} {
				if _, err := r.e.db.Collection(r.coll).InsertOne(r.e.ctx, d{{Key: "_id", Value: id}}); err != nil {
					t.Fatal(err)
				}
			}
			_, err = r.e.db.RunCommand(context.WithoutCancel(r.e.ctx), d{{Key: "getMore", Value: cursorID(r.reply)}, {Key: "collection", Value: r.coll}}).Raw()
			if codeOf(err) != 136 {
				t.Errorf("getMore after its position was evicted: %v, want CappedPositionLost", err)
			}
			// Dropping the collection kills a cursor (QueryPlanKilled).
			first, err := r.run(t, d{{Key: "find", Value: r.coll}, {Key: "tailable", Value: true}})
			if err != nil {
				t.Fatal(err)
			}
			r.reply = first
			if err := r.e.db.Collection(r.coll).Drop(r.e.ctx); err != nil {
				t.Fatal(err)
			}
			_, err = r.e.db.RunCommand(context.WithoutCancel(r.e.ctx), d{{Key: "getMore", Value: cursorID(r.reply)}, {Key: "collection", Value: r.coll}}).Raw()
			if codeOf(err) != 175 {
				t.Errorf("getMore after drop: %v, want QueryPlanKilled", err)
			}
		}},
		{name: "tailable awaitData waits for an insert", setup: func(t *testing.T, r *optRun) {
			// Roomy, so that no insert below evicts the cursor's position.
			_ = r.e.db.Collection(r.coll).Drop(r.e.ctx)
			if _, err := r.run(t, bson.D{{Key: "create", Value: r.coll}, {Key: "capped", Value: true}, {Key: "size", Value: 1 << 26}}); err != nil {
				t.Fatal(err)
			}
			r.e.db.Collection(r.coll).InsertOne(r.e.ctx, d{{Key: "_id", Value: 1}})
		}, cmd: find(e("tailable", true), e("awaitData", true)), check: func(t *testing.T, r *optRun) {
			id := cursorID(r.reply)
			// A getMore that finds nothing waits; an insert from another
			// client wakes it (no timing assertion: the wait bound is long).
			done := make(chan bson.Raw, 1)
			go func() {
				more, _ := r.e.db.RunCommand(r.e.ctx, d{{Key: "getMore", Value: id}, {Key: "collection", Value: r.coll}, {Key: "maxTimeMS", Value: 60000}}).Raw()
				done <- more
			}()
			// Writes to another collection of the database signal the wait
			// too; they must not end it with an empty batch.
			for i := 0; i < 10; i++ {
				if _, err := r.e.db.Collection(r.coll+"_other").InsertOne(r.e.ctx, d{{Key: "_id", Value: i}}); err != nil {
					t.Fatal(err)
				}
				select {
				case more := <-done:
					t.Fatalf("awaitData getMore returned after a write to another collection: %v", more)
				case <-time.After(20 * time.Millisecond):
				}
			}
			for i := 5; ; i++ {
				if _, err := r.e.db.Collection(r.coll).InsertOne(r.e.ctx, d{{Key: "_id", Value: i}}); err != nil {
					t.Fatal(err)
				}
				select {
				case more := <-done:
					arr, _ := more.Lookup("cursor", "nextBatch").ArrayOK()
					if vals, _ := arr.Values(); len(vals) == 0 {
						t.Errorf("awaitData getMore returned %v, want new documents", more)
					}
					return
				case <-r.e.ctx.Done():
					t.Fatal("getMore never returned")
				case <-time.After(50 * time.Millisecond):
					// Not yet waiting when the last insert landed: insert again.
				}
				if i > 10000 {
					t.Fatal("getMore never returned")
				}
			}
		}},
		{name: "oplogReplay", cmd: find(e("oplogReplay", true), e("filter", d{{Key: "_id", Value: 2}})), check: wantIDs("2")},
		{name: "noCursorTimeout", cmd: find(e("noCursorTimeout", true), e("batchSize", 1)), check: func(t *testing.T, r *optRun) {
			if cursorID(r.reply) == 0 {
				t.Errorf("no cursor opened")
			}
		}},
		{name: "allowPartialResults", cmd: find(e("allowPartialResults", true), e("filter", d{{Key: "_id", Value: 2}})), check: wantIDs("2")},
		{name: "allowDiskUse", cmd: find(e("allowDiskUse", true), e("sort", d{{Key: "_id", Value: -1}})), check: wantIDs("3,2,1")},
		{name: "collation simple", cmd: find(e("collation", d{{Key: "locale", Value: "simple"}}), e("filter", d{{Key: "name", Value: "b"}})), check: wantIDs("")},
		{name: "collation case-insensitive", cmd: find(e("collation", en), e("filter", d{{Key: "name", Value: "b"}})), code: codeNotImplemented},
		{name: "let empty", cmd: find(e("let", d{}), e("filter", d{{Key: "_id", Value: 1}})), check: wantIDs("1")},
		{name: "let", cmd: find(e("let", d{{Key: "x", Value: d{{Key: "$add", Value: bson.A{1, 1}}}}}), e("filter", d{{Key: "$expr", Value: d{{Key: "$eq", Value: bson.A{"$_id", "$$x"}}}}})), check: wantIDs("2")},
		{name: "let path", cmd: find(e("let", d{{Key: "x", Value: d{{Key: "id", Value: 3}}}}), e("filter", d{{Key: "$or", Value: bson.A{d{{Key: "$expr", Value: d{{Key: "$eq", Value: bson.A{"$_id", "$$x.id"}}}}}}}})), check: wantIDs("3")},
		{name: "let outside $expr is data", cmd: find(e("let", d{{Key: "x", Value: "a"}}), e("filter", d{{Key: "name", Value: "$$x"}})), check: wantIDs("")},
		{name: "let bad name", cmd: find(e("let", d{{Key: "X", Value: 1}})), code: 16870},
		{name: "let shadowed by $let", cmd: find(e("let", d{{Key: "x", Value: 1}}), e("filter", d{{Key: "$expr", Value: d{{Key: "$let", Value: d{{Key: "vars", Value: d{{Key: "x", Value: 2}}}, {Key: "in", Value: d{{Key: "$eq", Value: bson.A{"$_id", "$$x"}}}}}}}}})), code: codeNotImplemented},
		{name: "$jsonSchema filter", cmd: find(e("filter", d{{Key: "$jsonSchema", Value: d{{Key: "properties", Value: d{{Key: "name", Value: d{{Key: "pattern", Value: "^[a-z]$"}}}}}}}}), e("sort", d{{Key: "_id", Value: 1}})), check: wantIDs("1,3")},
		{name: "unknown field", cmd: find(e("frobnicate", 1)), code: codeUnknownField},
	})
}

func TestOptionsAggregate(t *testing.T) {
	e0 := newDataEnv(t)
	agg := func(pipeline bson.A, extra ...bson.E) func(string) bson.D {
		return cmdWith("aggregate", d{{Key: "pipeline", Value: pipeline}, {Key: "cursor", Value: d{}}}, extra...)
	}
	sortID := bson.A{d{{Key: "$sort", Value: d{{Key: "_id", Value: 1}}}}}
	runOptCases(t, e0, []optCase{
		{name: "pipeline", cmd: agg(bson.A{d{{Key: "$match", Value: d{{Key: "_id", Value: d{{Key: "$gt", Value: 1}}}}}}, d{{Key: "$sort", Value: d{{Key: "_id", Value: -1}}}}}), check: wantIDs("3,2")},
		{name: "cursor batchSize", cmd: cmdWith("aggregate", d{{Key: "pipeline", Value: sortID}, {Key: "cursor", Value: d{{Key: "batchSize", Value: 1}}}}), check: func(t *testing.T, r *optRun) {
			if got := batchIDs(t, r.reply); got != "1" || cursorID(r.reply) == 0 {
				t.Errorf("batch %s cursor %d", got, cursorID(r.reply))
			}
		}},
		{name: "cursor missing", cmd: cmdWith("aggregate", d{{Key: "pipeline", Value: sortID}}), code: codeFailedToParse},
		{name: "explain", cmd: agg(sortID, e("explain", true)), check: func(t *testing.T, r *optRun) {
			stages, ok := r.reply.Lookup("stages").ArrayOK()
			if !ok || r.reply.Lookup("explainVersion").StringValue() != "1" {
				t.Errorf("reply %s", r.reply)
			}
			if first, _ := stages.Index(0).Document().Lookup("$cursor", "queryPlanner", "winningPlan", "stage").StringValueOK(); first != "COLLSCAN" {
				t.Errorf("reply %s", r.reply)
			}
		}},
		{name: "allowDiskUse", cmd: agg(sortID, e("allowDiskUse", true)), check: wantIDs("1,2,3")},
		{name: "maxTimeMS", cmd: agg(sortID, e("maxTimeMS", 60000)), check: wantIDs("1,2,3")},
		{name: "bypassDocumentValidation", cmd: agg(sortID, e("bypassDocumentValidation", true)), check: wantIDs("1,2,3")},
		{name: "readConcern majority", cmd: agg(sortID, e("readConcern", d{{Key: "level", Value: "majority"}})), check: wantIDs("1,2,3")},
		{name: "readConcern snapshot", cmd: agg(sortID, e("readConcern", d{{Key: "level", Value: "snapshot"}})), code: codeNotAReplicaSet},
		{name: "collation simple", cmd: agg(sortID, e("collation", d{{Key: "locale", Value: "simple"}})), check: wantIDs("1,2,3")},
		{name: "collation fr", cmd: agg(sortID, e("collation", d{{Key: "locale", Value: "fr"}})), code: codeNotImplemented},
		{name: "hint", cmd: agg(sortID, e("hint", "name_1")), check: wantIDs("1,2,3")},
		{name: "hint naming no index", cmd: agg(sortID, e("hint", d{{Key: "nope", Value: 1}})), code: codeBadValue},
		{name: "comment", cmd: agg(sortID, e("comment", "c")), check: wantIDs("1,2,3")},
		{name: "writeConcern", cmd: agg(sortID, e("writeConcern", d{{Key: "w", Value: 1}})), check: wantIDs("1,2,3")},
		{name: "let", cmd: agg(bson.A{d{{Key: "$match", Value: d{{Key: "$expr", Value: d{{Key: "$lt", Value: bson.A{"$_id", "$$x"}}}}}}}, d{{Key: "$sort", Value: d{{Key: "_id", Value: 1}}}}, d{{Key: "$addFields", Value: d{{Key: "v", Value: "$$x"}}}}}, e("let", d{{Key: "x", Value: 3}})), check: func(t *testing.T, r *optRun) {
			wantIDs("1,2")(t, r)
			if v := valText(r.reply.Lookup("cursor", "firstBatch", "0", "v")); v != "3" {
				t.Errorf("$$x in $addFields = %s, want 3", v)
			}
		}},
		{name: "unknown field", cmd: agg(sortID, e("frobnicate", 1)), code: codeUnknownField},
	})
}

func TestOptionsUpdate(t *testing.T) {
	e0 := newDataEnv(t)
	upd := func(stmt bson.D, extra ...bson.E) func(string) bson.D {
		return cmdWith("update", d{{Key: "updates", Value: bson.A{stmt}}}, extra...)
	}
	setX := d{{Key: "$set", Value: d{{Key: "x", Value: 1}}}}
	wantN := func(n, modified int32) func(t *testing.T, r *optRun) {
		return func(t *testing.T, r *optRun) {
			gn, _ := r.reply.Lookup("n").Int32OK()
			gm, _ := r.reply.Lookup("nModified").Int32OK()
			if gn != n || gm != modified {
				t.Errorf("n=%d nModified=%d, want %d %d (reply %v)", gn, gm, n, modified, r.reply)
			}
		}
	}
	runOptCases(t, e0, []optCase{
		{name: "q and u", cmd: upd(d{{Key: "q", Value: d{{Key: "_id", Value: 2}}}, {Key: "u", Value: setX}}), check: wantN(1, 1)},
		{name: "upsert", cmd: upd(d{{Key: "q", Value: d{{Key: "_id", Value: 9}}}, {Key: "u", Value: setX}, {Key: "upsert", Value: true}}), check: func(t *testing.T, r *optRun) {
			if id := valText(r.reply.Lookup("upserted", "0", "_id")); id != "9" {
				t.Errorf("upserted = %v", r.reply)
			}
		}},
		{name: "multi", cmd: upd(d{{Key: "q", Value: d{}}, {Key: "u", Value: setX}, {Key: "multi", Value: true}}), check: wantN(3, 3)},
		{name: "multi false", cmd: upd(d{{Key: "q", Value: d{}}, {Key: "u", Value: setX}, {Key: "multi", Value: false}}), check: wantN(1, 1)},
		{name: "collation simple", cmd: upd(d{{Key: "q", Value: d{{Key: "name", Value: "b"}}}, {Key: "u", Value: setX}, {Key: "collation", Value: d{{Key: "locale", Value: "simple"}}}}), check: wantN(0, 0)},
		{name: "collation en", cmd: upd(d{{Key: "q", Value: d{{Key: "name", Value: "b"}}}, {Key: "u", Value: setX}, {Key: "collation", Value: d{{Key: "locale", Value: "en"}, {Key: "strength", Value: 1}}}}), code: codeNotImplemented},
		{name: "arrayFilters", setup: func(t *testing.T, r *optRun) {
			r.e.db.Collection(r.coll).InsertOne(r.e.ctx, d{{Key: "_id", Value: 10}, {Key: "a", Value: bson.A{1, 5, 7}}})
		}, cmd: upd(d{{Key: "q", Value: d{{Key: "_id", Value: 10}}}, {Key: "u", Value: d{{Key: "$set", Value: d{{Key: "a.$[big]", Value: 0}}}}}, {Key: "arrayFilters", Value: bson.A{d{{Key: "big", Value: d{{Key: "$gt", Value: 4}}}}}}}),
			check: func(t *testing.T, r *optRun) {
				if got := r.stored(t); !strings.Contains(got, `"a":[1,0,0]`) {
					t.Errorf("after arrayFilters update: %s", got)
				}
			}},
		{name: "hint", cmd: upd(d{{Key: "q", Value: d{{Key: "name", Value: "c"}}}, {Key: "u", Value: setX}, {Key: "hint", Value: "name_1"}}), check: wantN(1, 1)},
		{name: "hint naming no index", cmd: upd(d{{Key: "q", Value: d{}}, {Key: "u", Value: setX}, {Key: "hint", Value: "nope"}}), check: wantWriteError(codeBadValue)},
		{name: "statement unknown field", cmd: upd(d{{Key: "q", Value: d{}}, {Key: "u", Value: setX}, {Key: "frobnicate", Value: 1}}), code: codeUnknownField},
		{name: "ordered false", cmd: cmdWith("update", d{{Key: "updates", Value: bson.A{
			d{{Key: "q", Value: d{{Key: "_id", Value: 1}}}, {Key: "u", Value: d{{Key: "$set", Value: d{{Key: "_id", Value: 5}}}}}},
			d{{Key: "q", Value: d{{Key: "_id", Value: 2}}}, {Key: "u", Value: setX}},
		}}, {Key: "ordered", Value: false}}), check: wantN(1, 1)},
		{name: "bypassDocumentValidation", setup: withValidator, cmd: upd(d{{Key: "q", Value: d{{Key: "_id", Value: 1}}}, {Key: "u", Value: d{{Key: "$set", Value: d{{Key: "n", Value: -1}}}}}}, e("bypassDocumentValidation", true)), check: wantN(1, 1)},
		{name: "validator without bypass", setup: withValidator, cmd: upd(d{{Key: "q", Value: d{{Key: "_id", Value: 1}}}, {Key: "u", Value: d{{Key: "$set", Value: d{{Key: "n", Value: -1}}}}}}), check: func(t *testing.T, r *optRun) {
			wantWriteError(codeValidation)(t, r)
			if valText(r.reply.Lookup("writeErrors", "0", "errInfo", "failingDocumentId")) != "1" {
				t.Errorf("errInfo = %v", r.reply.Lookup("writeErrors", "0", "errInfo"))
			}
		}},
		{name: "let", cmd: upd(d{{Key: "q", Value: d{{Key: "$expr", Value: d{{Key: "$eq", Value: bson.A{"$_id", "$$x"}}}}}}, {Key: "u", Value: setX}, {Key: "multi", Value: true}}, e("let", d{{Key: "x", Value: 2}})), check: wantN(1, 1)},
		{name: "comment", cmd: upd(d{{Key: "q", Value: d{{Key: "_id", Value: 3}}}, {Key: "u", Value: setX}}, e("comment", "c")), check: wantN(1, 1)},
		{name: "writeConcern", cmd: upd(d{{Key: "q", Value: d{{Key: "_id", Value: 3}}}, {Key: "u", Value: setX}}, e("writeConcern", d{{Key: "w", Value: 1}})), check: wantN(1, 1)},
		{name: "unknown field", cmd: upd(d{{Key: "q", Value: d{}}, {Key: "u", Value: setX}}, e("frobnicate", 1)), code: codeUnknownField},
		{name: "pipeline update with c", cmd: upd(d{{Key: "q", Value: d{{Key: "_id", Value: 1}}}, {Key: "u", Value: bson.A{d{{Key: "$set", Value: d{{Key: "x", Value: "$$k"}}}}}}, {Key: "c", Value: d{{Key: "k", Value: "K"}}}}), check: func(t *testing.T, r *optRun) {
			if got := r.stored(t); !strings.Contains(got, `{"_id":1,"name":"a","x":"K"}`) {
				t.Errorf("after pipeline update: %s", got)
			}
		}},
		{name: "c without a pipeline", cmd: upd(d{{Key: "q", Value: d{}}, {Key: "u", Value: setX}, {Key: "c", Value: d{{Key: "k", Value: 1}}}}), check: wantWriteError(51198)},
		{name: "pipeline update with arrayFilters", cmd: upd(d{{Key: "q", Value: d{}}, {Key: "u", Value: bson.A{d{{Key: "$set", Value: d{{Key: "x", Value: 1}}}}}}, {Key: "arrayFilters", Value: bson.A{d{{Key: "e", Value: 1}}}}}), check: wantWriteError(codeFailedToParse)},
	})
}

func TestOptionsCreate(t *testing.T) {
	e0 := newDataEnv(t)
	create := func(extra ...bson.E) func(string) bson.D { return cmdWith("create", nil, extra...) }
	listed := func(t *testing.T, r *optRun) bson.Raw {
		t.Helper()
		specs, err := r.e.db.ListCollectionSpecifications(r.e.ctx, d{{Key: "name", Value: r.coll}})
		if err != nil || len(specs) != 1 {
			t.Fatalf("listCollections: %v %v", specs, err)
		}
		return specs[0].Options
	}
	invalid := d{{Key: "n", Value: -1}}
	runOptCases(t, e0, []optCase{
		{name: "plain", noSeed: true, cmd: create(), check: func(t *testing.T, r *optRun) {
			if o := listed(t, r); len(o) != 5 {
				t.Errorf("options = %v, want {}", o)
			}
		}},
		{name: "capped size max", noSeed: true, cmd: create(e("capped", true), e("size", 4096), e("max", 2)), check: func(t *testing.T, r *optRun) {
			for i := 1; i <= 5; i++ {
				r.e.db.Collection(r.coll).InsertOne(r.e.ctx, d{{Key: "_id", Value: 10 - i}})
			}
			if got := r.stored(t); got != `[{"_id":6},{"_id":5}]` {
				t.Errorf("capped max 2 holds %s, want the two newest in insertion order", got)
			}
			o := listed(t, r)
			if o.Lookup("capped").Boolean() != true || o.Lookup("size").AsInt64() != 4096 || o.Lookup("max").AsInt64() != 2 {
				t.Errorf("listCollections options = %v", o)
			}
		}},
		{name: "capped size bound", noSeed: true, cmd: create(e("capped", true), e("size", 100)), check: func(t *testing.T, r *optRun) {
			for i := 1; i <= 10; i++ {
				r.e.db.Collection(r.coll).InsertOne(r.e.ctx, d{{Key: "_id", Value: i}, {Key: "p", Value: "0123456789"}})
			}
			cur, _ := r.e.db.Collection(r.coll).Find(r.e.ctx, d{})
			var docs []bson.Raw
			cur.All(r.e.ctx, &docs)
			size := 0
			for _, doc := range docs {
				size += len(doc)
			}
			if size > 100 || len(docs) == 0 || docs[len(docs)-1].Lookup("_id").AsInt64() != 10 {
				t.Errorf("capped 100 bytes holds %d bytes in %d docs: %v", size, len(docs), docs)
			}
		}},
		{name: "capped without size", noSeed: true, cmd: create(e("capped", true), e("max", 5)), code: codeInvalidOptions},
		{name: "size without capped", noSeed: true, cmd: create(e("size", 4096)), code: codeInvalidOptions},
		{name: "size zero", noSeed: true, cmd: create(e("capped", true), e("size", 0)), code: codeIDLValue},
		{name: "size over 1 PB", noSeed: true, cmd: create(e("capped", true), e("size", int64(1)<<51)), code: codeIDLValue},
		{name: "max too big", noSeed: true, cmd: create(e("capped", true), e("size", 4096), e("max", int64(math.MaxInt32)+1)), code: codeIDLValue},
		{name: "size wrong type", noSeed: true, cmd: create(e("capped", true), e("size", "big")), code: codeTypeMismatch},
		{name: "validator", noSeed: true, cmd: create(e("validator", d{{Key: "n", Value: d{{Key: "$gte", Value: 0}}}})), check: func(t *testing.T, r *optRun) {
			if c := r.insertCode(t, invalid); c != codeValidation {
				t.Errorf("invalid insert: code %d, want 121", c)
			}
			if c := r.insertCode(t, d{{Key: "n", Value: 1}}); c != 0 {
				t.Errorf("valid insert: code %d", c)
			}
		}},
		{name: "validator $jsonSchema", noSeed: true, cmd: create(e("validator", d{{Key: "$jsonSchema", Value: d{{Key: "required", Value: bson.A{"n"}}}}})), check: func(t *testing.T, r *optRun) {
			if c := r.insertCode(t, d{{Key: "m", Value: 1}}); c != codeValidation {
				t.Errorf("insert without n: code %d, want 121", c)
			}
		}},
		{name: "validator $where", noSeed: true, cmd: create(e("validator", d{{Key: "$where", Value: "true"}})), code: codeBadValue},
		{name: "validator $jsonSchema unsupported keyword", noSeed: true, cmd: create(e("validator", d{{Key: "$jsonSchema", Value: d{{Key: "$ref", Value: "#/x"}}}})), code: codeFailedToParse},
		{name: "validationLevel moderate", noSeed: true, cmd: create(e("validator", d{{Key: "n", Value: d{{Key: "$gte", Value: 0}}}}), e("validationLevel", "moderate")), check: func(t *testing.T, r *optRun) {
			if o := listed(t, r); o.Lookup("validationLevel").StringValue() != "moderate" {
				t.Errorf("options = %v", o)
			}
		}},
		{name: "validationLevel bogus", noSeed: true, cmd: create(e("validationLevel", "bogus")), code: codeBadValue},
		{name: "validationAction warn", noSeed: true, cmd: create(e("validator", d{{Key: "n", Value: d{{Key: "$gte", Value: 0}}}}), e("validationAction", "warn")), check: func(t *testing.T, r *optRun) {
			if c := r.insertCode(t, invalid); c != 0 {
				t.Errorf("warn: invalid insert refused with %d", c)
			}
		}},
		{name: "validationAction bogus", noSeed: true, cmd: create(e("validationAction", "bogus")), code: codeBadValue},
		{name: "viewOn", noSeed: true, cmd: create(e("viewOn", "other"), e("pipeline", bson.A{})), code: codeNotImplemented},
		{name: "pipeline without viewOn", noSeed: true, cmd: create(e("pipeline", bson.A{})), code: codeInvalidOptions},
		{name: "timeseries", noSeed: true, cmd: create(e("timeseries", d{{Key: "timeField", Value: "t"}})), code: codeNotImplemented},
		{name: "clusteredIndex", noSeed: true, cmd: create(e("clusteredIndex", d{{Key: "key", Value: d{{Key: "_id", Value: 1}}}, {Key: "unique", Value: true}})), code: codeNotImplemented},
		{name: "changeStreamPreAndPostImages", noSeed: true, cmd: create(e("changeStreamPreAndPostImages", d{{Key: "enabled", Value: true}})), code: codeNotImplemented},
		{name: "encryptedFields", noSeed: true, cmd: create(e("encryptedFields", d{{Key: "fields", Value: bson.A{}}})), code: 6346402},
		{name: "storageEngine", noSeed: true, cmd: create(e("storageEngine", d{{Key: "wiredTiger", Value: d{}}})), code: codeNotImplemented},
		{name: "indexOptionDefaults", noSeed: true, cmd: create(e("indexOptionDefaults", d{{Key: "storageEngine", Value: d{{Key: "wiredTiger", Value: d{}}}}})), code: codeNotImplemented},
		{name: "expireAfterSeconds", noSeed: true, cmd: create(e("expireAfterSeconds", 10)), code: codeInvalidOptions},
		{name: "autoIndexId false", noSeed: true, cmd: create(e("autoIndexId", false)), code: codeNotImplemented},
		{name: "idIndex default", noSeed: true, cmd: create(e("idIndex", d{{Key: "key", Value: d{{Key: "_id", Value: 1}}}, {Key: "name", Value: "_id_"}, {Key: "v", Value: 2}})), check: func(t *testing.T, r *optRun) {
			if c := r.insertCode(t, d{{Key: "_id", Value: 1}}); c != 0 {
				t.Errorf("insert: %d", c)
			}
			if c := r.insertCode(t, d{{Key: "_id", Value: 1}}); c != 11000 {
				t.Errorf("duplicate _id: %d, want 11000", c)
			}
		}},
		{name: "collation simple", noSeed: true, cmd: create(e("collation", d{{Key: "locale", Value: "simple"}})), check: func(t *testing.T, r *optRun) { listed(t, r) }},
		{name: "collation en", noSeed: true, cmd: create(e("collation", d{{Key: "locale", Value: "en"}})), code: codeNotImplemented},
		{name: "temp", noSeed: true, cmd: create(e("temp", true)), code: codeInvalidOptions},
		{name: "writeConcern and comment", noSeed: true, cmd: create(e("writeConcern", d{{Key: "w", Value: 1}}), e("comment", "c")), check: func(t *testing.T, r *optRun) { listed(t, r) }},
		{name: "existing, same options", cmd: create(), check: func(t *testing.T, r *optRun) {
			if got := r.stored(t); !strings.Contains(got, `"_id":3`) {
				t.Errorf("existing collection changed: %s", got)
			}
		}},
		{name: "existing, other options", cmd: create(e("capped", true), e("size", 4096)), code: codeNamespaceExists},
		{name: "flags (deprecated, ignored by mongod)", noSeed: true, cmd: create(e("flags", 1)), check: func(t *testing.T, r *optRun) { listed(t, r) }},
		{name: "recordPreImages (removed in 6.0)", noSeed: true, cmd: create(e("recordPreImages", true)), code: codeUnknownField},
		{name: "unknown field", noSeed: true, cmd: create(e("frobnicate", 1)), code: codeUnknownField},
	})
}

func TestOptionsCollMod(t *testing.T) {
	e0 := newDataEnv(t)
	collMod := func(extra ...bson.E) func(string) bson.D { return cmdWith("collMod", nil, extra...) }
	runOptCases(t, e0, []optCase{
		{name: "validator", cmd: collMod(e("validator", d{{Key: "n", Value: d{{Key: "$type", Value: "int"}}}})), check: func(t *testing.T, r *optRun) {
			if c := r.insertCode(t, d{{Key: "n", Value: "x"}}); c != codeValidation {
				t.Errorf("invalid insert after collMod: code %d", c)
			}
		}},
		{name: "validationAction warn", setup: withValidator, cmd: collMod(e("validationAction", "warn")), check: func(t *testing.T, r *optRun) {
			if c := r.insertCode(t, d{{Key: "n", Value: -1}}); c != 0 {
				t.Errorf("warn: %d", c)
			}
		}},
		{name: "validationLevel off", setup: withValidator, cmd: collMod(e("validationLevel", "off")), check: func(t *testing.T, r *optRun) {
			if c := r.insertCode(t, d{{Key: "n", Value: -1}}); c != 0 {
				t.Errorf("off: %d", c)
			}
		}},
		{name: "cappedSize", cmd: collMod(e("cappedSize", 4096)), code: codeNotImplemented},
		{name: "index hidden", cmd: collMod(e("index", d{{Key: "name", Value: "name_1"}, {Key: "hidden", Value: true}})), check: func(t *testing.T, r *optRun) {
			if !r.reply.Lookup("hidden_new").Boolean() || r.reply.Lookup("hidden_old").Boolean() {
				t.Errorf("reply %s", r.reply)
			}
		}},
		{name: "index expireAfterSeconds", cmd: collMod(e("index", d{{Key: "keyPattern", Value: d{{Key: "name", Value: 1}}}, {Key: "expireAfterSeconds", Value: 30}})), check: func(t *testing.T, r *optRun) {
			if n, _ := r.reply.Lookup("expireAfterSeconds_new").AsInt64OK(); n != 30 {
				t.Errorf("reply %s", r.reply)
			}
		}},
		{name: "index unique", cmd: collMod(e("index", d{{Key: "name", Value: "name_1"}, {Key: "unique", Value: true}})), code: codeNotImplemented},
		{name: "missing collection", noSeed: true, cmd: collMod(e("validator", d{})), code: 26},
		{name: "unknown field", cmd: collMod(e("frobnicate", 1)), code: codeUnknownField},
	})
}

func TestOptionsOtherCommands(t *testing.T) {
	e0 := newDataEnv(t)
	one := bson.A{d{{Key: "q", Value: d{{Key: "_id", Value: 1}}}, {Key: "limit", Value: 1}}}
	runOptCases(t, e0, []optCase{
		{name: "insert unknown field", cmd: cmdWith("insert", d{{Key: "documents", Value: bson.A{d{}}}, {Key: "frobnicate", Value: 1}}), code: codeUnknownField},
		{name: "insert bypassDocumentValidation", setup: withValidator, cmd: cmdWith("insert", d{{Key: "documents", Value: bson.A{d{{Key: "n", Value: -1}}}}, {Key: "bypassDocumentValidation", Value: true}}), check: func(t *testing.T, r *optRun) {
			if n, _ := r.reply.Lookup("n").Int32OK(); n != 1 {
				t.Errorf("reply %v", r.reply)
			}
		}},
		{name: "delete unknown field", cmd: cmdWith("delete", d{{Key: "deletes", Value: one}, {Key: "frobnicate", Value: 1}}), code: codeUnknownField},
		{name: "delete limit 42.13", cmd: cmdWith("delete", d{{Key: "deletes", Value: bson.A{d{{Key: "q", Value: d{}}, {Key: "limit", Value: 42.13}}}}}), code: codeFailedToParse},
		{name: "delete limit 1.0", cmd: cmdWith("delete", d{{Key: "deletes", Value: bson.A{d{{Key: "q", Value: d{}}, {Key: "limit", Value: 1.0}}}}}), check: func(t *testing.T, r *optRun) {
			if n, _ := r.reply.Lookup("n").Int32OK(); n != 1 {
				t.Errorf("limit 1.0 deleted %v", r.reply)
			}
		}},
		{name: "delete limit string", cmd: cmdWith("delete", d{{Key: "deletes", Value: bson.A{d{{Key: "q", Value: d{}}, {Key: "limit", Value: "1"}}}}}), code: codeTypeMismatch},
		{name: "delete hint naming no index", cmd: cmdWith("delete", d{{Key: "deletes", Value: bson.A{d{{Key: "q", Value: d{}}, {Key: "limit", Value: 0}, {Key: "hint", Value: "nope"}}}}}), check: wantWriteError(codeBadValue)},
		{name: "delete collation en", cmd: cmdWith("delete", d{{Key: "deletes", Value: bson.A{d{{Key: "q", Value: d{}}, {Key: "limit", Value: 0}, {Key: "collation", Value: d{{Key: "locale", Value: "en"}}}}}}}), code: codeNotImplemented},
		{name: "count unknown field", cmd: cmdWith("count", d{{Key: "frobnicate", Value: 1}}), code: codeUnknownField},
		{name: "count hint naming no index", cmd: cmdWith("count", d{{Key: "hint", Value: "nope"}}), code: codeBadValue},
		{name: "count collation en", cmd: cmdWith("count", d{{Key: "collation", Value: d{{Key: "locale", Value: "en"}}}}), code: codeNotImplemented},
		{name: "distinct unknown field", cmd: cmdWith("distinct", d{{Key: "key", Value: "name"}, {Key: "frobnicate", Value: 1}}), code: codeUnknownField},
		{name: "distinct collation en", cmd: cmdWith("distinct", d{{Key: "key", Value: "name"}, {Key: "collation", Value: d{{Key: "locale", Value: "en"}}}}), code: codeNotImplemented},
		{name: "findAndModify unknown field", cmd: cmdWith("findAndModify", d{{Key: "remove", Value: true}, {Key: "frobnicate", Value: 1}}), code: codeUnknownField},
		{name: "findAndModify validation", setup: withValidator, cmd: cmdWith("findAndModify", d{{Key: "query", Value: d{{Key: "_id", Value: 1}}}, {Key: "update", Value: d{{Key: "$set", Value: d{{Key: "n", Value: -1}}}}}}), code: codeValidation},
		{name: "findAndModify bypassDocumentValidation", setup: withValidator, cmd: cmdWith("findAndModify", d{{Key: "query", Value: d{{Key: "_id", Value: 1}}}, {Key: "update", Value: d{{Key: "$set", Value: d{{Key: "n", Value: -1}}}}}, {Key: "new", Value: true}, {Key: "bypassDocumentValidation", Value: true}}), check: func(t *testing.T, r *optRun) {
			if n, _ := r.reply.Lookup("value", "n").Int32OK(); n != -1 {
				t.Errorf("reply %v", r.reply)
			}
		}},
		{name: "findAndModify hint naming no index", cmd: cmdWith("findAndModify", d{{Key: "remove", Value: true}, {Key: "hint", Value: "nope"}}), code: codeBadValue},
		{name: "dbStats scale", cmd: cmdWith("dbStats", nil, e("scale", 1024)), check: func(t *testing.T, r *optRun) {
			if n, _ := r.reply.Lookup("scaleFactor").AsInt64OK(); n != 1024 {
				t.Errorf("reply %v", r.reply)
			}
		}},
		{name: "dbStats scale 0", cmd: cmdWith("dbStats", nil, e("scale", 0)), code: codeBadValue},
		{name: "dbStats freeStorage", cmd: cmdWith("dbStats", nil, e("freeStorage", true)), code: codeNotImplemented},
		{name: "dbStats unknown field", cmd: cmdWith("dbStats", nil, e("frobnicate", 1)), code: codeUnknownField},
		{name: "collStats scale", cmd: cmdWith("collStats", nil, e("scale", 2)), check: func(t *testing.T, r *optRun) {
			if n, _ := r.reply.Lookup("count").AsInt64OK(); n != 3 || r.reply.Lookup("scaleFactor").Int32() != 2 {
				t.Errorf("reply %v", r.reply)
			}
		}},
		{name: "collStats scale 0", cmd: cmdWith("collStats", nil, e("scale", 0)), code: codeBadValue},
		{name: "collStats unknown field", cmd: cmdWith("collStats", nil, e("frobnicate", 1)), code: codeUnknownField},
		{name: "validate full", cmd: cmdWith("validate", nil, e("full", true)), check: func(t *testing.T, r *optRun) {
			if !r.reply.Lookup("valid").Boolean() || r.reply.Lookup("nrecords").Int32() != 3 || r.reply.Lookup("keysPerIndex", "name_1").Int32() != 3 {
				t.Errorf("reply %v", r.reply)
			}
		}},
		{name: "validate background", cmd: cmdWith("validate", nil, e("background", true)), check: func(t *testing.T, r *optRun) {
			if !r.reply.Lookup("valid").Boolean() {
				t.Errorf("reply %v", r.reply)
			}
		}},
		{name: "validate background and full", cmd: cmdWith("validate", nil, e("background", true), e("full", true)), code: codeInvalidOptions},
		{name: "validate repair", cmd: cmdWith("validate", nil, e("repair", true)), code: codeNotImplemented},
		{name: "validate metadata", cmd: cmdWith("validate", nil, e("metadata", true)), code: codeNotImplemented},
		{name: "validate unknown field", cmd: cmdWith("validate", nil, e("frobnicate", 1)), code: codeUnknownField},
		{name: "dataSize keyPattern min max", cmd: func(coll string) bson.D {
			return d{{Key: "dataSize", Value: "test." + coll}, {Key: "keyPattern", Value: d{{Key: "name", Value: 1}}},
				{Key: "min", Value: d{{Key: "name", Value: "a"}}}, {Key: "max", Value: d{{Key: "name", Value: "c"}}}}
		}, check: func(t *testing.T, r *optRun) {
			if r.reply.Lookup("numObjects").Int32() != 1 { // "a" only: "B" sorts before "a", "c" is the excluded max
				t.Errorf("reply %v", r.reply)
			}
		}},
		{name: "dataSize estimate", cmd: func(coll string) bson.D {
			return d{{Key: "dataSize", Value: "test." + coll}, {Key: "estimate", Value: true}}
		}, check: func(t *testing.T, r *optRun) {
			if r.reply.Lookup("numObjects").Int32() != 3 || r.reply.Lookup("estimate").Boolean() {
				t.Errorf("reply %v", r.reply)
			}
		}},
		{name: "dataSize unknown field", cmd: func(coll string) bson.D {
			return d{{Key: "dataSize", Value: "test." + coll}, {Key: "frobnicate", Value: 1}}
		}, code: codeUnknownField},
		{name: "fsync outside admin", cmd: cmdWith("fsync", nil), code: 13},
		{name: "createIndexes collation en", cmd: cmdWith("createIndexes", d{{Key: "indexes", Value: bson.A{d{{Key: "key", Value: d{{Key: "x", Value: 1}}}, {Key: "name", Value: "x_1"}, {Key: "collation", Value: d{{Key: "locale", Value: "en"}}}}}}}), code: codeNotImplemented},
		{name: "createIndexes collation simple", cmd: cmdWith("createIndexes", d{{Key: "indexes", Value: bson.A{d{{Key: "key", Value: d{{Key: "x", Value: 1}}}, {Key: "name", Value: "x_1"}, {Key: "collation", Value: d{{Key: "locale", Value: "simple"}}}}}}}), check: func(t *testing.T, r *optRun) {
			specs, err := r.e.db.Collection(r.coll).Indexes().ListSpecifications(r.e.ctx)
			if err != nil || len(specs) != 3 {
				t.Errorf("indexes %v %v", specs, err)
			}
		}},
		{name: "upsert refused by the validator", setup: withValidator, cmd: cmdWith("update", d{{Key: "updates", Value: bson.A{d{{Key: "q", Value: d{{Key: "_id", Value: 50}}}, {Key: "u", Value: d{{Key: "$set", Value: d{{Key: "n", Value: -1}}}}}, {Key: "upsert", Value: true}}}}}), check: func(t *testing.T, r *optRun) {
			wantWriteError(codeValidation)(t, r)
			if strings.Contains(r.stored(t), `"_id":50`) {
				t.Errorf("refused upsert stored its document")
			}
		}},
		{name: "findAndModify let", cmd: cmdWith("findAndModify", d{{Key: "query", Value: d{{Key: "$expr", Value: d{{Key: "$eq", Value: bson.A{"$_id", "$$x"}}}}}}, {Key: "remove", Value: true}, {Key: "let", Value: d{{Key: "x", Value: 3}}}}), check: func(t *testing.T, r *optRun) {
			if id := valText(r.reply.Lookup("value", "_id")); id != "3" {
				t.Errorf("removed %v, want _id 3", r.reply)
			}
		}},
		{name: "delete let", cmd: cmdWith("delete", d{{Key: "deletes", Value: bson.A{d{{Key: "q", Value: d{{Key: "$expr", Value: d{{Key: "$gte", Value: bson.A{"$_id", "$$x"}}}}}}, {Key: "limit", Value: 0}}}}, {Key: "let", Value: d{{Key: "x", Value: 2}}}}), check: func(t *testing.T, r *optRun) {
			if got := r.stored(t); got != `[{"_id":1,"name":"a"}]` {
				t.Errorf("after delete with let: %s", got)
			}
		}},
	})
}

// TestValidationErrInfo checks the shape of errInfo for a validator with
// several clauses and one with $jsonSchema.
func TestValidationErrInfo(t *testing.T) {
	e0 := newDataEnv(t)
	c := e0.fresh(t)
	_, err := e0.db.RunCommand(e0.ctx, d{{Key: "collMod", Value: c.Name()}}).Raw()
	if codeOf(err) != 26 {
		t.Fatalf("collMod on a missing collection: %v", err)
	}
	if err := e0.db.CreateCollection(e0.ctx, c.Name()); err != nil {
		t.Fatal(err)
	}
	validator := d{{Key: "a", Value: d{{Key: "$gt", Value: 5}}}, {Key: "$jsonSchema", Value: d{{Key: "required", Value: bson.A{"b"}}}}}
	if _, err := e0.db.RunCommand(e0.ctx, d{{Key: "collMod", Value: c.Name()}, {Key: "validator", Value: validator}}).Raw(); err != nil {
		t.Fatal(err)
	}
	reply, err := e0.db.RunCommand(e0.ctx, d{{Key: "insert", Value: c.Name()}, {Key: "documents", Value: bson.A{d{{Key: "_id", Value: 7}, {Key: "a", Value: 1}}}}}).Raw()
	if codeOf(err) != codeValidation || reply == nil {
		t.Fatal(err)
	}
	info := reply.Lookup("writeErrors", "0", "errInfo").Document()
	for _, tc := range []struct {
		path []string
		want string
	}{
		{[]string{"failingDocumentId"}, "7"},
		{[]string{"details", "operatorName"}, `"$and"`},
		{[]string{"details", "clausesNotSatisfied", "0", "details", "operatorName"}, `"$gt"`},
		{[]string{"details", "clausesNotSatisfied", "0", "details", "consideredValue"}, "1"},
		{[]string{"details", "clausesNotSatisfied", "1", "details", "operatorName"}, `"$jsonSchema"`},
		{[]string{"details", "clausesNotSatisfied", "1", "details", "schemaRulesNotSatisfied", "0", "operatorName"}, `"required"`},
	} {
		if got := valText(info.Lookup(tc.path...)); got != tc.want {
			t.Errorf("errInfo.%s = %s, want %s (errInfo %v)", strings.Join(tc.path, "."), got, tc.want, info)
		}
	}
}

// TestCappedCollection drives a capped collection through the wire:
// insertion order, reverse natural order, deletes and size-changing
// updates (both allowed in MongoDB 7.0), and eviction after them.
func TestCappedCollection(t *testing.T) {
	e0 := newDataEnv(t)
	r := &optRun{e: e0, coll: "capped_wire"}
	makeCapped(t, r) // _id 1, 2, 3 with max 3
	c := e0.db.Collection(r.coll)
	steps := []struct {
		name string
		do   func() error
		want string // natural order after the step
	}{
		{"inserted", func() error { return nil }, `[{"_id":1},{"_id":2},{"_id":3}]`},
		{"insert evicts the oldest", func() error {
			_, err := c.InsertOne(e0.ctx, d{{Key: "_id", Value: 0}})
			return err
		}, `[{"_id":2},{"_id":3},{"_id":0}]`},
		{"delete", func() error {
			_, err := c.DeleteOne(e0.ctx, d{{Key: "_id", Value: 3}})
			return err
		}, `[{"_id":2},{"_id":0}]`},
		{"update that grows a document", func() error {
			_, err := c.UpdateOne(e0.ctx, d{{Key: "_id", Value: 2}}, d{{Key: "$set", Value: d{{Key: "big", Value: strings.Repeat("x", 100)}}}})
			return err
		}, `[{"_id":2,"big":"` + strings.Repeat("x", 100) + `"},{"_id":0}]`},
		{"insert after a delete evicts nothing", func() error {
			_, err := c.InsertOne(e0.ctx, d{{Key: "_id", Value: 9}})
			return err
		}, `[{"_id":2,"big":"` + strings.Repeat("x", 100) + `"},{"_id":0},{"_id":9}]`},
		{"next insert evicts the updated document", func() error {
			_, err := c.InsertOne(e0.ctx, d{{Key: "_id", Value: 8}})
			return err
		}, `[{"_id":0},{"_id":9},{"_id":8}]`},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := r.stored(t); got != st.want {
			t.Fatalf("%s: natural order %s, want %s", st.name, got, st.want)
		}
	}
	reply, err := r.run(t, d{{Key: "find", Value: r.coll}, {Key: "sort", Value: d{{Key: "$natural", Value: -1}}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := batchIDs(t, reply); got != "8,9,0" {
		t.Errorf("reverse natural order = %s, want 8,9,0", got)
	}
	specs, err := e0.db.ListCollectionSpecifications(e0.ctx, d{{Key: "name", Value: r.coll}})
	if err != nil || len(specs) != 1 || !specs[0].Options.Lookup("capped").Boolean() {
		t.Errorf("listCollections: %v %v", specs, err)
	}
}

// TestValidationWarnLogs checks that validationAction "warn" writes the
// document and logs a warning that names the collection but carries none
// of the document's data.
func TestValidationWarnLogs(t *testing.T) {
	var logs testenv.SyncBuffer
	env := handlerstest.StartEnv(t, handlers.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := handlerstest.Context(t)
	db := env.Client.Database("warn")
	err := db.RunCommand(ctx, d{{Key: "create", Value: "w"}, {Key: "validator", Value: d{{Key: "n", Value: d{{Key: "$gte", Value: 0}}}}}, {Key: "validationAction", Value: "warn"}}).Err()
	if err != nil {
		t.Fatal(err)
	}
	const secret = "canary-4f1d2c"
	if _, err := db.Collection("w").InsertOne(ctx, d{{Key: "_id", Value: secret}, {Key: "n", Value: -1}, {Key: "s", Value: secret}}); err != nil {
		t.Fatalf("warn: insert refused: %v", err)
	}
	if n, _ := db.Collection("w").CountDocuments(ctx, d{}); n != 1 {
		t.Errorf("stored %d documents, want 1", n)
	}
	out := logs.String()
	if !strings.Contains(out, "document would fail validation") || !strings.Contains(out, "collection=w") {
		t.Errorf("no validation warning in the log:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Errorf("the log carries document data:\n%s", out)
	}
}

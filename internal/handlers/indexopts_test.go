package handlers_test

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// winningIndex returns the index name a find's explain chose ("" for a
// collection scan).
func winningIndex(t *testing.T, e *dataEnv, c *mongo.Collection, filter bson.D) string {
	t.Helper()
	raw, err := e.db.RunCommand(e.ctx, bson.D{{Key: "explain", Value: bson.D{{Key: "find", Value: c.Name()}, {Key: "filter", Value: filter}}}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	var walk func(d bson.Raw) string
	walk = func(d bson.Raw) string {
		if n, ok := d.Lookup("indexName").StringValueOK(); ok {
			return n
		}
		if in, ok := d.Lookup("inputStage").DocumentOK(); ok {
			return walk(in)
		}
		return ""
	}
	return walk(raw.Lookup("queryPlanner", "winningPlan").Document())
}

func createIndexesCmd(e *dataEnv, coll string, specs ...bson.D) error {
	a := bson.A{}
	for _, s := range specs {
		a = append(a, s)
	}
	return e.db.RunCommand(e.ctx, bson.D{{Key: "createIndexes", Value: coll}, {Key: "indexes", Value: a}}).Err()
}

func TestSparseIndex(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}}, bson.D{{Key: "_id", Value: 2}},
		bson.D{{Key: "_id", Value: 3}, {Key: "a", Value: nil}}, bson.D{{Key: "_id", Value: 4}})
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "a", Value: 1}},
		Options: options.Index().SetSparse(true).SetUnique(true)}); err != nil {
		t.Fatal(err)
	}
	// Unique and sparse: several documents without the field are fine.
	if _, err := c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 5}}); err != nil {
		t.Fatal(err)
	}
	// A null is indexed: a second one is a duplicate.
	_, err := c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 6}, {Key: "a", Value: nil}})
	wantCode(t, err, 11000)
	if got := winningIndex(t, e, c, bson.D{{Key: "a", Value: 1}}); got != "a_1" {
		t.Errorf("{a: 1} planned on %q, want a_1", got)
	}
	// {a: null} matches missing fields, which the sparse index lacks.
	if got := winningIndex(t, e, c, bson.D{{Key: "a", Value: nil}}); got != "" {
		t.Errorf("{a: null} planned on %q, want a collection scan", got)
	}
	if got := query(t, e.ctx, c, bson.D{{Key: "a", Value: nil}}, true); got != `[{"_id":2},{"_id":3,"a":null},{"_id":4},{"_id":5}]` {
		t.Errorf("{a: null} = %s", got)
	}
	// A hint uses the sparse index anyway (mongod: incomplete results).
	cur, err := c.Find(e.ctx, bson.D{}, options.Find().SetHint("a_1"))
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.Raw
	if err := cur.All(e.ctx, &docs); err != nil || len(docs) != 2 {
		t.Errorf("hinted sparse scan: %d docs, %v", len(docs), err)
	}
	want := `[{"v":2,"key":{"_id":1},"name":"_id_"},{"v":2,"key":{"a":1},"name":"a_1","unique":true,"sparse":true}]`
	if got := listIndexes(t, e, c); got != want {
		t.Errorf("listIndexes:\n got %s\nwant %s", got, want)
	}
	wantCode(t, createIndexesCmd(e, c.Name(), bson.D{{Key: "key", Value: bson.D{{Key: "b", Value: 1}}}, {Key: "name", Value: "b"}, {Key: "sparse", Value: "yes"}}), 14)
	wantValid(t, e, c.Name(), "a_1", 2)
}

// wantValid runs validate and checks the collection is valid with n keys
// in index.
func wantValid(t *testing.T, e *dataEnv, coll, index string, n int32) {
	t.Helper()
	r, err := e.db.RunCommand(e.ctx, bson.D{{Key: "validate", Value: coll}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	if !r.Lookup("valid").Boolean() || r.Lookup("keysPerIndex", index).Int32() != n {
		t.Errorf("validate: %s", r)
	}
}

func TestPartialIndex(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, bson.D{{Key: "_id", Value: 1}, {Key: "u", Value: 1}, {Key: "r", Value: 9}},
		bson.D{{Key: "_id", Value: 2}, {Key: "u", Value: 1}, {Key: "r", Value: 1}})
	pf := bson.D{{Key: "r", Value: bson.D{{Key: "$gt", Value: 5}}}}
	if err := createIndexesCmd(e, c.Name(), bson.D{{Key: "key", Value: bson.D{{Key: "u", Value: 1}}}, {Key: "name", Value: "u_1"},
		{Key: "unique", Value: true}, {Key: "partialFilterExpression", Value: pf}}); err != nil {
		t.Fatal(err)
	}
	// Uniqueness holds only among the documents the filter matches.
	if _, err := c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 3}, {Key: "u", Value: 1}, {Key: "r", Value: 2}}); err != nil {
		t.Fatalf("insert outside the filter: %v", err)
	}
	_, err := c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 4}, {Key: "u", Value: 1}, {Key: "r", Value: 6}})
	wantCode(t, err, 11000)
	_, err = c.UpdateOne(e.ctx, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "$set", Value: bson.D{{Key: "r", Value: 7}}}})
	wantCode(t, err, 11000)

	for _, tc := range []struct {
		filter bson.D
		index  string
	}{
		{bson.D{{Key: "u", Value: 1}, {Key: "r", Value: bson.D{{Key: "$gte", Value: 8}}}}, "u_1"},
		{bson.D{{Key: "u", Value: 1}, {Key: "r", Value: 9}}, "u_1"},
		{bson.D{{Key: "u", Value: 1}, {Key: "r", Value: bson.D{{Key: "$gt", Value: 5}}}}, "u_1"},
		{bson.D{{Key: "u", Value: 1}}, ""},
		{bson.D{{Key: "u", Value: 1}, {Key: "r", Value: bson.D{{Key: "$gte", Value: 5}}}}, ""},
		{bson.D{{Key: "u", Value: 1}, {Key: "r", Value: "x"}}, ""},
	} {
		if got := winningIndex(t, e, c, tc.filter); got != tc.index {
			t.Errorf("%s planned on %q, want %q", js(t, tc.filter), got, tc.index)
		}
	}
	if got := query(t, e.ctx, c, bson.D{{Key: "u", Value: 1}}, true); got != `[{"_id":1,"u":1,"r":9},{"_id":2,"u":1,"r":1},{"_id":3,"u":1,"r":2}]` {
		t.Errorf("{u: 1} = %s", got)
	}
	// A hint to a partial index the query does not imply is refused.
	_, err = c.Find(e.ctx, bson.D{{Key: "u", Value: 1}}, options.Find().SetHint("u_1"))
	wantCode(t, err, 2)
	if got := listIndexes(t, e, c); got != `[{"v":2,"key":{"_id":1},"name":"_id_"},{"v":2,"key":{"u":1},"name":"u_1","unique":true,"partialFilterExpression":{"r":{"$gt":5}}}]` {
		t.Errorf("listIndexes: %s", got)
	}
	// Expressions mongod does not allow in a partial filter.
	for _, bad := range []bson.D{
		{{Key: "r", Value: bson.D{{Key: "$ne", Value: 1}}}},
		{{Key: "r", Value: bson.D{{Key: "$exists", Value: false}}}},
		{{Key: "$nor", Value: bson.A{bson.D{{Key: "r", Value: 1}}}}},
	} {
		err := createIndexesCmd(e, c.Name(), bson.D{{Key: "key", Value: bson.D{{Key: "z", Value: 1}}}, {Key: "name", Value: "z"}, {Key: "partialFilterExpression", Value: bad}})
		wantCode(t, err, 67)
	}
	wantCode(t, createIndexesCmd(e, c.Name(), bson.D{{Key: "key", Value: bson.D{{Key: "z", Value: 1}}}, {Key: "name", Value: "z"}, {Key: "partialFilterExpression", Value: 1}}), 14)
	wantValid(t, e, c.Name(), "u_1", 1)
}

func TestHiddenIndex(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}})
	if err := createIndexesCmd(e, c.Name(), bson.D{{Key: "key", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "name", Value: "a_1"}, {Key: "hidden", Value: true}, {Key: "unique", Value: true}}); err != nil {
		t.Fatal(err)
	}
	if got := winningIndex(t, e, c, bson.D{{Key: "a", Value: 1}}); got != "" {
		t.Errorf("hidden index planned: %q", got)
	}
	// Hidden indexes are maintained: the unique constraint holds.
	_, err := c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: 1}})
	wantCode(t, err, 11000)
	_, err = c.Find(e.ctx, bson.D{}, options.Find().SetHint(bson.D{{Key: "a", Value: 1}}))
	wantCode(t, err, 2)
	if got := listIndexes(t, e, c); got != `[{"v":2,"key":{"_id":1},"name":"_id_"},{"v":2,"key":{"a":1},"name":"a_1","unique":true,"hidden":true}]` {
		t.Errorf("listIndexes: %s", got)
	}
	// The same index asked for unhidden conflicts, as in mongod.
	err = createIndexesCmd(e, c.Name(), bson.D{{Key: "key", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "name", Value: "a_1"}, {Key: "unique", Value: true}})
	wantCode(t, err, 85)

	var reply bson.Raw
	reply, err = e.db.RunCommand(e.ctx, bson.D{{Key: "collMod", Value: c.Name()}, {Key: "index", Value: bson.D{{Key: "name", Value: "a_1"}, {Key: "hidden", Value: false}}}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	if got := js(t, reply); got != `{"hidden_old":true,"hidden_new":false,"ok":1.0}` {
		t.Errorf("collMod reply %s", got)
	}
	if got := winningIndex(t, e, c, bson.D{{Key: "a", Value: 1}}); got != "a_1" {
		t.Errorf("unhidden index not planned: %q", got)
	}
	if _, err := e.db.RunCommand(e.ctx, bson.D{{Key: "collMod", Value: c.Name()}, {Key: "index", Value: bson.D{{Key: "keyPattern", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "hidden", Value: true}}}}).Raw(); err != nil {
		t.Fatal(err)
	}
	if got := winningIndex(t, e, c, bson.D{{Key: "a", Value: 1}}); got != "" {
		t.Errorf("index hidden by collMod planned: %q", got)
	}
	for _, tc := range []struct {
		index bson.D
		code  int
	}{
		{bson.D{{Key: "name", Value: "_id_"}, {Key: "hidden", Value: true}}, 2},
		{bson.D{{Key: "name", Value: "nope"}, {Key: "hidden", Value: true}}, 27},
		{bson.D{{Key: "name", Value: "a_1"}}, 72},
		{bson.D{{Key: "hidden", Value: true}}, 72},
		{bson.D{{Key: "name", Value: "a_1"}, {Key: "keyPattern", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "hidden", Value: true}}, 72},
		{bson.D{{Key: "name", Value: "a_1"}, {Key: "hidden", Value: 1}}, 14},
		{bson.D{{Key: "name", Value: "a_1"}, {Key: "unique", Value: true}}, 238},
		{bson.D{{Key: "name", Value: "a_1"}, {Key: "bogus", Value: true}}, 40415},
	} {
		err := e.db.RunCommand(e.ctx, bson.D{{Key: "collMod", Value: c.Name()}, {Key: "index", Value: tc.index}}).Err()
		wantCode(t, err, tc.code)
	}
	wantCode(t, createIndexesCmd(e, c.Name(), bson.D{{Key: "key", Value: bson.D{{Key: "_id", Value: 1}}}, {Key: "name", Value: "_id_"}, {Key: "hidden", Value: true}}), 2)
}

func TestTTLIndexOptions(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t)
	for _, tc := range []struct {
		spec bson.D
		code int
	}{
		{bson.D{{Key: "key", Value: bson.D{{Key: "t", Value: 1}}}, {Key: "name", Value: "x"}, {Key: "expireAfterSeconds", Value: "1"}}, 67},
		{bson.D{{Key: "key", Value: bson.D{{Key: "t", Value: 1}}}, {Key: "name", Value: "x"}, {Key: "expireAfterSeconds", Value: -1}}, 67},
		{bson.D{{Key: "key", Value: bson.D{{Key: "t", Value: 1}}}, {Key: "name", Value: "x"}, {Key: "expireAfterSeconds", Value: int64(1) << 40}}, 67},
		{bson.D{{Key: "key", Value: bson.D{{Key: "t", Value: 1}, {Key: "u", Value: 1}}}, {Key: "name", Value: "x"}, {Key: "expireAfterSeconds", Value: 1}}, 67},
		{bson.D{{Key: "key", Value: bson.D{{Key: "_id", Value: 1}}}, {Key: "name", Value: "_id_"}, {Key: "expireAfterSeconds", Value: 1}}, 197},
	} {
		wantCode(t, createIndexesCmd(e, c.Name(), tc.spec), tc.code)
	}
	if err := createIndexesCmd(e, c.Name(), bson.D{{Key: "key", Value: bson.D{{Key: "t", Value: 1}}}, {Key: "name", Value: "t_1"}, {Key: "expireAfterSeconds", Value: 3600.0}}); err != nil {
		t.Fatal(err)
	}
	if got := listIndexes(t, e, c); got != `[{"v":2,"key":{"_id":1},"name":"_id_"},{"v":2,"key":{"t":1},"name":"t_1","expireAfterSeconds":3600}]` {
		t.Errorf("listIndexes: %s", got)
	}
	reply, err := e.db.RunCommand(e.ctx, bson.D{{Key: "collMod", Value: c.Name()}, {Key: "index", Value: bson.D{{Key: "keyPattern", Value: bson.D{{Key: "t", Value: 1}}}, {Key: "expireAfterSeconds", Value: 10}}}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	if got := js(t, reply); got != `{"expireAfterSeconds_old":3600,"expireAfterSeconds_new":10,"ok":1.0}` {
		t.Errorf("collMod reply %s", got)
	}
	for _, tc := range []struct {
		index bson.D
		code  int
	}{
		{bson.D{{Key: "name", Value: "t_1"}, {Key: "expireAfterSeconds", Value: -5}}, 72},
		{bson.D{{Key: "name", Value: "t_1"}, {Key: "expireAfterSeconds", Value: "x"}}, 14},
		{bson.D{{Key: "name", Value: "_id_"}, {Key: "expireAfterSeconds", Value: 5}}, 72},
	} {
		err := e.db.RunCommand(e.ctx, bson.D{{Key: "collMod", Value: c.Name()}, {Key: "index", Value: tc.index}}).Err()
		wantCode(t, err, tc.code)
	}
}

// TestTTLMonitor runs the monitor every second and waits, with a generous
// deadline, for the expired documents to go; the others must stay.
func TestTTLMonitor(t *testing.T) {
	e := newDataEnv(t)
	admin := e.client.Database("admin")
	var got bson.M
	if err := admin.RunCommand(e.ctx, bson.D{{Key: "getParameter", Value: 1}, {Key: "ttlMonitorSleepSecs", Value: 1}}).Decode(&got); err != nil || got["ttlMonitorSleepSecs"] != int32(60) {
		t.Fatalf("getParameter = %v, %v", got, err)
	}
	var was bson.M
	if err := admin.RunCommand(e.ctx, bson.D{{Key: "setParameter", Value: 1}, {Key: "ttlMonitorSleepSecs", Value: 1}}).Decode(&was); err != nil || was["was"] != int32(60) {
		t.Fatalf("setParameter = %v, %v", was, err)
	}
	// Disabled, the monitor expires nothing; enabled again, it does.
	if err := admin.RunCommand(e.ctx, bson.D{{Key: "setParameter", Value: 1}, {Key: "ttlMonitorEnabled", Value: false}}).Decode(&was); err != nil || was["was"] != true {
		t.Fatalf("setParameter ttlMonitorEnabled = %v, %v", was, err)
	}
	if err := admin.RunCommand(e.ctx, bson.D{{Key: "getParameter", Value: 1}, {Key: "ttlMonitorEnabled", Value: 1}}).Decode(&got); err != nil || got["ttlMonitorEnabled"] != false {
		t.Fatalf("getParameter = %v, %v", got, err)
	}
	off := e.fresh(t, bson.D{{Key: "_id", Value: 1}, {Key: "t", Value: bson.NewDateTimeFromTime(time.Now().Add(-time.Hour))}})
	if err := createIndexesCmd(e, off.Name(), bson.D{{Key: "key", Value: bson.D{{Key: "t", Value: 1}}}, {Key: "name", Value: "t_1"}, {Key: "expireAfterSeconds", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	passes := func() int64 {
		st, err := admin.RunCommand(e.ctx, bson.D{{Key: "serverStatus", Value: 1}}).Raw()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := st.Lookup("metrics", "ttl", "passes").AsInt64OK()
		return n
	}
	p0 := passes()
	time.Sleep(2500 * time.Millisecond) // two intervals at least
	if n, err := off.CountDocuments(e.ctx, bson.D{}); err != nil || n != 1 || passes() != p0 {
		t.Fatalf("disabled monitor: %d documents, %d passes (was %d), %v", n, passes(), p0, err)
	}
	if err := admin.RunCommand(e.ctx, bson.D{{Key: "setParameter", Value: 1}, {Key: "ttlMonitorEnabled", Value: true}}).Err(); err != nil {
		t.Fatal(err)
	}
	wantCode(t, admin.RunCommand(e.ctx, bson.D{{Key: "setParameter", Value: 1}, {Key: "ttlMonitorEnabled", Value: 1}}).Err(), 2)
	wantCode(t, admin.RunCommand(e.ctx, bson.D{{Key: "setParameter", Value: 1}, {Key: "ttlMonitorSleepSecs", Value: 0}}).Err(), 2)
	wantCode(t, admin.RunCommand(e.ctx, bson.D{{Key: "setParameter", Value: 1}, {Key: "noSuchParameter", Value: 0}}).Err(), 72)
	wantCode(t, e.db.RunCommand(e.ctx, bson.D{{Key: "setParameter", Value: 1}, {Key: "ttlMonitorSleepSecs", Value: 1}}).Err(), 13)

	now := time.Now()
	old := bson.NewDateTimeFromTime(now.Add(-time.Hour))
	future := bson.NewDateTimeFromTime(now.Add(time.Hour))
	c := e.fresh(t,
		bson.D{{Key: "_id", Value: 1}, {Key: "t", Value: old}},
		bson.D{{Key: "_id", Value: 2}, {Key: "t", Value: future}},
		bson.D{{Key: "_id", Value: 3}, {Key: "t", Value: bson.A{future, old}}}, // the earliest date counts
		bson.D{{Key: "_id", Value: 4}, {Key: "t", Value: "not a date"}},
		bson.D{{Key: "_id", Value: 5}},
		bson.D{{Key: "_id", Value: 6}, {Key: "t", Value: bson.A{future}}},
		bson.D{{Key: "_id", Value: 7}, {Key: "t", Value: bson.NewDateTimeFromTime(now.Add(-time.Minute))}},
	)
	// Descending key: the monitor must find expired dates either way. The
	// hour-old dates expire, the minute-old one not (expireAfterSeconds
	// 600).
	if err := createIndexesCmd(e, c.Name(), bson.D{{Key: "key", Value: bson.D{{Key: "t", Value: -1}}}, {Key: "name", Value: "t_-1"}, {Key: "expireAfterSeconds", Value: 600}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := c.CountDocuments(e.ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d documents after the deadline, want 5: %s", n, all(t, e.ctx, c))
		}
		time.Sleep(100 * time.Millisecond)
	}
	var left []int32
	if err := c.Distinct(e.ctx, "_id", bson.D{}).Decode(&left); err != nil {
		t.Fatal(err)
	}
	if js(t, left) != "[2,4,5,6,7]" {
		t.Errorf("left %v", left)
	}
	status, err := admin.RunCommand(e.ctx, bson.D{{Key: "serverStatus", Value: 1}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := status.Lookup("metrics", "ttl", "deletedDocuments").AsInt64OK(); n < 2 {
		t.Errorf("metrics.ttl.deletedDocuments = %d", n)
	}
	// A hidden TTL index still expires documents; collMod's new
	// expireAfterSeconds applies at the next pass.
	if _, err := e.db.RunCommand(e.ctx, bson.D{{Key: "collMod", Value: c.Name()}, {Key: "index", Value: bson.D{{Key: "name", Value: "t_-1"}, {Key: "expireAfterSeconds", Value: 0}, {Key: "hidden", Value: true}}}}).Raw(); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := c.CountDocuments(e.ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d documents after the deadline, want 4: %s", n, all(t, e.ctx, c))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

package handlers_test

import (
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// statsDocs seeds a collection with n documents of growing size and an
// index on a, and returns their total BSON size.
func statsDocs(t *testing.T, e *dataEnv, c *mongo.Collection, n int) int64 {
	t.Helper()
	var docs []any
	var size int64
	for i := range n {
		d := bson.D{{Key: "_id", Value: int32(i)}, {Key: "a", Value: strings.Repeat("y", i)}}
		raw, _ := bson.Marshal(d)
		size += int64(len(raw))
		docs = append(docs, d)
	}
	if _, err := c.InsertMany(e.ctx, docs); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "a", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	return size
}

func runCmd(t *testing.T, e *dataEnv, db *mongo.Database, cmd bson.D) bson.Raw {
	t.Helper()
	raw, err := db.RunCommand(e.ctx, cmd).Raw()
	if err != nil {
		t.Fatalf("%s: %v", js(t, cmd), err)
	}
	return raw
}

func num(t *testing.T, doc bson.Raw, key string) int64 {
	t.Helper()
	v, err := doc.LookupErr(strings.Split(key, ".")...)
	if err != nil {
		t.Fatalf("%s: no %s", doc, key)
	}
	f, ok := v.AsFloat64OK()
	if !ok {
		t.Fatalf("%s: %s is %s", doc, key, v.Type)
	}
	return int64(f)
}

func TestDBStats(t *testing.T) {
	e := newDataEnv(t)
	db := e.client.Database("dbstats")
	size := statsDocs(t, e, db.Collection("a"), 40)
	if _, err := db.Collection("b").InsertOne(e.ctx, bson.D{{Key: "_id", Value: "x"}}); err != nil {
		t.Fatal(err)
	}
	raw, _ := bson.Marshal(bson.D{{Key: "_id", Value: "x"}})
	size += int64(len(raw))
	runCmd(t, e, e.client.Database("admin"), bson.D{{Key: "fsync", Value: 1}})

	st := runCmd(t, e, db, bson.D{{Key: "dbStats", Value: 1}})
	if st.Lookup("db").StringValue() != "dbstats" || num(t, st, "collections") != 2 || num(t, st, "views") != 0 ||
		num(t, st, "objects") != 41 || num(t, st, "dataSize") != size || num(t, st, "indexes") != 3 || num(t, st, "scaleFactor") != 1 {
		t.Fatalf("dbStats = %s, want 2 collections, 41 objects, dataSize %d, 3 indexes", st, size)
	}
	if avg := st.Lookup("avgObjSize").Double(); avg != float64(size)/41 {
		t.Errorf("avgObjSize = %v, want %v", avg, float64(size)/41)
	}
	if num(t, st, "storageSize") <= 0 || num(t, st, "indexSize") <= 0 ||
		num(t, st, "totalSize") < num(t, st, "storageSize")+num(t, st, "indexSize") ||
		num(t, st, "fsTotalSize") <= 0 || num(t, st, "fsUsedSize") <= 0 || num(t, st, "fsUsedSize") > num(t, st, "fsTotalSize") {
		t.Errorf("dbStats sizes = %s", st)
	}
	// scale divides every size but avgObjSize.
	k := runCmd(t, e, db, bson.D{{Key: "dbStats", Value: 1}, {Key: "scale", Value: 1024.9}})
	if num(t, k, "scaleFactor") != 1024 || num(t, k, "dataSize") != size/1024 || num(t, k, "totalSize") != num(t, st, "totalSize")/1024 ||
		k.Lookup("avgObjSize").Double() != st.Lookup("avgObjSize").Double() {
		t.Errorf("dbStats scale 1024 = %s (unscaled %s)", k, st)
	}
	// db.stats() of a database that does not exist: zeros.
	empty := runCmd(t, e, e.client.Database("nodb"), bson.D{{Key: "dbStats", Value: 1}})
	if num(t, empty, "collections") != 0 || num(t, empty, "objects") != 0 || num(t, empty, "dataSize") != 0 {
		t.Errorf("dbStats of a missing database = %s", empty)
	}
	for _, tc := range []struct {
		name string
		cmd  bson.D
		code int
	}{
		{"scale 0", bson.D{{Key: "dbStats", Value: 1}, {Key: "scale", Value: 0}}, 2},
		{"negative scale", bson.D{{Key: "dbStats", Value: 1}, {Key: "scale", Value: -100}}, 2},
		{"fractional scale below 1", bson.D{{Key: "dbStats", Value: 1}, {Key: "scale", Value: 0.5}}, 2},
		{"string scale", bson.D{{Key: "dbStats", Value: 1}, {Key: "scale", Value: "1k"}}, 2},
		{"freeStorage", bson.D{{Key: "dbStats", Value: 1}, {Key: "freeStorage", Value: 1}}, 238},
		{"unknown field", bson.D{{Key: "dbStats", Value: 1}, {Key: "foo", Value: 1}}, 40415},
	} {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, db.RunCommand(e.ctx, tc.cmd).Err(), tc.code) })
	}
	// A false scale is no scale, as in mongod.
	if f := runCmd(t, e, db, bson.D{{Key: "dbStats", Value: 1}, {Key: "scale", Value: false}}); num(t, f, "scaleFactor") != 1 {
		t.Errorf("scale false: %s", f)
	}
}

func TestCollStats(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t)
	size := statsDocs(t, e, c, 30)
	runCmd(t, e, e.client.Database("admin"), bson.D{{Key: "fsync", Value: 1}})
	st := runCmd(t, e, e.db, bson.D{{Key: "collStats", Value: c.Name()}})
	if st.Lookup("ns").StringValue() != "test."+c.Name() || num(t, st, "count") != 30 || num(t, st, "size") != size ||
		num(t, st, "avgObjSize") != size/30 || num(t, st, "nindexes") != 2 || st.Lookup("capped").Boolean() {
		t.Fatalf("collStats = %s, want count 30, size %d", st, size)
	}
	if num(t, st, "storageSize") <= 0 || num(t, st, "indexSizes.a_1") <= 0 || num(t, st, "totalIndexSize") != num(t, st, "indexSizes.a_1")+num(t, st, "indexSizes._id_") ||
		num(t, st, "totalSize") != num(t, st, "storageSize")+num(t, st, "totalIndexSize") {
		t.Errorf("collStats sizes = %s", st)
	}
	k := runCmd(t, e, e.db, bson.D{{Key: "collStats", Value: c.Name()}, {Key: "scale", Value: 1024}})
	if num(t, k, "size") != size/1024 || num(t, k, "avgObjSize") != size/30 || num(t, k, "scaleFactor") != 1024 {
		t.Errorf("collStats scale 1024 = %s", k)
	}
	// Capped: max and maxSize.
	if err := e.db.RunCommand(e.ctx, bson.D{{Key: "create", Value: c.Name() + "_capped"}, {Key: "capped", Value: true}, {Key: "size", Value: 8192}, {Key: "max", Value: 5}}).Err(); err != nil {
		t.Fatal(err)
	}
	cp := runCmd(t, e, e.db, bson.D{{Key: "collStats", Value: c.Name() + "_capped"}})
	if !cp.Lookup("capped").Boolean() || num(t, cp, "max") != 5 || num(t, cp, "maxSize") != 8192 || num(t, cp, "count") != 0 {
		t.Errorf("capped collStats = %s", cp)
	}
	// A missing collection: ok, with zeros (mongod 7.0).
	m := runCmd(t, e, e.db, bson.D{{Key: "collStats", Value: "nothere"}})
	if num(t, m, "count") != 0 || num(t, m, "size") != 0 || num(t, m, "nindexes") != 0 || m.Lookup("ns").StringValue() != "test.nothere" {
		t.Errorf("collStats of a missing collection = %s", m)
	}
	wantCode(t, e.db.RunCommand(e.ctx, bson.D{{Key: "collStats", Value: c.Name()}, {Key: "scale", Value: 0}}).Err(), 2)
	wantCode(t, e.db.RunCommand(e.ctx, bson.D{{Key: "collStats", Value: c.Name()}, {Key: "scale", Value: "x"}}).Err(), 2)
	wantCode(t, e.db.RunCommand(e.ctx, bson.D{{Key: "collStats", Value: c.Name()}, {Key: "verbose", Value: true}}).Err(), 40415)
}

func TestDataSize(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t)
	var docs []any
	var all, inRange int64
	for i := range 20 {
		d := bson.D{{Key: "_id", Value: int32(i)}, {Key: "x", Value: int32(i * 5)}, {Key: "pad", Value: strings.Repeat("z", i)}}
		raw, _ := bson.Marshal(d)
		all += int64(len(raw))
		if i*5 >= 10 && i*5 < 55 {
			inRange += int64(len(raw))
		}
		docs = append(docs, d)
	}
	if _, err := c.InsertMany(e.ctx, docs); err != nil {
		t.Fatal(err)
	}
	ns := "test." + c.Name()
	r := runCmd(t, e, e.db, bson.D{{Key: "dataSize", Value: ns}})
	if num(t, r, "size") != all || num(t, r, "numObjects") != 20 {
		t.Errorf("dataSize = %s, want size %d, 20 objects", r, all)
	}
	rng := bson.D{{Key: "dataSize", Value: ns}, {Key: "keyPattern", Value: bson.D{{Key: "x", Value: 1}}},
		{Key: "min", Value: bson.D{{Key: "x", Value: 10}}}, {Key: "max", Value: bson.D{{Key: "x", Value: 55}}}}
	// No index on x: refused, as mongod.
	wantCode(t, e.db.RunCommand(e.ctx, rng).Err(), 2)
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "x", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	r = runCmd(t, e, e.db, rng)
	if num(t, r, "size") != inRange || num(t, r, "numObjects") != 9 {
		t.Errorf("dataSize [10, 55) = %s, want size %d, 9 objects", r, inRange)
	}
	// keyPattern inferred from min.
	r = runCmd(t, e, e.db, bson.D{{Key: "dataSize", Value: ns}, {Key: "min", Value: bson.D{{Key: "x", Value: 10}}}, {Key: "max", Value: bson.D{{Key: "x", Value: 55}}}})
	if num(t, r, "numObjects") != 9 {
		t.Errorf("dataSize with inferred keyPattern = %s", r)
	}
	m := runCmd(t, e, e.db, bson.D{{Key: "dataSize", Value: "test.nothere"}})
	if num(t, m, "size") != 0 || num(t, m, "numObjects") != 0 {
		t.Errorf("dataSize of a missing collection = %s", m)
	}
	wantCode(t, e.db.RunCommand(e.ctx, bson.D{{Key: "dataSize", Value: ns}, {Key: "min", Value: bson.D{{Key: "x", Value: 10}}}}).Err(), 2)
	wantCode(t, e.db.RunCommand(e.ctx, bson.D{{Key: "dataSize", Value: c.Name()}}).Err(), 73)
	wantCode(t, e.db.RunCommand(e.ctx, bson.D{{Key: "dataSize", Value: ns}, {Key: "bogus", Value: 1}}).Err(), 40415)
}

func TestValidateCommand(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t)
	if _, err := c.InsertMany(e.ctx, []any{
		bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: bson.A{1, 2, 3}}},
		bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: 4}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "a", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	for _, full := range []bool{false, true} {
		r := runCmd(t, e, e.db, bson.D{{Key: "validate", Value: c.Name()}, {Key: "full", Value: full}})
		if !r.Lookup("valid").Boolean() || num(t, r, "nrecords") != 2 || num(t, r, "nIndexes") != 2 ||
			num(t, r, "keysPerIndex._id_") != 2 || num(t, r, "keysPerIndex.a_1") != 4 ||
			!r.Lookup("indexDetails", "a_1", "valid").Boolean() {
			t.Errorf("validate full=%v = %s", full, r)
		}
		if errs, _ := r.Lookup("errors").Array().Values(); len(errs) != 0 {
			t.Errorf("validate errors = %s", r)
		}
	}
	// A document stored before the validator was set is counted as not
	// compliant, with a warning; the collection stays valid (mongod 7.0).
	if err := e.db.RunCommand(e.ctx, bson.D{{Key: "collMod", Value: c.Name()}, {Key: "validator", Value: bson.D{{Key: "a", Value: bson.D{{Key: "$type", Value: "array"}}}}}}).Err(); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, e, e.db, bson.D{{Key: "validate", Value: c.Name()}})
	if warnings, _ := r.Lookup("warnings").Array().Values(); !r.Lookup("valid").Boolean() || num(t, r, "nNonCompliantDocuments") != 1 || len(warnings) != 1 {
		t.Errorf("validate with a validator = %s", r)
	}
	wantCode(t, e.db.RunCommand(e.ctx, bson.D{{Key: "validate", Value: "nothere"}}).Err(), 26)
	wantCode(t, e.db.RunCommand(e.ctx, bson.D{{Key: "validate", Value: c.Name()}, {Key: "repair", Value: true}}).Err(), 238)
	wantCode(t, e.db.RunCommand(e.ctx, bson.D{{Key: "validate", Value: c.Name()}, {Key: "full", Value: true}, {Key: "background", Value: true}}).Err(), 72)
	wantCode(t, e.db.RunCommand(e.ctx, bson.D{{Key: "validate", Value: c.Name()}, {Key: "nope", Value: true}}).Err(), 40415)
}

func TestFsync(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t)
	statsDocs(t, e, c, 10)
	// Before the flush the documents are in the memtable (and the synced
	// write-ahead log): no sstable holds them yet.
	before := runCmd(t, e, e.db, bson.D{{Key: "collStats", Value: c.Name()}})
	if num(t, before, "storageSize") != 0 {
		t.Skipf("storage already flushed: %s", before)
	}
	admin := e.client.Database("admin")
	r := runCmd(t, e, admin, bson.D{{Key: "fsync", Value: 1}})
	if num(t, r, "numFiles") < 1 {
		t.Errorf("fsync = %s", r)
	}
	after := runCmd(t, e, e.db, bson.D{{Key: "collStats", Value: c.Name()}})
	if num(t, after, "storageSize") <= 0 {
		t.Errorf("after fsync, collStats = %s: the documents should be in sstables", after)
	}
	wantCode(t, admin.RunCommand(e.ctx, bson.D{{Key: "fsync", Value: 1}, {Key: "lock", Value: true}}).Err(), 238)
	wantCode(t, e.db.RunCommand(e.ctx, bson.D{{Key: "fsync", Value: 1}}).Err(), 13)
	wantCode(t, admin.RunCommand(e.ctx, bson.D{{Key: "fsyncUnlock", Value: 1}}).Err(), 20)
	wantCode(t, admin.RunCommand(e.ctx, bson.D{{Key: "fsync", Value: 1}, {Key: "async", Value: true}}).Err(), 40415)
}

func TestListDatabasesSizes(t *testing.T) {
	e := newDataEnv(t)
	statsDocs(t, e, e.fresh(t), 20)
	var res struct {
		Databases []struct {
			Name       string
			SizeOnDisk int64 `bson:"sizeOnDisk"`
			Empty      bool
		}
		TotalSize int64 `bson:"totalSize"`
	}
	if err := e.client.Database("admin").RunCommand(e.ctx, bson.D{{Key: "listDatabases", Value: 1}}).Decode(&res); err != nil {
		t.Fatal(err)
	}
	var sum int64
	found := false
	for _, d := range res.Databases {
		sum += d.SizeOnDisk
		if d.Name == "test" {
			found = true
			if d.SizeOnDisk <= 0 || d.Empty {
				t.Errorf("test: sizeOnDisk %d, empty %v", d.SizeOnDisk, d.Empty)
			}
		}
	}
	if !found || res.TotalSize != sum || sum <= 0 {
		t.Errorf("listDatabases = %+v, totalSize %d, sum %d", res.Databases, res.TotalSize, sum)
	}
	// The sizes are the files': filtering on them works.
	var filtered struct{ Databases []struct{ Name string } }
	cmd := bson.D{{Key: "listDatabases", Value: 1}, {Key: "filter", Value: bson.D{{Key: "sizeOnDisk", Value: bson.D{{Key: "$gt", Value: 0}}}}}}
	if err := e.client.Database("admin").RunCommand(e.ctx, cmd).Decode(&filtered); err != nil || len(filtered.Databases) != len(res.Databases) {
		t.Errorf("listDatabases(sizeOnDisk > 0) = %v, %v", filtered, err)
	}
	cmd[1].Value = bson.D{{Key: "sizeOnDisk", Value: 0}}
	if err := e.client.Database("admin").RunCommand(e.ctx, cmd).Decode(&filtered); err != nil || len(filtered.Databases) != 0 {
		t.Errorf("listDatabases(sizeOnDisk 0) = %v, %v", filtered, err)
	}
}

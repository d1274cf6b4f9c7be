package handlers_test

import (
	"runtime"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/handlers/handlerstest"
)

// serverStatus counts what this node received (opcounters as mongod counts
// them, network traffic) and reports its memory and connections;
// buildInfo and hostInfo have the fields tools read.
func TestReplyShapes(t *testing.T) {
	e := handlerstest.StartEnv(t, handlers.Options{})
	ctx := handlerstest.Context(t)
	admin := e.Client.Database("admin")
	type status struct {
		Op struct {
			Insert, Query, Update, Delete, Getmore, Command int64
		} `bson:"opcounters"`
		Net struct {
			BytesIn     int64 `bson:"bytesIn"`
			BytesOut    int64 `bson:"bytesOut"`
			NumRequests int64 `bson:"numRequests"`
		} `bson:"network"`
		Mem struct {
			Bits      int32 `bson:"bits"`
			Resident  int32 `bson:"resident"`
			Supported bool  `bson:"supported"`
		} `bson:"mem"`
		Conns struct {
			Current      int32 `bson:"current"`
			Available    int32 `bson:"available"`
			TotalCreated int64 `bson:"totalCreated"`
			Active       int32 `bson:"active"`
		} `bson:"connections"`
		PID int64 `bson:"pid"`
	}
	read := func() status {
		var s status
		if err := admin.RunCommand(ctx, bson.D{{Key: "serverStatus", Value: 1}}).Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := read()
	c := e.Client.Database("shape").Collection("c")
	if _, err := c.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "_id", Value: 3}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteMany(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	if err := c.FindOne(ctx, bson.D{}).Err(); err != nil {
		t.Fatal(err)
	}
	after := read()
	d := after.Op
	if d.Insert-before.Op.Insert != 3 || d.Update-before.Op.Update != 1 || d.Delete-before.Op.Delete != 1 || d.Query-before.Op.Query != 1 ||
		d.Command-before.Op.Command < 1 {
		t.Errorf("opcounters went from %+v to %+v; want +3 inserts, +1 update, +1 delete, +1 query, +≥1 command (serverStatus)", before.Op, after.Op)
	}
	if after.Net.NumRequests-before.Net.NumRequests < 5 || after.Net.BytesIn <= before.Net.BytesIn || after.Net.BytesOut <= before.Net.BytesOut {
		t.Errorf("network went from %+v to %+v", before.Net, after.Net)
	}
	if runtime.GOOS == "linux" && (!after.Mem.Supported || after.Mem.Resident <= 0 || after.Mem.Bits != 64) {
		t.Errorf("mem %+v", after.Mem)
	}
	if after.Conns.Current < 1 || after.Conns.TotalCreated < int64(after.Conns.Current) || after.Conns.Active < 1 || after.PID <= 0 {
		t.Errorf("connections %+v, pid %d", after.Conns, after.PID)
	}

	var bi struct {
		VersionArray      []int32 `bson:"versionArray"`
		SysInfo           string  `bson:"sysInfo"`
		MaxBsonObjectSize int32   `bson:"maxBsonObjectSize"`
		Bits              int32   `bson:"bits"`
	}
	if err := admin.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&bi); err != nil {
		t.Fatal(err)
	}
	if len(bi.VersionArray) != 4 || bi.VersionArray[0] != 7 || bi.SysInfo != "deprecated" || bi.MaxBsonObjectSize != 16<<20 || bi.Bits != 64 {
		t.Errorf("buildInfo %+v", bi)
	}
	var hi struct {
		System struct {
			CPUAddrSize int32  `bson:"cpuAddrSize"`
			MemSizeMB   int64  `bson:"memSizeMB"`
			NumCores    int32  `bson:"numCores"`
			CPUArch     string `bson:"cpuArch"`
		} `bson:"system"`
		OS struct {
			Type, Name, Version string
		} `bson:"os"`
	}
	if err := admin.RunCommand(ctx, bson.D{{Key: "hostInfo", Value: 1}}).Decode(&hi); err != nil {
		t.Fatal(err)
	}
	if hi.System.CPUAddrSize != 64 || hi.System.NumCores != int32(runtime.NumCPU()) || hi.System.CPUArch == "" || hi.OS.Type == "" {
		t.Errorf("hostInfo %+v", hi)
	}
	if runtime.GOOS == "linux" && (hi.System.MemSizeMB <= 0 || hi.OS.Version == "") {
		t.Errorf("hostInfo on Linux %+v", hi)
	}
}

// Errors as mongod gives them: dropping a missing collection succeeds
// (7.0), an invalid sort is 15975, a duplicate key is printed as mongod
// prints values.
func TestMongodErrorShapes(t *testing.T) {
	e := handlerstest.StartEnv(t, handlers.Options{})
	ctx := handlerstest.Context(t)
	db := e.Client.Database("shapes")
	if err := db.RunCommand(ctx, bson.D{{Key: "drop", Value: "missing"}}).Err(); err != nil {
		t.Fatalf("drop of a missing collection: %v", err)
	}
	err := db.RunCommand(ctx, bson.D{{Key: "find", Value: "c"}, {Key: "sort", Value: bson.D{{Key: "a", Value: 2}}}}).Err()
	wantAuthCode(t, err, 15975)
	c := db.Collection("dk")
	oid := bson.NewObjectID()
	for _, tc := range []struct {
		id   any
		want string
	}{
		{int32(1), "dup key: { _id: 1 }"},
		{"x", `dup key: { _id: "x" }`},
		{1.5, "dup key: { _id: 1.5 }"},
		{oid, "dup key: { _id: ObjectId('" + oid.Hex() + "') }"},
		{bson.D{{Key: "a", Value: int64(2)}}, "dup key: { _id: { a: 2 } }"},
	} {
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: tc.id}}); err != nil {
			t.Fatal(err)
		}
		_, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: tc.id}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("duplicate %v: %v, want %q", tc.id, err, tc.want)
		}
	}
}

// Field names starting with '$' are stored (MongoDB 5.0+) except in _id;
// a duplicate key carries keyPattern and keyValue; an update statement's
// sort (MongoDB 8.0) is an unknown field, as in 7.0.
func TestCRUDSpecShapes(t *testing.T) {
	e := handlerstest.StartEnv(t, handlers.Options{})
	ctx := handlerstest.Context(t)
	db := e.Client.Database("crudspec")
	c := db.Collection("c")
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "$a", Value: 1}}); err != nil {
		t.Fatalf("a top-level $-prefixed field: %v", err)
	}
	var got bson.Raw
	if err := db.RunCommand(ctx, bson.D{{Key: "find", Value: "c"}}).Decode(&got); err != nil || !strings.Contains(got.String(), `"$a"`) {
		t.Fatalf("the $-prefixed field was not stored: %v %v", got, err)
	}
	_, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$b", Value: 1}}}})
	wantAuthCode(t, err, 52)
	var reply struct {
		WriteErrors []struct {
			Code       int32  `bson:"code"`
			KeyPattern bson.D `bson:"keyPattern"`
			KeyValue   bson.D `bson:"keyValue"`
		} `bson:"writeErrors"`
	}
	ins, _ := db.RunCommand(ctx, bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: 1}}}}}).Raw()
	if err := bson.Unmarshal(ins, &reply); err != nil {
		t.Fatal(err)
	}
	if len(reply.WriteErrors) != 1 || reply.WriteErrors[0].Code != 11000 || len(reply.WriteErrors[0].KeyPattern) != 1 ||
		reply.WriteErrors[0].KeyPattern[0].Key != "_id" || len(reply.WriteErrors[0].KeyValue) != 1 {
		t.Fatalf("duplicate key write error: %+v", reply.WriteErrors)
	}
	if _, err := c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "u", Value: 1}}, Options: options.Index().SetUnique(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 2}, {Key: "u", Value: "x"}}, bson.D{{Key: "_id", Value: 3}, {Key: "u", Value: "y"}}}); err != nil {
		t.Fatal(err)
	}
	raw, err := db.RunCommand(ctx, bson.D{{Key: "findAndModify", Value: "c"}, {Key: "query", Value: bson.D{{Key: "_id", Value: 3}}},
		{Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "u", Value: "x"}}}}}}).Raw()
	if err == nil || !strings.Contains(raw.String(), `"keyPattern": {"u": {"$numberInt":"1"}}`) || !strings.Contains(raw.String(), `"keyValue": {"u": "x"}`) {
		t.Fatalf("findAndModify duplicate key: %v %v", raw, err)
	}
	err = db.RunCommand(ctx, bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{bson.D{{Key: "q", Value: bson.D{}},
		{Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "z", Value: 1}}}}}, {Key: "sort", Value: bson.D{{Key: "_id", Value: 1}}}}}}}).Err()
	wantAuthCode(t, err, 40415)
}

package e2e

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// shJSON runs js in mongosh against uri and decodes the last line of output
// that is a JSON document (the script prints it with EJSON.stringify, in
// relaxed mode, so numbers are plain JSON numbers).
func shJSON(t *testing.T, uri, js string, into any) {
	t.Helper()
	out := e2etest.Mongosh(t, uri, js)
	decodeLastJSON(t, out, into)
}

func decodeLastJSON(t *testing.T, out string, into any) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "{") || strings.HasPrefix(l, "[") {
			if err := json.Unmarshal([]byte(l), into); err != nil {
				t.Fatalf("decoding %q: %v", l, err)
			}
			return
		}
	}
	t.Fatalf("no JSON line in output:\n%s", out)
}

func wantEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		t.Errorf("%s:\n got  %s\n want %s", what, gj, wj)
	}
}

// fruitSeed is the collection every mongosh subtest starts from.
const fruitSeed = `
const d = db.getSiblingDB(DBNAME);
d.items.drop();
d.items.insertMany([
  {_id: 1, name: "apple",  qty: 5,  price: 1.5, tags: ["red", "fruit"],    origin: {country: "FR"}},
  {_id: 2, name: "banana", qty: 20, price: 0.5, tags: ["yellow", "fruit"], origin: {country: "EC"}},
  {_id: 3, name: "carrot", qty: 12, price: 0.8, tags: ["orange", "veg"],   origin: {country: "FR"}},
  {_id: 4, name: "date",   qty: 7,  price: 3.0, tags: ["brown", "fruit"],  origin: {country: "TN"}},
  {_id: 5, name: "endive", qty: 0,  price: 2.2, tags: ["white", "veg"]}
]);
`

func seeded(dbName, js string) string {
	return strings.ReplaceAll(fruitSeed, "DBNAME", `"`+dbName+`"`) + js
}

func TestMongosh(t *testing.T) {
	e2etest.RequireNodeClients(t)
	s := startServer(t)

	t.Run("ConnectAndHello", func(t *testing.T) {
		var got struct {
			Ok        float64 `json:"ok"`
			Writable  bool    `json:"isWritablePrimary"`
			Encrypted bool    `json:"encrypted"`
			State     string  `json:"state"`
		}
		shJSON(t, s.URI, `
const h = db.hello();
const st = db.serverStatus().encryptionAtRest;
print(EJSON.stringify({ok: db.runCommand({ping: 1}).ok, isWritablePrimary: h.isWritablePrimary, encrypted: st.enabled, state: st.state}));
`, &got)
		if got.Ok != 1 || !got.Writable || !got.Encrypted || got.State != "AVAILABLE" {
			t.Errorf("hello/ping/serverStatus: %+v", got)
		}
	})

	t.Run("InsertFindFilterSortLimit", func(t *testing.T) {
		var got struct {
			TopTwo   []map[string]any `json:"topTwo"`
			Fruit    []string         `json:"fruit"`
			Regex    []string         `json:"regex"`
			Nested   []string         `json:"nested"`
			NoOrigin []float64        `json:"noOrigin"`
			One      map[string]any   `json:"one"`
			Skipped  []string         `json:"skipped"`
			Batched  int              `json:"batched"`
		}
		shJSON(t, s.URI, seeded("sh_find", `
print(EJSON.stringify({
  topTwo:   d.items.find({qty: {$gte: 7}}, {_id: 0, name: 1, qty: 1}).sort({qty: -1}).limit(2).toArray(),
  fruit:    d.items.find({tags: "fruit", name: {$in: ["apple", "date", "carrot"]}}).sort({name: 1}).toArray().map(x => x.name),
  regex:    d.items.find({name: /an/}).sort({_id: 1}).toArray().map(x => x.name),
  nested:   d.items.find({"origin.country": "FR"}).sort({name: -1}).toArray().map(x => x.name),
  noOrigin: d.items.find({origin: {$exists: false}}).toArray().map(x => x._id),
  one:      d.items.findOne({_id: 3}, {name: 1, price: 1}),
  skipped:  d.items.find({}).sort({qty: 1}).skip(1).limit(2).toArray().map(x => x.name),
  batched:  d.items.find({}).batchSize(2).toArray().length,
}));
`), &got)
		wantEqual(t, "find qty>=7 sort qty desc limit 2", got.TopTwo, []map[string]any{
			{"name": "banana", "qty": float64(20)}, {"name": "carrot", "qty": float64(12)},
		})
		wantEqual(t, "find tags=fruit, name $in", got.Fruit, []string{"apple", "date"})
		wantEqual(t, "find /an/", got.Regex, []string{"banana"})
		wantEqual(t, "find origin.country=FR", got.Nested, []string{"carrot", "apple"})
		wantEqual(t, "find origin $exists false", got.NoOrigin, []float64{5})
		wantEqual(t, "findOne projection", got.One, map[string]any{"_id": float64(3), "name": "carrot", "price": 0.8})
		wantEqual(t, "skip/limit", got.Skipped, []string{"apple", "date"})
		wantEqual(t, "batchSize 2 across getMore", got.Batched, 5)
	})

	t.Run("Count", func(t *testing.T) {
		var got struct {
			Count     int `json:"count"`
			Docs      int `json:"docs"`
			Estimated int `json:"estimated"`
		}
		shJSON(t, s.URI, seeded("sh_count", `
print(EJSON.stringify({
  count:     d.runCommand({count: "items", query: {tags: "fruit"}}).n,
  docs:      d.items.countDocuments({qty: {$gt: 6}}),
  estimated: d.items.estimatedDocumentCount(),
}));
`), &got)
		wantEqual(t, "count command", got.Count, 3)
		wantEqual(t, "countDocuments", got.Docs, 3)
		wantEqual(t, "estimatedDocumentCount", got.Estimated, 5)
	})

	t.Run("UpdateDelete", func(t *testing.T) {
		var got struct {
			Modified int            `json:"modified"`
			Many     int            `json:"many"`
			Deleted  int            `json:"deleted"`
			Apple    map[string]any `json:"apple"`
			Left     []string       `json:"left"`
		}
		shJSON(t, s.URI, seeded("sh_update", `
const u1 = d.items.updateOne({_id: 1}, {$inc: {qty: 10}, $set: {"origin.region": "Normandy"}, $push: {tags: "sale"}});
const um = d.items.updateMany({tags: "veg"}, {$set: {organic: true}});
const del = d.items.deleteMany({qty: {$lt: 8}});
print(EJSON.stringify({
  modified: u1.modifiedCount, many: um.modifiedCount, deleted: del.deletedCount,
  apple: d.items.findOne({_id: 1}, {_id: 0, qty: 1, origin: 1, tags: 1}),
  left: d.items.find().sort({_id: 1}).toArray().map(x => x.name),
}));
`), &got)
		wantEqual(t, "updateOne modifiedCount", got.Modified, 1)
		wantEqual(t, "updateMany modifiedCount", got.Many, 2)
		wantEqual(t, "deleteMany deletedCount", got.Deleted, 2)
		wantEqual(t, "updated apple", got.Apple, map[string]any{
			"qty": float64(15), "origin": map[string]any{"country": "FR", "region": "Normandy"}, "tags": []any{"red", "fruit", "sale"},
		})
		wantEqual(t, "left after deleteMany", got.Left, []string{"apple", "banana", "carrot"})
	})

	t.Run("Aggregate", func(t *testing.T) {
		var got struct {
			ByKind []map[string]any `json:"byKind"`
			Count  []map[string]any `json:"count"`
		}
		shJSON(t, s.URI, seeded("sh_agg", `
print(EJSON.stringify({
  byKind: d.items.aggregate([
    {$unwind: "$tags"},
    {$match: {tags: {$in: ["fruit", "veg"]}}},
    {$group: {_id: "$tags", total: {$sum: "$qty"}, n: {$sum: 1}, names: {$push: "$name"}}},
    {$sort: {_id: 1}},
  ]).toArray(),
  count: d.items.aggregate([{$match: {price: {$gte: 1}}}, {$count: "expensive"}]).toArray(),
}));
`), &got)
		wantEqual(t, "$unwind/$match/$group/$sort", got.ByKind, []map[string]any{
			{"_id": "fruit", "total": float64(32), "n": float64(3), "names": []any{"apple", "banana", "date"}},
			{"_id": "veg", "total": float64(12), "n": float64(2), "names": []any{"carrot", "endive"}},
		})
		wantEqual(t, "$count", got.Count, []map[string]any{{"expensive": float64(3)}})
	})

	t.Run("IndexesAndQuery", func(t *testing.T) {
		var got struct {
			Name    string   `json:"name"`
			Keys    []string `json:"keys"`
			Query   []string `json:"query"`
			DupCode int      `json:"dupCode"`
			Dropped float64  `json:"dropped"`
			After   []string `json:"after"`
		}
		shJSON(t, s.URI, seeded("sh_idx", `
const name = d.items.createIndex({qty: 1});
d.items.createIndex({name: 1}, {unique: true});
let dupCode = 0;
try { d.items.insertOne({_id: 99, name: "apple"}); } catch (e) { dupCode = e.code; }
const q = d.items.find({qty: {$gt: 5, $lte: 12}}).sort({qty: 1}).toArray().map(x => x.name);
const keys = d.items.getIndexes().map(i => i.name).sort();
const dropped = d.items.dropIndex("qty_1").ok;
print(EJSON.stringify({
  name, keys, query: q, dupCode, dropped,
  after: d.items.getIndexes().map(i => i.name).sort(),
}));
`), &got)
		wantEqual(t, "createIndex name", got.Name, "qty_1")
		wantEqual(t, "getIndexes", got.Keys, []string{"_id_", "name_1", "qty_1"})
		wantEqual(t, "indexed range query", got.Query, []string{"date", "carrot"})
		wantEqual(t, "duplicate key code", got.DupCode, 11000)
		wantEqual(t, "dropIndex ok", got.Dropped, float64(1))
		wantEqual(t, "indexes after dropIndex", got.After, []string{"_id_", "name_1"})
	})

	t.Run("CollectionStatsAndCurrentOp", func(t *testing.T) {
		// mongosh 2.x builds these helpers on the $collStats stage, and
		// db.currentOp()/db.killOp() on $currentOp and killOp.
		var got struct {
			NS             string  `json:"ns"`
			Count          float64 `json:"count"`
			Size           float64 `json:"size"`
			DataSize       float64 `json:"dataSize"`
			StorageSize    float64 `json:"storageSize"`
			TotalSize      float64 `json:"totalSize"`
			IndexSize      float64 `json:"totalIndexSize"`
			StatsIndexSize float64 `json:"statsIndexSize"`
			Nindexes       float64 `json:"nindexes"`
			Reads          float64 `json:"reads"`
			CurrentOp      bool    `json:"currentOp"`
			Killed         float64 `json:"killed"`
		}
		shJSON(t, s.URI, seeded("sh_collstats", `
d.items.createIndex({name: 1});
db.adminCommand({fsync: 1});
const st = d.items.stats();
const inprog = db.currentOp({"command.aggregate": 1}).inprog;
const k = db.killOp(123456);
print(EJSON.stringify({
  ns: st.ns, count: st.count, size: st.size, nindexes: st.nindexes, statsIndexSize: st.totalIndexSize,
  dataSize: d.items.dataSize(), storageSize: d.items.storageSize(), totalSize: d.items.totalSize(),
  totalIndexSize: d.items.totalIndexSize(),
  reads: [].concat(d.items.latencyStats())[0].latencyStats.reads.ops,
  currentOp: inprog.some(op => op.active && typeof op.opid === "number"),
  killed: k.ok,
}));
`), &got)
		if got.NS != "sh_collstats.items" || got.Count != 5 || got.Size <= 0 || got.Size != got.DataSize || got.Nindexes != 2 {
			t.Errorf("coll.stats() / dataSize(): %+v", got)
		}
		if got.StorageSize <= 0 || got.IndexSize <= 0 || got.IndexSize != got.StatsIndexSize || got.TotalSize != got.StorageSize+got.IndexSize {
			t.Errorf("storageSize() / totalIndexSize() / totalSize(): %+v", got)
		}
		if got.Reads < 1 || !got.CurrentOp || got.Killed != 1 {
			t.Errorf("latencyStats() / currentOp() / killOp(): %+v", got)
		}
	})

	t.Run("DropDatabase", func(t *testing.T) {
		var got struct {
			Before  bool    `json:"before"`
			Dropped float64 `json:"dropped"`
			After   bool    `json:"after"`
			Left    int     `json:"left"`
		}
		shJSON(t, s.URI, seeded("sh_drop", `
const has = () => db.adminCommand({listDatabases: 1}).databases.some(x => x.name === "sh_drop");
const before = has();
const dropped = d.dropDatabase().ok;
print(EJSON.stringify({before, dropped, after: has(), left: d.items.find().toArray().length}));
`), &got)
		if !got.Before || got.Dropped != 1 || got.After || got.Left != 0 {
			t.Errorf("dropDatabase: %+v (want listed before, ok 1, gone after, no documents left)", got)
		}
	})

	t.Run("Auth", func(t *testing.T) {
		var created struct {
			Ok float64 `json:"ok"`
		}
		shJSON(t, s.URI, `
print(EJSON.stringify({ok: db.getSiblingDB("admin").runCommand({createUser: "alice", pwd: "correct horse battery", roles: ["root"]}).ok}));
`, &created)
		if created.Ok != 1 {
			t.Fatalf("createUser: %+v", created)
		}
		u, err := url.Parse(s.URI)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword("alice", "correct horse battery")
		q := u.Query()
		q.Set("authSource", "admin")
		q.Set("authMechanism", "SCRAM-SHA-256")
		u.RawQuery = q.Encode()
		var who struct {
			Users []map[string]any `json:"users"`
		}
		shJSON(t, u.String(), `
print(EJSON.stringify({users: db.runCommand({connectionStatus: 1}).authInfo.authenticatedUsers}));
`, &who)
		wantEqual(t, "authenticated users", who.Users, []map[string]any{{"user": "alice", "db": "admin"}})

		u.User = url.UserPassword("alice", "wrong password")
		out, err := e2etest.MongoshErr(t, u.String(), `print("connected")`)
		if err == nil {
			t.Fatalf("mongosh with a wrong password connected: %s", out)
		}
		if !strings.Contains(err.Error(), "Authentication failed") {
			t.Errorf("wrong password: %v, want an Authentication failed error", err)
		}
	})
}

package e2e

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// TestNodeDriver runs e2e/node/crud.js (the official Node driver) against a
// real `cmkdb up`; the script asserts every step itself.
func TestNodeDriver(t *testing.T) {
	e2etest.RequireNodeClients(t)
	s := startServer(t)
	out := e2etest.Node(t, "crud.js", s.URI, "node_e2e")
	var got struct {
		Ok    bool     `json:"ok"`
		Steps []string `json:"steps"`
	}
	decodeLastJSON(t, out, &got)
	if !got.Ok || len(got.Steps) < 10 {
		t.Fatalf("crud.js: %s", out)
	}
	t.Logf("node driver steps passed: %q", got.Steps)
}

// TestGoDriver drives everyday CRUD with the official Go driver.
func TestGoDriver(t *testing.T) {
	s := startServer(t)
	c := connect(t, s.URI)
	db := c.Database("go_e2e")
	coll := db.Collection("orders")

	docs := make([]any, 0, 300)
	for i := range 300 {
		docs = append(docs, bson.D{
			{Key: "_id", Value: int32(i)},
			{Key: "customer", Value: fmt.Sprintf("c%02d", i%20)},
			{Key: "amount", Value: int32(i % 97)},
			{Key: "status", Value: []string{"new", "paid", "shipped"}[i%3]},
			{Key: "items", Value: bson.A{bson.D{{Key: "sku", Value: fmt.Sprintf("sku-%d", i%5)}, {Key: "n", Value: int32(1 + i%4)}}}},
		})
	}

	t.Run("InsertMany", func(t *testing.T) {
		r, err := coll.InsertMany(opCtx(t), docs)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.InsertedIDs) != 300 {
			t.Fatalf("inserted %d ids, want 300", len(r.InsertedIDs))
		}
	})

	t.Run("FindCursorAcrossGetMore", func(t *testing.T) {
		cur, err := coll.Find(opCtx(t), bson.D{{Key: "status", Value: "paid"}},
			options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}).SetBatchSize(9))
		if err != nil {
			t.Fatal(err)
		}
		var ids []int32
		for cur.Next(opCtx(t)) {
			ids = append(ids, cur.Current.Lookup("_id").Int32())
		}
		if err := cur.Err(); err != nil {
			t.Fatal(err)
		}
		if len(ids) != 100 || ids[0] != 298 || ids[99] != 1 || !slices.IsSortedFunc(ids, func(a, b int32) int { return int(b - a) }) {
			t.Fatalf("paid ids: %d ids, first/last %v", len(ids), ids[:min(3, len(ids))])
		}
	})

	t.Run("FindFilterProjectionSkipLimit", func(t *testing.T) {
		cur, err := coll.Find(opCtx(t),
			bson.D{{Key: "amount", Value: bson.D{{Key: "$gte", Value: 90}}}, {Key: "items.sku", Value: "sku-0"}},
			options.Find().SetProjection(bson.D{{Key: "amount", Value: 1}}).SetSort(bson.D{{Key: "amount", Value: 1}, {Key: "_id", Value: 1}}).SetSkip(1).SetLimit(2))
		if err != nil {
			t.Fatal(err)
		}
		var got []bson.M
		if err := cur.All(opCtx(t), &got); err != nil {
			t.Fatal(err)
		}
		// amount>=90 and i%5==0: i in {90, 95, 190, 285(amount 91)...}; sorted by amount then _id.
		var want []bson.M
		var all []bson.M
		for i := range 300 {
			if i%97 >= 90 && i%5 == 0 {
				all = append(all, bson.M{"_id": int32(i), "amount": int32(i % 97)})
			}
		}
		slices.SortFunc(all, func(a, b bson.M) int {
			if d := a["amount"].(int32) - b["amount"].(int32); d != 0 {
				return int(d)
			}
			return int(a["_id"].(int32) - b["_id"].(int32))
		})
		want = all[1:3]
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})

	t.Run("UpdateOneManyUpsert", func(t *testing.T) {
		r, err := coll.UpdateOne(opCtx(t), bson.D{{Key: "_id", Value: 7}}, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "cancelled"}}}, {Key: "$inc", Value: bson.D{{Key: "amount", Value: 1000}}}})
		if err != nil || r.MatchedCount != 1 || r.ModifiedCount != 1 {
			t.Fatalf("updateOne: %+v, %v", r, err)
		}
		var doc bson.M
		if err := coll.FindOne(opCtx(t), bson.D{{Key: "_id", Value: 7}}).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		if doc["status"] != "cancelled" || doc["amount"] != int32(1007) {
			t.Fatalf("after updateOne: %v", doc)
		}
		r, err = coll.UpdateMany(opCtx(t), bson.D{{Key: "customer", Value: "c05"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "vip", Value: true}}}})
		if err != nil || r.MatchedCount != 15 || r.ModifiedCount != 15 {
			t.Fatalf("updateMany: %+v, %v", r, err)
		}
		r, err = coll.UpdateOne(opCtx(t), bson.D{{Key: "_id", Value: int32(5000)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "new"}}}}, options.UpdateOne().SetUpsert(true))
		if err != nil || r.UpsertedCount != 1 || r.UpsertedID != int32(5000) {
			t.Fatalf("upsert: %+v, %v", r, err)
		}
	})

	t.Run("FindOneAndUpdate", func(t *testing.T) {
		var doc bson.M
		err := coll.FindOneAndUpdate(opCtx(t), bson.D{{Key: "_id", Value: 8}}, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "audited"}}}},
			options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&doc)
		if err != nil || doc["status"] != "audited" {
			t.Fatalf("findOneAndUpdate: %v, %v", doc, err)
		}
	})

	t.Run("DeleteOneMany", func(t *testing.T) {
		r, err := coll.DeleteMany(opCtx(t), bson.D{{Key: "status", Value: "shipped"}})
		// 100 shipped, less _id 8 which FindOneAndUpdate marked audited.
		if err != nil || r.DeletedCount != 99 {
			t.Fatalf("deleteMany: %+v, %v", r, err)
		}
		r, err = coll.DeleteOne(opCtx(t), bson.D{{Key: "_id", Value: 5000}})
		if err != nil || r.DeletedCount != 1 {
			t.Fatalf("deleteOne: %+v, %v", r, err)
		}
	})

	t.Run("CountDistinct", func(t *testing.T) {
		// 100 paid, less _id 7 which UpdateOne cancelled.
		n, err := coll.CountDocuments(opCtx(t), bson.D{{Key: "status", Value: "paid"}})
		if err != nil || n != 99 {
			t.Fatalf("countDocuments: %d, %v", n, err)
		}
		n, err = coll.EstimatedDocumentCount(opCtx(t))
		// 300 + the upserted 5000 - 99 shipped - 5000 again.
		if err != nil || n != 201 {
			t.Fatalf("estimatedDocumentCount: %d, %v", n, err)
		}
		res := coll.Distinct(opCtx(t), "items.sku", bson.D{})
		var skus []string
		if err := res.Decode(&skus); err != nil {
			t.Fatalf("distinct: %v", err)
		}
		slices.Sort(skus)
		if fmt.Sprint(skus) != "[sku-0 sku-1 sku-2 sku-3 sku-4]" {
			t.Fatalf("distinct items.sku: %v", skus)
		}
	})

	t.Run("Aggregate", func(t *testing.T) {
		cur, err := coll.Aggregate(opCtx(t), mongo.Pipeline{
			{{Key: "$match", Value: bson.D{{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{"new", "paid"}}}}}}},
			{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$status"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
			{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		var got []bson.M
		if err := cur.All(opCtx(t), &got); err != nil {
			t.Fatal(err)
		}
		// 100 new (the upserted 5000 was deleted again); 100 paid less _id 7 (cancelled).
		want := []bson.M{{"_id": "new", "n": int32(100)}, {"_id": "paid", "n": int32(99)}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("aggregate: %v, want %v", got, want)
		}
	})

	t.Run("IndexesAndDuplicateKey", func(t *testing.T) {
		name, err := coll.Indexes().CreateOne(opCtx(t), mongo.IndexModel{
			Keys: bson.D{{Key: "customer", Value: 1}, {Key: "amount", Value: -1}},
		})
		if err != nil || name != "customer_1_amount_-1" {
			t.Fatalf("createIndex: %q, %v", name, err)
		}
		refs := db.Collection("refs")
		if _, err := refs.Indexes().CreateOne(opCtx(t), mongo.IndexModel{Keys: bson.D{{Key: "ref", Value: 1}}, Options: options.Index().SetUnique(true)}); err != nil {
			t.Fatalf("unique index: %v", err)
		}
		if _, err := refs.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: 9001}, {Key: "ref", Value: "R-1"}}); err != nil {
			t.Fatal(err)
		}
		_, err = refs.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: 9002}, {Key: "ref", Value: "R-1"}})
		wantCode(t, err, 11000, "unique index duplicate")
		if !mongo.IsDuplicateKeyError(err) {
			t.Errorf("mongo.IsDuplicateKeyError(%v) = false", err)
		}
		_, err = coll.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: 1}})
		wantCode(t, err, 11000, "duplicate _id")

		cur, err := coll.Find(opCtx(t), bson.D{{Key: "customer", Value: "c05"}, {Key: "amount", Value: bson.D{{Key: "$lt", Value: 50}}}}, options.Find().SetSort(bson.D{{Key: "amount", Value: -1}}))
		if err != nil {
			t.Fatal(err)
		}
		var got []bson.M
		if err := cur.All(opCtx(t), &got); err != nil {
			t.Fatal(err)
		}
		for i, d := range got {
			if d["customer"] != "c05" || d["amount"].(int32) >= 50 || (i > 0 && d["amount"].(int32) > got[i-1]["amount"].(int32)) {
				t.Fatalf("indexed query result %d: %v", i, d)
			}
		}
		specs, err := coll.Indexes().ListSpecifications(opCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, sp := range specs {
			names = append(names, sp.Name)
		}
		slices.Sort(names)
		if fmt.Sprint(names) != "[_id_ customer_1_amount_-1]" {
			t.Fatalf("listIndexes: %v", names)
		}
		if err := refs.Indexes().DropOne(opCtx(t), "ref_1"); err != nil {
			t.Fatalf("dropIndex: %v", err)
		}
	})

	t.Run("DatabasesAndCollections", func(t *testing.T) {
		names, err := c.ListDatabaseNames(opCtx(t), bson.D{})
		if err != nil || !slices.Contains(names, "go_e2e") {
			t.Fatalf("listDatabases: %v, %v", names, err)
		}
		if err := db.CreateCollection(opCtx(t), "extra"); err != nil {
			t.Fatalf("create: %v", err)
		}
		colls, err := db.ListCollectionNames(opCtx(t), bson.D{})
		slices.Sort(colls)
		if err != nil || fmt.Sprint(colls) != "[extra orders refs]" {
			t.Fatalf("listCollections: %v, %v", colls, err)
		}
		// MongoDB 7.0: create is idempotent for the same options; other
		// options on an existing name are NamespaceExists.
		if err := db.CreateCollection(opCtx(t), "extra"); err != nil {
			t.Fatalf("create an existing collection with the same options: %v", err)
		}
		err = db.CreateCollection(opCtx(t), "extra", options.CreateCollection().SetCapped(true).SetSizeInBytes(4096))
		wantCode(t, err, 48, "create an existing collection with other options (NamespaceExists)")
		if err := db.Collection("extra").Drop(opCtx(t)); err != nil {
			t.Fatalf("drop: %v", err)
		}
		err = db.RunCommand(opCtx(t), bson.D{{Key: "noSuchCommand", Value: 1}}).Err()
		wantCode(t, err, 59, "unknown command (CommandNotFound)")
		if err := db.Drop(opCtx(t)); err != nil {
			t.Fatalf("dropDatabase: %v", err)
		}
		names, err = c.ListDatabaseNames(opCtx(t), bson.D{})
		if err != nil || slices.Contains(names, "go_e2e") {
			t.Fatalf("listDatabases after dropDatabase: %v, %v", names, err)
		}
		n, err := coll.CountDocuments(opCtx(t), bson.D{})
		if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
			t.Fatalf("count after dropDatabase: %v", err)
		}
		if n != 0 {
			t.Fatalf("%d documents left after dropDatabase", n)
		}
	})
}

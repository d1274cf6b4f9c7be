package docstore

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/storage/storagetest"
)

func okDoc([]byte) error { return nil }

func TestStatsCountsAndSizes(t *testing.T) {
	s, err := Open(storagetest.NewDB(t, "app"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	var docs []bson.D
	for i := range 50 {
		d := bson.D{{Key: "_id", Value: i}, {Key: "a", Value: strings.Repeat("x", i)}}
		want += int64(len(mustRaw(t, d)))
		docs = append(docs, d)
	}
	if err := insert(t, s, "c", docs...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateIndex(context.Background(), "c", IndexSpec{Name: "a_1", Key: bson.D{{Key: "a", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	coll := s.Collection("c")
	st, err := s.Stats(context.Background(), coll)
	if err != nil {
		t.Fatal(err)
	}
	if st.Count != 50 || st.DataSize != want || len(st.IndexSizes) != 2 {
		t.Fatalf("Stats = %+v, want count 50, dataSize %d, 2 indexes", st, want)
	}
	// Once flushed, the documents and the index occupy sstables.
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err = s.Stats(context.Background(), coll)
	if err != nil {
		t.Fatal(err)
	}
	if st.StorageSize <= 0 || st.IndexSizes[1] <= 0 || st.IndexSizes[0] != 0 {
		t.Fatalf("after flush: %+v, want storage and a_1 sizes > 0, _id_ 0", st)
	}
	if s.DiskUsage() < st.StorageSize+st.IndexSizes[1] {
		t.Fatalf("DiskUsage %d < the collection's %d", s.DiskUsage(), st.StorageSize+st.IndexSizes[1])
	}
}

func TestValidate(t *testing.T) {
	ctx := context.Background()
	s, err := Open(storagetest.NewDB(t, "app"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := insert(t, s, "c",
		bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: bson.A{1, 2}}},
		bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: 3}},
		bson.D{{Key: "_id", Value: 3}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateIndex(ctx, "c", IndexSpec{Name: "a_1", Key: bson.D{{Key: "a", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	coll := s.Collection("c")
	res, err := s.Validate(ctx, coll, okDoc)
	if err != nil {
		t.Fatal(err)
	}
	// a_1: 1 and 2 for _id 1, 3 for _id 2, null for _id 3.
	if res.NRecords != 3 || len(res.Errors) != 0 || res.KeysPerIndex[0] != 3 || res.KeysPerIndex[1] != 4 {
		t.Fatalf("clean collection: %+v", res)
	}

	// Damage it behind the docstore's back: drop one index entry, add a
	// stray one, and store a document under another _id's key.
	ip := indexPrefix(coll.ID, coll.Indexes[1].ID)
	var victim []byte
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: ip, UpperBound: prefixEnd(ip)})
	if err != nil {
		t.Fatal(err)
	}
	it.First()
	victim = bytes.Clone(it.Key())
	it.Close()
	if err := s.db.Delete(victim, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	idKey := query.EncodeIndexKey([]bson.RawValue{bson.RawValue{Type: bson.TypeInt32, Value: []byte{9, 0, 0, 0}}}, []int{1})
	stray := append(append(bytes.Clone(ip), query.EncodeIndexKey([]bson.RawValue{{Type: bson.TypeInt32, Value: []byte{7, 0, 0, 0}}}, []int{1})...), idKey...)
	if err := s.db.Set(stray, idKey, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	res, err = s.Validate(ctx, coll, okDoc)
	if err != nil {
		t.Fatal(err)
	}
	if res.MissingIndexEntries != 1 || res.ExtraIndexEntries != 1 || len(res.Errors) != 2 || len(res.IndexErrors[1]) != 2 {
		t.Fatalf("damaged index: %+v", res)
	}

	// A document whose BSON the check refuses is counted as corrupt.
	res, err = s.Validate(ctx, coll, func(b []byte) error {
		if bson.Raw(b).Lookup("_id").Int32() == 3 {
			return bytes.ErrTooLarge
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.CorruptRecords != 1 || len(res.Warnings) != 1 {
		t.Fatalf("corrupt record: %+v", res)
	}
}

func TestDocumentsInKeyRange(t *testing.T) {
	s, err := Open(storagetest.NewDB(t, "app"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := insert(t, s, "c",
		bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 5}},
		bson.D{{Key: "_id", Value: 2}, {Key: "x", Value: 10}},
		bson.D{{Key: "_id", Value: 3}, {Key: "x", Value: bson.A{1, 20}}},
		bson.D{{Key: "_id", Value: 4}, {Key: "x", Value: 55}},
		bson.D{{Key: "_id", Value: 5}, {Key: "x", Value: "s"}}); err != nil {
		t.Fatal(err)
	}
	v := func(n int32) bson.RawValue {
		return bson.RawValue{Type: bson.TypeInt32, Value: []byte{byte(n), 0, 0, 0}}
	}
	var ids []int32
	err = s.Documents(context.Background(), s.Collection("c"), bson.D{{Key: "x", Value: 1}}, []bson.RawValue{v(10)}, []bson.RawValue{v(55)}, func(doc bson.Raw) error {
		ids = append(ids, doc.Lookup("_id").Int32())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] != 2 || ids[1] != 3 {
		t.Fatalf("[10, 55) = %v, want [2 3] (max excluded, an array counted once)", ids)
	}
}

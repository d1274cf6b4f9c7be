package query

import (
	"testing"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// The update operators' cases are data-driven: testdata/semantics/update.txt,
// positional.txt and arrayfilters.txt.

func TestUpsertDocument(t *testing.T) {
	tests := []struct{ filter, update, want string }{
		{`{"_id": 5, "a": 1}`, `{"$set": {"b": 2}}`, `{"_id": 5, "a": 1, "b": 2}`},
		{`{"a": {"$eq": 1}, "_id": 3, "c": {"$gt": 5}}`, `{"$inc": {"n": 1}}`, `{"_id": 3, "a": 1, "n": 1}`},
		{`{"x.y": 1, "_id": 1}`, `{"$setOnInsert": {"z": 1}}`, `{"_id": 1, "x": {"y": 1}, "z": 1}`},
		{`{"$and": [{"a": 1}, {"_id": 2}]}`, `{"$set": {"a": 9}}`, `{"_id": 2, "a": 9}`},
		{`{"_id": 7, "a": 1}`, `{"b": 1}`, `{"_id": 7, "b": 1}`},
		{`{"_id": 7}`, `{"b": 1, "_id": 7}`, `{"_id": 7, "b": 1}`},
		{`{"$or": [{"a": 1}], "_id": 1}`, `{"$set": {"b": 1}}`, `{"_id": 1, "b": 1}`},
	}
	for _, tt := range tests {
		u, err := CompileUpdate(D(t, tt.update))
		if err != nil {
			t.Fatal(err)
		}
		got, err := UpsertDocument(D(t, tt.filter), u, ApplyOptions{})
		if err != nil {
			t.Fatalf("UpsertDocument(%s, %s): %v", tt.filter, tt.update, err)
		}
		assertDocEqual(t, got, D(t, tt.want))
	}
	// No _id anywhere: one is generated, first.
	u, _ := CompileUpdate(D(t, `{"$set": {"a": 1}}`))
	got, err := UpsertDocument(D(t, `{"b": 2}`), u, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	els, _ := got.Elements()
	if len(els) != 3 || els[0].Key() != "_id" || els[0].Value().Type != 0x07 {
		t.Errorf("generated upsert doc = %s", got)
	}
	// Conflicting equality paths.
	_, err = UpsertDocument(D(t, `{"a": 1, "a.b": 2}`), u, ApplyOptions{})
	assertCode(t, err, mongoerr.NotSingleValueField)
}

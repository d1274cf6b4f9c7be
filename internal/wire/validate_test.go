package wire

import (
	"encoding/binary"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// nested returns a document nested depth levels deep ({a: {a: ... {}}}).
func nested(depth int) []byte {
	doc := []byte{5, 0, 0, 0, 0}
	for i := 1; i < depth; i++ {
		d := []byte{0, 0, 0, 0, byte(bsoncore.TypeEmbeddedDocument), 'a', 0}
		d = append(d, doc...)
		d = append(d, 0)
		doc = finishDoc(d)
	}
	return doc
}

func TestValidateDocument(t *testing.T) {
	full := mustMarshal(t, bson.D{
		{Key: "double", Value: 1.5},
		{Key: "string", Value: "héllo"},
		{Key: "doc", Value: bson.D{{Key: "x", Value: bson.A{1, "two", bson.D{}}}}},
		{Key: "bin", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}},
		{Key: "oldbin", Value: bson.Binary{Subtype: 2, Data: []byte{1, 2, 3}}},
		{Key: "undefined", Value: bson.Undefined{}},
		{Key: "oid", Value: bson.NewObjectID()},
		{Key: "bool", Value: true},
		{Key: "date", Value: bson.NewDateTimeFromTime(time.Unix(0, 0))},
		{Key: "null", Value: nil},
		{Key: "regex", Value: bson.Regex{Pattern: "^a", Options: "i"}},
		{Key: "dbptr", Value: bson.DBPointer{DB: "db.c", Pointer: bson.NewObjectID()}},
		{Key: "js", Value: bson.JavaScript("x")},
		{Key: "sym", Value: bson.Symbol("s")},
		{Key: "cws", Value: bson.CodeWithScope{Code: "x", Scope: bson.D{{Key: "y", Value: 1}}}},
		{Key: "int32", Value: int32(1)},
		{Key: "ts", Value: bson.Timestamp{T: 1, I: 2}},
		{Key: "int64", Value: int64(1)},
		{Key: "dec", Value: bson.NewDecimal128(1, 2)},
		{Key: "min", Value: bson.MinKey{}},
		{Key: "max", Value: bson.MaxKey{}},
	})
	mutate := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), full...))
	}
	str := mustMarshal(t, bson.D{{Key: "s", Value: "abc"}})
	tests := []struct {
		name string
		doc  []byte
		ok   bool
	}{
		{"every type", full, true},
		{"empty", []byte{5, 0, 0, 0, 0}, true},
		{"max depth", nested(MaxBSONDepth), true},
		{"too deep", nested(MaxBSONDepth + 1), false},
		{"too short", []byte{4, 0, 0, 0}, false},
		{"length mismatch", mutate(func(b []byte) []byte { b[0]--; return b }), false},
		{"trailing bytes", append(append([]byte(nil), full...), 0), false},
		{"missing terminator", mutate(func(b []byte) []byte { b[len(b)-1] = 1; return b }), false},
		{"unknown type", mutate(func(b []byte) []byte { b[4] = 0x42; return b }), false},
		{"bad boolean", func() []byte {
			d := mustMarshal(t, bson.D{{Key: "b", Value: true}})
			d[7] = 2
			return d
		}(), false},
		{"string length too long", func() []byte {
			d := append([]byte(nil), str...)
			binary.LittleEndian.PutUint32(d[7:], 100)
			return d
		}(), false},
		{"string zero length", func() []byte {
			d := append([]byte(nil), str...)
			binary.LittleEndian.PutUint32(d[7:], 0)
			return d
		}(), false},
		{"string not terminated", func() []byte {
			d := append([]byte(nil), str...)
			d[len(d)-2] = 'x'
			return d
		}(), false},
		{"key not terminated", []byte{8, 0, 0, 0, 0x10, 'a', 'b', 0}, false},
		{"truncated int32", []byte{9, 0, 0, 0, 0x10, 'a', 0, 1, 0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateDocument(tt.doc)
			if tt.ok && err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if !tt.ok {
				if err == nil {
					t.Fatal("accepted")
				}
				if codeOf(err) != mongoerr.InvalidBSON {
					t.Fatalf("code = %v", codeOf(err))
				}
			}
		})
	}
}

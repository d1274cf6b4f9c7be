package query

import (
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

func TestUpdateApply(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name, doc, update, want string
		changed                 bool
	}{
		{"set new", `{"_id": 1}`, `{"$set": {"a": 1}}`, `{"_id": 1, "a": 1}`, true},
		{"set existing", `{"_id": 1, "a": 1, "b": 2}`, `{"$set": {"a": 5}}`, `{"_id": 1, "a": 5, "b": 2}`, true},
		{"set same value is no-op", `{"_id": 1, "a": 1}`, `{"$set": {"a": 1}}`, `{"_id": 1, "a": 1}`, false},
		{"set different numeric type modifies", `{"_id": 1, "a": 1}`, `{"$set": {"a": 1.0}}`, `{"_id": 1, "a": 1.0}`, true},
		{"set lexicographic order", `{"_id": 1}`, `{"$set": {"b": 1, "a": 2}}`, `{"_id": 1, "a": 2, "b": 1}`, true},
		{"set dotted creates docs", `{"_id": 1}`, `{"$set": {"a.b.c": 1}}`, `{"_id": 1, "a": {"b": {"c": 1}}}`, true},
		{"set into array index", `{"_id": 1, "a": [1, 2]}`, `{"$set": {"a.1": 9}}`, `{"_id": 1, "a": [1, 9]}`, true},
		{"set pads array", `{"_id": 1, "a": [1]}`, `{"$set": {"a.3": 9}}`, `{"_id": 1, "a": [1, null, null, 9]}`, true},
		{"set in array element doc", `{"_id": 1, "a": [{"b": 1}]}`, `{"$set": {"a.0.b": 2}}`, `{"_id": 1, "a": [{"b": 2}]}`, true},
		{"set numeric key on doc", `{"_id": 1, "a": {}}`, `{"$set": {"a.0": 1}}`, `{"_id": 1, "a": {"0": 1}}`, true},
		{"set all positional", `{"_id": 1, "a": [{"b": 1}, {"b": 2}]}`, `{"$set": {"a.$[].b": 0}}`, `{"_id": 1, "a": [{"b": 0}, {"b": 0}]}`, true},
		{"set same _id ok", `{"_id": 1, "a": 1}`, `{"$set": {"_id": 1}}`, `{"_id": 1, "a": 1}`, false},
		{"set empty is no-op", `{"_id": 1}`, `{"$set": {}}`, `{"_id": 1}`, false},
		{"unset", `{"_id": 1, "a": 1, "b": 2}`, `{"$unset": {"a": ""}}`, `{"_id": 1, "b": 2}`, true},
		{"unset missing", `{"_id": 1}`, `{"$unset": {"a.b": 1}}`, `{"_id": 1}`, false},
		{"unset array element nulls it", `{"_id": 1, "a": [1, 2]}`, `{"$unset": {"a.0": 1}}`, `{"_id": 1, "a": [null, 2]}`, true},
		{"unset through scalar", `{"_id": 1, "a": 5}`, `{"$unset": {"a.b": 1}}`, `{"_id": 1, "a": 5}`, false},
		{"inc", `{"_id": 1, "a": 1}`, `{"$inc": {"a": 2}}`, `{"_id": 1, "a": 3}`, true},
		{"inc missing", `{"_id": 1}`, `{"$inc": {"a": 2}}`, `{"_id": 1, "a": 2}`, true},
		{"inc double", `{"_id": 1, "a": 1}`, `{"$inc": {"a": 0.5}}`, `{"_id": 1, "a": 1.5}`, true},
		{"inc int32 overflow widens", `{"_id": 1, "a": 2147483647}`, `{"$inc": {"a": 1}}`, `{"_id": 1, "a": {"$numberLong": "2147483648"}}`, true},
		{"inc long", `{"_id": 1, "a": {"$numberLong": "5"}}`, `{"$inc": {"a": 1}}`, `{"_id": 1, "a": {"$numberLong": "6"}}`, true},
		{"inc decimal", `{"_id": 1, "a": {"$numberDecimal": "1.1"}}`, `{"$inc": {"a": 1}}`, `{"_id": 1, "a": {"$numberDecimal": "2.100000000000000000000000000000000"}}`, true},
		{"inc by zero", `{"_id": 1, "a": 1}`, `{"$inc": {"a": 0}}`, `{"_id": 1, "a": 1}`, false},
		{"mul", `{"_id": 1, "a": 3}`, `{"$mul": {"a": 4}}`, `{"_id": 1, "a": 12}`, true},
		{"mul missing sets zero", `{"_id": 1}`, `{"$mul": {"a": {"$numberLong": "4"}}}`, `{"_id": 1, "a": {"$numberLong": "0"}}`, true},
		{"mul missing double", `{"_id": 1}`, `{"$mul": {"a": 2.5}}`, `{"_id": 1, "a": 0.0}`, true},
		{"min lower", `{"_id": 1, "a": 5}`, `{"$min": {"a": 3}}`, `{"_id": 1, "a": 3}`, true},
		{"min higher", `{"_id": 1, "a": 5}`, `{"$min": {"a": 7}}`, `{"_id": 1, "a": 5}`, false},
		{"min across types", `{"_id": 1, "a": "x"}`, `{"$min": {"a": 7}}`, `{"_id": 1, "a": 7}`, true},
		{"max", `{"_id": 1, "a": 5}`, `{"$max": {"a": 7}}`, `{"_id": 1, "a": 7}`, true},
		{"max missing", `{"_id": 1}`, `{"$max": {"a": 7}}`, `{"_id": 1, "a": 7}`, true},
		{"rename", `{"_id": 1, "a": 1, "b": 2}`, `{"$rename": {"a": "c"}}`, `{"_id": 1, "b": 2, "c": 1}`, true},
		{"rename overwrite", `{"_id": 1, "a": 1, "b": 2}`, `{"$rename": {"a": "b"}}`, `{"_id": 1, "b": 1}`, true},
		{"rename nested", `{"_id": 1, "a": {"x": 1}}`, `{"$rename": {"a.x": "b.y"}}`, `{"_id": 1, "a": {}, "b": {"y": 1}}`, true},
		{"rename missing", `{"_id": 1}`, `{"$rename": {"a": "b"}}`, `{"_id": 1}`, false},
		{"push", `{"_id": 1, "a": [1]}`, `{"$push": {"a": 2}}`, `{"_id": 1, "a": [1, 2]}`, true},
		{"push missing", `{"_id": 1}`, `{"$push": {"a": 2}}`, `{"_id": 1, "a": [2]}`, true},
		{"push array value", `{"_id": 1, "a": []}`, `{"$push": {"a": [1, 2]}}`, `{"_id": 1, "a": [[1, 2]]}`, true},
		{"push each", `{"_id": 1, "a": [1]}`, `{"$push": {"a": {"$each": [2, 3]}}}`, `{"_id": 1, "a": [1, 2, 3]}`, true},
		{"push position", `{"_id": 1, "a": [1, 4]}`, `{"$push": {"a": {"$each": [2, 3], "$position": 1}}}`, `{"_id": 1, "a": [1, 2, 3, 4]}`, true},
		{"push negative position", `{"_id": 1, "a": [1, 4]}`, `{"$push": {"a": {"$each": [2], "$position": -1}}}`, `{"_id": 1, "a": [1, 2, 4]}`, true},
		{"push slice", `{"_id": 1, "a": [1, 2]}`, `{"$push": {"a": {"$each": [3, 4], "$slice": -3}}}`, `{"_id": 1, "a": [2, 3, 4]}`, true},
		{"push sort slice", `{"_id": 1, "a": [5, 1]}`, `{"$push": {"a": {"$each": [3], "$sort": 1, "$slice": 2}}}`, `{"_id": 1, "a": [1, 3]}`, true},
		{"push sort docs", `{"_id": 1, "a": [{"s": 2}, {"s": 9}]}`, `{"$push": {"a": {"$each": [{"s": 5}], "$sort": {"s": -1}}}}`, `{"_id": 1, "a": [{"s": 9}, {"s": 5}, {"s": 2}]}`, true},
		{"push doc without each is a value", `{"_id": 1}`, `{"$push": {"a": {"b": 1}}}`, `{"_id": 1, "a": [{"b": 1}]}`, true},
		{"addToSet new", `{"_id": 1, "a": [1, 2]}`, `{"$addToSet": {"a": 3}}`, `{"_id": 1, "a": [1, 2, 3]}`, true},
		{"addToSet existing", `{"_id": 1, "a": [1, 2]}`, `{"$addToSet": {"a": 2}}`, `{"_id": 1, "a": [1, 2]}`, false},
		{"addToSet numeric equality", `{"_id": 1, "a": [1, 2]}`, `{"$addToSet": {"a": 2.0}}`, `{"_id": 1, "a": [1, 2]}`, false},
		{"addToSet each", `{"_id": 1, "a": [1]}`, `{"$addToSet": {"a": {"$each": [1, 2, 2, 3]}}}`, `{"_id": 1, "a": [1, 2, 3]}`, true},
		{"addToSet missing", `{"_id": 1}`, `{"$addToSet": {"a": {"$each": [1, 1]}}}`, `{"_id": 1, "a": [1]}`, true},
		{"pop last", `{"_id": 1, "a": [1, 2, 3]}`, `{"$pop": {"a": 1}}`, `{"_id": 1, "a": [1, 2]}`, true},
		{"pop first", `{"_id": 1, "a": [1, 2, 3]}`, `{"$pop": {"a": -1}}`, `{"_id": 1, "a": [2, 3]}`, true},
		{"pop empty", `{"_id": 1, "a": []}`, `{"$pop": {"a": 1}}`, `{"_id": 1, "a": []}`, false},
		{"pull value", `{"_id": 1, "a": [1, 2, 1, 3]}`, `{"$pull": {"a": 1}}`, `{"_id": 1, "a": [2, 3]}`, true},
		{"pull condition", `{"_id": 1, "a": [1, 5, 7, 2]}`, `{"$pull": {"a": {"$gte": 5}}}`, `{"_id": 1, "a": [1, 2]}`, true},
		{"pull doc query", `{"_id": 1, "a": [{"x": 1, "y": 1}, {"x": 2}]}`, `{"$pull": {"a": {"x": 1}}}`, `{"_id": 1, "a": [{"x": 2}]}`, true},
		{"pull regex", `{"_id": 1, "a": ["ab", "cd"]}`, `{"$pull": {"a": {"$regularExpression": {"pattern": "^a", "options": ""}}}}`, `{"_id": 1, "a": ["cd"]}`, true},
		{"pull missing", `{"_id": 1}`, `{"$pull": {"a": 1}}`, `{"_id": 1}`, false},
		{"pullAll", `{"_id": 1, "a": [1, 2, 3, 1]}`, `{"$pullAll": {"a": [1, 3]}}`, `{"_id": 1, "a": [2]}`, true},
		{"currentDate", `{"_id": 1}`, `{"$currentDate": {"d": true}}`, `{"_id": 1, "d": {"$date": "2024-05-06T07:08:09Z"}}`, true},
		{"currentDate timestamp", `{"_id": 1}`, `{"$currentDate": {"d": {"$type": "timestamp"}}}`, `{"_id": 1, "d": {"$timestamp": {"t": 1714979289, "i": 1}}}`, true},
		{"setOnInsert ignored on update", `{"_id": 1}`, `{"$setOnInsert": {"a": 1}}`, `{"_id": 1}`, false},
		{"bit and", `{"_id": 1, "a": 13}`, `{"$bit": {"a": {"and": 10}}}`, `{"_id": 1, "a": 8}`, true},
		{"bit or", `{"_id": 1, "a": 3}`, `{"$bit": {"a": {"or": 5}}}`, `{"_id": 1, "a": 7}`, true},
		{"replacement keeps _id", `{"_id": 1, "a": 1}`, `{"b": 2}`, `{"_id": 1, "b": 2}`, true},
		{"replacement same _id", `{"_id": 1, "a": 1}`, `{"b": 2, "_id": 1}`, `{"_id": 1, "b": 2}`, true},
		{"empty replacement", `{"_id": 1, "a": 1}`, `{}`, `{"_id": 1}`, true},
		{"multiple ops", `{"_id": 1, "a": 1, "l": [1]}`, `{"$inc": {"a": 1}, "$push": {"l": 2}, "$set": {"s": "x"}}`, `{"_id": 1, "a": 2, "l": [1, 2], "s": "x"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := CompileUpdate(D(t, tt.update))
			if err != nil {
				t.Fatalf("CompileUpdate(%s): %v", tt.update, err)
			}
			got, changed, err := u.Apply(D(t, tt.doc), ApplyOptions{Now: now})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			assertDocEqual(t, got, D(t, tt.want))
			if changed != tt.changed {
				t.Errorf("changed = %v, want %v", changed, tt.changed)
			}
		})
	}
}

func TestUpdateErrors(t *testing.T) {
	tests := []struct {
		name, doc, update string
		code              mongoerr.Code
	}{
		{"unknown modifier", `{}`, `{"$foo": {"a": 1}}`, mongoerr.FailedToParse},
		{"mixed", `{}`, `{"$set": {"a": 1}, "b": 1}`, mongoerr.FailedToParse},
		{"dollar in replacement", `{}`, `{"b": 1, "$set": {"a": 1}}`, mongoerr.DollarPrefixedFieldName},
		{"non-doc operand", `{}`, `{"$set": 1}`, mongoerr.FailedToParse},
		{"conflict same path", `{}`, `{"$set": {"a": 1}, "$inc": {"a": 1}}`, mongoerr.ConflictingUpdateOperators},
		{"conflict prefix", `{}`, `{"$set": {"a.b": 1}, "$unset": {"a": 1}}`, mongoerr.ConflictingUpdateOperators},
		{"conflict rename dest", `{}`, `{"$rename": {"a": "b"}, "$set": {"b": 1}}`, mongoerr.ConflictingUpdateOperators},
		{"inc non-numeric arg", `{}`, `{"$inc": {"a": "x"}}`, mongoerr.TypeMismatch},
		{"inc non-numeric field", `{"_id": 1, "a": "x"}`, `{"$inc": {"a": 1}}`, mongoerr.TypeMismatch},
		{"mul non-numeric field", `{"_id": 1, "a": "x"}`, `{"$mul": {"a": 1}}`, mongoerr.TypeMismatch},
		{"inc long overflow", `{"_id": 1, "a": {"$numberLong": "9223372036854775807"}}`, `{"$inc": {"a": 1}}`, mongoerr.BadValue},
		{"modify _id", `{"_id": 1}`, `{"$set": {"_id": 2}}`, mongoerr.ImmutableField},
		{"unset _id", `{"_id": 1}`, `{"$unset": {"_id": 1}}`, mongoerr.ImmutableField},
		{"replace _id", `{"_id": 1}`, `{"_id": 2, "a": 1}`, mongoerr.ImmutableField},
		{"set through scalar", `{"_id": 1, "a": 5}`, `{"$set": {"a.b": 1}}`, mongoerr.PathNotViable},
		{"set field on array", `{"_id": 1, "a": [1]}`, `{"$set": {"a.b": 1}}`, mongoerr.PathNotViable},
		{"empty path", `{}`, `{"$set": {"": 1}}`, mongoerr.EmptyFieldName},
		{"empty component", `{}`, `{"$set": {"a..b": 1}}`, mongoerr.EmptyFieldName},
		{"positional without query", `{}`, `{"$set": {"a.$": 1}}`, mongoerr.BadValue},
		{"array filter missing", `{}`, `{"$set": {"a.$[x]": 1}}`, mongoerr.BadValue},
		{"push to non-array", `{"_id": 1, "a": 1}`, `{"$push": {"a": 1}}`, mongoerr.BadValue},
		{"push bad each", `{}`, `{"$push": {"a": {"$each": 1}}}`, mongoerr.BadValue},
		{"push unknown clause", `{}`, `{"$push": {"a": {"$each": [1], "$foo": 1}}}`, mongoerr.BadValue},
		{"addToSet non-array", `{"_id": 1, "a": 1}`, `{"$addToSet": {"a": 1}}`, mongoerr.BadValue},
		{"pop bad arg", `{}`, `{"$pop": {"a": 2}}`, mongoerr.FailedToParse},
		{"pop non-array", `{"_id": 1, "a": 1}`, `{"$pop": {"a": 1}}`, mongoerr.TypeMismatch},
		{"pull non-array", `{"_id": 1, "a": 1}`, `{"$pull": {"a": 1}}`, mongoerr.BadValue},
		{"rename non-string", `{}`, `{"$rename": {"a": 1}}`, mongoerr.BadValue},
		{"rename same", `{}`, `{"$rename": {"a": "a"}}`, mongoerr.BadValue},
		{"rename same path", `{}`, `{"$rename": {"a": "a.b"}}`, mongoerr.BadValue},
		{"rename through array", `{"_id": 1, "a": [{"b": 1}]}`, `{"$rename": {"a.0.b": "c"}}`, mongoerr.BadValue},
		{"currentDate bad", `{}`, `{"$currentDate": {"a": 1}}`, mongoerr.BadValue},
		{"bit on double", `{"_id": 1, "a": 1.5}`, `{"$bit": {"a": {"and": 1}}}`, mongoerr.BadValue},
		{"dollar field", `{}`, `{"$set": {"a.$b": 1}}`, mongoerr.DollarPrefixedFieldName},
		{"array _id", `{"_id": 1}`, `{"a": 1, "_id": [1]}`, mongoerr.ImmutableField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := CompileUpdate(D(t, tt.update))
			if err == nil {
				_, _, err = u.Apply(D(t, tt.doc), ApplyOptions{})
			}
			assertCode(t, err, tt.code)
		})
	}
}

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

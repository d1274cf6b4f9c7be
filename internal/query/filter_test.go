package query

import (
	"testing"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, doc string
		want        bool
	}{
		// implicit equality, numbers across types
		{`{}`, `{"a": 1}`, true},
		{`{"a": 1}`, `{"a": 1}`, true},
		{`{"a": 1}`, `{"a": 1.0}`, true},
		{`{"a": 1}`, `{"a": {"$numberLong": "1"}}`, true},
		{`{"a": 1}`, `{"a": "1"}`, false},
		{`{"a": 1}`, `{"b": 1}`, false},
		// arrays: element match and whole-array match
		{`{"a": 2}`, `{"a": [1, 2, 3]}`, true},
		{`{"a": [1, 2]}`, `{"a": [1, 2]}`, true},
		{`{"a": [1, 2]}`, `{"a": [2, 1]}`, false},
		{`{"a": [1, 2]}`, `{"a": [[1, 2], 3]}`, true},
		{`{"a": 1}`, `{"a": [[1], 2]}`, false},
		// embedded documents: exact, order-sensitive
		{`{"a": {"b": 1, "c": 2}}`, `{"a": {"b": 1, "c": 2}}`, true},
		{`{"a": {"b": 1, "c": 2}}`, `{"a": {"c": 2, "b": 1}}`, false},
		{`{"a": {"b": 1}}`, `{"a": {"b": 1, "c": 2}}`, false},
		// dotted paths
		{`{"a.b": 1}`, `{"a": {"b": 1}}`, true},
		{`{"a.b": 1}`, `{"a": [{"b": 2}, {"b": 1}]}`, true},
		{`{"a.b": 1}`, `{"a": [{"b": [0, 1]}]}`, true},
		{`{"a.b": 1}`, `{"a": [[{"b": 1}]]}`, false},
		{`{"a.1": 5}`, `{"a": [4, 5]}`, true},
		{`{"a.1": 5}`, `{"a": [5, 4]}`, false},
		{`{"a.1.b": 5}`, `{"a": [{"b": 1}, {"b": 5}]}`, true},
		{`{"a.0": 5}`, `{"a": {"0": 5}}`, true},
		{`{"a.0.b": 5}`, `{"a": [{"0": {"b": 5}}]}`, true},
		{`{"a.b.c": 1}`, `{"a": {"b": [{"c": 1}]}}`, true},
		// null matches missing and null, not through non-documents
		{`{"a": null}`, `{}`, true},
		{`{"a": null}`, `{"a": null}`, true},
		{`{"a": null}`, `{"a": 0}`, false},
		{`{"a": null}`, `{"a": [1, null]}`, true},
		{`{"a.b": null}`, `{"a": [{"b": 1}, {"c": 1}]}`, true},
		{`{"a.b": null}`, `{"a": [{"b": 1}]}`, false},
		{`{"a.b": null}`, `{"a": 5}`, true},
		{`{"a": {"$ne": null}}`, `{}`, false},
		{`{"a": {"$ne": null}}`, `{"a": 1}`, true},
		{`{"a": {"$gte": null}}`, `{}`, true},
		{`{"a": {"$gt": null}}`, `{"a": 1}`, false},
		// $eq/$ne
		{`{"a": {"$eq": 1}}`, `{"a": [1, 2]}`, true},
		{`{"a": {"$ne": 1}}`, `{"a": [1, 2]}`, false},
		{`{"a": {"$ne": 3}}`, `{"a": [1, 2]}`, true},
		{`{"a": {"$ne": 3}}`, `{}`, true},
		{`{"a": {"$eq": {"$regularExpression": {"pattern": "a", "options": ""}}}}`, `{"a": "a"}`, false},
		// type bracketing
		{`{"a": {"$gt": 1}}`, `{"a": 2}`, true},
		{`{"a": {"$gt": 1}}`, `{"a": "2"}`, false},
		{`{"a": {"$lt": "b"}}`, `{"a": "a"}`, true},
		{`{"a": {"$lt": "b"}}`, `{"a": 1}`, false},
		{`{"a": {"$gt": 1, "$lt": 3}}`, `{"a": [0, 4]}`, true}, // each bound met by some element
		{`{"a": {"$gte": 2.5}}`, `{"a": {"$numberDecimal": "2.5"}}`, true},
		{`{"a": {"$lte": 2}}`, `{"a": {"$numberLong": "2"}}`, true},
		{`{"a": {"$gt": {"$minKey": 1}}}`, `{"a": "x"}`, true},
		{`{"a": {"$lt": {"$maxKey": 1}}}`, `{"a": {"b": 1}}`, true},
		{`{"a": {"$gt": {"$date": "2020-01-01T00:00:00Z"}}}`, `{"a": {"$date": "2021-01-01T00:00:00Z"}}`, true},
		{`{"a": {"$gt": {"$date": "2020-01-01T00:00:00Z"}}}`, `{"a": 1e15}`, false},
		{`{"a": {"$gt": [1]}}`, `{"a": [2]}`, true},
		{`{"a": {"$gt": {"b": 1}}}`, `{"a": {"b": 2}}`, true},
		// NaN only equals NaN
		{`{"a": {"$numberDouble": "NaN"}}`, `{"a": {"$numberDouble": "NaN"}}`, true},
		{`{"a": {"$lt": 0}}`, `{"a": {"$numberDouble": "NaN"}}`, false},
		{`{"a": {"$gte": {"$numberDouble": "NaN"}}}`, `{"a": 5}`, false},
		// $in / $nin
		{`{"a": {"$in": [1, 2]}}`, `{"a": 2}`, true},
		{`{"a": {"$in": [1, 2]}}`, `{"a": [3, 2]}`, true},
		{`{"a": {"$in": [1, 2]}}`, `{"a": 3}`, false},
		{`{"a": {"$in": [null]}}`, `{}`, true},
		{`{"a": {"$in": [{"$regularExpression": {"pattern": "^b", "options": ""}}]}}`, `{"a": "bc"}`, true},
		{`{"a": {"$in": []}}`, `{"a": 1}`, false},
		{`{"a": {"$nin": [1, 2]}}`, `{"a": 3}`, true},
		{`{"a": {"$nin": [1, 2]}}`, `{}`, true},
		{`{"a": {"$nin": [1, 2]}}`, `{"a": [3, 1]}`, false},
		// logical
		{`{"$and": [{"a": 1}, {"b": 2}]}`, `{"a": 1, "b": 2}`, true},
		{`{"$and": [{"a": 1}, {"b": 2}]}`, `{"a": 1, "b": 3}`, false},
		{`{"$or": [{"a": 1}, {"b": 2}]}`, `{"a": 0, "b": 2}`, true},
		{`{"$or": [{"a": 1}, {"b": 2}]}`, `{"a": 0, "b": 0}`, false},
		{`{"$nor": [{"a": 1}, {"b": 2}]}`, `{"a": 0, "b": 0}`, true},
		{`{"$nor": [{"a": 1}, {"b": 2}]}`, `{"a": 1}`, false},
		{`{"a": {"$not": {"$gt": 5}}}`, `{"a": 3}`, true},
		{`{"a": {"$not": {"$gt": 5}}}`, `{}`, true},
		{`{"a": {"$not": {"$gt": 5}}}`, `{"a": 7}`, false},
		{`{"a": {"$not": {"$regularExpression": {"pattern": "^x", "options": ""}}}}`, `{"a": "xy"}`, false},
		{`{"a": {"$not": {"$regularExpression": {"pattern": "^x", "options": ""}}}}`, `{"a": "yx"}`, true},
		// $exists
		{`{"a": {"$exists": true}}`, `{"a": null}`, true},
		{`{"a": {"$exists": true}}`, `{}`, false},
		{`{"a": {"$exists": false}}`, `{}`, true},
		{`{"a": {"$exists": 0}}`, `{"a": 1}`, false},
		{`{"a.b": {"$exists": true}}`, `{"a": [{"c": 1}, {"b": 1}]}`, true},
		{`{"a.b": {"$exists": false}}`, `{"a": [1, 2]}`, true},
		{`{"a": {"$exists": true}}`, `{"a": []}`, true},
		// $type
		{`{"a": {"$type": "string"}}`, `{"a": "x"}`, true},
		{`{"a": {"$type": 2}}`, `{"a": "x"}`, true},
		{`{"a": {"$type": "number"}}`, `{"a": {"$numberLong": "4"}}`, true},
		{`{"a": {"$type": "number"}}`, `{"a": "4"}`, false},
		{`{"a": {"$type": "array"}}`, `{"a": []}`, true},
		{`{"a": {"$type": "array"}}`, `{"a": 5}`, false},
		{`{"a": {"$type": "int"}}`, `{"a": [1.5, 2]}`, true},
		{`{"a": {"$type": ["string", "bool"]}}`, `{"a": true}`, true},
		{`{"a": {"$type": "null"}}`, `{}`, false},
		{`{"a": {"$type": "long"}}`, `{"a": 1}`, false},
		{`{"a": {"$type": "minKey"}}`, `{"a": {"$minKey": 1}}`, true},
		{`{"a": {"$type": -1}}`, `{"a": {"$minKey": 1}}`, true},
		// $regex
		{`{"a": {"$regex": "^ab"}}`, `{"a": "abc"}`, true},
		{`{"a": {"$regex": "^AB", "$options": "i"}}`, `{"a": "abc"}`, true},
		{`{"a": {"$regex": "^AB"}}`, `{"a": "abc"}`, false},
		{`{"a": {"$regularExpression": {"pattern": "b", "options": ""}}}`, `{"a": ["x", "abc"]}`, true},
		{`{"a": {"$regex": "^b", "$options": "m"}}`, `{"a": "a\nb"}`, true},
		{`{"a": {"$regex": "a.b", "$options": "s"}}`, `{"a": "a\nb"}`, true},
		{`{"a": {"$regex": "a b # comment", "$options": "x"}}`, `{"a": "ab"}`, true},
		{`{"a": {"$regex": "1"}}`, `{"a": 1}`, false},
		{`{"a": {"$regularExpression": {"pattern": "x", "options": "i"}}}`, `{"a": {"$regularExpression": {"pattern": "x", "options": "i"}}}`, true},
		{`{"a": {"$regex": {"$regularExpression": {"pattern": "^A", "options": "i"}}}}`, `{"a": "a"}`, true},
		// $size
		{`{"a": {"$size": 2}}`, `{"a": [1, 2]}`, true},
		{`{"a": {"$size": 2}}`, `{"a": [1]}`, false},
		{`{"a": {"$size": 0}}`, `{"a": []}`, true},
		{`{"a": {"$size": 1}}`, `{"a": 1}`, false},
		{`{"a": {"$size": 1}}`, `{"a": [[1, 2]]}`, true},
		{`{"a.b": {"$size": 2}}`, `{"a": [{"b": [1, 2]}]}`, true},
		// $all
		{`{"a": {"$all": [1, 2]}}`, `{"a": [2, 3, 1]}`, true},
		{`{"a": {"$all": [1, 2]}}`, `{"a": [2, 3]}`, false},
		{`{"a": {"$all": [1]}}`, `{"a": 1}`, true},
		{`{"a": {"$all": []}}`, `{"a": []}`, false},
		{`{"a": {"$all": [[1, 2]]}}`, `{"a": [1, 2]}`, true},
		{`{"a": {"$all": [[1, 2]]}}`, `{"a": [[1, 2], 3]}`, true},
		{`{"a": {"$all": [{"$elemMatch": {"b": 1}}, {"$elemMatch": {"c": 2}}]}}`, `{"a": [{"b": 1}, {"c": 2}]}`, true},
		{`{"a": {"$all": [{"$elemMatch": {"b": 1, "c": 2}}]}}`, `{"a": [{"b": 1}, {"c": 2}]}`, false},
		// $elemMatch
		{`{"a": {"$elemMatch": {"$gt": 1, "$lt": 3}}}`, `{"a": [0, 4, 2]}`, true},
		{`{"a": {"$elemMatch": {"$gt": 1, "$lt": 3}}}`, `{"a": [0, 4]}`, false},
		{`{"a": {"$elemMatch": {"b": 1, "c": 2}}}`, `{"a": [{"b": 1, "c": 2}]}`, true},
		{`{"a": {"$elemMatch": {"b": 1, "c": 2}}}`, `{"a": [{"b": 1}, {"c": 2}]}`, false},
		{`{"a": {"$elemMatch": {"b": 1}}}`, `{"a": {"b": 1}}`, false},
		{`{"a": {"$elemMatch": {"$or": [{"b": 1}, {"b": 2}]}}}`, `{"a": [{"b": 2}]}`, true},
		{`{"a.b": {"$elemMatch": {"$eq": 3}}}`, `{"a": [{"b": [1, 3]}]}`, true},
		{`{"a": {"$elemMatch": {"$elemMatch": {"$eq": 1}}}}`, `{"a": [[0, 1]]}`, true},
		{`{"a": {"$elemMatch": {"$ne": 1}}}`, `{"a": [1, 1]}`, false},
		{`{"a": {"$elemMatch": {"$ne": 1}}}`, `{"a": [1, 2]}`, true},
		// $mod
		{`{"a": {"$mod": [4, 0]}}`, `{"a": 8}`, true},
		{`{"a": {"$mod": [4, 1]}}`, `{"a": 9.5}`, true},
		{`{"a": {"$mod": [4, 0]}}`, `{"a": 7}`, false},
		{`{"a": {"$mod": [-3, -1]}}`, `{"a": -4}`, true},
		// $expr
		{`{"$expr": {"$gt": ["$a", "$b"]}}`, `{"a": 3, "b": 2}`, true},
		{`{"$expr": {"$gt": ["$a", "$b"]}}`, `{"a": 1, "b": 2}`, false},
		{`{"$expr": {"$eq": [{"$add": ["$a", 1]}, 3]}}`, `{"a": 2}`, true},
		// $comment is ignored
		{`{"a": 1, "$comment": "hi"}`, `{"a": 1}`, true},
		// operators mixed with non-operator keys is an equality document
		{`{"a": {"b": {"$gt": 1}}}`, `{"a": {"b": {"$gt": 1}}}`, true},
		// other types
		{`{"a": {"$oid": "507f1f77bcf86cd799439011"}}`, `{"a": {"$oid": "507f1f77bcf86cd799439011"}}`, true},
		{`{"a": true}`, `{"a": 1}`, false},
		{`{"a": {"$binary": {"base64": "AQI=", "subType": "00"}}}`, `{"a": {"$binary": {"base64": "AQI=", "subType": "00"}}}`, true},
		{`{"a": {"$binary": {"base64": "AQI=", "subType": "00"}}}`, `{"a": {"$binary": {"base64": "AQI=", "subType": "04"}}}`, false},
	}
	for _, tt := range tests {
		m, err := Compile(D(t, tt.filter))
		if err != nil {
			t.Errorf("Compile(%s): %v", tt.filter, err)
			continue
		}
		if got := m.Match(D(t, tt.doc)); got != tt.want {
			t.Errorf("filter %s on %s = %v, want %v", tt.filter, tt.doc, got, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		filter string
		code   mongoerr.Code
		msg    string
	}{
		{`{"a": {"$foo": 1}}`, mongoerr.BadValue, "unknown operator: $foo"},
		{`{"$foo": 1}`, mongoerr.BadValue, "unknown top level operator: $foo"},
		{`{"a": {"$gt": 1, "b": 1}}`, mongoerr.BadValue, "unknown operator: b"},
		{`{"$and": []}`, mongoerr.BadValue, "$and/$or/$nor must be a nonempty array"},
		{`{"$or": 1}`, mongoerr.BadValue, "$or must be an array"},
		{`{"$or": [1]}`, mongoerr.BadValue, "$or/$and/$nor entries need to be full objects"},
		{`{"a": {"$in": 1}}`, mongoerr.BadValue, "$in needs an array"},
		{`{"a": {"$nin": 1}}`, mongoerr.BadValue, "$nin needs an array"},
		{`{"a": {"$all": 1}}`, mongoerr.BadValue, "$all needs an array"},
		{`{"a": {"$size": "x"}}`, mongoerr.BadValue, "$size needs a number"},
		{`{"a": {"$type": "foo"}}`, mongoerr.BadValue, "Unknown type name alias: foo"},
		{`{"a": {"$type": 100}}`, mongoerr.BadValue, "Invalid numerical type code: 100"},
		{`{"a": {"$options": "i"}}`, mongoerr.BadValue, "$options needs a $regex"},
		{`{"a": {"$regex": "a", "$options": "z"}}`, mongoerr.BadValue, "invalid flag in regex options: z"},
		{`{"a": {"$regex": "("}}`, mongoerr.BadValue, ""},
		{`{"a": {"$not": 1}}`, mongoerr.BadValue, "$not needs a regex or a document"},
		{`{"a": {"$not": {}}}`, mongoerr.BadValue, "$not cannot be empty"},
		{`{"a": {"$elemMatch": 1}}`, mongoerr.BadValue, "$elemMatch needs an Object"},
		{`{"a": {"$mod": [0, 1]}}`, mongoerr.BadValue, "divisor cannot be 0"},
		{`{"a": {"$mod": [1]}}`, mongoerr.BadValue, "malformed mod, not enough elements"},
		{`{"a": {"$ne": {"$regularExpression": {"pattern": "a", "options": ""}}}}`, mongoerr.BadValue, "Can't have regex as arg to $ne."},
		{`{"a": {"$in": [{"$gt": 1}]}}`, mongoerr.BadValue, "cannot nest $ under $in"},
		{`{"$expr": {"$foo": 1}}`, mongoerr.InvalidPipelineOperator, "Unrecognized expression '$foo'"},
	}
	for _, tt := range tests {
		_, err := Compile(D(t, tt.filter))
		if err == nil {
			t.Errorf("Compile(%s): expected error", tt.filter)
			continue
		}
		if c := mongoerr.CodeOf(err); c != tt.code {
			t.Errorf("Compile(%s): code %d, want %d (%v)", tt.filter, c, tt.code, err)
		}
		if tt.msg != "" && err.Error() != tt.msg {
			t.Errorf("Compile(%s): message %q, want %q", tt.filter, err.Error(), tt.msg)
		}
	}
}

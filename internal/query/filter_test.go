package query

import (
	"testing"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// The matching cases are data-driven: testdata/semantics/match.txt.

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

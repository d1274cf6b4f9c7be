package query

import (
	"testing"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

func TestProjection(t *testing.T) {
	doc := `{"_id": 1, "a": 1, "b": {"c": 2, "d": 3}, "e": [{"f": 1, "g": 2}, {"f": 3}, 7], "h": [1, 2, 3, 4, 5]}`
	tests := []struct{ proj, want string }{
		{`{}`, doc},
		{`{"a": 1}`, `{"_id": 1, "a": 1}`},
		{`{"a": true, "_id": 0}`, `{"a": 1}`},
		{`{"_id": 1}`, `{"_id": 1}`},
		{`{"_id": 0}`, `{"a": 1, "b": {"c": 2, "d": 3}, "e": [{"f": 1, "g": 2}, {"f": 3}, 7], "h": [1, 2, 3, 4, 5]}`},
		{`{"b": 1, "a": 1}`, `{"_id": 1, "a": 1, "b": {"c": 2, "d": 3}}`}, // document order, not spec order
		{`{"b.c": 1}`, `{"_id": 1, "b": {"c": 2}}`},
		{`{"b": {"c": 1}}`, `{"_id": 1, "b": {"c": 2}}`},
		{`{"e.f": 1}`, `{"_id": 1, "e": [{"f": 1}, {"f": 3}]}`},
		{`{"a": 0}`, `{"_id": 1, "b": {"c": 2, "d": 3}, "e": [{"f": 1, "g": 2}, {"f": 3}, 7], "h": [1, 2, 3, 4, 5]}`},
		{`{"b.c": 0, "e.f": 0, "h": 0, "a": 0}`, `{"_id": 1, "b": {"d": 3}, "e": [{"g": 2}, {}, 7]}`},
		{`{"zz": 1}`, `{"_id": 1}`},
		{`{"a.x": 1}`, `{"_id": 1}`},
		{`{"h": {"$slice": 2}}`, `{"_id": 1, "a": 1, "b": {"c": 2, "d": 3}, "e": [{"f": 1, "g": 2}, {"f": 3}, 7], "h": [1, 2]}`},
		{`{"h": {"$slice": -2}, "a": 1}`, `{"_id": 1, "a": 1, "h": [4, 5]}`},
		{`{"h": {"$slice": [1, 2]}, "_id": 0, "a": 1}`, `{"a": 1, "h": [2, 3]}`},
		{`{"h": {"$slice": [-2, 10]}, "_id": 0, "a": 1}`, `{"a": 1, "h": [4, 5]}`},
		{`{"e": {"$elemMatch": {"f": 3}}}`, `{"_id": 1, "e": [{"f": 3}]}`},
		{`{"e": {"$elemMatch": {"f": 9}}}`, `{"_id": 1}`},
		{`{"x": "$b.c", "a": 1}`, `{"_id": 1, "a": 1, "x": 2}`},
		{`{"x": {"$add": ["$a", 10]}, "_id": 0}`, `{"x": 11}`},
		{`{"x": {"$literal": 1}, "_id": 0}`, `{"x": 1}`},
		{`{"b.z": "$a", "b.c": 1, "_id": 0}`, `{"b": {"c": 2, "z": 1}}`},
		{`{"q.r": "$a", "_id": 0}`, `{"q": {"r": 1}}`},
		{`{"_id": "$a", "a": 1}`, `{"a": 1, "_id": 1}`},
	}
	for _, tt := range tests {
		p, err := CompileProjection(D(t, tt.proj))
		if err != nil {
			t.Errorf("CompileProjection(%s): %v", tt.proj, err)
			continue
		}
		got, err := p.Apply(D(t, doc))
		if err != nil {
			t.Errorf("Apply(%s): %v", tt.proj, err)
			continue
		}
		t.Run(tt.proj, func(t *testing.T) { assertDocEqual(t, got, D(t, tt.want)) })
	}
}

func TestProjectionErrors(t *testing.T) {
	tests := []struct {
		proj string
		code mongoerr.Code
		msg  string
	}{
		{`{"a": 1, "b": 0}`, mongoerr.Location31254, "Cannot do exclusion on field b in inclusion projection"},
		{`{"a": 0, "b": 1}`, mongoerr.Location31253, "Cannot do inclusion on field b in exclusion projection"},
		{`{"a": 0, "b": "$x"}`, mongoerr.Location31253, "Cannot do inclusion on field b in exclusion projection"},
		{`{"a": 1, "a.b": 1}`, mongoerr.Location31249, ""},
		{`{"a.b": 1, "a": 1}`, mongoerr.Location31250, "Path collision at a"},
		{`{"$a": 1}`, 16410, ""},
		{`{"a": {"$foo": 1}}`, mongoerr.InvalidPipelineOperator, ""},
		{`{"a.$": 1}`, mongoerr.NotImplemented, ""},
		{`{"a": {}}`, 51270, ""},
	}
	for _, tt := range tests {
		_, err := CompileProjection(D(t, tt.proj))
		if err == nil {
			t.Errorf("CompileProjection(%s): expected error", tt.proj)
			continue
		}
		if c := mongoerr.CodeOf(err); c != tt.code {
			t.Errorf("CompileProjection(%s): code %d, want %d (%v)", tt.proj, c, tt.code, err)
		}
		if tt.msg != "" && err.Error() != tt.msg {
			t.Errorf("CompileProjection(%s): %q, want %q", tt.proj, err.Error(), tt.msg)
		}
	}
}

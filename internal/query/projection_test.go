package query

import (
	"testing"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// The projection cases are data-driven: testdata/semantics/projection.txt.

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

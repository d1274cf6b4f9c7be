package query

import (
	"testing"
)

// The ordering cases are data-driven: testdata/semantics/sort.txt.

func TestSortDotted(t *testing.T) {
	s, err := CompileSort(D(t, `{"a.b": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	x := D(t, `{"a": [{"b": 7}, {"b": 2}]}`)
	y := D(t, `{"a": {"b": 3}}`)
	if !s.Less(x, y) {
		t.Error("min of a.b over array should be 2 < 3")
	}
}

func TestSortErrors(t *testing.T) {
	for _, spec := range []string{`{"a": 2}`, `{"a": "x"}`, `{"a": 0}`, `{"": 1}`} {
		if _, err := CompileSort(D(t, spec)); err == nil {
			t.Errorf("CompileSort(%s): expected error", spec)
		}
	}
}

package query

import (
	"sort"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestSort(t *testing.T) {
	docs := []string{
		`{"_id": 1, "a": 3}`,
		`{"_id": 2, "a": [1, 5]}`,
		`{"_id": 3}`,
		`{"_id": 4, "a": null}`,
		`{"_id": 5, "a": []}`,
		`{"_id": 6, "a": "x"}`,
		`{"_id": 7, "a": [2, 4]}`,
		`{"_id": 8, "a": 4.5}`,
	}
	tests := []struct {
		spec string
		want string // _id order
	}{
		// Ascending uses each array's minimum; [] sorts before null/missing.
		{`{"a": 1, "_id": 1}`, "5 3 4 2 7 1 8 6"},
		// Descending uses each array's maximum.
		{`{"a": -1, "_id": 1}`, "6 2 8 7 1 3 4 5"},
	}
	for _, tt := range tests {
		s, err := CompileSort(D(t, tt.spec))
		if err != nil {
			t.Fatal(err)
		}
		var raws []bson.Raw
		for _, d := range docs {
			raws = append(raws, D(t, d))
		}
		sort.SliceStable(raws, func(i, j int) bool { return s.Less(raws[i], raws[j]) })
		var ids []string
		for _, r := range raws {
			ids = append(ids, r.Lookup("_id").String())
		}
		got := strings.Join(ids, " ")
		got = strings.NewReplacer(`{"$numberInt":"`, "", `"}`, "").Replace(got)
		if got != tt.want {
			t.Errorf("sort %s: got %s, want %s", tt.spec, got, tt.want)
		}
	}
}

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

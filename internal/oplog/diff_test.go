package oplog

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestUpdateO checks the diff against MongoDB's $v: 2 update format
// ({$v: 2, diff: {d: {f: false}, u: {f: v}, i: {f: v}, s<f>: {…}}}, in
// that section order) and what a change stream's updateDescription makes
// of it.
func TestUpdateO(t *testing.T) {
	cases := []struct {
		name          string
		before, after bson.D
		diff          bson.D
		updated       bson.D
		removed       []string
	}{
		{
			name:   "unchanged",
			before: bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}},
			after:  bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}},
			diff:   bson.D{}, updated: bson.D{}, removed: []string{},
		},
		{
			name:   "set, add, remove",
			before: bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}, {Key: "gone", Value: "x"}},
			after:  bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 2}, {Key: "new", Value: true}},
			diff: bson.D{{Key: "d", Value: bson.D{{Key: "gone", Value: false}}},
				{Key: "u", Value: bson.D{{Key: "a", Value: 2}}},
				{Key: "i", Value: bson.D{{Key: "new", Value: true}}}},
			updated: bson.D{{Key: "a", Value: 2}, {Key: "new", Value: true}},
			removed: []string{"gone"},
		},
		{
			name:    "type change is an update",
			before:  bson.D{{Key: "a", Value: int32(1)}},
			after:   bson.D{{Key: "a", Value: int64(1)}},
			diff:    bson.D{{Key: "u", Value: bson.D{{Key: "a", Value: int64(1)}}}},
			updated: bson.D{{Key: "a", Value: int64(1)}}, removed: []string{},
		},
		{
			name:   "nested document",
			before: bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}, {Key: "c", Value: 2}, {Key: "e", Value: bson.D{{Key: "f", Value: 1}}}}}},
			after:  bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 5}, {Key: "e", Value: bson.D{{Key: "f", Value: 1}, {Key: "g", Value: 2}}}}}},
			diff: bson.D{{Key: "sa", Value: bson.D{
				{Key: "d", Value: bson.D{{Key: "c", Value: false}}},
				{Key: "u", Value: bson.D{{Key: "b", Value: 5}}},
				{Key: "se", Value: bson.D{{Key: "i", Value: bson.D{{Key: "g", Value: 2}}}}}}}},
			updated: bson.D{{Key: "a.b", Value: 5}, {Key: "a.e.g", Value: 2}},
			removed: []string{"a.c"},
		},
		{
			name:    "document replaced by a scalar",
			before:  bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}}}},
			after:   bson.D{{Key: "a", Value: "s"}},
			diff:    bson.D{{Key: "u", Value: bson.D{{Key: "a", Value: "s"}}}},
			updated: bson.D{{Key: "a", Value: "s"}}, removed: []string{},
		},
		{
			name:    "array replaced whole",
			before:  bson.D{{Key: "a", Value: bson.A{1, 2}}},
			after:   bson.D{{Key: "a", Value: bson.A{1, 2, 3}}},
			diff:    bson.D{{Key: "u", Value: bson.D{{Key: "a", Value: bson.A{1, 2, 3}}}}},
			updated: bson.D{{Key: "a", Value: bson.A{1, 2, 3}}}, removed: []string{},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := UpdateO(mustRaw(t, c.before), mustRaw(t, c.after))
			if err != nil {
				t.Fatal(err)
			}
			want := mustRaw(t, bson.D{{Key: "$v", Value: int32(2)}, {Key: "diff", Value: c.diff}})
			if !equalDocs(o, want) {
				t.Fatalf("UpdateO = %v, want %v", o, want)
			}
			if !IsDiff(o) {
				t.Fatal("IsDiff(UpdateO(…)) is false")
			}
			updated, removed, err := Describe(o)
			if err != nil {
				t.Fatal(err)
			}
			if !equalDocs(mustRaw(t, updated), mustRaw(t, c.updated)) {
				t.Fatalf("updatedFields %v, want %v", updated, c.updated)
			}
			if !reflect.DeepEqual(removed, c.removed) {
				t.Fatalf("removedFields %v, want %v", removed, c.removed)
			}
		})
	}
}

func equalDocs(a, b bson.Raw) bool { return string(a) == string(b) }

func TestIsDiff(t *testing.T) {
	cases := map[string]struct {
		o    bson.D
		want bool
	}{
		"$v int32 2":  {bson.D{{Key: "$v", Value: int32(2)}, {Key: "diff", Value: bson.D{}}}, true},
		"$v int64 2":  {bson.D{{Key: "$v", Value: int64(2)}, {Key: "diff", Value: bson.D{}}}, true},
		"$v 1":        {bson.D{{Key: "$v", Value: int32(1)}, {Key: "$set", Value: bson.D{}}}, false},
		"$v string":   {bson.D{{Key: "$v", Value: "2"}}, false},
		"replacement": {bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}}, false},
		"empty":       {bson.D{}, false},
	}
	for name, c := range cases {
		if got := IsDiff(mustRaw(t, c.o)); got != c.want {
			t.Errorf("%s: IsDiff = %v", name, got)
		}
	}
}

func TestDescribeRefuses(t *testing.T) {
	cases := map[string]bson.D{
		"no diff":          {{Key: "$v", Value: 2}},
		"diff not a doc":   {{Key: "$v", Value: 2}, {Key: "diff", Value: 1}},
		"section not doc":  {{Key: "$v", Value: 2}, {Key: "diff", Value: bson.D{{Key: "u", Value: 1}}}},
		"unknown section":  {{Key: "$v", Value: 2}, {Key: "diff", Value: bson.D{{Key: "x", Value: bson.D{}}}}},
		"bare s":           {{Key: "$v", Value: 2}, {Key: "diff", Value: bson.D{{Key: "s", Value: bson.D{}}}}},
		"array diff":       {{Key: "$v", Value: 2}, {Key: "diff", Value: bson.D{{Key: "sa", Value: bson.D{{Key: "a", Value: true}}}}}},
		"nested bad shape": {{Key: "$v", Value: 2}, {Key: "diff", Value: bson.D{{Key: "sa", Value: bson.D{{Key: "q", Value: bson.D{}}}}}}},
	}
	for name, o := range cases {
		if _, _, err := Describe(mustRaw(t, o)); !errors.Is(err, errBadDiff) {
			t.Errorf("%s: %v, want errBadDiff", name, err)
		}
	}
	// A MongoDB array diff is refused, not misread: Describe says so
	// rather than reporting {a: true} as a field.
	_, _, err := Describe(mustRaw(t, cases["array diff"]))
	if err == nil || !strings.Contains(err.Error(), "section") {
		t.Fatalf("array diff: %v", err)
	}
}

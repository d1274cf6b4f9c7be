package query

import (
	"bytes"
	"fmt"
	"math/rand"
	"testing"
)

func inRanges(key []byte, rs []KeyRange) bool {
	for _, r := range rs {
		if bytes.Compare(key, r.Start) >= 0 && (r.End == nil || bytes.Compare(key, r.End) < 0) {
			return true
		}
	}
	return false
}

func TestPlanIndexUsable(t *testing.T) {
	tests := []struct {
		filter, pattern string
		usable          bool
		eqPrefix        int
	}{
		{`{"a": 1}`, `{"a": 1}`, true, 1},
		{`{"a": 1, "b": 2}`, `{"a": 1, "b": 1}`, true, 2},
		{`{"b": 2}`, `{"a": 1, "b": 1}`, false, 0},
		{`{"a": {"$gt": 1}}`, `{"a": 1}`, true, 0},
		{`{"a": {"$in": [1, 2, 3]}, "b": {"$lt": 5}}`, `{"a": 1, "b": -1}`, true, 1},
		{`{"$and": [{"a": 1}]}`, `{"a": 1}`, true, 1},
		{`{"$or": [{"a": 1}]}`, `{"a": 1}`, false, 0},
		{`{"a": {"$regex": "x"}}`, `{"a": 1}`, false, 0},
		{`{"a": [1, 2]}`, `{"a": 1}`, false, 0},
	}
	for _, tt := range tests {
		plan, ok, err := PlanIndex(D(t, tt.filter), D(t, tt.pattern), false)
		if err != nil {
			t.Fatal(err)
		}
		if ok != tt.usable {
			t.Errorf("PlanIndex(%s, %s) usable=%v want %v", tt.filter, tt.pattern, ok, tt.usable)
			continue
		}
		if ok && plan.EqualityPrefix != tt.eqPrefix {
			t.Errorf("PlanIndex(%s, %s) eqPrefix=%d want %d", tt.filter, tt.pattern, plan.EqualityPrefix, tt.eqPrefix)
		}
	}
}

// TestPlanIndexCoversMatches checks the plan's central promise: every
// document the filter matches has an index key inside the ranges.
func TestPlanIndexCoversMatches(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	scalar := func() string {
		vals := []string{`1`, `2`, `2.5`, `{"$numberLong": "3"}`, `"x"`, `"y"`, `null`, `true`, `{"$numberDecimal": "2.5"}`, `-1`}
		return vals[r.Intn(len(vals))]
	}
	value := func() string {
		if r.Intn(4) == 0 {
			return `[` + scalar() + `, ` + scalar() + `]`
		}
		return scalar()
	}
	pred := func() string {
		switch r.Intn(6) {
		case 0:
			return scalar()
		case 1:
			return `{"$in": [` + scalar() + `, ` + scalar() + `]}`
		case 2:
			return `{"$gt": ` + scalar() + `}`
		case 3:
			return `{"$lte": ` + scalar() + `}`
		case 4:
			return `{"$gte": ` + scalar() + `, "$lt": ` + scalar() + `}`
		}
		return `{"$eq": ` + scalar() + `}`
	}
	patterns := []string{`{"a": 1}`, `{"a": -1}`, `{"a": 1, "b": -1}`, `{"a": -1, "b": 1}`}
	for n := 0; n < 3000; n++ {
		filter := fmt.Sprintf(`{"a": %s, "b": %s}`, pred(), pred())
		if r.Intn(3) == 0 {
			filter = fmt.Sprintf(`{"a": %s}`, pred())
		}
		pattern := patterns[r.Intn(len(patterns))]
		multikey := r.Intn(2) == 0
		m, err := Compile(D(t, filter))
		if err != nil {
			t.Fatal(err)
		}
		plan, ok, err := PlanIndex(D(t, filter), D(t, pattern), multikey)
		if err != nil {
			t.Fatalf("PlanIndex(%s, %s): %v", filter, pattern, err)
		}
		if !ok {
			continue // e.g. {$lte: null} is not bounded; a collection scan is correct
		}
		kp, _ := ParseKeyPattern(D(t, pattern))
		for k := 0; k < 20; k++ {
			av := scalar()
			if multikey {
				av = value()
			}
			doc := D(t, fmt.Sprintf(`{"a": %s, "b": %s}`, av, scalar()))
			if !m.Match(doc) {
				continue
			}
			keys, err := kp.IndexKeys(doc)
			if err != nil {
				t.Fatal(err)
			}
			covered := false
			for _, key := range keys {
				if inRanges(key, plan.Ranges) {
					covered = true
				}
			}
			if !covered {
				t.Fatalf("filter %s index %s: matching doc %s not covered by ranges", filter, pattern, doc)
			}
		}
	}
}

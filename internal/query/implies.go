package query

import (
	"go.mongodb.org/mongo-driver/v2/bson"
)

// HasAnyPath reports whether doc has a value (null included) at any of the
// dotted paths: what a sparse index asks of a document before indexing it.
func HasAnyPath(doc bson.Raw, paths []string) bool {
	for _, p := range paths {
		if walkPath(doc, splitPath(p), leafWhole, func(v bson.RawValue) bool { return !isMissing(v) }) {
			return true
		}
	}
	return false
}

// leafPred is one predicate of a filter's top-level conjunction on a path.
type leafPred struct {
	op string
	v  bson.RawValue
}

// Implies reports whether every document filter matches also matches cond
// (a partial index's partialFilterExpression), judged from the filter's
// top-level conjunction the way MongoDB's planner judges it: each
// predicate of cond must be implied by a predicate of filter on the same
// path (an equality implies a range it satisfies, a narrower range a wider
// one, an $in every value of which satisfies it, and any predicate that
// cannot match a missing field implies {$exists: true}); a $or in cond is
// implied when one of its branches is. It never answers true wrongly; it
// may answer false for a filter that does imply cond.
func Implies(filter, cond bson.Raw) bool {
	preds := map[string][]leafPred{}
	collectLeafPreds(filter, preds, 0)
	return impliesDoc(preds, cond, 0)
}

func collectLeafPreds(filter []byte, preds map[string][]leafPred, depth int) {
	if depth > maxFilterDepth {
		return
	}
	for _, e := range elems(filter) {
		if e.key == "$and" && e.val.Type == bson.TypeArray {
			for _, sub := range arrayValues(e.val.Value) {
				if sub.Type == bson.TypeEmbeddedDocument {
					collectLeafPreds(sub.Value, preds, depth+1)
				}
			}
			continue
		}
		if len(e.key) > 0 && e.key[0] == '$' {
			continue
		}
		if isOperatorDoc(e.val) {
			ops := elems(e.val.Value)
			for _, op := range ops {
				if op.key == "$options" {
					continue
				}
				preds[e.key] = append(preds[e.key], leafPred{op.key, op.val})
			}
			continue
		}
		if e.val.Type == bson.TypeRegex {
			continue
		}
		preds[e.key] = append(preds[e.key], leafPred{"$eq", e.val})
	}
}

func impliesDoc(preds map[string][]leafPred, cond []byte, depth int) bool {
	if depth > maxFilterDepth {
		return false
	}
	for _, e := range elems(cond) {
		switch e.key {
		case "$and", "$or":
			if e.val.Type != bson.TypeArray {
				return false
			}
			subs := arrayValues(e.val.Value)
			any := false
			for _, sub := range subs {
				ok := sub.Type == bson.TypeEmbeddedDocument && impliesDoc(preds, sub.Value, depth+1)
				if e.key == "$and" && !ok {
					return false
				}
				any = any || ok
			}
			if e.key == "$or" && !any {
				return false
			}
			continue
		}
		if len(e.key) > 0 && e.key[0] == '$' {
			return false
		}
		var want []leafPred
		if isOperatorDoc(e.val) {
			for _, op := range elems(e.val.Value) {
				want = append(want, leafPred{op.key, op.val})
			}
		} else {
			want = []leafPred{{"$eq", e.val}}
		}
		for _, w := range want {
			found := false
			for _, q := range preds[e.key] {
				if predImplies(q, w) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
	}
	return true
}

// predImplies reports whether every value q matches satisfies w.
func predImplies(q, w leafPred) bool {
	switch q.op {
	case "$eq":
		return valueSatisfies(q.v, w)
	case "$in":
		if q.v.Type != bson.TypeArray {
			return false
		}
		vals := arrayValues(q.v.Value)
		if len(vals) == 0 {
			return false
		}
		for _, v := range vals {
			if v.Type == bson.TypeRegex || !valueSatisfies(v, w) {
				return false
			}
		}
		return true
	case "$gt", "$gte", "$lt", "$lte":
		if isNullish(q.v) || q.v.Type == bson.TypeArray {
			return false
		}
		switch w.op {
		case "$exists":
			return truthy(w.v)
		case "$type":
			// A range matches only values of its bound's canonical type;
			// $type: "number" is the one type a number range implies.
			if canonRank(q.v.Type) != rankNumber {
				return false
			}
			s, ok := w.v.StringValueOK()
			return ok && s == "number"
		case "$gt", "$gte", "$lt", "$lte":
			if canonRank(q.v.Type) != canonRank(w.v.Type) || isNullish(w.v) {
				return false
			}
			c := Compare(q.v, w.v)
			lower := q.op == "$gt" || q.op == "$gte"
			if lower != (w.op == "$gt" || w.op == "$gte") {
				return false
			}
			strictQ := q.op == "$gt" || q.op == "$lt"
			strictW := w.op == "$gt" || w.op == "$lt"
			if !lower {
				c = -c
			}
			// Lower bounds: q's bound must be at or above w's, and
			// strictly above when w is strict and q is not.
			return c > 0 || (c == 0 && (strictQ || !strictW))
		}
		return false
	case "$exists":
		return w.op == "$exists" && truthy(q.v) && truthy(w.v)
	case "$type":
		if w.op == "$exists" {
			return truthy(w.v)
		}
		return w.op == "$type" && Compare(q.v, w.v) == 0 && q.v.Type == w.v.Type
	}
	return false
}

// valueSatisfies reports whether an equality with v (as a filter matches
// it: the value itself, or an element of an array) implies w.
func valueSatisfies(v bson.RawValue, w leafPred) bool {
	switch w.op {
	case "$exists":
		return truthy(w.v) && !isNullish(v)
	case "$eq":
		return Compare(v, w.v) == 0 && canonRank(v.Type) == canonRank(w.v.Type)
	case "$in":
		if w.v.Type != bson.TypeArray {
			return false
		}
		for _, x := range arrayValues(w.v.Value) {
			if x.Type != bson.TypeRegex && Compare(v, x) == 0 && canonRank(v.Type) == canonRank(x.Type) {
				return true
			}
		}
		return false
	case "$type":
		if v.Type == bson.TypeArray || isNullish(v) {
			return false
		}
		pred, err := typePred(w.v)
		return err == nil && pred(v)
	case "$gt", "$gte", "$lt", "$lte":
		if v.Type == bson.TypeArray || v.Type == bson.TypeEmbeddedDocument || isNullish(v) ||
			canonRank(v.Type) != canonRank(w.v.Type) {
			return false
		}
		c := Compare(v, w.v)
		switch w.op {
		case "$gt":
			return c > 0
		case "$gte":
			return c >= 0
		case "$lt":
			return c < 0
		}
		return c <= 0
	}
	return false
}

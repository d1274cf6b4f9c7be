package query

import (
	"bytes"
	"math"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// KeyRange is a half-open range [Start, End) over keys produced by
// EncodeIndexKey / KeyPattern.IndexKeys.
type KeyRange struct {
	Start, End []byte
}

// IndexPlan says how an index can serve a filter. The ranges cover every
// matching document (they may also cover non-matching ones, e.g. NaN for
// $lt or array-valued fields), so callers must still apply the Matcher to
// fetched documents. Ranges are sorted and non-overlapping.
type IndexPlan struct {
	Ranges []KeyRange
	// EqualityPrefix is how many leading index fields are constrained to
	// point values.
	EqualityPrefix int
	// ExcludesMissing says the ranges hold no document that lacks every
	// constrained field: one of them is constrained to values other than
	// null (a missing field is indexed, and matched, as null). Only such a
	// plan may use a sparse index, which has no entry for those documents.
	ExcludesMissing bool
	// Bounds are explain's indexBounds: per key-pattern field, in order,
	// the intervals scanned as mongod prints them ("[1, 1]", "(5, inf.0]",
	// "[MinKey, MaxKey]").
	Bounds []FieldBounds
}

// FieldBounds are one index field's intervals.
type FieldBounds struct {
	Field     string
	Intervals []string
}

// FullBounds are the bounds of a scan of the whole index.
func FullBounds(kp *KeyPattern) []FieldBounds {
	out := make([]FieldBounds, len(kp.Fields))
	for i, f := range kp.Fields {
		out[i] = FieldBounds{Field: f, Intervals: []string{fullInterval(kp.Directions[i])}}
	}
	return out
}

func fullInterval(dir int) string {
	if dir < 0 {
		return "[MaxKey, MinKey]"
	}
	return "[MinKey, MaxKey]"
}

// intervalString prints iv as mongod's explain does, in scan order.
func intervalString(iv interval, dir int) string {
	lo, hi := iv.lo, iv.hi
	if dir < 0 {
		lo, hi = hi, lo
	}
	open, close := "(", ")"
	if lo.incl {
		open = "["
	}
	if hi.incl {
		close = "]"
	}
	ls, lincl := ixBoundString(lo)
	hs, hincl := ixBoundString(hi)
	if !lincl {
		open = "("
	}
	if !hincl {
		close = ")"
	}
	return open + ls + ", " + hs + close
}

// ixBoundString prints a bound; for a type edge it also says whether mongod
// prints it inclusive (the infinities are, the next type's minimum is not).
func ixBoundString(b bound) (string, bool) {
	if b.edge == 0 {
		return valueString(b.v), b.incl
	}
	low := b.edge < 0
	switch canonRank(b.v.Type) {
	case rankNumber:
		if low {
			return "-inf.0", true
		}
		return "inf.0", true
	case rankString:
		if low {
			return `""`, true
		}
		return "{}", false
	case rankDate:
		if low {
			return "new Date(-9223372036854775808)", true
		}
		return "new Date(9223372036854775807)", true
	case rankObjectID:
		if low {
			return "ObjectId('000000000000000000000000')", true
		}
		return "ObjectId('ffffffffffffffffffffffff')", true
	case rankBool:
		if low {
			return "false", true
		}
		return "true", true
	}
	if low {
		return "MinKey", true
	}
	return "MaxKey", true
}

// valueString prints a value the way mongod's index bounds do.
func valueString(v bson.RawValue) string {
	switch v.Type {
	case bson.TypeInt32:
		return strconv.FormatInt(int64(v.Int32()), 10)
	case bson.TypeInt64:
		return strconv.FormatInt(v.Int64(), 10)
	case bson.TypeDouble:
		f := v.Double()
		if f == math.Trunc(f) && !math.IsInf(f, 0) && math.Abs(f) < 1e15 {
			return strconv.FormatFloat(f, 'f', 1, 64)
		}
		return strconv.FormatFloat(f, 'g', -1, 64)
	case bson.TypeString:
		return strconv.Quote(v.StringValue())
	case bson.TypeNull:
		return "null"
	case bson.TypeUndefined:
		return "undefined"
	case bson.TypeBoolean:
		return strconv.FormatBool(v.Boolean())
	case bson.TypeDateTime:
		return "new Date(" + strconv.FormatInt(v.DateTime(), 10) + ")"
	case bson.TypeObjectID:
		return "ObjectId('" + v.ObjectID().Hex() + "')"
	case bson.TypeMinKey:
		return "MinKey"
	case bson.TypeMaxKey:
		return "MaxKey"
	}
	return v.String()
}

// maxPlanRanges caps the cartesian product of $in point sets.
const maxPlanRanges = 4096

// bound is one end of a value interval in ascending encoding space: the
// encoded value (or just a type tag, for open-ended type-bracketed
// ranges) and whether the bound itself is included. A tag-only bound is
// always inclusive and covers the whole type.
type bound struct {
	p    []byte
	incl bool
	// v is the value the bound came from, for explain's indexBounds;
	// edge is -1 or 1 for a tag-only bound (the low or high end of v's
	// type), 0 for a bound at v itself.
	v    bson.RawValue
	edge int8
}

type interval struct{ lo, hi bound }

// effective positions in ascending byte space: start is inclusive, end is
// exclusive.
func (b bound) start() []byte {
	if b.incl {
		return b.p
	}
	return prefixEnd(b.p)
}

func (b bound) end() []byte {
	if b.incl {
		return prefixEnd(b.p)
	}
	return b.p
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	out := append([]byte{}, p...)
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] != 0xFF {
			out[i]++
			return out[:i+1]
		}
	}
	return nil // no upper bound
}

func cmpEnd(a, b []byte) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return bytes.Compare(a, b)
}

func pointInterval(v bson.RawValue) interval {
	e := EncodeValue(nil, v)
	return interval{bound{p: e, incl: true, v: v}, bound{p: e, incl: true, v: v}}
}

// fieldCons is the set of intervals one field is constrained to.
type fieldCons struct {
	ivs    []interval
	points bool // every interval is a single value
}

func intersect(a, b []interval) []interval {
	var out []interval
	for _, x := range a {
		for _, y := range b {
			lo := x.lo
			if bytes.Compare(y.lo.start(), x.lo.start()) > 0 {
				lo = y.lo
			}
			hi := x.hi
			if cmpEnd(y.hi.end(), x.hi.end()) < 0 {
				hi = y.hi
			}
			if cmpEnd(lo.start(), hi.end()) < 0 {
				out = append(out, interval{lo, hi})
			}
		}
	}
	return out
}

// PlanIndex reports whether an index with the given key pattern can serve
// filter and, if so, the key ranges to scan. The index is usable when its
// first field is constrained by equality, $eq, $in, or a range
// ($gt/$gte/$lt/$lte) in the filter's top-level conjunction; further
// fields extend the ranges while the preceding ones are equalities.
//
// multikey must be true if any indexed document has an array on an indexed
// path: then different elements may satisfy different predicates on the
// same field ({a: {$gt: 5, $lt: 3}} matches a: [1, 9]), so bounds are not
// intersected and only the first usable predicate per field is used, as
// MongoDB does for multikey indexes.
func PlanIndex(filter bson.Raw, keyPattern bson.Raw, multikey bool) (*IndexPlan, bool, error) {
	kp, err := ParseKeyPattern(keyPattern)
	if err != nil {
		return nil, false, err
	}
	if len(filter) > 0 {
		if err := validateDoc(filter); err != nil {
			return nil, false, badValue("invalid filter document: %v", err)
		}
	}
	if _, err := Compile(filter); err != nil {
		return nil, false, err
	}
	cons := map[string]*fieldCons{}
	collectConstraints(filter, cons, multikey, 0)
	prefixes := [][]byte{{}}
	plan := &IndexPlan{}
	var rangeField *fieldCons
	rangeDir := 1
	for i, f := range kp.Fields {
		c := cons[f]
		if c == nil {
			break
		}
		if !c.points {
			rangeField, rangeDir = c, kp.Directions[i]
			break
		}
		var next [][]byte
		for _, p := range prefixes {
			for _, iv := range c.ivs {
				enc := append([]byte{}, iv.lo.p...)
				if kp.Directions[i] < 0 {
					invert(enc)
				}
				next = append(next, append(append([]byte{}, p...), enc...))
			}
		}
		if len(next) > maxPlanRanges {
			break
		}
		prefixes = next
		plan.EqualityPrefix++
		if !hasNullPoint(c.ivs) {
			plan.ExcludesMissing = true
		}
	}
	if rangeField != nil {
		// Ranges ($gt, $lt, ...) never include null.
		plan.ExcludesMissing = true
	}
	if plan.EqualityPrefix == 0 && rangeField == nil {
		return nil, false, nil
	}
	for i, f := range kp.Fields {
		fb := FieldBounds{Field: f}
		var ivs []interval
		switch {
		case i < plan.EqualityPrefix:
			ivs = cons[f].ivs
		case i == plan.EqualityPrefix && rangeField != nil:
			ivs = rangeField.ivs
		}
		if ivs == nil {
			fb.Intervals = []string{fullInterval(kp.Directions[i])}
		}
		for j := range ivs {
			k := j
			if kp.Directions[i] < 0 {
				k = len(ivs) - 1 - j
			}
			fb.Intervals = append(fb.Intervals, intervalString(ivs[k], kp.Directions[i]))
		}
		plan.Bounds = append(plan.Bounds, fb)
	}
	for _, p := range prefixes {
		if rangeField == nil {
			plan.Ranges = append(plan.Ranges, KeyRange{Start: p, End: prefixEnd(p)})
			continue
		}
		for _, iv := range rangeField.ivs {
			lo, hi := iv.lo, iv.hi
			if rangeDir < 0 {
				lo = bound{p: invertCopy(iv.hi.p), incl: iv.hi.incl}
				hi = bound{p: invertCopy(iv.lo.p), incl: iv.lo.incl}
			}
			start := append(append([]byte{}, p...), lo.p...)
			if !lo.incl {
				start = prefixEnd(start)
			}
			end := append(append([]byte{}, p...), hi.p...)
			if hi.incl {
				end = prefixEnd(end)
			}
			plan.Ranges = append(plan.Ranges, KeyRange{Start: start, End: end})
		}
	}
	normalizeRanges(plan)
	return plan, true, nil
}

func invertCopy(b []byte) []byte {
	c := append([]byte{}, b...)
	invert(c)
	return c
}

// normalizeRanges sorts ranges and merges overlaps (descending fields and
// $in lists can produce them out of order).
func normalizeRanges(plan *IndexPlan) {
	rs := plan.Ranges
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && bytes.Compare(rs[j].Start, rs[j-1].Start) < 0; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
	var out []KeyRange
	for _, r := range rs {
		if r.End != nil && bytes.Compare(r.Start, r.End) >= 0 {
			continue
		}
		if n := len(out); n > 0 && (out[n-1].End == nil || bytes.Compare(r.Start, out[n-1].End) <= 0) {
			if cmpEnd(r.End, out[n-1].End) > 0 {
				out[n-1].End = r.End
			}
			continue
		}
		out = append(out, r)
	}
	plan.Ranges = out
}

// collectConstraints gathers per-field intervals from the top-level
// conjunction (including nested $and).
func collectConstraints(filter []byte, cons map[string]*fieldCons, multikey bool, depth int) {
	if depth > maxFilterDepth {
		return
	}
	add := func(field string, ivs []interval, points bool) {
		c := cons[field]
		if c == nil {
			cons[field] = &fieldCons{ivs: ivs, points: points}
			return
		}
		if multikey {
			return
		}
		c.ivs = intersect(c.ivs, ivs)
		c.points = c.points && points || allPoints(c.ivs)
	}
	for _, e := range elems(filter) {
		if e.key == "$and" && e.val.Type == bson.TypeArray {
			for _, sub := range arrayValues(e.val.Value) {
				collectConstraints(sub.Value, cons, multikey, depth+1)
			}
			continue
		}
		if strings.HasPrefix(e.key, "$") {
			continue
		}
		switch {
		case e.val.Type == bson.TypeRegex:
			continue
		case isOperatorDoc(e.val):
			for _, op := range elems(e.val.Value) {
				if ivs, pts, ok := opIntervals(op.key, op.val); ok {
					add(e.key, ivs, pts)
				}
			}
		default:
			if ivs, ok := eqIntervals(e.val); ok {
				add(e.key, ivs, true)
			}
		}
	}
}

func allPoints(ivs []interval) bool {
	for _, iv := range ivs {
		if !bytes.Equal(iv.lo.p, iv.hi.p) || !iv.lo.incl || !iv.hi.incl {
			return false
		}
	}
	return true
}

// eqIntervals returns the index points an equality predicate can match.
// Arrays and documents are not bounded (an array equality also matches an
// indexed element), so the caller ignores them.
func eqIntervals(v bson.RawValue) ([]interval, bool) {
	switch v.Type {
	case bson.TypeArray, bson.TypeMinKey, bson.TypeMaxKey:
		return nil, false
	case bson.TypeNull, bson.TypeUndefined:
		// Missing fields are indexed as null; undefined matches null too.
		return []interval{pointInterval(rvUndefined), pointInterval(rvNull)}, true
	}
	return []interval{pointInterval(v)}, true
}

func opIntervals(op string, v bson.RawValue) ([]interval, bool, bool) {
	switch op {
	case "$eq":
		ivs, ok := eqIntervals(v)
		return ivs, true, ok
	case "$in":
		if v.Type != bson.TypeArray {
			return nil, false, false
		}
		var ivs []interval
		for _, x := range arrayValues(v.Value) {
			if x.Type == bson.TypeRegex {
				return nil, false, false
			}
			sub, ok := eqIntervals(x)
			if !ok {
				return nil, false, false
			}
			ivs = append(ivs, sub...)
		}
		return sortIntervals(ivs), true, true
	case "$gt", "$gte", "$lt", "$lte":
		switch v.Type {
		case bson.TypeMinKey, bson.TypeMaxKey, bson.TypeNull, bson.TypeUndefined, bson.TypeArray:
			return nil, false, false
		}
		e := EncodeValue(nil, v)
		typ := []byte{tagOf(v.Type)}
		incl := op == "$gte" || op == "$lte"
		if op == "$gt" || op == "$gte" {
			return []interval{{bound{p: e, incl: incl, v: v}, bound{p: typ, incl: true, v: v, edge: 1}}}, false, true
		}
		return []interval{{bound{p: typ, incl: true, v: v, edge: -1}, bound{p: e, incl: incl, v: v}}}, false, true
	}
	return nil, false, false
}

func sortIntervals(ivs []interval) []interval {
	for i := 1; i < len(ivs); i++ {
		for j := i; j > 0 && bytes.Compare(ivs[j].lo.p, ivs[j-1].lo.p) < 0; j-- {
			ivs[j], ivs[j-1] = ivs[j-1], ivs[j]
		}
	}
	var out []interval
	for _, iv := range ivs {
		if n := len(out); n > 0 && bytes.Equal(out[n-1].lo.p, iv.lo.p) {
			continue
		}
		out = append(out, iv)
	}
	return out
}

func hasNullPoint(ivs []interval) bool {
	null := EncodeValue(nil, rvNull)
	for _, iv := range ivs {
		if bytes.Equal(iv.lo.p, null) {
			return true
		}
	}
	return false
}
